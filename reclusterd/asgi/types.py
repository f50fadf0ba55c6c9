"""ASGI 3 types, and the two seams between the connection (asgi.protocol) and what runs
on it (asgi.cycle, asgi.websocket): structural types, so neither side imports the other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol

from reclusterd.http.connection import H1Connection
from reclusterd.logging import AccessLog
from reclusterd.meter import Meter

Message = MutableMapping[str, Any]
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Message, Receive, Send], Awaitable[None]]

ASGI_VERSION = {"version": "3.0", "spec_version": "2.4"}


class ClientDisconnected(OSError):
    """send() after the client went away (ASGI spec 2.4: an OSError subclass)."""


@dataclass(frozen=True, slots=True)
class WSOptions:
    """The --ws-* settings: max_size in bytes (one message, after decompression);
    ping_interval and ping_timeout in seconds (0 = off); per_message_deflate (RFC 7692)."""

    max_size: int
    ping_interval: float
    ping_timeout: float
    per_message_deflate: bool


class Server(Protocol):
    """What one request sees of its worker (asgi.protocol.ServerState)."""

    @property
    def app(self) -> ASGIApp: ...
    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...
    @property
    def draining(self) -> bool: ...
    @property
    def scheme(self) -> str: ...
    @property
    def state(self) -> dict[str, Any] | None: ...
    @property
    def meter(self) -> Meter: ...
    @property
    def access(self) -> AccessLog | None: ...
    @property
    def ws_options(self) -> WSOptions: ...

    def track(self, task: asyncio.Task[None]) -> None: ...


class Connection(Protocol):
    """What a request cycle or a WebSocket sees of its connection (asgi.protocol)."""

    @property
    def s(self) -> Server: ...
    @property
    def transport(self) -> asyncio.Transport: ...
    @property
    def h1(self) -> H1Connection: ...
    @property
    def base(self) -> Scope: ...
    @property
    def trusted(self) -> bool: ...
    @property
    def closed(self) -> bool: ...
    @property
    def read_paused(self) -> bool: ...
    @property
    def write_paused(self) -> bool: ...
    @property
    def cycle(self) -> object: ...

    def close(self) -> None: ...
    def linger(self) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def body_taken(self) -> None: ...
    def next_request(self) -> None: ...
    def cycle_done(self, keep: bool) -> None: ...
    async def drain(self) -> None: ...
    def forwarded(self, scope: Scope, headers: list[tuple[bytes, bytes]]) -> None: ...

