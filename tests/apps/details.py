"""WSGI and ASGI apps for the environ/scope, framing and client-gone tests (issue 13, 7-11).

GET /env                     -> JSON: the request's address keys (WSGI environ / ASGI scope)
GET /bad/{over,short,body}   -> the app breaks its own framing: 3 bytes over Content-Length,
                                3 bytes short of it, or content on the status in ?status=
                                (204, 304); ?split sends the head before the body. The
                                error the server raises into the app is printed to stderr
                                as "details: app saw <ExceptionName>" and re-raised.
GET /stream                  -> ASGI: one body part, then await receive(); prints what
                                receive() returned and "details: finally ran". WSGI: an
                                endless body; "details: finally ran" once it is closed
POST /upload                 -> WSGI: reads the body; an OSError becomes a RuntimeError
                                (as frameworks do); prints "details: finally ran"
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.util import request_uri

_ENV_KEYS = ("SERVER_NAME", "SERVER_PORT", "REMOTE_ADDR", "REMOTE_PORT", "HTTP_HOST",
             "wsgi.url_scheme")


def _say(text: str) -> None:
    print(f"details: {text}", file=sys.stderr, flush=True)


def _bad(kind: str, query: str) -> tuple[int, bytes, bytes]:
    """(status, declared Content-Length, body) for one framing violation."""
    if kind == "over":
        return 200, b"3", b"abcdef"
    if kind == "short":
        return 200, b"10", b"abc"
    status = int(query.split("status=", 1)[1].split("&", 1)[0]) if "status=" in query else 204
    return status, b"", b"content"


def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path, query = environ["PATH_INFO"], environ["QUERY_STRING"]
    if path.startswith("/bad/"):
        status, length, body = _bad(path[5:], query)
        headers = [("Content-Length", length.decode())] if length else []
        write = start_response(f"{status} X", headers)
        try:
            if "split" in query:
                write(body[:1])
                write(body[1:])
            else:
                write(body)
        except Exception as exc:
            _say(f"app saw {type(exc).__name__}")
            raise
        return []
    if path == "/upload":       # a framework turning the client's absence into its error
        try:
            environ["wsgi.input"].read()
        except OSError as exc:
            raise RuntimeError("the upload broke off") from exc
        finally:
            _say("finally ran")
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _forever()
    env = {k: environ.get(k) for k in _ENV_KEYS}
    env["request_uri"] = request_uri(environ)
    data = json.dumps(env).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(data)))])
    return [data]


def _forever() -> Iterable[bytes]:
    try:
        while True:
            yield b"x" * 65536
    finally:
        _say("finally ran")


async def asgi(scope: dict[str, Any], receive: Callable[..., Any],
               send: Callable[..., Any]) -> None:
    if scope["type"] != "http":
        return
    path, query = scope["path"], scope["query_string"].decode()
    if path.startswith("/bad/"):
        status, length, body = _bad(path[5:], query)
        headers = [(b"content-length", length)] if length else []
        await send({"type": "http.response.start", "status": status, "headers": headers})
        try:
            if "split" in query:
                await send({"type": "http.response.body", "body": body[:1], "more_body": True})
            await send({"type": "http.response.body",
                        "body": body[1:] if "split" in query else body})
        except Exception as exc:
            _say(f"app saw {type(exc).__name__}")
            raise
        return
    if path == "/stream":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        try:
            await send({"type": "http.response.body", "body": b"first\n", "more_body": True})
            while True:
                msg = await receive()
                _say(f"receive gave {msg['type']}")
                if msg["type"] == "http.disconnect":
                    return
        finally:
            _say("finally ran")
    server, client = scope.get("server"), scope.get("client")
    data = json.dumps({"server": server, "client": client,
                       "scheme": scope["scheme"]}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})
