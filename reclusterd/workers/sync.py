"""Sync worker: one connection at a time, one request per connection, then close.

Meant to sit behind a buffering proxy (nginx): a slow client occupies the whole
worker for as long as it takes (bounded by --header-timeout for the head and the
same idle limit for body reads), so many slow clients can starve it. Every
response carries `Connection: close` (http.connection's rules with persistent=False;
the deadlines are the same as on the other worker classes).
"""

from __future__ import annotations

import logging
import select
import socket
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from reclusterd.http import ProtocolError, Request
from reclusterd.http.connection import TIMEOUT
from reclusterd.workers.acceptpause import RESOURCE_ERRORS, AcceptPause
from reclusterd.workers.base import Worker
from reclusterd.wsgi.conn import ClientGone, Conn, Environ, wait_fd
from reclusterd.wsgi.handler import WSGIHandler

if TYPE_CHECKING:
    from reclusterd.config import Config
    from reclusterd.control import WorkerChannel
    from reclusterd.sockets import Listener

log = logging.getLogger("reclusterd.error")


class SyncWorker(Worker):
    """Accepts on every listener; serves each connection to the end before the next."""

    app_kinds = ("wsgi",)

    def __init__(self, cfg: Config, listeners: Sequence[Listener], channel: WorkerChannel,
                 app: Any, kind: str) -> None:
        super().__init__(cfg, listeners, channel, app, kind)
        self.handler = WSGIHandler(cfg, app, self.meter, multithread=False,
                                   secure=self.ssl is not None, persistent=False)
        self.current: Conn | None = None      # the connection being served
        self.poller = select.poll()
        self.lsocks: dict[int, tuple[socket.socket, Environ]] = {}
        self.pause = AcceptPause()      # out of fds: listeners unregistered meanwhile

    def on_drain(self) -> None:
        """TERM: close this worker's copy of the listeners at once (new connections go to
        the other workers, or are refused: never queued for a worker that will not accept
        them); the connection being read gets the drain deadlines (http.connection).
        Runs in the signal handler, on the one thread, which may be inside the app: the
        loop that polls the listeners leaves as soon as it sees `draining`."""
        self.handler.draining = True
        for fd, (sock, _) in list(self.lsocks.items()):
            try:
                self.poller.unregister(fd)
            except (KeyError, OSError):
                pass
            sock.close()
        self.lsocks.clear()
        if self.current is not None:
            self.current.h1.begin_drain(self.handler.drain_grace)

    def run(self) -> None:
        self.install_signals()
        if self.handler.rules.header_timeout <= 0:
            # issue 12: 0 stays "off", but here it costs the whole worker (heartbeats go on)
            log.warning("worker %d: --header-timeout 0 with -k sync: one client that opens "
                        "a connection and sends nothing holds this worker until it sends "
                        "or closes; set --header-timeout or use -k thread", self.pid)
        poller = self.poller
        lsocks = self.lsocks
        for lst in self.listeners:
            sock = lst.sock
            sock.setblocking(False)
            env = self.handler.listener_environ(sock)
            lsocks[sock.fileno()] = (sock, env)
            poller.register(sock.fileno(), select.POLLIN)
        poller.register(self.wake_fd, select.POLLIN)
        self.channel.ready()
        while not self.draining:
            self.maybe_heartbeat()
            wait = self.hb_interval
            if self.pause.until:
                wait = min(wait, self.pause.resume_in(time.monotonic()))
                if not wait:
                    self._listen(True)
                    wait = self.hb_interval
            try:
                ready = poller.poll(wait * 1000)
            except InterruptedError:
                continue
            for fd, _ in ready:
                if fd == self.wake_fd:
                    self.clear_wake()
                    continue
                lsock = lsocks.get(fd)
                if self.draining or lsock is None:
                    break
                self._accept(*lsock)
                self.maybe_heartbeat()
        self.alive = False
        self.final_heartbeat()

    def _listen(self, on: bool) -> None:
        """(Un)register the listeners: off for the pause after an accept resource error."""
        if on:
            self.pause.until = 0.0
        for fd in self.lsocks:
            try:
                if on:
                    self.poller.register(fd, select.POLLIN)
                else:
                    self.poller.unregister(fd)
            except (KeyError, OSError):
                pass

    def _accept(self, lsock: socket.socket, env: Environ) -> None:
        try:
            sock, addr = lsock.accept()
        except OSError as e:
            # another worker won the race, or a transient accept error; out of fds (or
            # memory), retrying at once would spin: pause (acceptpause), log with a count
            if e.errno in RESOURCE_ERRORS:
                line = self.pause.failed(e, time.monotonic())
                if line is not None:
                    log.error("%s", line)
                self._listen(False)
            return
        conn = self.current = self.handler.accept(sock, addr, env, self.ssl)
        if conn is None:
            return
        try:
            self._serve(conn)
        except Exception:  # noqa: BLE001 - the worker survives anything a client does
            log.exception("unexpected error on a connection")
        finally:
            self.current = None
            conn.close(linger=True)

    def _serve(self, conn: Conn) -> None:
        """Read the head (within the connection's deadlines), serve that one request."""
        h1 = conn.h1
        while True:
            while conn.events:
                ev = conn.events.popleft()
                if type(ev) is Request:
                    h1.start_request()
                    try:
                        self.handler.serve(conn, ev)
                    except ClientGone:
                        pass
                    return
                if type(ev) is ProtocolError:
                    self._send(conn, h1.reject(ev))
                    return
            if conn.tls == 1:
                want = conn.handshake()
                if want < 0 or (want and not self._wait(conn, want)):
                    return
                continue
            n = conn.recv_now()
            if n == 0 and not conn.events:
                return
            if n < 0 and not self._wait(conn, select.POLLIN):
                return

    def _wait(self, conn: Conn, events: int) -> bool:
        """Wait for the socket until the connection's next deadline, sending heartbeats
        meanwhile (this thread is the one the arbiter watches); False once it passed.
        The deadline is asked again each round: TERM (on_drain) may have shortened it."""
        while True:
            when, what = conn.h1.next_deadline()
            remaining = when - time.monotonic()
            if remaining <= 0:
                if what == TIMEOUT:
                    self._send(conn, conn.h1.timeout_response())
                return False
            if wait_fd(conn.fd, events, min(remaining, self.hb_interval)):
                return True
            self.maybe_heartbeat()

    @staticmethod
    def _send(conn: Conn, data: bytes) -> None:
        try:
            conn.sendall(data)
        except ClientGone:
            pass
