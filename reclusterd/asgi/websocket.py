"""ASGI websocket scope over wsproto's frame layer, on an upgraded HttpProtocol connection.

The HTTP head was parsed, and the handshake checked (http.wshandshake), before
this session starts, so only frames go through wsproto: the 101 (or the
rejection) is built with http.Response. Messages are reassembled here with a
size cap (--ws-max-size: a frame header announcing more, or a message growing
past it, fails with 1009); pings are answered, closes echoed, keep-alive pings
sent (asgi.wskeepalive), and the app sees websocket.connect / receive /
disconnect. A protocol error found by wsproto (unmasked frame, reserved bits,
bad opcode, oversized or fragmented control frame, stray continuation, invalid
UTF-8) fails the connection as RFC 6455 §7.1.7 says: our Close frame with 1002
(1007 for UTF-8, 1009 for size), then the TCP close, and no more input is read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Message, Ping, Pong, TextMessage
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol, Opcode, RsvBits
from wsproto.handshake import server_extensions_handshake
from wsproto.utilities import LocalProtocolError, generate_accept_token

from reclusterd.asgi.types import ASGI_VERSION, ClientDisconnected, WSOptions
from reclusterd.asgi.types import Connection as HttpConnection
from reclusterd.asgi.types import Message as ASGIMessage
from reclusterd.asgi.wskeepalive import KeepAlive
from reclusterd.http import (
    FramingError,
    InvalidResponse,
    Request,
    Response,
    decode_path,
    error_response,
)
from reclusterd.http.rootpath import asgi_path

__all__ = ["MessageSizeLimit", "WebSocketSession"]

log = logging.getLogger("reclusterd.error")
MAX_QUEUED = 16              # received messages waiting for the app before pause_reading
CLOSE_WAIT = 2.0             # seconds to wait for the peer's close frame after ours
GOING_AWAY = 1012            # "service restart": sent to open sockets when the worker drains
# Close reasons we send when failing a connection: fixed texts, never the peer's bytes.
_FAIL_REASONS = {1002: "protocol error", 1007: "invalid UTF-8", 1009: "message too big",
                 1011: "keepalive ping timeout"}


class MessageSizeLimit(Extension):
    """Not negotiated: wsproto hands every frame header to its extensions, so the sizes
    a header announces are summed per message and one over `max_size` fails with 1009
    before its payload is read (the decompressed size is checked again per message)."""

    name = "reclusterd-size-limit"

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.total = 0

    def enabled(self) -> bool:
        return True

    def offer(self) -> bool:
        return False

    def frame_inbound_header(self, proto: FrameDecoder | FrameProtocol, opcode: Opcode,
                             rsv: RsvBits, payload_length: int) -> CloseReason | RsvBits:
        if opcode.iscontrol():
            return RsvBits(False, False, False)
        self.total = payload_length if opcode is not Opcode.CONTINUATION \
            else self.total + payload_length
        if self.total > self.max_size:
            return CloseReason.MESSAGE_TOO_BIG
        return RsvBits(False, False, False)


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
        self.opts: WSOptions = conn.s.ws_options
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
        self.keepalive = KeepAlive(conn.s.loop, self.opts.ping_interval, self.opts.ping_timeout,
                                   self._send_ping, self._ping_timeout)

    # -- handshake -------------------------------------------------------------------
    def start(self) -> None:
        conn, req = self.conn, self.req
        self.pending += conn.h1.parser.unprocessed()
        raw = req.path
        scope = conn.base.copy()
        scope.update({
            "type": "websocket", "asgi": ASGI_VERSION, "http_version": req.http_version,
            "scheme": "wss" if conn.s.scheme == "https" else "ws",
            "path": asgi_path(decode_path(raw).decode("utf-8", "replace"), scope["root_path"]),
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
        self.t0 = t0 = time.monotonic()
        self.token = conn.s.meter.started(t0)
        self.task = conn.s.loop.create_task(self.run())
        conn.s.track(self.task)

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
        extensions: list[Extension] = [MessageSizeLimit(self.opts.max_size)]
        offers = self._list(b"sec-websocket-extensions")
        if offers and self.opts.per_message_deflate:
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
        self.keepalive.start()
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
            if len(self.pending) > self.opts.max_size:
                self.conn.pause_reading()
            return
        if ws.state is ConnectionState.CLOSED or self.conn.closed:
            return
        ws.receive_data(data)
        for ev in ws.events():
            if isinstance(ev, Message):
                if not self._message(ev):
                    return
            elif isinstance(ev, Ping):
                self._write(ws.send(ev.response()))
            elif isinstance(ev, Pong):
                self.keepalive.pong(bytes(ev.payload))
            elif isinstance(ev, CloseConnection):
                if ws.state is ConnectionState.OPEN:
                    # wsproto yields a close it did not receive for a protocol error
                    self.fail(int(ev.code))
                    return
                if ws.state is ConnectionState.REMOTE_CLOSING:
                    self._write(ws.send(ev.response()))
                self._disconnect(ev.code, ev.reason or "")
                self.keepalive.stop()
                self.conn.close()
                return
        if len(self.inbox) > MAX_QUEUED:
            self.conn.pause_reading()

    def _message(self, ev: Message) -> bool:  # type: ignore[type-arg]
        """Collect a message part; False if the connection failed (too big)."""
        self.parts.append(ev.data)
        self.part_size += len(ev.data)
        if self.part_size > self.opts.max_size:
            self.parts, self.part_size = [], 0
            self.fail(1009)
            return False
        if not ev.message_finished:
            return True
        parts, self.parts, self.part_size = self.parts, [], 0
        if isinstance(ev, TextMessage):
            self._push({"type": "websocket.receive", "text": "".join(parts)})
        elif isinstance(ev, BytesMessage):
            self._push({"type": "websocket.receive", "bytes": b"".join(parts)})
        return True

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

    def fail(self, code: int, app_code: int | None = None) -> None:
        """_Fail the WebSocket Connection_ (RFC 6455 §7.1.7): our Close frame with `code`
        if none was sent yet, the app told (`app_code`, default `code`), then FIN, and
        what the peer still sends is discarded (the connection's linger)."""
        ws = self.ws
        reason = _FAIL_REASONS.get(code, "")
        if ws is not None and ws.state is ConnectionState.OPEN:
            self._write(ws.send(CloseConnection(code=code, reason=reason)))
        log.debug("websocket failed with %d (%s)", code, reason)
        self._disconnect(code if app_code is None else app_code, reason)
        self.keepalive.stop()
        self.conn.linger()

    def _send_ping(self, payload: bytes) -> None:
        ws = self.ws
        if ws is not None and ws.state is ConnectionState.OPEN:
            self._write(ws.send(Ping(payload=payload)))

    def _ping_timeout(self) -> None:
        """No pong in time: the peer is unresponsive, so no closing handshake is awaited;
        the app sees 1006, as for any connection closed without a Close frame (§7.1.5)."""
        if not self.closed:
            self.fail(1011, app_code=1006)

    def close_with(self, code: int, reason: str = "") -> None:
        """Send our close frame, tell the app, wait briefly for the peer's close."""
        ws = self.ws
        if ws is not None and ws.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            self._write(ws.send(CloseConnection(code=code, reason=reason)))
        self._disconnect(code, reason)
        self.keepalive.stop()
        self.conn.s.loop.call_later(CLOSE_WAIT, self.conn.close)

    def connection_lost(self) -> None:
        self.keepalive.stop()
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
            if isinstance(exc, asyncio.CancelledError):
                pass
            elif self.conn.closed:      # the client left first: normal, no traceback
                log.debug("client went away during websocket %s (%s)", self.scope["path"],
                          type(exc).__name__)
            else:
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
        more = message.get("more_body", False)
        try:
            out = r.head + r.body(body) + (b"" if more else r.end())
        except FramingError as exc:     # as for http responses (asgi.cycle): once, closed
            log.error("closing the connection: the ASGI app broke its response framing "
                      "(websocket denial %s): %s", self.req.target.decode("latin-1"), exc)
            if r.head:
                self._write(error_response(500))
            self.closed = True
            self.conn.close()
            raise RuntimeError(f"invalid ASGI response: {exc}") from exc
        r.head = b""
        if not more:
            self.closed = True
            self._write(out)
            self.conn.close()
        else:
            self._write(out)
