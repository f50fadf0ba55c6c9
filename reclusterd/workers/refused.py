"""Connections the thread worker refuses (503 at --worker-connections), closed the way
every error path closes: the answer, FIN (shutdown SHUT_WR), then the client's bytes
read and dropped until its FIN or LINGER s, then close. Closing at once with the
client's request unread (or arriving just after) makes the kernel send a reset, which
can destroy the 503 before the client reads it (issue 14 item 9).

The sockets wait in the worker's epoll set (no thread each); a pool thread that gets
an event for one calls `discard`, the main thread calls `expire` on its tick.
"""

from __future__ import annotations

import select
import socket
import threading
import time

from reclusterd.wsgi.conn import LINGER_BYTES

__all__ = ["LINGER", "Refused"]

LINGER = 1.0        # s a refused connection is drained before it is closed
_ARM = select.EPOLLIN | select.EPOLLONESHOT | select.EPOLLRDHUP


class Refused:
    """The refused connections still lingering: fd -> (socket, close at, monotonic s)."""

    def __init__(self, ep: select.epoll, lock: threading.Lock) -> None:
        self.ep = ep
        self.lock = lock            # the worker's lock (also guards its other tables)
        self.socks: dict[int, tuple[socket.socket, float]] = {}

    def refuse(self, sock: socket.socket, answer: bytes) -> None:
        """Send `answer`, FIN, and linger (see the module docstring)."""
        try:
            sock.setblocking(False)
            sock.send(answer)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            sock.close()
            return
        fd = sock.fileno()
        with self.lock:
            self.socks[fd] = (sock, time.monotonic() + LINGER)
        try:
            self.ep.register(fd, _ARM)
        except OSError:
            self.discard(fd, done=True)

    def discard(self, fd: int, done: bool = False) -> None:
        """Readable (from a pool thread): drop its bytes; close at EOF. Not ours: no-op."""
        with self.lock:
            entry = self.socks.pop(fd, None)    # claimed: expire() leaves it alone
        if entry is None:
            return
        sock = entry[0]
        got = 0
        try:
            while not done:
                data = sock.recv(65536)
                got += len(data)
                done = not data or got > LINGER_BYTES    # EOF, or a client that floods
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            done = True
        if not done:
            with self.lock:
                self.socks[fd] = entry
            try:
                self.ep.modify(fd, _ARM)
                return
            except OSError:
                with self.lock:
                    self.socks.pop(fd, None)
        sock.close()

    def expire(self, now: float) -> None:
        """Under the lock (the main thread's tick): close those whose time is up."""
        for fd, (sock, until) in list(self.socks.items()):
            if until <= now:
                del self.socks[fd]
                sock.close()
