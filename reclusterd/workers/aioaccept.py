"""The asyncio worker's accept loop: one reader callback per listener, instead of
loop.create_server, because uvloop (libuv) answers EMFILE by accepting and closing
pending connections without a word, and asyncio logs a traceback each time. Here, out of
file descriptors stops accepting for acceptpause.PAUSE s (pending clients wait in the
backlog instead of being reset), is logged once per interval with a count
(acceptpause.AcceptPause), and the open connections go on being served."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
import time
from collections.abc import Callable

from reclusterd.http.connection import TLS_SHUTDOWN
from reclusterd.workers.acceptpause import PAUSE, RESOURCE_ERRORS, AcceptPause
from reclusterd.workers.share import DEFER, Share

__all__ = ["Acceptor"]

log = logging.getLogger("reclusterd.error")
ACCEPT_BATCH = 64             # connections accepted per wake-up (fairness to the others)
# the connection died in the backlog, or a firewall's verdict: try the next one
_TRANSIENT = frozenset((errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.EAGAIN))


class Acceptor:
    """Accepts connections on one non-blocking listener and hands each to the loop
    (loop.connect_accepted_socket: the TLS handshake included) with a new protocol."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                 factory: Callable[[], asyncio.Protocol], ctx: ssl.SSLContext | None,
                 errors: AcceptPause, share: Share | None = None,
                 count: Callable[[], int] = lambda: 0) -> None:
        self.loop = loop
        self.share = share      # least-connections accepting (workers/share.py)
        self.count = count      # this worker's open connections
        self.sock = sock
        self.factory = factory
        self.ctx = ctx
        self.errors = errors
        self.fd = sock.fileno()
        self.closed = False
        self.resume: asyncio.TimerHandle | None = None
        self.handshakes: set[asyncio.Task[object]] = set()
        sock.setblocking(False)

    def start(self) -> None:
        self.loop.add_reader(self.fd, self.accept)

    def close(self) -> None:
        """Stop accepting and close this worker's copy of the listener, at once: new
        connections go to other workers, or are refused once the last copy is closed."""
        if self.closed:
            return
        self.closed = True
        if self.resume is not None:
            self.resume.cancel()
        self.loop.remove_reader(self.fd)
        self.sock.close()

    def accept(self) -> None:
        share = self.share
        # Accepted sockets count from their accept: they join the worker's connections
        # only once their task runs, after this batch.
        now = time.monotonic()
        if share is not None and not share.may_accept(self.count() + len(self.handshakes),
                                                      now):
            self.pause(DEFER)   # a less loaded worker may take it meanwhile
            return
        for i in range(ACCEPT_BATCH):
            if i and share is not None and not share.more(
                    self.count() + len(self.handshakes), now):
                return
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in _TRANSIENT:
                    continue
                if e.errno in RESOURCE_ERRORS:
                    line = self.errors.failed(e, self.loop.time())
                    if line is not None:
                        log.error("%s", line)
                    self.pause()
                else:
                    log.error("accept failed on %s: %s", self.sock.getsockname(), e)
                    self.pause()
                return
            self.serve(conn)

    def pause(self, delay: float = PAUSE) -> None:
        """Stop watching the listener for `delay` s (it stays readable meanwhile, so
        retrying at once would spin)."""
        self.loop.remove_reader(self.fd)
        if self.resume is not None:     # one pending resume: the later one
            self.resume.cancel()
        self.resume = self.loop.call_later(delay, self._resume)

    def _resume(self) -> None:
        self.resume = None
        if not self.closed:
            self.start()

    def serve(self, conn: socket.socket) -> None:
        conn.setblocking(False)
        if conn.family != socket.AF_UNIX:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.ctx is None:
            coro = self.loop.connect_accepted_socket(self.factory, conn)
        else:
            coro = self.loop.connect_accepted_socket(
                self.factory, conn, ssl=self.ctx, ssl_shutdown_timeout=TLS_SHUTDOWN)
        task = self.loop.create_task(coro)
        self.handshakes.add(task)
        task.add_done_callback(self._handshake_done)

    def _handshake_done(self, task: asyncio.Task[object]) -> None:
        self.handshakes.discard(task)
        if not task.cancelled():
            exc = task.exception()  # a failed TLS handshake: the client's problem
            if exc is not None:
                log.debug("connection setup failed: %r", exc)
