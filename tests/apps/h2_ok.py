"""The app of the HTTP/2 conformance and attack tests, as WSGI (`wsgi`) and ASGI
(`asgi`): every request is answered 200 "ok" after its body is read; /big?n=N answers N
octets (a response the client can hold up with flow control)."""

from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs

CHUNK = 16384


def _size(query: str) -> int:
    return int(parse_qs(query).get("n", ["200000"])[0])


def wsgi(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    while environ["wsgi.input"].read(65536):
        pass
    if environ["PATH_INFO"] == "/big":
        n = _size(environ.get("QUERY_STRING", ""))
        start_response("200 OK", [("Content-Length", str(n))])
        return (b"x" * min(CHUNK, n - i) for i in range(0, n, CHUNK))
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]


async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    if scope["path"] == "/big":
        n = _size(scope["query_string"].decode())
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"%d" % n)]})
        for i in range(0, n, CHUNK):
            await send({"type": "http.response.body", "body": b"x" * min(CHUNK, n - i),
                        "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})
