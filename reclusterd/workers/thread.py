"""Thread worker (the WSGI default): one epoll set, a pool of threads, no hand-offs.

Every connection sits in one epoll set with EPOLLONESHOT. Each poller of the pool
(workers/pool.py: --threads N, or one that grows under blocking load) waits in
`epoll.poll(maxevents=1)`: the kernel wakes one thread per ready connection, and
that thread reads, parses, runs the app and writes the response itself, then
re-arms the connection. So an idle keep-alive connection costs no thread, and a
request costs no queue, no condition variable, no trip back through a dispatcher
thread. The main thread only
handles signals, heartbeats and deadlines (keep-alive idle, header deadline
-> 408, drain).
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from reclusterd.http import EndOfMessage, ProtocolError, Request
from reclusterd.http.connection import TIMEOUT, over_capacity
from reclusterd.workers.acceptpause import RESOURCE_ERRORS, AcceptPause
from reclusterd.workers.base import Worker
from reclusterd.workers.pool import PROMOTE_AFTER, PROMOTE_MIN, PoolSize
from reclusterd.workers.refused import Refused
from reclusterd.workers.share import DEFER, join
from reclusterd.workers.threadh2 import H2Switch
from reclusterd.workers.threadpool import ThreadPool
from reclusterd.wsgi.conn import ClientGone, Conn, Environ, wait_fd
from reclusterd.wsgi.handler import WSGIHandler
from reclusterd.wsgi.response import Reply

if TYPE_CHECKING:
    from reclusterd.config import Config
    from reclusterd.control import WorkerChannel
    from reclusterd.sockets import Listener

log = logging.getLogger("reclusterd.error")
_ARM = select.EPOLLIN | select.EPOLLONESHOT | select.EPOLLRDHUP
_ARM_OUT = select.EPOLLOUT | select.EPOLLONESHOT     # a parked response: room to write
_PARKED = -1        # _expire: a parked response made no progress within its deadline
TICK = 0.25
FAIR_SLICE = 0.002
ACCEPT_BATCH = 16


class ThreadWorker(Worker):
    """WSGI over a thread pool sharing one epoll set (see the module docstring)."""

    app_kinds = ("wsgi",)
    speaks_h2: ClassVar[bool] = True        # wsgi.h2conn, via workers.threadh2

    def __init__(self, cfg: Config, listeners: Sequence[Listener], channel: WorkerChannel,
                 app: Any, kind: str) -> None:
        super().__init__(cfg, listeners, channel, app, kind)
        self.handler = WSGIHandler(cfg, app, self.meter, multithread=cfg.threads != 1,
                                   secure=self.ssl is not None)
        self.handler.park_writes = True     # a slow reader holds a buffer, not a thread
        self.ep = select.epoll()
        self.conns: dict[int, Conn] = {}
        self.lock = threading.Lock()
        self.lsocks: dict[int, tuple[socket.socket, Environ]] = {}
        self.max_conns = cfg.worker_connections
        self.pool = ThreadPool(PoolSize.from_setting(cfg.threads, cfg.worker_connections),
                               self.lock, self._poll_loop, lambda: self.alive)
        self.pause = AcceptPause()
        self.paused: set[int] = set()   # listeners not re-armed after a resource error
        self.refused = Refused(self.ep, self.lock)     # 503 at --worker-connections
        self.h2 = (H2Switch(cfg, self.handler, self.ep, self.lock, self.conns, self._close,
                            self.ssl is not None, self.wake)
                   if "h2" in cfg.http_protocols else None)
        self.share = join()

    def on_drain(self) -> None:
        self.handler.draining = True

    def over_memory(self) -> None:
        """Over --max-worker-memory (on the thread that saw it): the drain's listener close
        and connection deadlines now, not at the main loop's next turn (the client of the
        response under way reconnects at once: to another worker), and idle keep-alive
        connections closed (their next request goes elsewhere instead of getting 503)."""
        self.begin_drain()
        self._stop_accepting()
        with self.lock:
            for conn in list(self.conns.values()):
                if (not conn.busy and conn.reply is None and conn.h1.served
                        and not conn.h1.partial and not wait_fd(conn.fd, select.POLLIN, 0)):
                    self._drop(conn)

    # -- main thread: lifecycle, heartbeats, deadlines ----------------------
    def run(self) -> None:
        self.install_signals()
        for lst in self.listeners:
            sock = lst.sock
            sock.setblocking(False)
            env = self.handler.listener_environ(sock)
            self.lsocks[sock.fileno()] = (sock, env)
            self.ep.register(sock.fileno(), _ARM)
        self.pool.spawn(self.pool.size.floor)
        self.channel.ready()
        waker = select.poll()
        waker.register(self.wake_fd, select.POLLIN)
        drain_deadline = 0.0
        while True:
            now = time.monotonic()
            self.maybe_heartbeat(now)
            if self.share is not None:
                self.share.stamp(now)
            self._expire(now)
            if self.paused and not self.pause.paused(now):
                self._resume_accepting()
            if self.draining:
                if not drain_deadline:
                    drain_deadline = now + float(self.cfg.graceful_timeout)
                    self._stop_accepting()
                elif not self.conns and self.pool.all_idle() and (
                        self.h2 is None or self.h2.idle):
                    break           # nothing open, and no thread between epoll and accept
                if now >= drain_deadline:
                    left = len(self.conns) + (len(self.h2.conns) if self.h2 else 0)
                    if left:
                        log.warning("worker %d: graceful timeout, %d connection(s) cut",
                                    self.pid, left)
                    break
            wait = min(TICK, self.hb_interval)
            if self.paused:
                wait = min(wait, self.pause.resume_in(now))
            try:
                waker.poll(wait * 1000)
            except InterruptedError:
                pass
            self.clear_wake()
        self.alive = False
        self.final_heartbeat()

    def _stop_accepting(self) -> None:
        """Draining: close this worker's copy of every listener at once, so the kernel
        queues new connections for the other workers (or refuses them when none is
        left) instead of for a worker that will never accept them (they would be reset
        when it exits). Unregister first: the other processes' copies keep the open file
        alive, and so its epoll registration."""
        with self.lock:
            lsocks = list(self.lsocks.items())
            self.lsocks.clear()
        for fd, (sock, _) in lsocks:
            try:
                self.ep.unregister(fd)
            except OSError:
                pass
            sock.close()
        # Closing a keep-alive connection races with the client sending its next request
        # on it (the request would be lost): http.connection shortens each wait instead
        # (idle ones close after DRAIN_IDLE, a head under way gets a short grace), and a
        # request that arrives meanwhile is answered with Connection: close.
        grace = self.handler.drain_grace
        with self.lock:
            for conn in self.conns.values():
                conn.h1.begin_drain(grace)
        if self.h2 is not None:
            self.h2.drain()     # GOAWAY; open streams finish within --graceful-timeout

    def _resume_accepting(self) -> None:
        """The accept pause after a resource error is over: re-arm those listeners."""
        with self.lock:
            fds = [fd for fd in self.paused if fd in self.lsocks]
            self.paused.clear()
        for fd in fds:
            try:
                self.ep.modify(fd, _ARM)
            except OSError:
                pass

    def _expire(self, now: float) -> None:
        """Act on the connection deadlines that passed: close idle connections, answer 408
        to overdue request heads (http.connection.H1Connection.next_deadline)."""
        abandoned = []
        with self.lock:
            due = []
            for conn in self.conns.values():
                if conn.busy:
                    continue
                if conn.reply is not None:
                    if conn.park_until <= now:
                        due.append((conn, _PARKED))
                    continue
                when, what = conn.h1.next_deadline()
                if when <= now:
                    due.append((conn, what))
            self.refused.expire(now)
            for conn, what in due:
                if what == _PARKED:         # the client stopped reading: give up on it
                    self.conns.pop(conn.fd, None)
                    conn.busy = True
                    abandoned.append(conn)
                    continue
                if what == TIMEOUT:
                    try:
                        conn.sock.send(conn.h1.timeout_response())
                    except OSError:
                        pass
                elif conn.h1.served and wait_fd(conn.fd, select.POLLIN, 0):
                    continue    # its next request is here, queued for a poller: serve it
                self._drop(conn)
        for conn in abandoned:
            self.handler.finish(conn.reply)
            conn.reply = None
            conn.close()
        if self.h2 is not None:
            self.h2.expire(now)

    def _drop(self, conn: Conn) -> None:
        """Under self.lock: forget and close an idle connection."""
        self.conns.pop(conn.fd, None)
        if self.share is not None:
            self.share.publish(len(self.conns) + (len(self.h2.conns) if self.h2 else 0))
        conn.busy = True
        conn.close(linger=bool(conn.h1.head_start))

    def _poll_loop(self) -> None:
        """Poller: wait for one ready fd, serve it inline, repeat; step down when redundant."""
        poll = self.ep.poll
        lsocks = self.lsocks
        conns = self.conns
        lock = self.lock
        pool = self.pool
        while self.alive:
            try:
                events = poll(1.0, 1)
            except InterruptedError:
                continue
            except OSError:
                return
            if not events:
                if pool.step_down_idle():
                    return
                continue
            fd = events[0][0]
            lsock = lsocks.get(fd)
            t0 = time.monotonic()
            with lock:
                pool.idle_pollers -= 1
                starved = not pool.idle_pollers
                if starved:
                    # Idle for a moment only (a poller back from a slow request that took
                    # the next event at once): still the same starvation, so the
                    # promoter's delay can run out while slow requests keep completing
                    # (else the pool stalled near 50 threads under 10 ms requests at c256).
                    if not pool.starved_at or t0 - pool.relieved_at > PROMOTE_MIN:
                        pool.starved_at = t0
                    pool.starved_since = pool.starved_at
                    if self.share is not None:      # no poller left to accept at once
                        self.share.busy(t0)
                conn = None
                if lsock is None:
                    conn = conns.get(fd)
                    if conn is not None:
                        if conn.busy:
                            conn = None
                        else:
                            conn.busy = True
            if starved and not pool.hungry.is_set():
                pool.hungry.set()
            try:
                if lsock is not None:
                    conn = self._accept(fd, *lsock)
                elif conn is None and (self.h2 is None or not self.h2.serve(fd)):
                    self.refused.discard(fd)
                if conn is not None:
                    self._drive(conn)
            except Exception:  # noqa: BLE001 - a thread must survive anything
                log.exception("unexpected error on a connection")
                if conn is not None:
                    self._close(conn)
            finally:
                # Step down only after a fast request while another poller waits: under
                # slow requests the pollers stay, under fast ones they shrink back to one.
                done = time.monotonic()
                fast = done - t0 < PROMOTE_AFTER
                with lock:
                    redundant = fast and pool.idle_pollers > 0 and pool.pollers > 1
                    if redundant:
                        pool.pollers -= 1
                    else:
                        pool.idle_pollers += 1
                        pool.starved_since = 0.0
                        if fast:        # fast requests never grow the pool
                            pool.starved_at = 0.0
                        else:
                            pool.relieved_at = done
                        if self.share is not None and pool.idle_pollers == 1:
                            self.share.busy(0.0)
            if redundant:
                return

    def _accept(self, fd: int, lsock: socket.socket, env: Environ) -> Conn | None:
        """Accept what is pending, up to what the pool can start now: the first connection
        is returned to be served inline (its request is often there already), the others
        wait in epoll for the idle threads. Accepting in a batch keeps new connections
        from queueing behind busy ones; accepting no more than the idle threads can take
        leaves the rest in the kernel's queue for the other workers (and a killed worker
        loses no connection it had accepted but not started)."""
        if self.draining:
            return None     # e.g. over --max-worker-memory: the listeners are closing
        first: Conn | None = None
        pool = self.pool
        busy = pool.pollers - pool.idle_pollers      # this thread included
        rearm = True
        share, now = self.share, time.monotonic()
        # Decided once per wake-up, not per connection: a batch cut short would send the
        # listener to the back of epoll's ready list, behind every busy connection.
        if share is not None and not share.may_accept(len(self.conns), now):
            self._defer(fd, now)        # a less loaded worker may take it meanwhile
            return None
        for _ in range(max(1, min(ACCEPT_BATCH, 1 + pool.nthreads - busy))):
            try:
                sock, addr = lsock.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                if e.errno in RESOURCE_ERRORS:
                    # Out of fds (or memory): retrying at once would spin. Leave this
                    # listener disarmed; the main thread re-arms it after the pause.
                    line = self.pause.failed(e, time.monotonic())
                    if line is not None:
                        log.error("%s", line)
                    rearm = False
                    with self.lock:
                        self.paused.add(fd)
                break
            conn = self._new_conn(sock, addr, env)
            if conn is None:
                continue
            if first is None:
                first = conn
            else:
                self._rearm(conn)
        if rearm and self.lsocks:
            try:
                self.ep.modify(fd, _ARM)
            except OSError:
                pass
        return first

    def _defer(self, fd: int, now: float) -> None:
        """Above its share of connections (workers/share.py): leave listener `fd` disarmed
        for DEFER s; the main thread re-arms it (_resume_accepting)."""
        with self.lock:
            self.paused.add(fd)
            self.pause.until = max(self.pause.until, now + DEFER)
        self.wake()     # the main thread's next wait ends at pause.until

    def _new_conn(self, sock: socket.socket, addr: Any, env: Environ) -> Conn | None:
        if over_capacity(len(self.conns) + (len(self.h2.conns) if self.h2 else 0),
                         self.max_conns):
            self.refused.refuse(sock)
            return None
        conn = self.handler.accept(sock, addr, env, self.ssl)
        if conn is None:
            return None
        conn.busy = True
        with self.lock:
            self.conns[conn.fd] = conn
        if self.h2 is not None:
            self.h2.accepted(conn)
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
        h2 = self.h2
        if h2 is not None and conn.fd in h2.fresh:     # ALPN h2, or the h2c preface?
            took = h2.first_read(conn)
            if took is not False:
                if took is None:
                    self._rearm(conn)
                return
        handler = self.handler
        if conn.reply is not None:
            if not handler.resume(conn.reply):
                self._park(conn)
                return
            reply, conn.reply = conn.reply, None
            if not self._done(conn, reply):
                return
        events = conn.events
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
                if h2 is not None and h2.upgrade and h2.upgraded(conn, ev):
                    return      # Upgrade: h2c (switched, or the client left)
                conn.h1.start_request()
                reply = handler.begin(conn, ev)
                if not reply.complete:
                    self._park(conn, reply)
                    return
                served = True
                if not self._done(conn, reply):
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

    def _park(self, conn: Conn, reply: Reply | None = None) -> None:
        """The client's socket is full: keep the rest of the response with the connection
        and give the thread back; a poller resumes it when it is writable (_drive), the
        main thread drops it if it stays full for the write deadline (_expire)."""
        if reply is not None:
            conn.reply = reply
        conn.park_until = time.monotonic() + conn.timeout
        if not self._rearm(conn, _ARM_OUT):     # closed: the response ends here
            reply, conn.reply = conn.reply, None
            self.handler.finish(reply)

    def _done(self, conn: Conn, reply: Reply) -> bool:
        """The response is complete: True if the connection stays open (else closed)."""
        keep = self.handler.finish(reply) and reply.ex.req.upgrade is None
        if conn.h1.response_done(keep):
            return True
        self._close(conn, linger=True)
        return False

    def _rearm(self, conn: Conn, mask: int = _ARM) -> bool:
        """Back to epoll; the main thread's _expire watches its deadline meanwhile.
        False if that failed (the connection is closed)."""
        conn.busy = False
        try:
            if conn.polled:
                self.ep.modify(conn.fd, mask)
            else:
                conn.polled = True
                self.ep.register(conn.fd, mask)
        except OSError:
            self._close(conn)
            return False
        return True

    def _close(self, conn: Conn, linger: bool = False) -> None:
        with self.lock:
            if self.conns.get(conn.fd) is conn:
                del self.conns[conn.fd]
                if self.share is not None:
                    self.share.publish(len(self.conns) + (len(self.h2.conns) if self.h2 else 0))
            conn.close(linger)
        if self.draining:
            self.wake()
