"""The ASGI app for tests/e2e/test_asgi_*.py: HTTP routes, lifespan markers, websocket.

Lifespan startup fails when $ASGI_FAIL_STARTUP is set or `fail_startup` exists in the cwd;
with $ASGI_MARKERS set, "startup PID", "shutdown PID", "sleeping PID" and
"wsdisconnect CODE PID" lines are appended to that file.
HTTP: /scope* (the scope as JSON), /echo (body back, X-Chunks), /stream, /sleep (0.5 s),
/error, /error-after-start, /listheaders, /noresponse, /badmsg, else "Hello, world!".
WebSocket: /reject closes before accepting; else echo, "close" -> close 4001 "bye".
"""
import asyncio
import json
import os

MARK = os.environ.get("ASGI_MARKERS")

def mark(s):
    if MARK:
        with open(MARK, "a") as f:
            f.write(f"{s} {os.getpid()}\n")

async def lifespan(scope, receive, send):
    while True:
        m = await receive()
        if m["type"] == "lifespan.startup":
            if os.environ.get("ASGI_FAIL_STARTUP") or os.path.exists("fail_startup"):
                await send({"type": "lifespan.startup.failed", "message": "db unreachable"})
                return
            scope["state"]["started_by"] = os.getpid()
            mark("startup")
            await send({"type": "lifespan.startup.complete"})
        elif m["type"] == "lifespan.shutdown":
            mark("shutdown")
            await send({"type": "lifespan.shutdown.complete"})
            return

async def ws(scope, receive, send):
    await receive()
    if scope["path"] == "/reject":
        await send({"type": "websocket.close"})
        return
    subs = scope["subprotocols"]
    await send({"type": "websocket.accept", "subprotocol": subs[0] if subs else None})
    while True:
        m = await receive()
        if m["type"] == "websocket.disconnect":
            mark(f"wsdisconnect {m['code']}")
            return
        if m.get("text") == "close":
            await send({"type": "websocket.close", "code": 4001, "reason": "bye"})
            return
        if m.get("text") is not None:
            await send({"type": "websocket.send", "text": m["text"]})
        else:
            await send({"type": "websocket.send", "bytes": m["bytes"]})

async def body_of(receive):
    chunks = []
    while True:
        m = await receive()
        assert m["type"] == "http.request", m
        chunks.append(m["body"])
        if not m.get("more_body"):
            return b"".join(chunks), len(chunks)

async def app(scope, receive, send):
    t = scope["type"]
    if t == "lifespan":
        return await lifespan(scope, receive, send)
    if t == "websocket":
        return await ws(scope, receive, send)
    path = scope["path"]
    headers = [(b"content-type", b"text/plain")]
    if path.startswith("/scope"):
        s = {k: v for k, v in scope.items() if k != "headers"}
        s["headers"] = [[k.decode(), v.decode()] for k, v in scope["headers"]]
        s = {k: (v.decode("latin-1") if isinstance(v, bytes) else v) for k, v in s.items()}
        body = json.dumps(s).encode()
    elif path == "/echo":
        data, n = await body_of(receive)
        headers.append((b"x-chunks", str(n).encode()))
        body = data
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for i in range(5):
            await send({"type": "http.response.body", "body": b"part%d\n" % i, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    elif path == "/sleep":
        mark("sleeping")
        await asyncio.sleep(0.5)
        body = b"slept"
    elif path == "/error":
        raise RuntimeError("boom")
    elif path == "/error-after-start":
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("boom after start")
    elif path == "/listheaders":
        await send({"type": "http.response.start", "status": 201,
                    "headers": [[b"x-list", b"yes"], [b"content-length", b"2"]]})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    elif path == "/noresponse":
        return
    elif path == "/badmsg":
        await send({"type": "http.response.body", "body": b"x"})
        return
    else:
        body = b"Hello, world!"
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
