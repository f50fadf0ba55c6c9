"""ASGI websocket scope over wsproto's frame layer, on an upgraded HttpProtocol connection.

The HTTP head was parsed by http/ already, so only frames go through wsproto:
the 101 (or the rejection) is built with http.Response. Messages are
reassembled here with a size cap (MAX_MESSAGE: over it the connection closes
with 1009); pings are answered, closes echoed, and the app sees
websocket.connect / receive / disconnect.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Message, Ping, TextMessage
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.handshake import server_extensions_handshake
from wsproto.utilities import LocalProtocolError, generate_accept_token

from reclusterd.asgi.types import ASGI_VERSION, ClientDisconnected
from reclusterd.asgi.types import Connection as HttpConnection
from reclusterd.asgi.types import Message as ASGIMessage
from reclusterd.http import InvalidResponse, Request, Response, decode_path, error_response

__all__ = ["WebSocketSession", "MAX_MESSAGE"]

log = logging.getLogger("reclusterd.error")
MAX_MESSAGE = 16 * 1024 * 1024
MAX_QUEUED = 16              # received messages waiting for the app before pause_reading
CLOSE_WAIT = 2.0             # seconds to wait for the peer's close frame after ours
GOING_AWAY = 1012            # "service restart": sent to open sockets when the worker drains


def _header(req: Request, name: bytes) -> bytes | None:
    for n, v in req.headers:
        if n == name:
            return v
    return None


class WebSocketSession:
    """One websocket: handshake state, wsproto connection, the app's receive queue."""

    def __init__(self, conn: HttpConnection, req: Request) -> None:
        self.conn = conn
        self.req = req
        self.pending = bytearray()
        self.ws: Connection | None = None
        self.inbox: deque[ASGIMessage] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.accepted = False
        self.closed = False          # the app may not send any more
        self.told = False            # websocket.disconnect queued for the app
        self.rejecting = False       # websocket.http.response under way
        self.status = 0
        self.parts: list[Any] = []
        self.part_size = 0
        self.token = 0
        self.t0 = 0.0

    # -- handshake -------------------------------------------------------------------
    def start(self) -> None:
        conn, req = self.conn, self.req
        key = _header(req, b"sec-websocket-key")
        if key is None or _header(req, b"sec-websocket-version") != b"13":
            conn.transport.write(error_response(400))
            conn.close()
            return
        self.pending += conn.h1.parser.unprocessed()
        raw = req.path
        scope = conn.base.copy()
        scope.update({
            "type": "websocket", "asgi": ASGI_VERSION, "http_version": req.http_version,
            "scheme": "wss" if conn.s.scheme == "https" else "ws",
            "path": decode_path(raw).decode("utf-8", "replace"),
            "raw_path": raw, "query_string": req.query, "headers": req.headers,
            "subprotocols": self._list(b"sec-websocket-protocol"),
            "extensions": {"websocket.http.response": {}},
        })
        if conn.trusted:
            conn.forwarded(scope, req.headers)
            scope["scheme"] = "wss" if scope["scheme"] == "https" else "ws"
        if conn.s.state is not None:
            scope["state"] = conn.s.state.copy()
        self.scope = scope
        self.inbox.append({"type": "websocket.connect"})
        self.token = conn.s.meter.started()
        self.t0 = time.monotonic()
        self.task = conn.s.loop.create_task(self.run())

    def _list(self, name: bytes) -> list[str]:
        out: list[str] = []
        for n, v in self.req.headers:
            if n == name:
                out += [p.strip() for p in v.decode("latin-1").split(",") if p.strip()]
        return out

    def accept(self, message: ASGIMessage) -> None:
        headers = [(b"upgrade", b"websocket"), (b"connection", b"Upgrade"),
                   (b"sec-websocket-accept",
                    generate_accept_token(_header(self.req, b"sec-websocket-key") or b""))]
        sub = message.get("subprotocol")
        if sub is not None:
            headers.append((b"sec-websocket-protocol", str(sub).encode("latin-1")))
        extensions: list[Extension] = []
        offers = self._list(b"sec-websocket-extensions")
        if offers:
            pmd = PerMessageDeflate()
            accepts = server_extensions_handshake(offers, [pmd])
            if accepts:
                headers.append((b"sec-websocket-extensions", accepts))
                extensions.append(pmd)
        headers += [(bytes(n), bytes(v)) for n, v in message.get("headers", ())]
        try:
            head = Response(self.req, 101, headers).head
        except InvalidResponse as exc:
            raise RuntimeError(f"invalid websocket.accept headers: {exc}") from exc
        self.accepted = True
        self.status = 101
        self.ws = Connection(ConnectionType.SERVER, extensions)
        self.conn.transport.write(head)
        data, self.pending = bytes(self.pending), bytearray()
        if data:
            self.feed(data)
        if self.conn.read_paused and len(self.inbox) <= MAX_QUEUED:
            self.conn.resume_reading()

    # -- bytes from the connection -------------------------------------------------------
    def feed(self, data: bytes) -> None:
        ws = self.ws
        if ws is None:
            self.pending += data
            if len(self.pending) > MAX_MESSAGE:
                self.conn.pause_reading()
            return
        if ws.state is ConnectionState.CLOSED:
            return
        ws.receive_data(data)
        for ev in ws.events():
            if isinstance(ev, Message):
                self._message(ev)
            elif isinstance(ev, Ping):
                self._write(ws.send(ev.response()))
            elif isinstance(ev, CloseConnection):
                if ws.state is ConnectionState.REMOTE_CLOSING:
                    self._write(ws.send(ev.response()))
                self._disconnect(ev.code, ev.reason or "")
                self.conn.close()
                return
        if len(self.inbox) > MAX_QUEUED:
            self.conn.pause_reading()

    def _message(self, ev: Message) -> None:  # type: ignore[type-arg]
        self.parts.append(ev.data)
        self.part_size += len(ev.data)
        if self.part_size > MAX_MESSAGE:
            self.parts, self.part_size = [], 0
            self.close_with(1009, "message too big")
            return
        if not ev.message_finished:
            return
        parts, self.parts, self.part_size = self.parts, [], 0
        if isinstance(ev, TextMessage):
            self._push({"type": "websocket.receive", "text": "".join(parts)})
        elif isinstance(ev, BytesMessage):
            self._push({"type": "websocket.receive", "bytes": b"".join(parts)})

    def _push(self, message: ASGIMessage) -> None:
        self.inbox.append(message)
        w = self.waiter
        if w is not None:
            self.waiter = None
            if not w.done():
                w.set_result(None)

    def _disconnect(self, code: int, reason: str = "") -> None:
        self.closed = True
        if not self.told:
            self.told = True
            self._push({"type": "websocket.disconnect", "code": code, "reason": reason})

    def _write(self, data: bytes) -> None:
        if data and not self.conn.closed:
            self.conn.transport.write(data)

    def close_with(self, code: int, reason: str = "") -> None:
        """Send our close frame, tell the app, wait briefly for the peer's close."""
        ws = self.ws
        if ws is not None and ws.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            self._write(ws.send(CloseConnection(code=code, reason=reason)))
        self._disconnect(code, reason)
        self.conn.s.loop.call_later(CLOSE_WAIT, self.conn.close)

    def connection_lost(self) -> None:
        self._disconnect(1006)

    def shutdown(self) -> None:
        """The worker drains: open sockets get 1012, a pending handshake is let finish."""
        if self.accepted and not self.closed:
            self.close_with(GOING_AWAY, "server restarting")

    # -- the app's side ---------------------------------------------------------------
    async def run(self) -> None:
        s = self.conn.s
        try:
            await s.app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            pass
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                log.exception("exception in ASGI websocket application (%s)",
                              self.scope["path"])
            self._finish(500, 1011)
            if not isinstance(exc, Exception):
                raise
        else:
            self._finish(403, 1000)

    def _finish(self, reject_status: int, close_code: int) -> None:
        conn = self.conn
        if self.accepted:
            if not self.closed:
                self.close_with(close_code)
        elif not conn.closed:
            if self.rejecting:
                conn.close()
            else:
                conn.transport.write(error_response(reject_status))
                self.status = reject_status
                conn.close()
        conn.s.meter.finished(self.token, self.status or reject_status,
                              time.monotonic() - self.t0)

    async def receive(self) -> ASGIMessage:
        while not self.inbox:
            fut = self.waiter = self.conn.s.loop.create_future()
            await fut
        msg = self.inbox.popleft()
        if self.conn.read_paused and len(self.inbox) <= MAX_QUEUED // 2:
            self.conn.resume_reading()
        return msg

    async def send(self, message: ASGIMessage) -> None:
        mtype = message["type"]
        if self.closed or self.conn.closed:
            raise ClientDisconnected("websocket closed")
        if not self.accepted and not self.rejecting:
            if mtype == "websocket.accept":
                self.accept(message)
            elif mtype == "websocket.close":
                self.reject(403)
            elif mtype == "websocket.http.response.start":
                self.reject_start(message)
            else:
                raise RuntimeError(f"expected 'websocket.accept' or 'websocket.close', "
                                   f"got {mtype!r}")
            return
        if self.rejecting:
            if mtype != "websocket.http.response.body":
                raise RuntimeError(f"expected 'websocket.http.response.body', got {mtype!r}")
            self.reject_body(message)
            return
        ws = self.ws
        assert ws is not None
        if mtype == "websocket.send":
            text = message.get("text")
            data: Any = text if text is not None else message.get("bytes")
            if data is None:
                raise RuntimeError("websocket.send needs 'text' or 'bytes'")
            try:
                self._write(ws.send(Message(data=data)))
            except LocalProtocolError as exc:
                raise ClientDisconnected(str(exc)) from exc
            if self.conn.write_paused:
                await self.conn.drain()
        elif mtype == "websocket.close":
            self.close_with(int(message.get("code") or 1000), str(message.get("reason") or ""))
        else:
            raise RuntimeError(f"unexpected ASGI websocket message {mtype!r}")

    def reject(self, status: int) -> None:
        self.status = status
        self.closed = True
        self.conn.transport.write(error_response(status))
        self.conn.close()

    def reject_start(self, message: ASGIMessage) -> None:
        status = message["status"]
        headers = list(message.get("headers", ()))
        req = self.req
        fake = Request(req.method, req.target, req.path, req.query, req.http_version,
                       req.headers, False, False, None, False, None)
        try:
            self.response = Response(fake, int(status), headers, keep_alive=False)
        except InvalidResponse as exc:
            raise RuntimeError(f"invalid websocket.http.response.start: {exc}") from exc
        self.status = int(status)
        self.rejecting = True

    def reject_body(self, message: ASGIMessage) -> None:
        r = self.response
        body = bytes(message.get("body", b""))
        out = r.head + r.body(body)
        r.head = b""
        if not message.get("more_body", False):
            out += r.end()
            self.closed = True
            self._write(out)
            self.conn.close()
        else:
            self._write(out)
