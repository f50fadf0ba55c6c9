"""Bench apps: the same scenarios as a WSGI app and an ASGI app, dispatched by path.

Every server in the comparison runs these two callables, so the numbers compare
servers, not frameworks. Kept dependency-free and cheap so the app is not the
bottleneck:

    /hello   12-byte text/plain
    /json    a small dict encoded with json.dumps on every request
    /big     64 KiB body (pre-built bytes)
    /post    reads the request body, answers its length (wrk/post.lua sends 16 KiB)
    /form    reads a JSON body, answers it back with a field added (locust)
    /sleep   10 ms of I/O wait (time.sleep in WSGI, asyncio.sleep in ASGI)
    /stream  chunked response: 8 chunks of 1 KiB, no Content-Length (locust)

Run with the working directory set to loadtests/: `apps:wsgi_app`, `apps:asgi_app`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

HELLO = b"Hello world!"
BIG = b"x" * 65536
CHUNK = b"y" * 1024
SLEEP_S = 0.010
PAYLOAD: dict[str, Any] = {"message": "Hello, world!", "id": 42, "tags": ["a", "b", "c"],
                           "ok": True, "ratio": 0.5}

_TEXT = "text/plain"
_JSON = "application/json"


def _json_body() -> bytes:
    return json.dumps(PAYLOAD).encode()


def _form_answer(body: bytes) -> tuple[str, bytes]:
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        return "400 Bad Request", b'{"error": "invalid json"}'
    if not isinstance(data, dict):
        return "400 Bad Request", b'{"error": "expected an object"}'
    data["received"] = True
    return "200 OK", json.dumps(data).encode()


# ---------------------------------------------------------------- WSGI

StartResponse = Callable[..., Any]


def _read_wsgi_body(environ: dict[str, Any]) -> bytes:
    length = environ.get("CONTENT_LENGTH") or ""
    stream = environ["wsgi.input"]
    if length.isdigit():
        return bytes(stream.read(int(length)))
    return bytes(stream.read())


def _wsgi_stream() -> Iterable[bytes]:
    for _ in range(8):
        yield CHUNK


def wsgi_app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """PEP 3333 app serving every bench scenario."""
    path = environ.get("PATH_INFO", "/")
    status = "200 OK"
    ctype = _TEXT
    if path == "/hello" or path == "/":
        body = HELLO
    elif path == "/json":
        body, ctype = _json_body(), _JSON
    elif path == "/big":
        body = BIG
    elif path == "/post":
        body = str(len(_read_wsgi_body(environ))).encode()
    elif path == "/form":
        status, body = _form_answer(_read_wsgi_body(environ))
        ctype = _JSON
    elif path == "/sleep":
        time.sleep(SLEEP_S)
        body = HELLO
    elif path == "/stream":
        start_response(status, [("Content-Type", _TEXT)])
        return _wsgi_stream()
    else:
        status, body = "404 Not Found", b"not found"
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]


# ---------------------------------------------------------------- ASGI

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_HDR_TEXT = [(b"content-type", b"text/plain")]
_HDR_JSON = [(b"content-type", b"application/json")]


async def _read_asgi_body(receive: Receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(parts)


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]],
                body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": headers + [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def asgi_app(scope: Scope, receive: Receive, send: Send) -> None:
    """ASGI 3 app serving every bench scenario (plus lifespan)."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/hello" or path == "/":
        await _send(send, 200, _HDR_TEXT, HELLO)
    elif path == "/json":
        await _send(send, 200, _HDR_JSON, _json_body())
    elif path == "/big":
        await _send(send, 200, _HDR_TEXT, BIG)
    elif path == "/post":
        body = await _read_asgi_body(receive)
        await _send(send, 200, _HDR_TEXT, str(len(body)).encode())
    elif path == "/form":
        status, answer = _form_answer(await _read_asgi_body(receive))
        await _send(send, int(status[:3]), _HDR_JSON, answer)
    elif path == "/sleep":
        await asyncio.sleep(SLEEP_S)
        await _send(send, 200, _HDR_TEXT, HELLO)
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": _HDR_TEXT})
        for _ in range(8):
            await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    else:
        await _send(send, 404, _HDR_TEXT, b"not found")
