"""What every connection of one asyncio worker shares: the app, settings, the meter,
the set of open connections (swept for deadlines, drained on TERM) and the set of
running app tasks (a drain waits for them too: a request whose client already left
still has cleanup to run)."""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from typing import TYPE_CHECKING, Any, Protocol

from reclusterd.asgi.types import ASGIApp, WSOptions
from reclusterd.http import Limits
from reclusterd.http.connection import ConnectionRules
from reclusterd.http.forwarded import ProxyResolver
from reclusterd.http.h2 import H2Settings
from reclusterd.http.rootpath import mount_prefix
from reclusterd.logging import AccessLog
from reclusterd.meter import Meter

if TYPE_CHECKING:
    from reclusterd.config import Config


class Tracked(Protocol):
    """An open connection as the shared state sees it (asgi.protocol.HttpProtocol)."""

    def check_timeouts(self, now: float) -> None: ...
    def shutdown(self) -> None: ...
    def cut(self) -> None: ...


def h2_settings(cfg: Config) -> H2Settings:
    """The --http2-* settings."""
    return H2Settings(int(cfg.http2_max_concurrent_streams),
                      int(cfg.http2_initial_window_size), int(cfg.http2_max_frame_size),
                      int(cfg.http2_max_header_list_size))


class ServerState:
    """What every connection of one worker shares: app, settings, counters, open connections."""

    def __init__(self, app: ASGIApp, cfg: Config, meter: Meter,
                 loop: asyncio.AbstractEventLoop, secure: bool,
                 resolver: ProxyResolver | None, access: AccessLog | None, ws: bool) -> None:
        self.app = app
        self.meter = meter
        self.loop = loop
        self.http = str(cfg.http)
        self.limits = Limits(cfg.limit_request_line, cfg.limit_request_fields,
                             cfg.limit_request_field_size, cfg.limit_request_body)
        self.rules = ConnectionRules(float(cfg.keep_alive), float(cfg.header_timeout))
        self.drain_grace = self.rules.drain_grace(float(cfg.graceful_timeout))
        # HTTP/2: the open streams of a draining connection get the whole of it
        self.graceful_timeout = float(cfg.graceful_timeout)
        self.max_connections = int(cfg.worker_connections)
        self.scheme = "https" if secure else "http"
        self.resolver = resolver
        self.access = access if access is not None and access.enabled else None
        self.ws = ws
        self.ws_options = WSOptions(int(cfg.ws_max_size), float(cfg.ws_ping_interval),
                                    float(cfg.ws_ping_timeout), bool(cfg.ws_per_message_deflate))
        # the Upgrade this driver takes up; any other is ignored, the request served as HTTP
        self.upgrades = frozenset((b"websocket",)) if ws else frozenset()
        # HTTP/2 (asgi.h2protocol): its settings when --http-protocols offers h2, and
        # whether trusted peers may open a plain connection with the h2c preface,
        self.h2 = h2_settings(cfg) if "h2" in cfg.http_protocols else None
        self.h2c_prior = (self.h2 is not None and not secure and resolver is not None
                          and cfg.http2_cleartext in ("prior-knowledge", "both"))
        # ... and whether they may switch an HTTP/1.1 request with `Upgrade: h2c`
        self.h2c_upgrade = (self.h2 is not None and not secure and resolver is not None
                            and cfg.http2_cleartext in ("upgrade", "both"))
        self.state: dict[str, Any] | None = None    # lifespan state (None: no lifespan)
        self.root_path = mount_prefix(cfg.root_path, os.environ)
        # --proxy-protocol: the peers allowed to send the header (None: off), and the TLS
        # context started once it is read (the listeners are then plain: asgi.proxyread)
        self.proxy_peers = ProxyResolver(cfg.proxy_allow_ips) if cfg.proxy_protocol else None
        self.tls_after: ssl.SSLContext | None = None
        self.connections: set[Tracked] = set()
        self.draining = False
        # Connection deadlines use time.monotonic (a C call; uvloop's loop.time() is a
        # cached millisecond clock): the sweep compares them with the same clock.
        self.now = time.monotonic()
        self.trust_cache: dict[str | None, bool] = {}
        self.tasks: set[asyncio.Task[None]] = set()  # app tasks (requests, websockets)
        self.empty: asyncio.Event | None = None     # set when draining and nothing left

    def is_trusted(self, ip: str | None) -> bool:
        """Is the peer one of --forwarded-allow-ips? Cached: parsing an IP costs ~4 us."""
        cache = self.trust_cache
        hit = cache.get(ip)
        if hit is None:
            assert self.resolver is not None
            if len(cache) > 4096:
                cache.clear()
            hit = cache[ip] = self.resolver.trusted(ip)
        return hit

    def sweep(self) -> None:
        """Periodic: close idle keep-alive connections, 408 heads past the header deadline."""
        now = self.now = time.monotonic()
        for conn in list(self.connections):
            conn.check_timeouts(now)

    def drain(self) -> None:
        """Stop reusing connections. Busy ones close after their response (Connection: close);
        idle keep-alive ones stay open a little: closing them would race with the client's
        next request already on the wire. That request is answered with Connection: close;
        a connection that stays silent is closed by the sweep (http.connection's drain
        deadlines)."""
        self.draining = True
        for conn in list(self.connections):
            conn.shutdown()
        self.empty = asyncio.Event()
        self._check_empty()

    def track(self, task: asyncio.Task[None]) -> None:
        """Count an app task until it ends: draining waits for it even after its client
        left, so the app's `finally` and async generators' cleanup run inside the loop."""
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self._check_empty()

    def forget(self, conn: Tracked) -> None:
        self.connections.discard(conn)
        self._check_empty()

    def _check_empty(self) -> None:
        if self.empty is not None and not self.connections and not self.tasks:
            self.empty.set()

    async def cut(self, grace: float) -> None:
        """The graceful timeout is over: close every connection, cancel every app task,
        and give the cancelled tasks up to `grace` s to run their `finally` clauses."""
        for conn in list(self.connections):
            conn.cut()
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=max(0.01, grace))
