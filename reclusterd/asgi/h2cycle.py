"""One ASGI request on an HTTP/2 stream: receive() and send() over `http.h2`.

The scope is HTTP/1's (asgi.request.http_scope) with `http_version` "2" and the
`http.response.trailers` extension. Request bodies are acknowledged to the client as the
app reads them (flow control: a stream holds at most one window); responses wait for
send credit (a stream that gets none is reset by H2Connection.expire, and send() raises
ClientDisconnected); RST_STREAM from the client is http.disconnect.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from reclusterd.asgi.request import over_memory, record, report_failure
from reclusterd.asgi.types import ClientDisconnected, Message, Server
from reclusterd.http import FramingError, InvalidResponse, Request
from reclusterd.http.h2 import H2Connection, StreamGone
from reclusterd.http.h2rules import response_fields
from reclusterd.http.response import error_body

__all__ = ["H2Cycle", "H2Link"]

log = logging.getLogger("reclusterd.error")
_ERROR_HEAD = [(b"content-type", b"text/plain; charset=utf-8")]


class H2Link(Protocol):
    """What a stream's cycle sees of its connection (asgi.h2protocol.H2Protocol)."""

    @property
    def s(self) -> Server: ...
    @property
    def h2(self) -> H2Connection: ...
    @property
    def closed(self) -> bool: ...

    def flush(self) -> None: ...
    def consumed(self, sid: int) -> None: ...
    def stream_closed(self, cycle: H2Cycle) -> None: ...
    async def drain(self) -> None: ...


class H2Cycle:
    """One stream's request/response (see the module docstring)."""

    def __init__(self, conn: H2Link, sid: int, request: Request,
                 scope: dict[str, Any]) -> None:
        self.conn = conn
        self.sid = sid
        self.request = request
        self.scope = scope
        self.body: list[bytes] = []
        self.request_done = False
        self.body_delivered = False
        self.disconnected = False
        self.head: tuple[int, list[tuple[bytes, bytes]]] | None = None   # held back
        self.started = False        # http.response.start seen
        self.body_done = False      # last body piece sent (trailers may follow)
        self.trailers = False       # the app announced trailers
        self.trailer_fields: list[tuple[bytes, bytes]] = []
        self.complete = False
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.length = 0
        self.t0 = 0.0
        self.token = 0
        self.task: asyncio.Task[None] | None = None
        self.waiter: asyncio.Future[None] | None = None     # receive() waits here
        self.credit: asyncio.Future[None] | None = None     # send() waits here

    # -- from the connection ---------------------------------------------------------
    def wake(self) -> None:
        for w in (self.waiter, self.credit):
            if w is not None and not w.done():
                w.set_result(None)
        self.waiter = self.credit = None

    def on_data(self, data: bytes) -> None:
        self.body.append(data)
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    def on_end(self) -> None:
        self.request_done = True
        self.wake()

    def gone(self) -> None:
        self.disconnected = True
        self.wake()

    # -- the app's side --------------------------------------------------------------
    async def run(self) -> None:
        """Run the app; its failure is a 500 if nothing was sent, else RST_STREAM."""
        if over_memory(self.conn.s.meter, self.request):
            self.abort(503)     # the app was not called; GOAWAY follows (the drain)
            self.conn.stream_closed(self)
            return
        try:
            await self.conn.s.app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            pass
        except BaseException as exc:
            report_failure(exc, self.disconnected, self.scope)
            if not isinstance(exc, Exception):
                raise
        else:
            if not self.complete and not self.disconnected:
                log.error("ASGI application returned without %s the response (%s %s)",
                          "completing" if self.started else "starting",
                          self.scope["method"], self.scope["path"])
        finally:
            if not self.complete:
                self.abort()
            self.conn.stream_closed(self)

    def abort(self, status: int = 500) -> None:
        """500 (or `status`) when no head went out yet and the stream lives, else reset
        the stream."""
        self.complete = True
        h2 = self.conn.h2
        try:
            if self.disconnected or self.head is None and self.status:
                raise StreamGone("head already sent")
            body = error_body(status)
            h2.send_headers(self.sid, status, [*_ERROR_HEAD, (b"content-length",
                                                              b"%d" % len(body))])
            self.status = status
            if h2.send_data(self.sid, body, end=True) < len(body):
                raise StreamGone("no credit for the error body")
        except (StreamGone, FramingError, InvalidResponse):
            h2.reset(self.sid)
        self.conn.flush()
        record(self.conn.s, self, self.request, self.status or 500, self.length,
               self.headers)

    async def receive(self) -> Message:
        """http.request (body pieces, more_body) then http.disconnect."""
        while True:
            if self.body:
                body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
                self.body = []
                self.conn.consumed(self.sid)
                more = not self.request_done
                self.body_delivered = not more
                return {"type": "http.request", "body": body, "more_body": more}
            if self.disconnected or self.complete:
                return {"type": "http.disconnect"}
            if self.request_done and not self.body_delivered:
                self.body_delivered = True
                return {"type": "http.request", "body": b"", "more_body": False}
            if self.request.expect_continue and not self.started:
                self.conn.h2.send_continue(self.sid)
                self.conn.flush()
            fut = self.waiter = self.conn.s.loop.create_future()
            await fut

    async def send(self, message: Message) -> None:
        """http.response.start, .body pieces, then .trailers when announced."""
        if self.complete:
            raise RuntimeError("ASGI send() after the response was complete")
        if self.disconnected or self.conn.closed:
            raise ClientDisconnected("client disconnected")
        mtype = message["type"]
        try:
            if not self.started:
                if mtype != "http.response.start":
                    raise RuntimeError(f"expected 'http.response.start', got {mtype!r}")
                self.start(message)
            elif mtype == "http.response.body" and not self.body_done:
                await self.send_body(message)
            elif mtype == "http.response.trailers" and self.body_done and self.trailers:
                self.send_trailers(message)
            else:
                raise RuntimeError(f"unexpected ASGI message {mtype!r}")
        except StreamGone:
            self.disconnected = True
            raise ClientDisconnected("stream reset") from None
        except (FramingError, InvalidResponse) as exc:
            log.error("resetting the stream: the ASGI app broke its response framing "
                      "(%s %s): %s", self.scope["method"], self.scope["path"], exc)
            self.complete = True
            self.conn.h2.reset(self.sid)
            self.conn.flush()
            record(self.conn.s, self, self.request, self.status, self.length, self.headers)
            raise RuntimeError(f"invalid ASGI response: {exc}") from exc

    def start(self, message: Message) -> None:
        status = message["status"]
        if type(status) is not int:
            raise TypeError(f"http.response.start 'status' must be int, not {type(status)!r}")
        headers = [(bytes(n), bytes(v)) for n, v in message.get("headers", ())]
        response_fields(status, headers, False)     # InvalidResponse now, not at the body
        self.head = (status, headers)
        self.started = True
        self.status = status
        self.headers = headers
        self.trailers = bool(message.get("trailers", False))

    async def send_body(self, message: Message) -> None:
        body = message.get("body", b"")
        if type(body) is not bytes:
            body = bytes(body)
        more = bool(message.get("more_body", False))
        h2 = self.conn.h2
        if self.head is not None:
            h2.send_headers(self.sid, *self.head)
            self.head = None
        self.length += len(body)
        end = not more and not self.trailers
        view = memoryview(body)
        while True:
            taken = h2.send_data(self.sid, bytes(view), end=end)
            self.conn.flush()
            if taken >= len(view):
                break
            view = view[taken:]
            await self.wait_credit()
        if not more:
            self.body_done = True
            if end:
                self.finish()
        await self.conn.drain()

    async def wait_credit(self) -> None:
        """Until the client opens the window (or the stream is reset for stalling)."""
        fut = self.credit = self.conn.s.loop.create_future()
        await fut
        if self.disconnected or self.conn.closed:
            raise StreamGone("stream reset while waiting for credit")

    def send_trailers(self, message: Message) -> None:
        self.trailer_fields += [(bytes(n), bytes(v)) for n, v in message.get("headers", ())]
        if message.get("more_trailers", False):
            return      # one HEADERS frame at the end carries them all
        self.conn.h2.end_stream(self.sid, self.trailer_fields)
        self.conn.flush()
        self.finish()

    def finish(self) -> None:
        self.complete = True
        record(self.conn.s, self, self.request, self.status, self.length, self.headers)
        self.wake()
