"""Leaking apps for the --max-worker-memory tests (tests/e2e/test_worker_memory.py).

`GET /?N` keeps N MB (touched, so resident) for the life of the process and answers the
worker's pid; `GET /grow?N` answers first and grows by N MB 0.3 s later, so no request
end ever sees it (only the heartbeat does). `app` is WSGI, `asgi_app` the same in ASGI.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

_leak: list[bytes] = []


def _grow(mb: int) -> None:
    _leak.append(b"g" * (mb << 20))


def _handle(path: str, query: str) -> bytes:
    mb = int(query or "5")
    if path == "/grow":
        threading.Timer(0.3, _grow, (mb,)).start()
    else:
        _leak.append(b"x" * (mb << 20))
    return str(os.getpid()).encode()


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    body = _handle(environ["PATH_INFO"], environ["QUERY_STRING"])
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


async def asgi_app(scope: dict[str, Any], receive: Callable[..., Any],
                   send: Callable[..., Any]) -> None:
    if scope["type"] != "http":
        return
    body = _handle(scope["path"], scope["query_string"].decode())
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
