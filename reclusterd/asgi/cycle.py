"""The ASGI HTTP request/response cycle: scope, receive() and send() for one request.

It sees its connection (asgi.protocol) only as a `types.Connection`. send() writes straight to the
transport through http.Response framing; the head is held back until the
first body message so hello world is one write.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from reclusterd.asgi.request import over_memory, record, report_failure
from reclusterd.asgi.types import ClientDisconnected, Connection, Message
from reclusterd.http import (
    CONTINUE_100,
    FramingError,
    InvalidResponse,
    Request,
    Response,
    error_for,
)
from reclusterd.http.connection import DRAIN_LIMIT, body_allows_reuse

__all__ = ["Cycle", "HIGH_WATER"]

log = logging.getLogger("reclusterd.error")
HIGH_WATER = 256 * 1024       # buffered request body before pause_reading


class Cycle:
    """One request/response: the ASGI scope and the receive/send callables."""

    # Class-level defaults: a cycle only stores what differs (cheaper than 19 slots).
    buffered = 0
    received = 0                # body bytes received so far
    request_done = False
    body_delivered = False
    waiter: asyncio.Future[None] | None = None
    response: Response | None = None
    started = False
    complete = False
    disconnected = False
    continue_sent = False
    status = 0
    headers: list[tuple[bytes, bytes]] = []     # the app's response headers (access log)
    length = 0
    token = 0                   # set by HttpProtocol.launch()
    t0 = 0.0                    # set by HttpProtocol.launch()
    task: asyncio.Task[None] | None = None
    progress = -1               # what the last sweep saw (HttpProtocol.check_progress)
    progress_at = 0.0
    broken = False              # the app broke its response framing (logged once)

    def __init__(self, conn: Connection, request: Request, scope: dict[str, Any]) -> None:
        self.conn = conn
        self.request = request
        self.scope = scope
        self.body: list[bytes] = []

    # -- from the connection ------------------------------------------------------------
    def wake(self) -> None:
        w = self.waiter
        if w is not None:
            self.waiter = None
            if not w.done():
                w.set_result(None)

    def on_data(self, data: bytes) -> None:
        if self.complete:        # response sent already: discard the rest of the body
            self.received += len(data)
            if self.received > DRAIN_LIMIT + (self.request.content_length or 0):
                self.conn.linger()   # a chunked rest too long to skip: close instead
            return
        self.body.append(data)
        self.buffered += len(data)
        self.received += len(data)
        if self.buffered > HIGH_WATER:
            self.conn.pause_reading()
        self.wake()

    def on_end(self) -> None:
        self.request_done = True
        if self.complete:
            self.conn.next_request()
        else:
            self.wake()

    # -- the app's side -----------------------------------------------------------------
    async def run(self) -> None:
        """Run the app for this request; turn its failures into 500 or a closed connection."""
        s = self.conn.s
        if over_memory(s.meter, self.request):
            self.abort(503)     # the app was not called: 503, Connection: close
            return
        try:
            await s.app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            self.abort(500)     # nothing is written to a gone client; counts the request
        except BaseException as exc:
            self.failed(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            if not self.complete and not self.disconnected and not self.conn.closed:
                log.error("ASGI application returned without %s the response (%s %s)",
                          "completing" if self.started else "starting",
                          self.scope["method"], self.scope["path"])
                self.abort(500)
            elif not self.complete:
                self.abort(500)

    def failed(self, exc: BaseException) -> None:
        """The app raised: log it (once), then 500 or cut (abort)."""
        if not self.broken:     # else logged where it happened (framing_broken)
            report_failure(exc, self.disconnected or self.conn.closed, self.scope)
        self.abort(500)

    def abort(self, status: int) -> None:
        """The app failed: 500 if nothing was sent (a started response whose head is still
        held back counts as nothing), else cut the connection."""
        conn = self.conn
        if self.complete:
            return
        self.complete = True
        r = self.response       # its head goes out with the first body piece
        unsent = r is None or bool(r.head)
        if unsent and not self.disconnected and not conn.closed:
            conn.transport.write(error_for(self.request, status))
            self.status = status
        self.finished()
        if not unsent or self.request_done:
            conn.close()
        else:
            conn.linger()

    async def receive(self) -> Message:
        """http.request (body pieces, more_body) then http.disconnect."""
        while True:
            if self.body:
                body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
                self.body = []
                self.buffered = 0
                conn = self.conn
                if conn.read_paused and conn.cycle is self:
                    conn.body_taken()
                more = not self.request_done
                self.body_delivered = not more
                return {"type": "http.request", "body": body, "more_body": more}
            if self.disconnected or self.complete:
                return {"type": "http.disconnect"}
            if self.request_done and not self.body_delivered:
                self.body_delivered = True
                return {"type": "http.request", "body": b"", "more_body": False}
            if not self.request_done and not self.continue_sent and not self.started:
                self.continue_sent = True
                if self.request.expect_continue:
                    self.conn.transport.write(CONTINUE_100)
            fut = self.waiter = self.conn.s.loop.create_future()
            await fut

    async def send(self, message: Message) -> None:
        """http.response.start, then http.response.body pieces (more_body streams)."""
        if not self.started or self.complete or self.disconnected or self.conn.closed \
                or message["type"] != "http.response.body":
            self.send_other(message)
            return
        body = message.get("body", b"")
        if type(body) is not bytes:
            body = _as_bytes(body)
        r = self.response
        assert r is not None
        try:
            if message.get("more_body", False):
                await self.send_part(r, body)
                return
            # the whole (rest of the) body: one write with the head when it is small
            data = r.body(body) if body else b""
            end = r.end()
        except FramingError as exc:
            raise self.framing_broken(exc) from exc
        self.length += len(body)
        head = r.head
        transport = self.conn.transport
        if head:
            r.head = b""
            if len(data) > 16384:
                transport.writelines((head, data, end))
                data = end = b""
            else:
                data = head + data + end if end else head + data
        elif end:
            data += end
        if data:
            transport.write(data)
        self.complete = True
        self.finished()
        self.conn.cycle_done(r.keep_alive and r.complete)
        if self.waiter is not None:
            self.wake()

    def framing_broken(self, exc: FramingError) -> RuntimeError:
        """The app broke its own framing: log it once (whatever the app does with the
        error), answer 500 if the head is still held back, else cut the connection, so
        the client never reads the surplus as a response. The error to raise into the app
        (a RuntimeError, as Uvicorn)."""
        self.broken = True
        log.error("closing the connection: the ASGI app broke its response framing (%s %s):"
                  " %s", self.scope["method"], self.scope["path"], exc)
        self.abort(500)
        return RuntimeError(f"invalid ASGI response: {exc}")

    async def send_part(self, r: Response, body: bytes) -> None:
        """A body piece with more to come: write it now, wait while the socket is full."""
        data = r.body(body) if body else b""
        self.length += len(body)
        if r.head:
            data = r.head + data
            r.head = b""
        if data:
            self.conn.transport.write(data)
        if self.conn.write_paused:
            await self.conn.drain()

    def send_other(self, message: Message) -> None:
        """http.response.start, or the error for a message out of order / after the end."""
        if self.complete:
            raise RuntimeError("ASGI send() after the response was complete")
        if self.disconnected or self.conn.closed:
            raise ClientDisconnected("client disconnected")
        mtype = message["type"]
        if self.started:
            raise RuntimeError(f"expected 'http.response.body', got {mtype!r}")
        if mtype != "http.response.start":
            raise RuntimeError(f"expected 'http.response.start', got {mtype!r}")
        self.start_response(message)

    def start_response(self, message: Message) -> None:
        status = message["status"]
        if type(status) is not int:
            raise TypeError(f"http.response.start 'status' must be int, not {type(status)!r}")
        headers = message.get("headers", ())
        req = self.request
        conn = self.conn
        memory = conn.s.meter.memory
        if memory is not None:
            # This call may have crossed --max-worker-memory: see it before the head is
            # built, so the response already says Connection: close (s.draining).
            memory.admits(time.monotonic())
        # Decided when the head is built, so the head says what will happen (http.connection),
        # from what the APP consumed (not what the transport happened to buffer), so every
        # worker class gives the same answer: the body was delivered whole, there was none,
        # or its unread rest is known to be small enough to skip.
        keep = (req.upgrade is None and conn.h1.reusable and not conn.s.draining
                and (self.body_delivered    # the usual cases, without a call
                     or (self.request_done and not req.chunked and not req.content_length)
                     or body_allows_reuse(req, self.received - self.buffered, False, False,
                                          req.expect_continue and not self.continue_sent)))
        try:    # http.Response takes tuple or list pairs (list pairs are just not cached)
            if type(headers) is not list:
                headers = list(headers)
            self.response = Response(req, status, headers, keep_alive=keep)
        except (InvalidResponse, TypeError, ValueError) as exc:
            raise RuntimeError(f"invalid ASGI response: {exc}") from exc
        self.started = True
        self.status = status
        self.headers = headers

    def finished(self) -> None:
        """Accounting, access log, post_request hook: once per request."""
        record(self.conn.s, self, self.request, self.status, self.length, self.headers)


def _as_bytes(body: object) -> bytes:
    if isinstance(body, (bytearray, memoryview)):
        return bytes(body)
    raise TypeError(f"http.response.body 'body' must be bytes, not {type(body)!r}")
