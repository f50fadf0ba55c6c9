"""A raw ASGI app for the HTTP/2 tests: trailers, disconnects, a slow answer."""

import asyncio
import sys


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/trailers":
        ok = "http.response.trailers" in scope.get("extensions", {})
        await send({"type": "http.response.start", "status": 200, "trailers": ok,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"body"})
        if ok:
            await send({"type": "http.response.trailers",
                        "headers": [(b"x-checksum", b"abc")]})
        return
    if path == "/wait":      # answers nothing until the client resets the stream
        while (await receive())["type"] != "http.disconnect":
            pass
        print("disconnected", scope["http_version"], file=sys.stderr, flush=True)
        return
    if path == "/slow":      # started before a drain, answered after it
        print("slow started", file=sys.stderr, flush=True)
        await asyncio.sleep(float(scope["query_string"] or b"1.0"))
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": scope["http_version"].encode()})
