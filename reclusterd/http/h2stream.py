"""What an HTTP/2 connection knows of one stream it handed to the driver."""

from __future__ import annotations

from .connection import FOREVER
from .events import Headers, Request
from .response import FramingError

__all__ = ["StreamGone", "StreamState"]


class StreamGone(ConnectionError):
    """The stream (or its connection) is gone: reset by the client, stalled, or closed.
    A ConnectionError, as a vanished HTTP/1 client is to the code that writes to it."""


class StreamState:
    """One stream from its request to `stream_done`.

    buffered: request body octets handed to the driver and not acknowledged yet (what
    the client cannot send again until the app reads: at most one window).
    last_in: when request bytes last arrived (the idle deadline of an unfinished body).
    blocked_since: since when the response has waited for credit without progress (the
    stall deadline), else None.
    """

    __slots__ = ("request", "ended", "gone", "complete", "buffered", "received", "last_in",
                 "trailers", "status", "length", "bodiless", "sent", "blocked_since")

    def __init__(self, request: Request, now: float, ended: bool = False) -> None:
        self.request = request
        self.ended = ended          # END_STREAM received: the request is all here
        self.gone = False           # reset (either side) or the connection ended
        self.complete = False       # the response was sent to its end
        self.buffered = 0
        self.received = 0
        self.last_in = now
        self.trailers: Headers = []
        self.status = 0             # final status sent (0: no final head yet)
        self.length: int | None = None   # the response's Content-Length
        self.bodiless = False
        self.sent = 0               # response body octets sent
        self.blocked_since: float | None = None

    def check_body(self, size: int) -> int:
        """Octets of a `size`-octet body piece that go out: 0 for HEAD (dropped); raises
        FramingError for content where the head allows none or past its Content-Length."""
        if self.status == 0:
            raise FramingError("response body before its head")
        if self.request.method == b"HEAD" and self.status >= 200:
            return 0
        if self.bodiless and size:
            raise FramingError("content on a response whose status has none")
        if self.length is not None and self.sent + size > self.length:
            raise FramingError(f"response body longer than its Content-Length "
                               f"({self.sent + size} > {self.length} bytes)")
        return size

    def deadline(self, io_timeout: float, may_send: bool) -> float:
        """When this stream has waited too long on the client: for request body octets
        while it has credit to send them (`may_send`), or for credit to send the response."""
        if self.gone:
            return FOREVER
        when = FOREVER
        if not self.ended and may_send:
            when = self.last_in + io_timeout
        if self.blocked_since is not None:
            when = min(when, self.blocked_since + io_timeout)
        return when
