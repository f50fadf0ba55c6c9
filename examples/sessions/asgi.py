"""The Redis sessions app as plain ASGI 3 (no framework), with redis.asyncio.

Run it:  REDIS_URL=redis://127.0.0.1:6379/0 reclusterd examples.sessions.asgi:app -w 4

The async client is made in each worker at lifespan startup (on the worker's own
event loop, after fork) and closed at lifespan shutdown. With --lifespan off it
is made lazily on the first request instead. Either way it is tagged with the
pid that made it and never used by another process.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aredis
from redis.commands.core import AsyncScript

from examples.sessions.common import (
    COUNTER_KEY,
    HIT_SCRIPT,
    SESSION_TTL,
    Reply,
    backend_down,
    counter_value,
    new_sid,
    no_session,
    redis_url,
    route_error,
    session_created,
    session_key,
    session_seen,
    sid_from_cookie,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

__all__ = ["app", "get_conn"]


@dataclass(frozen=True, slots=True)
class _Conn:
    pid: int
    client: aredis.Redis
    hit: AsyncScript


_conn: _Conn | None = None


def get_conn() -> _Conn:
    """This process's async client; made on first use (one event loop per worker)."""
    global _conn
    if _conn is None or _conn.pid != os.getpid():
        client = aredis.Redis.from_url(
            redis_url(), socket_timeout=5, socket_connect_timeout=2,
            health_check_interval=30, decode_responses=True)
        _conn = _Conn(os.getpid(), client, client.register_script(HIT_SCRIPT))
    return _conn


async def _close_conn() -> None:
    global _conn
    conn, _conn = _conn, None
    if conn is not None and conn.pid == os.getpid():
        await conn.client.aclose()


async def _dispatch(method: str, path: str, cookie: str | None) -> Reply:
    error = route_error(method, path)
    if error is not None:
        return error
    conn = get_conn()
    if path == "/session":
        if method == "POST":
            sid = new_sid()
            key = session_key(sid)
            pipe = conn.client.pipeline(transaction=True)
            pipe.hset(key, mapping={"hits": 0, "created_by": os.getpid()})
            pipe.expire(key, SESSION_TTL)
            await pipe.execute()
            return session_created(sid)
        found = sid_from_cookie(cookie)
        if found is None:
            return no_session()
        hits = await conn.hit(keys=[session_key(found)], args=[SESSION_TTL])
        return no_session() if hits is None else session_seen(found, int(hits))
    if method == "POST":
        return counter_value(int(await conn.client.incr(COUNTER_KEY)))
    value = await conn.client.get(COUNTER_KEY)
    return counter_value(int(value) if value is not None else 0)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            get_conn()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await _close_conn()
            await send({"type": "lifespan.shutdown.complete"})
            return


def _cookie_header(scope: Scope) -> str | None:
    values = [v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"cookie"]
    return "; ".join(values) if values else None


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """ASGI entry point: lifespan and http; anything else is refused."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        return
    try:
        reply = await _dispatch(scope["method"].upper(), scope["path"] or "/",
                                _cookie_header(scope))
    except redis.RedisError as exc:
        reply = backend_down(exc)
    status, headers, body = reply.encode()
    await send({
        "type": "http.response.start",
        "status": int(status.split(" ", 1)[0]),
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers],
    })
    await send({"type": "http.response.body", "body": body})
