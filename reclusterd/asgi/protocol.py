"""The asyncio driver: ASGI 3 HTTP over the sans-IO http/ package, one asyncio.Protocol
per connection.

`HttpProtocol` feeds socket bytes to the parser in data_received, runs one
`Cycle` (scope + receive/send) per request as a task, answers pipelined
requests in order and hands upgraded connections to `websocket.py`. Timeouts
(keep-alive idle, header deadline) are checked by the worker's periodic sweep
(`asgi.state.ServerState.sweep`) instead of a timer per request: cheaper on the hot path.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import ssl
import time
from collections import deque
from typing import Any

from reclusterd.asgi.cycle import HIGH_WATER, Cycle
from reclusterd.asgi.h2protocol import H2cSwitch, H2Protocol, h2c_switch
from reclusterd.asgi.proxyread import ProxyRead
from reclusterd.asgi.request import forwarded, http_scope, launch, over_memory
from reclusterd.asgi.state import ServerState
from reclusterd.asgi.types import ASGI_VERSION, Scope
from reclusterd.asgi.websocket import WebSocketSession
from reclusterd.http import (
    Data,
    EndOfMessage,
    Event,
    ProtocolError,
    Request,
    make_parser,
)
from reclusterd.http.connection import (
    BUSY_WAIT,
    CLOSE,
    TIMEOUT,
    TLS_SHUTDOWN,
    H1Connection,
    body_stalled,
    busy_answer,
    over_capacity,
)
from reclusterd.http.h2rules import preface_state
from reclusterd.http.proxyproto import ProxyError, ProxyInfo, refusal
from reclusterd.http.response import CONTINUE_100
from reclusterd.http.wshandshake import handshake_problem, handshake_refusal, offers_websocket

__all__ = ["HttpProtocol"]

log = logging.getLogger("reclusterd.error")
MAX_QUEUED = 256              # queued pipelined events before pause_reading
LINGER = 1.0                  # seconds to drain a client's input after an error response


class HttpProtocol(asyncio.Protocol):
    """One client connection: parser, the current request cycle, queued pipelined events."""

    __slots__ = ("s", "transport", "h1", "cycle", "queue", "base", "server", "peer_ip", "peer",
                 "trusted", "read_paused", "write_paused", "next_waits",
                 "drain_waiters", "closed", "eof", "ws", "ctx", "proxy", "busy", "sniff", "h2c")

    def __init__(self, state: ServerState) -> None:
        self.s = state
        self.cycle: Cycle | None = None
        self.queue: deque[Event] = deque()
        self.read_paused = False
        self.write_paused = False
        self.next_waits = False     # the next pipelined request waits for resume_writing
        self.drain_waiters: list[asyncio.Future[None]] = []
        self.closed = False
        self.eof = False
        self.ws: WebSocketSession | None = None
        self.trusted = False
        self.proxy: ProxyRead | None = None      # --proxy-protocol: its header reader
        self.busy: asyncio.TimerHandle | None = None   # over --worker-connections: 503 due
        self.sniff: bytes | None = None   # h2c prior knowledge: the first bytes, held
        self.h2c: H2cSwitch | None = None   # Upgrade: h2c: the request whose body is read

    # -- asyncio callbacks ----------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        s = self.s
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        if over_capacity(len(s.connections), s.max_connections):
            # answered on the first bytes (a HEAD gets no body), or after BUSY_WAIT s
            self.busy = s.loop.call_later(BUSY_WAIT, self._refuse_busy, b"")
            return
        s.connections.add(self)     # also while draining: answered with Connection: close
        if s.empty is not None:
            s.empty.clear()
        self.h1 = H1Connection(s.rules, make_parser(s.http, s.limits, s.upgrades),
                               time.monotonic)
        if s.draining:
            self.h1.begin_drain(s.drain_grace)
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        if isinstance(peer, tuple):
            self.peer_ip: str | None = str(peer[0])
            self.peer: tuple[str, int] | None = (str(peer[0]), int(peer[1]))
        else:
            self.peer_ip = self.peer = None
        server = (str(sock[0]), int(sock[1])) if isinstance(sock, tuple) else \
            (str(sock), None) if sock else None
        if s.resolver is not None:
            self.trusted = s.is_trusted(self.peer_ip)
        self.server = server
        self.base: dict[str, Any] = {
            "type": "http", "asgi": ASGI_VERSION, "http_version": "1.1", "server": server,
            "client": self.peer, "scheme": s.scheme, "root_path": s.root_path,
        }
        # every request starts from this context, whichever request's task launches it
        self.ctx = contextvars.copy_context()
        if s.proxy_peers is not None:
            self.expect_proxy()
        elif s.h2 is not None:
            self.offer_h2()

    def offer_h2(self) -> None:
        """HTTP/2 when the TLS handshake chose ALPN h2; on a plain connection from a
        trusted peer with h2c prior knowledge on, hold the first bytes to look for the
        preface (data_received)."""
        sslobj = self.transport.get_extra_info("ssl_object")
        if sslobj is not None and sslobj.selected_alpn_protocol() == "h2":
            self.to_h2(b"")
        elif self.s.h2c_prior and self.trusted:
            self.sniff = b""

    def to_h2(self, first: bytes, switch: H2cSwitch | None = None) -> None:
        """Hand the connection to the HTTP/2 driver, with the bytes read so far (or the
        `Upgrade: h2c` request it answers on stream 1)."""
        proto = H2Protocol(self.s, self.peer, self.peer_ip, self.server, self.trusted,
                           self.ctx, switch)
        self.closed = True
        transport = self.transport
        transport.set_protocol(proto)
        proto.connection_made(transport)
        self.s.forget(self)
        if first:
            proto.data_received(first)

    # -- --proxy-protocol: after accept, before TLS and HTTP ---------------------------
    def expect_proxy(self) -> None:
        """Read the PROXY header first (asgi.proxyread); a peer not allowed to send one
        is closed at once."""
        s = self.s
        assert s.proxy_peers is not None
        if not s.proxy_peers.trusted(self.peer_ip):
            self.proxy_done(None, "not in --proxy-allow-ips")
            return
        self.proxy = ProxyRead(s.loop, self.transport, self.proxy_done)

    def proxy_done(self, info: ProxyInfo | None, why: ProxyError | str) -> None:
        """The header is read (info) or refused (why: logged once, connection closed)."""
        if info is None:
            log.log(*refusal(self.peer_ip, why))
            self.closed = True
            self.transport.abort()
            return
        if info.client is not None:
            self.peer_ip, self.peer = info.client[0], info.client
            self.base["client"] = info.client
            if self.s.resolver is not None:
                self.trusted = self.s.is_trusted(self.peer_ip)
        ctx = self.s.tls_after
        if ctx is None:
            assert self.proxy is not None
            self.proxy.holding = False
            self.transport.resume_reading()
            return
        self.s.loop.create_task(self.start_tls(ctx))

    async def start_tls(self, ctx: ssl.SSLContext) -> None:
        """TLS after the PROXY header; bytes the new transport delivered before this
        returned were held (data_received) and are fed now."""
        try:
            transport = await self.s.loop.start_tls(self.transport, self, ctx,
                                                    server_side=True,
                                                    ssl_shutdown_timeout=TLS_SHUTDOWN)
        except (OSError, ssl.SSLError, ConnectionError, asyncio.TimeoutError) as e:
            log.debug("TLS handshake failed after the PROXY header: %s", e)
            self.closed = True
            self.transport.abort()
            return
        assert transport is not None and self.proxy is not None
        self.transport = transport
        held, self.proxy.held = self.proxy.held, []
        self.proxy.holding = False
        if self.s.h2 is not None:
            self.offer_h2()
        for data in held:
            proto = self.transport.get_protocol()   # HTTP/2 may have taken it
            if isinstance(proto, asyncio.Protocol):
                proto.data_received(data)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return               # lingering after an error response: discard
        if self.busy is not None:
            self._refuse_busy(data)
            return
        proxy = self.proxy
        if proxy is not None and proxy.holding:
            proxy.held.append(data)     # TLS is up, start_tls has not returned yet
            return
        ws = self.ws
        if ws is not None:
            ws.feed(data)
            return
        if self.sniff is not None:
            data = self.sniff + data
            preface = preface_state(data)
            if preface is None:
                self.sniff = data       # too few octets yet to tell
                return
            self.sniff = None
            if preface:
                self.to_h2(data)
                return
        events = self.h1.receive(data)
        if events:
            self.handle(events)

    def eof_received(self) -> bool | None:
        if self.busy is not None:
            self._refuse_busy(b"")
            return True
        if self.closed or self.ws is not None:
            return None
        self.eof = True
        cycle = self.cycle
        if cycle is not None and cycle.started and not cycle.complete:
            # A FIN while the response is under way: the client is gone (curl's timeout,
            # a closed browser tab), not half-closing to wait for it. The app's pending
            # receive() gets http.disconnect, its next send() ClientDisconnected (so an
            # SSE stream stops); the transport closes (eof_received returning None).
            cycle.disconnected = True
            cycle.wake()
            return None
        events = self.h1.receive(b"")
        if self.cycle is None and not self.queue:
            if events:
                self.handle(events)
            return None          # nothing in flight: close
        # half-closed with a request in flight: keep the write side open to answer it
        if events:
            self.handle(events)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.busy is not None:
            self.busy.cancel()
            self.busy = None
            return
        if self.proxy is not None:
            if self.proxy.reading and self.proxy.reader.buffered:
                # closed by its deadline mid-header (a stalled PROXY header): say so once
                log.log(*refusal(self.peer_ip, "PROXY header not complete in time"))
            self.proxy.close()
        self.s.forget(self)
        cycle = self.cycle
        if cycle is not None:
            cycle.disconnected = True
            cycle.wake()
        if self.ws is not None:
            self.ws.connection_lost()
        for fut in self.drain_waiters:
            if not fut.done():
                fut.set_result(None)
        self.drain_waiters.clear()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        for fut in self.drain_waiters:
            if not fut.done():
                fut.set_result(None)
        self.drain_waiters.clear()
        if self.next_waits:
            self.next_waits = False
            self.next_request()

    async def drain(self) -> None:
        """Wait until the transport's write buffer is below its high-water mark."""
        if self.write_paused and not self.closed:
            fut = self.s.loop.create_future()
            self.drain_waiters.append(fut)
            await fut

    # -- events ---------------------------------------------------------------------
    def handle(self, events: list[Event]) -> None:
        """Dispatch parser events; those of later pipelined requests wait in the queue."""
        queue = self.queue
        for ev in events:
            cycle = self.cycle
            if queue or (cycle is not None and cycle.request_done):
                queue.append(ev)
                continue
            t = type(ev)
            if t is Request:
                self.start(ev)  # type: ignore[arg-type]
            elif cycle is not None and t is EndOfMessage:     # the common cases, inlined
                cycle.on_end()
            elif cycle is not None and t is Data:
                cycle.on_data(ev.data)  # type: ignore[union-attr]
            else:
                self.dispatch(ev)
                if self.closed:
                    return
        cycle = self.cycle
        if cycle is not None and cycle.task is None:
            self.launch(cycle)      # after this batch's body events: a GET runs to the end
        if len(queue) > MAX_QUEUED and not self.read_paused:
            self.pause_reading()

    def dispatch(self, ev: Event) -> None:
        t = type(ev)
        cycle = self.cycle
        if t is Request:
            self.start(ev)  # type: ignore[arg-type]
        elif cycle is None:
            if self.h2c is not None:
                self.h2c_event(ev)
            elif t is ProtocolError:
                self.fail(ev)  # type: ignore[arg-type]
        elif t is Data:
            cycle.on_data(ev.data)  # type: ignore[union-attr]
        elif t is EndOfMessage:
            cycle.on_end()
        else:
            self.fail(ev)  # type: ignore[arg-type]

    def start(self, req: Request) -> None:
        s = self.s
        if s.ws and offers_websocket(req):
            self.h1.start_request()
            problem = handshake_problem(req)
            if problem is None and over_memory(s.meter, req):
                problem = (503, "Service Unavailable")   # no app call on this worker now
            if problem is None and req.upgrade != b"websocket":
                # Only a request the parser switched (rules._upgrade) may get a 101: else
                # HTTP framing would go on over what the client now sends as frames.
                problem = (400, "WebSocket handshake not taken up")
            if problem is not None:      # refused before the app sees websocket.connect
                self.transport.write(handshake_refusal(req, *problem))
                self.linger()
                return
            self.ws = WebSocketSession(self, req)
            self.ws.start()
            return
        if s.h2c_upgrade:
            self.h2c = h2c_switch(s, req, self.trusted)
            if self.h2c is not None:     # its body is read (h2c_event), then the 101
                if req.expect_continue and req.content_length:
                    self.transport.write(CONTINUE_100)
                return
        scope = http_scope(s, self, req)
        self.h1.start_request()
        self.cycle = Cycle(self, req, scope)

    def h2c_event(self, ev: Event) -> None:
        """The body of an `Upgrade: h2c` request (bounded by h2c_switch), then the
        switch; a framing error inside it is answered as HTTP/1. Until the body is
        whole, the connection's HTTP/1 deadlines apply (check_timeouts)."""
        switch = self.h2c
        assert switch is not None
        if type(ev) is Data:
            switch.body += ev.data
        elif type(ev) is EndOfMessage:
            self.h2c = None
            self.to_h2(b"", switch)
        elif type(ev) is ProtocolError:
            self.h2c = None
            self.fail(ev)

    def launch(self, cycle: Cycle) -> None:
        launch(self.s, cycle, self.ctx)

    def forwarded(self, scope: Scope, headers: list[tuple[bytes, bytes]]) -> None:
        """Client address and scheme from trusted proxy headers."""
        forwarded(self.s, self, scope, headers)

    def fail(self, err: ProtocolError) -> None:
        """A framing error: answer it (unless a response is under way) and close."""
        cycle = self.cycle
        if cycle is not None:
            cycle.disconnected = True
            cycle.wake()
            if cycle.started:
                self.close()
                return
        if not self.closed:
            self.transport.write(self.h1.reject(err))
            self.linger()

    def cycle_done(self, keep: bool) -> None:
        """The current request's response is complete: close, or go on with the next
        pipelined request."""
        cycle = self.cycle
        if cycle is None:
            return
        keep = self.h1.response_done(keep)
        if not keep or self.eof:
            # keep is False while draining (the response said Connection: close). A response
            # whose head went out before the drain said keep-alive: the connection stays,
            # and the next request on it gets the Connection: close.
            if cycle.request_done and not self.queue and not self.s.draining:
                self.close()
            else:
                self.linger()
            return
        if not cycle.request_done:
            # The app answered without reading the whole body, and the head said keep-alive
            # (http.connection.body_allows_reuse): read and drop the rest (Cycle.on_data stops
            # at DRAIN_LIMIT); on_end() then goes on with the next request.
            self.resume_reading()
            return
        self.next_request()

    def next_request(self) -> None:
        """Go on with the next pipelined request, unless the client is not reading our
        responses: then stop reading requests until the write buffer drains below its
        low-water mark (resume_writing), so a peer that pipelines and never reads costs a
        bounded buffer, and the sweep's idle deadline closes it (check_progress)."""
        if self.write_paused:
            self.next_waits = True
            self.pause_reading()
            return
        self.cycle = None
        queue = self.queue
        while queue and not self.closed:
            cycle = self.cycle
            if cycle is not None and cycle.request_done:
                break
            self.dispatch(queue.popleft())
        cycle = self.cycle
        if cycle is not None and cycle.task is None and not self.closed:
            self.launch(cycle)
        if self.read_paused and len(queue) <= MAX_QUEUED // 2 and (
                self.cycle is None or self.cycle.buffered < HIGH_WATER):
            self.resume_reading()

    def pause_reading(self) -> None:
        if not self.read_paused and not self.closed:
            self.read_paused = True
            self.transport.pause_reading()

    def body_taken(self) -> None:
        """The app took the request body buffered so far: read on, unless reading is
        paused for another reason too (pipelined requests queued, or the client not
        reading our responses): a peer pipelining bodies and never reading must cost a
        bounded buffer, as with bodiless requests (QA-14: 26 -> 222 MB)."""
        if len(self.queue) <= MAX_QUEUED // 2 and not self.write_paused:
            self.resume_reading()

    def resume_reading(self) -> None:
        if self.read_paused and not self.closed:
            self.read_paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.close()

    def _refuse_busy(self, first: bytes) -> None:
        if self.busy is not None:
            self.busy.cancel()
            self.busy = None
        self.transport.write(busy_answer(first))
        self.linger()

    def linger(self) -> None:
        """Close after a response while the client may still be sending: FIN first, read
        and discard for up to LINGER s, then close, so unread data cannot turn the close
        into a reset that destroys the response before the client reads it."""
        if self.closed:
            return
        self.closed = True
        t = self.transport
        if not t.can_write_eof():
            t.close()
            return
        t.write_eof()
        if self.read_paused:
            self.read_paused = False
            t.resume_reading()
        self.s.loop.call_later(LINGER, t.close)

    # -- timeouts / drain (called by ServerState) ------------------------------------
    def check_timeouts(self, now: float) -> None:
        """The periodic sweep: act on the deadline http.connection gives, if it passed."""
        if self.closed or self.ws is not None:
            return
        if self.cycle is not None:      # also a finished one that waits for the client
            self.check_progress(self.cycle, now)   # to read (next_request)
            return
        if self.queue:
            return
        when, what = self.h1.next_deadline()
        if now < when:
            return
        if what == TIMEOUT:
            self.transport.write(self.h1.timeout_response())
            self.linger()
        elif what == CLOSE:
            self.close()

    def check_progress(self, cycle: Cycle, now: float) -> None:
        """Idle deadline inside a request, as in the thread worker: a request body, or a
        response the client does not read, that makes no progress for --header-timeout
        seconds ends the request (408 if nothing was sent, then close; the app's
        receive() returns http.disconnect, its send() raises ClientDisconnected)."""
        if not cycle.request_done and not self.read_paused and (
                cycle.continue_sent or not cycle.request.expect_continue):
            mark = cycle.received           # waiting for the client's body
        elif self.write_paused:
            mark = -2 - self.transport.get_write_buffer_size()  # waiting for it to read
        else:
            cycle.progress = -1             # waiting for the app: not the client's fault
            return
        if mark != cycle.progress:
            cycle.progress = mark
            cycle.progress_at = now
        elif now - cycle.progress_at > self.s.rules.io_timeout:
            cycle.progress = -1
            log.info("closing %s: no progress for %.0fs %s (%s %s)", self.peer_ip or "client",
                     self.s.rules.io_timeout, "reading the request body" if mark >= 0 else
                     "writing the response", cycle.scope["method"], cycle.scope["path"])
            r = cycle.response      # a head held back for the first body piece is unsent
            answer = (body_stalled(cycle.request, r is not None and not r.head)
                      if mark >= 0 else None)
            if answer is not None:
                self.transport.write(answer)
                cycle.status = 408
            cycle.disconnected = True
            cycle.wake()
            if mark >= 0:
                self.linger()
            else:
                self.transport.abort()      # a full write buffer cannot be flushed anyway
                self.closed = True

    def cut(self) -> None:
        """Graceful timeout over: cancel the app's task and close."""
        cycle = self.cycle
        if cycle is not None and cycle.task is not None:
            cycle.task.cancel()
        self.close()

    def shutdown(self) -> None:
        """Draining: WebSockets get their close frame; HTTP connections have their waits
        shortened (http.connection) and are left to cycle_done / the sweep."""
        self.h1.begin_drain(self.s.drain_grace)
        if self.ws is not None:
            self.ws.shutdown()
