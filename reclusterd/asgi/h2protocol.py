"""The asyncio worker's HTTP/2 driver: one asyncio.Protocol per connection over the
sans-IO `http.h2.H2Connection`, one ASGI task per stream (asgi.h2cycle).

HttpProtocol hands a connection over (transport.set_protocol) after the TLS handshake
chose ALPN h2, when a trusted peer opens with the h2c preface, or after a trusted peer's
HTTP/1.1 `Upgrade: h2c` request was read whole (`h2c_switch`; then the 101 and that
request's answer on stream 1, RFC 9113 §3.1 / RFC 7540 §3.2). Deadlines (idle,
stalled streams, the drain's grace) are H2Connection's values, acted on by the worker's
periodic sweep (check_timeouts), as for HTTP/1.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from dataclasses import dataclass, field

from reclusterd.asgi.h2cycle import H2Cycle
from reclusterd.asgi.request import http_scope, launch
from reclusterd.asgi.state import ServerState
from reclusterd.http import Data, EndOfMessage, Request
from reclusterd.http.h2 import (
    H2Connection,
    H2Event,
    SendCredit,
    StreamEvent,
    StreamReset,
    Terminated,
)
from reclusterd.http.h2rules import h2c_settings

__all__ = ["H2Protocol", "H2cSwitch", "h2c_switch"]

log = logging.getLogger("reclusterd.error")
_EXTENSIONS: dict[str, dict[str, object]] = {"http.response.trailers": {}}


@dataclass(slots=True)
class H2cSwitch:
    """An HTTP/1.1 request switching to h2c: its HTTP2-Settings value and its body, read
    whole (HTTP/1 framing) before the 101 is sent."""

    request: Request
    settings: bytes
    body: bytearray = field(default_factory=bytearray)


def h2c_switch(state: ServerState, req: Request, trusted: bool) -> H2cSwitch | None:
    """The switch an HTTP/1.1 request asks for, or None: it is served as HTTP/1 (h2c
    upgrade off, an untrusted peer, no valid HTTP2-Settings, a body of unknown length or
    over one HTTP/2 stream window, which is all a stream would hold)."""
    if not (state.h2c_upgrade and trusted and state.h2 is not None):
        return None
    value = h2c_settings(req, state.h2.initial_window_size)
    return None if value is None else H2cSwitch(req, value)


class H2Protocol(asyncio.Protocol):
    """One HTTP/2 connection: its H2Connection and the cycles of its open streams."""

    def __init__(self, state: ServerState, peer: tuple[str, int] | None,
                 peer_ip: str | None, server: tuple[str, int | None] | None,
                 trusted: bool, ctx: contextvars.Context,
                 switch: H2cSwitch | None = None) -> None:
        self.s = state
        self.peer = peer
        self.peer_ip = peer_ip
        self.server = server
        self.trusted = trusted
        self.ctx = ctx
        assert state.h2 is not None
        self.h2 = H2Connection(state.h2, state.rules, state.limits, time.monotonic)
        self.cycles: dict[int, H2Cycle] = {}
        self.closed = False
        self.write_paused = False
        self.drain_waiters: list[asyncio.Future[None]] = []
        self.switch = switch
        self.flush_due = False      # a write_out is scheduled (flush)

    # -- asyncio callbacks -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        s = self.s
        s.connections.add(self)
        s.meter.h2_open += 1
        events: list[H2Event] = []
        switch, self.switch = self.switch, None
        if switch is None:
            self.h2.start()
        else:
            events = self.h2.upgrade(switch.request, switch.settings, bytes(switch.body))
        if s.draining:
            self.h2.begin_drain(s.graceful_timeout)
        self.handle(events)

    def data_received(self, data: bytes) -> None:
        if not self.closed:
            self.handle(self.h2.receive(data))

    def eof_received(self) -> bool | None:
        self.handle(self.h2.receive(b""))
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.h2.receive(b"")
        for cycle in self.cycles.values():
            cycle.gone()
        self.s.meter.h2_open -= 1
        self.s.forget(self)
        self.resume_writing()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        waiters, self.drain_waiters = self.drain_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def drain(self) -> None:
        """Wait until the transport's write buffer is below its high-water mark."""
        if self.write_paused and not self.closed:
            fut = self.s.loop.create_future()
            self.drain_waiters.append(fut)
            await fut

    # -- events ------------------------------------------------------------------------
    def handle(self, events: list[H2Event]) -> None:
        cycles = self.cycles
        for e in events:
            if type(e) is StreamEvent:
                ev = e.event
                cycle = cycles.get(e.stream_id)
                if type(ev) is Request:
                    self.start(e.stream_id, ev)
                elif cycle is None:
                    continue
                elif type(ev) is Data:
                    cycle.on_data(ev.data)
                elif type(ev) is EndOfMessage:
                    cycle.on_end()
            elif type(e) is StreamReset:
                cycle = cycles.get(e.stream_id)
                if cycle is not None:
                    cycle.gone()
            elif type(e) is SendCredit:
                self.credit(e.stream_id)
            elif type(e) is Terminated:
                for cycle in cycles.values():
                    cycle.gone()
        for cycle in cycles.values():
            if cycle.task is None:
                launch(self.s, cycle, self.ctx)    # after the batch: a GET has its end
        self.flush()
        if self.h2.finished:
            self.close()

    def start(self, sid: int, req: Request) -> None:
        scope = http_scope(self.s, self, req)
        scope["extensions"] = _EXTENSIONS
        self.cycles[sid] = H2Cycle(self, sid, req, scope)

    def credit(self, sid: int) -> None:
        """Send credit arrived: wake the streams waiting for it (0: every stream)."""
        if sid:
            cycle = self.cycles.get(sid)
            targets = [cycle] if cycle is not None else []
        else:
            targets = list(self.cycles.values())
        for cycle in targets:
            fut = cycle.credit
            if fut is not None and not fut.done():
                fut.set_result(None)

    # -- the cycles' side --------------------------------------------------------------
    def consumed(self, sid: int) -> None:
        """The app read all the body buffered for `sid`: the client may send more."""
        self.h2.ack_data(sid, 2**31)
        self.flush()

    def stream_closed(self, cycle: H2Cycle) -> None:
        """The app's task for a stream ended: free the stream's slot."""
        self.cycles.pop(cycle.sid, None)
        self.h2.stream_done(cycle.sid)
        self.flush()
        if self.h2.finished:
            self.close()

    def flush(self) -> None:
        """Write what the connection has to send at the end of this loop iteration: the
        frames of every stream answered in one iteration go out in one write (one
        syscall, not one per frame batch)."""
        if not self.flush_due and not self.closed:
            self.flush_due = True
            self.s.loop.call_soon(self.write_out)

    def write_out(self) -> None:
        self.flush_due = False
        data = self.h2.data_to_send()
        if data and not self.closed:
            self.transport.write(data)

    def close(self) -> None:
        if not self.closed:
            self.write_out()
            self.closed = True
            self.transport.close()

    # -- the sweep and draining (asgi.state.ServerState) -------------------------------
    def check_timeouts(self, now: float) -> None:
        if not self.closed and now >= self.h2.next_deadline():
            self.handle(self.h2.expire())

    def shutdown(self) -> None:
        """Draining: GOAWAY naming the last stream; the open ones finish."""
        self.h2.begin_drain(self.s.graceful_timeout)
        self.flush()
        if self.h2.finished:
            self.close()

    def cut(self) -> None:
        """Graceful timeout over: cancel the streams' tasks and close."""
        for cycle in list(self.cycles.values()):
            if cycle.task is not None:
                cycle.task.cancel()
        self.close()

