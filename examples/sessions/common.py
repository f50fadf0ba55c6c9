"""What the three session apps share: routes, cookies, JSON replies, Redis key names.

The apps differ only in where state lives (Redis, or a dict inside one worker
process), so everything else is written once here and the comparison between
them stays fair. This module imports no Redis client: the naive app must run
without one.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from typing import Any, Protocol

COOKIE_NAME = "sid"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
SESSION_TTL = int(os.environ.get("SESSION_TTL", "1800"))
KEY_PREFIX = "reclusterd:example:"
COUNTER_KEY = KEY_PREFIX + "counter"

# GET /session: bump the hit count of a session that still exists and refresh its TTL,
# in one atomic step. A plain HINCRBY would silently recreate an expired session.
HIT_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local hits = redis.call('HINCRBY', KEYS[1], 'hits', 1)
redis.call('EXPIRE', KEYS[1], ARGV[1])
return hits
"""

ROUTES: dict[str, tuple[str, ...]] = {"/session": ("GET", "POST"), "/counter": ("GET", "POST")}
_SID_RE = re.compile(r"[0-9a-f]{32}\Z")

StartResponse = Callable[..., Any]


def redis_url() -> str:
    """The Redis address, from REDIS_URL (read when a client is made, not at import)."""
    return os.environ.get("REDIS_URL", DEFAULT_REDIS_URL)


def session_key(sid: str) -> str:
    """Redis key of the hash that holds one session."""
    return KEY_PREFIX + "session:" + sid


def new_sid() -> str:
    """A fresh unguessable session id (128 random bits, hex)."""
    return secrets.token_hex(16)


def sid_from_cookie(header: str | None) -> str | None:
    """The session id from a Cookie header, or None when absent or malformed."""
    if not header:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        return None
    morsel = jar.get(COOKIE_NAME)
    if morsel is None or not _SID_RE.match(morsel.value):
        return None
    return morsel.value


@dataclass(frozen=True, slots=True)
class Reply:
    """One JSON response, independent of WSGI or ASGI."""

    status: int
    data: dict[str, object]
    headers: tuple[tuple[str, str], ...] = ()

    def encode(self) -> tuple[str, list[tuple[str, str]], bytes]:
        """Status line text, headers (with Content-Length and the worker pid), body bytes."""
        body = json.dumps(self.data, separators=(",", ":")).encode() + b"\n"
        status = HTTPStatus(self.status)
        headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("X-Worker-Pid", str(os.getpid())),
            *self.headers,
        ]
        return f"{status.value} {status.phrase}", headers, body


def route_error(method: str, path: str) -> Reply | None:
    """404 for unknown paths, 405 (with Allow) for a known path and wrong method."""
    allowed = ROUTES.get(path)
    if allowed is None:
        return Reply(404, {"error": "not found"})
    if method not in allowed:
        return Reply(405, {"error": "method not allowed"}, (("Allow", ", ".join(allowed)),))
    return None


def session_created(sid: str) -> Reply:
    """POST /session: the new id in the body and in an HttpOnly cookie."""
    cookie = f"{COOKIE_NAME}={sid}; Path=/; HttpOnly; SameSite=Lax; Max-Age={SESSION_TTL}"
    return Reply(200, {"sid": sid}, (("Set-Cookie", cookie),))


def session_seen(sid: str, hits: int) -> Reply:
    """GET /session: the hit count this request produced and which worker served it."""
    return Reply(200, {"sid": sid, "hits": hits, "pid": os.getpid()})


def no_session() -> Reply:
    """401 when the cookie is missing, malformed, or names no live session."""
    return Reply(401, {"error": "no valid session", "pid": os.getpid()})


def counter_value(value: int) -> Reply:
    """GET/POST /counter answer."""
    return Reply(200, {"value": value})


def backend_down(exc: BaseException) -> Reply:
    """503 when the shared store cannot be reached: say so rather than fake the state."""
    return Reply(503, {"error": "session store unavailable", "detail": type(exc).__name__})


class Store(Protocol):
    """Where sessions and the counter live (blocking API, for WSGI)."""

    def create_session(self, sid: str) -> None: ...
    def hit_session(self, sid: str) -> int | None: ...
    def incr_counter(self) -> int: ...
    def get_counter(self) -> int: ...


def handle(store: Store, method: str, path: str, cookie: str | None) -> Reply:
    """Dispatch one request against a blocking store."""
    error = route_error(method, path)
    if error is not None:
        return error
    if path == "/session":
        if method == "POST":
            sid = new_sid()
            store.create_session(sid)
            return session_created(sid)
        sid_or_none = sid_from_cookie(cookie)
        hits = store.hit_session(sid_or_none) if sid_or_none else None
        if sid_or_none is None or hits is None:
            return no_session()
        return session_seen(sid_or_none, hits)
    value = store.incr_counter() if method == "POST" else store.get_counter()
    return counter_value(value)


def make_wsgi_app(
    get_store: Callable[[], Store], backend_errors: tuple[type[BaseException], ...] = ()
) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """A plain WSGI callable over `get_store` (called per request, so it can be per process)."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        path = str(environ.get("PATH_INFO", "")) or "/"
        try:
            reply = handle(get_store(), method, path, environ.get("HTTP_COOKIE"))
        except backend_errors as exc:
            reply = backend_down(exc)
        status, headers, body = reply.encode()
        start_response(status, headers)
        return [body]

    return app
