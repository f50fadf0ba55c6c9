"""WSGI and ASGI apps for the PROXY protocol, --root-path and Server/Date header tests.

GET /own-headers  -> sets its own `Server: app-server` and `Date: app-date` headers
anything else     -> JSON: who the client is and where the request was routed (WSGI:
                     REMOTE_ADDR, REMOTE_PORT, SCRIPT_NAME, PATH_INFO, scheme; ASGI:
                     client, root_path, path, scheme)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

OWN = [("Server", "app-server"), ("Date", "app-date")]


def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ["PATH_INFO"].endswith("/own-headers"):
        start_response("200 OK", [*OWN, ("Content-Length", "0")])
        return [b""]
    keys = ("REMOTE_ADDR", "REMOTE_PORT", "SCRIPT_NAME", "PATH_INFO", "wsgi.url_scheme")
    body = json.dumps({k: environ.get(k) for k in keys}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]


async def asgi(scope: dict[str, Any], receive: Callable[..., Any],
               send: Callable[..., Any]) -> None:
    if scope["type"] != "http":
        return
    headers = [(b"content-length", b"0")]
    body = b""
    if scope["path"].endswith("/own-headers"):
        headers += [(k.lower().encode(), v.encode()) for k, v in OWN]
    else:
        body = json.dumps({k: scope.get(k) for k in ("client", "root_path", "path",
                                                       "scheme")}).encode()
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
