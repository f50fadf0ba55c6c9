"""Connections the thread worker refuses (503 at --worker-connections), closed the way
every error path closes: the answer, FIN (shutdown SHUT_WR), then the client's bytes
read and dropped until its FIN or LINGER s, then close. Closing at once with the
client's request unread (or arriving just after) makes the kernel send a reset, which
can destroy the 503 before the client reads it (issue 14 item 9).

The answer waits for the client's first bytes (at most BUSY_WAIT s) so that a HEAD
request gets its 503 without a body (http.connection.busy_answer). The sockets wait in
the worker's epoll set (no thread each); a pool thread that gets an event for one calls
`discard`, the main thread calls `expire` on its tick.
"""

from __future__ import annotations

import select
import socket
import threading
import time

from reclusterd.http.connection import BUSY_WAIT, busy_answer
from reclusterd.wsgi.conn import LINGER_BYTES

__all__ = ["LINGER", "Refused"]

LINGER = 1.0        # s a refused connection is drained after its answer, then closed
_ARM = select.EPOLLIN | select.EPOLLONESHOT | select.EPOLLRDHUP


class _Entry:
    __slots__ = ("sock", "until", "answered")

    def __init__(self, sock: socket.socket, until: float) -> None:
        self.sock = sock
        self.until = until          # monotonic s: answer (if not yet) or close, then
        self.answered = False


def _answer(entry: _Entry, first: bytes) -> bool:
    """Send the 503 and FIN; False if the socket is already gone."""
    try:
        entry.sock.send(busy_answer(first))
        entry.sock.shutdown(socket.SHUT_WR)
    except OSError:
        return False
    entry.answered = True
    entry.until = time.monotonic() + LINGER
    return True


class Refused:
    """The refused connections not closed yet: fd -> entry."""

    def __init__(self, ep: select.epoll, lock: threading.Lock) -> None:
        self.ep = ep
        self.lock = lock            # the worker's lock (also guards its other tables)
        self.socks: dict[int, _Entry] = {}

    def refuse(self, sock: socket.socket) -> None:
        """Take a connection over the limit: answered once its first bytes are here."""
        try:
            sock.setblocking(False)
        except OSError:
            sock.close()
            return
        fd = sock.fileno()
        with self.lock:
            self.socks[fd] = _Entry(sock, time.monotonic() + BUSY_WAIT)
        try:
            self.ep.register(fd, _ARM)
        except OSError:
            with self.lock:
                self.socks.pop(fd, None)
            sock.close()

    def discard(self, fd: int) -> None:
        """Readable (from a pool thread): answer on the first bytes, then drop what comes;
        close at EOF. Not ours: no-op."""
        with self.lock:
            entry = self.socks.pop(fd, None)    # claimed: expire() leaves it alone
        if entry is None:
            return
        sock = entry.sock
        got = 0
        done = False
        try:
            while not done:
                data = sock.recv(65536)
                if not entry.answered and not _answer(entry, data):
                    done = True
                    break
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
        """Under the lock (the main thread's tick): answer those that sent nothing within
        BUSY_WAIT s (a plain 503), close those whose linger is over."""
        for fd, entry in list(self.socks.items()):
            if entry.until > now:
                continue
            if not entry.answered and _answer(entry, b""):
                continue
            del self.socks[fd]
            entry.sock.close()
