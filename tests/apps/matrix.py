"""One app in both flavours for tests/e2e/test_settings_matrix.py.

GET /            -> 200 "ok"
GET /sleep?S     -> prints "matrix: sleeping S" to stderr, sleeps S seconds, 200 "slept"
POST /body       -> reads the whole body, 200 with its length
GET /boom        -> raises (the server answers 500)
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any


def _started(query: str) -> float:
    print(f"matrix: sleeping {query}", file=sys.stderr, flush=True)
    return float(query or 0)


def _answer(path: str, query: str, body_len: int) -> tuple[str, bytes]:
    if path == "/boom":
        raise RuntimeError("boom")
    if path == "/sleep":
        return "200 OK", b"slept"
    if path == "/body":
        return "200 OK", str(body_len).encode()
    return "200 OK", b"ok"


def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path, query = environ["PATH_INFO"], environ["QUERY_STRING"]
    if path == "/sleep":
        time.sleep(_started(query))
    n = len(environ["wsgi.input"].read()) if path == "/body" else 0
    status, body = _answer(path, query, n)
    start_response(status, [("Content-Type", "text/plain"),
                            ("Content-Length", str(len(body)))])
    return [body]


async def asgi(scope: dict[str, Any], receive: Callable[..., Any],
               send: Callable[..., Any]) -> None:
    if scope["type"] != "http":
        return
    path, query = scope["path"], scope["query_string"].decode()
    if path == "/sleep":
        await asyncio.sleep(_started(query))
    n = 0
    if path == "/body":
        more = True
        while more:
            msg = await receive()
            n += len(msg.get("body", b""))
            more = msg.get("more_body", False)
    _, body = _answer(path, query, n)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
