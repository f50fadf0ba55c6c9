"""Thread worker (the WSGI default): one epoll set, a pool of threads, no hand-offs.

Every connection sits in one epoll set with EPOLLONESHOT. Each of the
cfg.threads pool threads waits in `epoll.poll(maxevents=1)`: the kernel wakes one
thread per ready connection, and that thread reads, parses, runs the app and
writes the response itself, then re-arms the connection. So an idle keep-alive
connection costs no thread, and a request costs no queue, no condition
variable, no trip back through a dispatcher thread. The main thread only
handles signals, heartbeats and deadlines (keep-alive idle, header deadline
-> 408, drain).
"""

from __future__ import annotations

import errno
import logging
import select
import socket
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from reclusterd.http import EndOfMessage, ProtocolError, Request
from reclusterd.http.connection import TIMEOUT, over_capacity
from reclusterd.workers.base import Worker
from reclusterd.wsgi.conn import ClientGone, Conn, Environ, wait_fd
from reclusterd.wsgi.handler import WSGIHandler

if TYPE_CHECKING:
    from reclusterd.config import Config
    from reclusterd.control import WorkerChannel
    from reclusterd.sockets import Listener

log = logging.getLogger("reclusterd.error")
_ARM = select.EPOLLIN | select.EPOLLONESHOT | select.EPOLLRDHUP
TICK = 0.25
PROMOTE_AFTER = 0.004
FAIR_SLICE = 0.002
ACCEPT_BATCH = 16


class ThreadWorker(Worker):
    """WSGI over a thread pool sharing one epoll set (see the module docstring)."""

    app_kinds = ("wsgi",)

    def __init__(self, cfg: Config, listeners: Sequence[Listener], channel: WorkerChannel,
                 app: Any, kind: str) -> None:
        super().__init__(cfg, listeners, channel, app, kind)
        from reclusterd.sockets import ssl_context
        self.ssl = ssl_context(cfg)
        self.handler = WSGIHandler(cfg, app, self.meter, multithread=cfg.threads > 1,
                                   secure=self.ssl is not None)
        self.ep = select.epoll()
        self.conns: dict[int, Conn] = {}
        self.lock = threading.Lock()
        self.lsocks: dict[int, tuple[socket.socket, Environ]] = {}
        self.max_conns = cfg.worker_connections
        self.threads: list[threading.Thread] = []
        # Pollers wait in epoll and serve what they get; spares are parked (see _spare_duty).
        # Start "starved" so the first spare is promoted at once.
        self.pollers = 0
        self.idle_pollers = 0
        self.starved_since = 1.0
        self.duty = threading.Lock()

    def on_drain(self) -> None:
        self.handler.draining = True

    # -- main thread: lifecycle, heartbeats, deadlines ----------------------
    def run(self) -> None:
        self.install_signals()
        for lst in self.listeners:
            sock = lst.sock
            sock.setblocking(False)
            env = self.handler.listener_environ(sock)
            self.lsocks[sock.fileno()] = (sock, env)
            self.ep.register(sock.fileno(), _ARM)
        for i in range(max(1, self.cfg.threads)):
            t = threading.Thread(target=self._pool_thread, name=f"reclusterd-{i}",
                                 daemon=True)
            t.start()
            self.threads.append(t)
        self.channel.ready()
        waker = select.poll()
        waker.register(self.wake_fd, select.POLLIN)
        drain_deadline = 0.0
        while True:
            now = time.monotonic()
            self.maybe_heartbeat(now)
            self._expire(now)
            if self.draining:
                if not drain_deadline:
                    drain_deadline = now + float(self.cfg.graceful_timeout)
                    self._stop_accepting()
                elif not self.conns and self.idle_pollers == self.pollers:
                    break           # nothing open, and no thread between epoll and accept
                if now >= drain_deadline:
                    if self.conns:
                        log.warning("worker %d: graceful timeout, %d connection(s) cut",
                                    self.pid, len(self.conns))
                    break
            try:
                waker.poll(min(TICK, self.hb_interval) * 1000)
            except InterruptedError:
                pass
            self.clear_wake()
        self.alive = False
        self.final_heartbeat()

    def _stop_accepting(self) -> None:
        for fd in list(self.lsocks):
            try:
                self.ep.unregister(fd)
            except OSError:
                pass
        self.lsocks.clear()
        # Closing a keep-alive connection races with the client sending its next request
        # on it (the request would be lost): http.connection shortens each wait instead
        # (idle ones close after DRAIN_IDLE, a head under way gets a short grace), and a
        # request that arrives meanwhile is answered with Connection: close.
        grace = self.handler.drain_grace
        with self.lock:
            for conn in self.conns.values():
                conn.h1.begin_drain(grace)

    def _expire(self, now: float) -> None:
        """Act on the connection deadlines that passed: close idle connections, answer 408
        to overdue request heads (http.connection.H1Connection.next_deadline)."""
        with self.lock:
            due = []
            for conn in self.conns.values():
                if not conn.busy:
                    when, what = conn.h1.next_deadline()
                    if when <= now:
                        due.append((conn, what))
            for conn, what in due:
                if what == TIMEOUT:
                    try:
                        conn.sock.send(conn.h1.timeout_response())
                    except OSError:
                        pass
                elif conn.h1.served and wait_fd(conn.fd, select.POLLIN, 0):
                    continue    # its next request is here, queued for a poller: serve it
                self._drop(conn)

    def _drop(self, conn: Conn) -> None:
        """Under self.lock: forget and close an idle connection."""
        self.conns.pop(conn.fd, None)
        conn.busy = True
        conn.close(linger=bool(conn.h1.head_start))

    # -- pool threads ---------------------------------------------------------
    def _pool_thread(self) -> None:
        while self.alive:
            self._spare_duty()
            self._poll_loop()

    def _spare_duty(self) -> None:
        """Parked thread: becomes a poller when every poller has been busy PROMOTE_AFTER s.

        One spare at a time watches (the others wait on `duty`), so an idle worker costs a
        few hundred cheap wake-ups a second, and fast requests run without GIL contention.
        """
        with self.duty:
            while self.alive:
                since = self.starved_since
                if since and time.monotonic() - since >= PROMOTE_AFTER:
                    with self.lock:
                        if self.starved_since:
                            self.pollers += 1
                            self.idle_pollers += 1
                            self.starved_since = 0.0
                            return
                time.sleep(PROMOTE_AFTER / 2)

    def _poll_loop(self) -> None:
        """Poller: wait for one ready fd, serve it inline, repeat; step down when redundant."""
        poll = self.ep.poll
        lsocks = self.lsocks
        conns = self.conns
        lock = self.lock
        while self.alive:
            try:
                events = poll(1.0, 1)
            except InterruptedError:
                continue
            except OSError:
                return
            if not events:
                continue
            fd = events[0][0]
            lsock = lsocks.get(fd)
            t0 = time.monotonic()
            with lock:
                self.idle_pollers -= 1
                if not self.idle_pollers:
                    self.starved_since = t0
                conn = None
                if lsock is None:
                    conn = conns.get(fd)
                    if conn is not None:
                        if conn.busy:
                            conn = None
                        else:
                            conn.busy = True
            try:
                if lsock is not None:
                    conn = self._accept(fd, *lsock)
                if conn is not None:
                    self._drive(conn)
            except Exception:  # noqa: BLE001 - a thread must survive anything
                log.exception("unexpected error on a connection")
                if conn is not None:
                    self._close(conn)
            finally:
                # Step down only after a fast request while another poller waits: under
                # slow requests the pollers stay, under fast ones they shrink back to one.
                fast = time.monotonic() - t0 < PROMOTE_AFTER
                with lock:
                    redundant = fast and self.idle_pollers > 0 and self.pollers > 1
                    if redundant:
                        self.pollers -= 1
                    else:
                        self.idle_pollers += 1
                        self.starved_since = 0.0
            if redundant:
                return

    def _accept(self, fd: int, lsock: socket.socket, env: Environ) -> Conn | None:
        """Accept what is pending (up to ACCEPT_BATCH): the first connection is returned to
        be served inline (its request is often there already), the others wait in epoll.
        Accepting in a batch keeps new connections from queueing behind busy ones."""
        first: Conn | None = None
        for _ in range(ACCEPT_BATCH):
            try:
                sock, addr = lsock.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.error("accept failed: %s", e)
                break
            conn = self._new_conn(sock, addr, env)
            if conn is None:
                continue
            if first is None:
                first = conn
            else:
                self._rearm(conn)
        if self.lsocks:
            try:
                self.ep.modify(fd, _ARM)
            except OSError:
                pass
        return first

    def _new_conn(self, sock: socket.socket, addr: Any, env: Environ) -> Conn | None:
        busy = over_capacity(len(self.conns), self.max_conns)
        if busy is not None:
            try:
                sock.setblocking(False)
                sock.send(busy)
            except OSError:
                pass
            sock.close()
            return None
        conn = self.handler.accept(sock, addr, env, self.ssl)
        if conn is None:
            return None
        conn.busy = True
        with self.lock:
            self.conns[conn.fd] = conn
        return conn             # registered in epoll only if it has to wait (_rearm)

    def _drive(self, conn: Conn) -> None:
        """Owner thread: read, answer every complete request, then re-arm or close."""
        if conn.tls == 1:
            want = conn.handshake()
            if want:
                if want < 0:
                    self._close(conn)
                else:
                    self._rearm(conn)
                return
        events = conn.events
        handler = self.handler
        slice_end = time.monotonic() + FAIR_SLICE
        n = conn.recv_now()
        served = False
        while True:
            if not events:
                if n == 0:
                    self._close(conn)
                    return
                if n < 0:
                    break
                # The client's next request may be here already: serve it without a trip
                # through epoll, unless this connection has had its time slice (then it
                # queues behind the other ready connections: fairness).
                if served and time.monotonic() >= slice_end:
                    break
                n = conn.recv_now()
                continue
            ev = events.popleft()
            tp = type(ev)
            if tp is Request:
                h1 = conn.h1
                h1.start_request()
                try:
                    keep = handler.serve(conn, ev) and ev.upgrade is None
                except ClientGone:
                    keep = False
                keep = h1.response_done(keep)
                served = True
                if not keep:
                    self._close(conn, linger=True)
                    return
            elif tp is ProtocolError:
                try:
                    conn.sendall(conn.h1.reject(ev))
                except ClientGone:
                    pass
                self._close(conn, linger=True)
                return
            elif tp is not EndOfMessage:
                continue        # body bytes of a request the app already finished with
        self._rearm(conn)

    def _rearm(self, conn: Conn) -> None:
        """Back to epoll; the main thread's _expire watches its deadline meanwhile."""
        conn.busy = False
        try:
            if conn.polled:
                self.ep.modify(conn.fd, _ARM)
            else:
                conn.polled = True
                self.ep.register(conn.fd, _ARM)
        except OSError:
            self._close(conn)

    def _close(self, conn: Conn, linger: bool = False) -> None:
        with self.lock:
            if self.conns.get(conn.fd) is conn:
                del self.conns[conn.fd]
            conn.close(linger)
        if self.draining:
            self.wake()
