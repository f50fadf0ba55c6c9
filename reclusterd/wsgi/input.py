"""wsgi.input: the request body streamed from the parser's events, never buffered whole."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from reclusterd.http import CONTINUE_100, Data, EndOfMessage, ProtocolError, Request
from reclusterd.http.connection import DRAIN_LIMIT
from reclusterd.wsgi.conn import ClientGone, Conn


class Responder(Protocol):
    """The response side as the body reader sees it (wsgi.response.Exchange)."""

    @property
    def sent(self) -> bool: ...

    def progress(self) -> None: ...


class Input:
    """wsgi.input: streams the request body from the parser's Data events, never buffers it
    all. Sends `100 Continue` on the first read when the client asked for it."""

    __slots__ = ("_conn", "_buf", "done", "_continue", "_ex", "error", "trailers", "nread")

    def __init__(self, conn: Conn, req: Request, ex: Responder) -> None:
        self._conn = conn
        self._buf = bytearray()
        self.done = not req.chunked and not req.content_length
        self._continue = req.expect_continue and not self.done
        self._ex = ex
        self.error: ProtocolError | None = None
        self.trailers: list[tuple[bytes, bytes]] = []
        self.nread = 0

    def _fill(self) -> bool:
        """Append the next body bytes to the buffer; False at the end of the body."""
        if self.done:
            return False
        conn = self._conn
        if self._continue:
            self._continue = False
            if not self._ex.sent:
                conn.sendall(CONTINUE_100)
        while not conn.events:
            conn.read_more()
            self._ex.progress()
        ev = conn.events.popleft()
        if type(ev) is Data:
            self._buf += ev.data
            self.nread += len(ev.data)
            return True
        if type(ev) is EndOfMessage:
            self.done = True
            self.trailers = ev.trailers
            return False
        if type(ev) is ProtocolError:
            self.done = True
            self.error = ev
            raise ClientGone(f"bad request body: {ev.status} {ev.reason}")
        raise ClientGone(f"unexpected event in the body: {ev!r}")

    @property
    def expect_pending(self) -> bool:
        """Client waits for 100 Continue that was never sent (its body is not coming)."""
        return self._continue

    def read(self, size: int | None = -1) -> bytes:
        buf = self._buf
        if size is None or size < 0:
            while self._fill():
                pass
            out = bytes(buf)
            buf.clear()
            return out
        while len(buf) < size and self._fill():
            pass
        out = bytes(buf[:size])
        del buf[:size]
        return out

    def readline(self, size: int | None = -1) -> bytes:
        buf = self._buf
        start = 0
        while True:
            i = buf.find(b"\n", start)
            if i >= 0:
                end = i + 1
                break
            if size is not None and 0 <= size <= len(buf):
                end = size
                break
            start = len(buf)
            if not self._fill():
                end = len(buf)
                break
        if size is not None and 0 <= size < end:
            end = size
        out = bytes(buf[:end])
        del buf[:end]
        return out

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines: list[bytes] = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def drain(self, limit: int = DRAIN_LIMIT) -> bool:
        """Discard what the app left unread (up to `limit` bytes); True if the body ended."""
        if self._continue:
            return False      # the client holds its body back; closing is the safe answer
        self._buf.clear()
        start = self.nread
        try:
            while self._fill():
                self._buf.clear()
                if self.nread - start > limit:
                    return False
        except ClientGone:
            return False
        return True


class NoBody:
    """wsgi.input of a request without a body: stateless, so one instance serves all."""

    __slots__ = ()
    done = True
    error: ProtocolError | None = None
    expect_pending = False
    nread = 0

    def read(self, size: int | None = -1) -> bytes:
        return b""

    def readline(self, size: int | None = -1) -> bytes:
        return b""

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        return []

    def __iter__(self) -> Iterator[bytes]:
        return iter(())

    def drain(self, limit: int = DRAIN_LIMIT) -> bool:
        return True


NO_BODY = NoBody()
