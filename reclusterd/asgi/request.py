"""What the asyncio worker's HTTP/1 and HTTP/2 drivers share per request: the scope,
starting the app's task, and the accounting once it is answered (meter, access log,
post_request), so both protocol versions give apps and logs the same view."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Coroutine
from typing import Any, Protocol

from reclusterd.asgi.state import ServerState
from reclusterd.asgi.types import ASGI_VERSION, Scope, Server
from reclusterd.http import Request, decode_path
from reclusterd.http.rootpath import asgi_path
from reclusterd.logging import AccessInfo
from reclusterd.meter import Meter

__all__ = ["Launchable", "Peer", "forwarded", "http_scope", "launch", "over_memory",
           "record", "report_failure"]

log = logging.getLogger("reclusterd.error")
_METHODS: dict[bytes, str] = {}
_FORWARD_NAMES = frozenset((b"forwarded", b"x-forwarded-for", b"x-forwarded-proto"))


class Peer(Protocol):
    """The connection's side of a scope (asgi.protocol, asgi.h2protocol)."""

    @property
    def server(self) -> tuple[str, int | None] | None: ...
    @property
    def peer(self) -> tuple[str, int] | None: ...
    @property
    def peer_ip(self) -> str | None: ...
    @property
    def trusted(self) -> bool: ...


def http_scope(s: ServerState, conn: Peer, req: Request) -> Scope:
    """The ASGI HTTP scope of a request (ASGI spec 2.4 "HTTP Connection Scope"):
    client and scheme from forwarded headers only when the peer is trusted."""
    method = _METHODS.get(req.method)
    if method is None:
        method = _METHODS.setdefault(req.method, req.method.decode("ascii"))
    raw = req.path
    headers = req.headers
    path = (decode_path(raw) if b"%" in raw else raw).decode("utf-8", "replace")
    if s.root_path:
        path = asgi_path(path, s.root_path)
    scope = {
        "type": "http", "asgi": ASGI_VERSION, "http_version": req.http_version,
        "server": conn.server, "client": conn.peer, "scheme": s.scheme,
        "root_path": s.root_path, "method": method, "path": path,
        "raw_path": raw, "query_string": req.query, "headers": headers,
    }
    if conn.trusted:
        for name, _ in headers:
            if name in _FORWARD_NAMES:
                forwarded(s, conn, scope, headers)
                break
    if s.state is not None:
        scope["state"] = s.state.copy()
    return scope


def forwarded(s: ServerState, conn: Peer, scope: Scope,
              headers: list[tuple[bytes, bytes]]) -> None:
    """Client address and scheme from trusted proxy headers."""
    assert s.resolver is not None
    peer = conn.peer
    client = s.resolver.resolve(conn.peer_ip, headers, peer[1] if peer else 0)
    scope["client"] = (client.host, client.port) if client.host else None
    scope["scheme"] = client.scheme


class Launchable(Protocol):
    """A request cycle whose app is started by `launch`."""

    t0: float
    token: int
    task: asyncio.Task[None] | None
    scope: Scope

    def run(self) -> Coroutine[Any, Any, None]: ...


def launch(s: Server, cycle: Launchable, ctx: contextvars.Context) -> None:
    """Run the app for `cycle` in its own task, in a copy of the connection's context.

    Not eagerly without a task (measured ~13% less CPU on hello): asyncio.timeout(),
    anyio/sniffio (FastAPI sync routes) need asyncio.current_task(), and 3.11 has no
    eager tasks (3.12's eager_task_factory would be the way)."""
    meter = s.meter
    cycle.t0 = t0 = time.monotonic()
    cycle.token = meter.started(t0)
    if meter.pre_request is not None:
        meter.before(cycle.scope)
    cycle.task = task = s.loop.create_task(cycle.run(), context=ctx.copy())
    s.track(task)


def over_memory(meter: Meter, req: Request) -> bool:
    """Is the worker over --max-worker-memory, so this request must not reach the app?
    Asked as the app's task starts, not at launch: the tasks launched in one loop turn
    run one after the other, and each must see what the ones before it allocated."""
    memory = meter.memory
    if memory is None or memory.admits(time.monotonic()):
        return False
    memory.refused(req.method, req.target)
    return True


def record(s: Server, cycle: Launchable, req: Request, status: int, length: int,
           headers: list[tuple[bytes, bytes]]) -> None:
    """Accounting, access log, post_request hook: once per request."""
    meter = s.meter
    meter.finished(cycle.token, status, time.monotonic() - cycle.t0, req.http_version)
    scope = cycle.scope
    if s.access is not None:
        client = scope.get("client")
        s.access.log(AccessInfo(client[0] if client else "-", req.method, req.target,
                                req.http_version, status, length,
                                time.monotonic() - cycle.t0, req.headers, headers, scope))
    if meter.post_request is not None:
        meter.after(scope, status)


def report_failure(exc: BaseException, gone: bool, scope: Scope) -> None:
    """Log an app's exception once: a traceback, unless the client left first (then
    whatever the app made of that is normal: one debug line) or it was a cancel."""
    if isinstance(exc, asyncio.CancelledError):
        return
    if gone:
        log.debug("client went away during %s %s (%s)", scope["method"], scope["path"],
                  type(exc).__name__)
    else:
        log.exception("exception in ASGI application (%s %s)", scope["method"],
                      scope["path"])
