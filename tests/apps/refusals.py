"""One app in both flavours for tests/e2e/test_http_refusals.py.

/        -> 200 "ok" (the body, if any, is left unread)
/body    -> reads the whole body, 200 with its length
/boom    -> raises (the server answers 500)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


def _answer(path: str, body_len: int) -> bytes:
    if path == "/boom":
        raise RuntimeError("boom")
    return str(body_len).encode() if path == "/body" else b"ok"


def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    body = _answer(path, len(environ["wsgi.input"].read()) if path == "/body" else 0)
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


async def asgi(scope: dict[str, Any], receive: Callable[..., Any],
               send: Callable[..., Any]) -> None:
    if scope["type"] != "http":
        return
    n = 0
    if scope["path"] == "/body":
        more = True
        while more:
            msg = await receive()
            n += len(msg.get("body", b""))
            more = msg.get("more_body", False)
    body = _answer(scope["path"], n)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
