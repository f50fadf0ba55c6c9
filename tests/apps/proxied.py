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


def flask_app() -> Any:
    """A Flask app: /link answers the URL url_for builds for /target (the mount prefix
    must be in it)."""
    from flask import Flask, url_for

    app = Flask(__name__)

    @app.route("/link")
    def link() -> str:
        return url_for("target")

    @app.route("/target")
    def target() -> str:
        return "target"

    return app


def starlette_app() -> Any:
    """Starlette with a mounted sub-app: /sub/where answers the route's own path, the
    root_path it saw and the URL url_for builds."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Mount, Route

    async def where(request: Request) -> JSONResponse:
        return JSONResponse({"root_path": request.scope["root_path"],
                             "url": str(request.url_for("where"))})

    return Starlette(routes=[Mount("/sub", routes=[Route("/where", where, name="where")])])


flask = flask_app()
starlette = starlette_app()
