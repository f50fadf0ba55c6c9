"""An ASGI WebSocket echo app for the RFC 6455 tests: appends "connect PATH" and "disconnect
CODE PATH" to the file named by $WS_MARKS; plain HTTP answers "plain http".
"""

import os

MARK = os.environ["WS_MARKS"]

def mark(s):
    with open(MARK, "a") as f:
        f.write(s + "\n")

async def app(scope, receive, send):
    if scope["type"] != "websocket":
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"plain http"})
        return
    m = await receive()
    mark("connect " + scope["path"])
    await send({"type": "websocket.accept"})
    while True:
        m = await receive()
        if m["type"] == "websocket.disconnect":
            mark(f"disconnect {m['code']} {scope['path']}")
            return
        out = {k: m[k] for k in ("text", "bytes") if m.get(k) is not None}
        try:
            await send({"type": "websocket.send", **out})
        except OSError:      # failed meanwhile: websocket.disconnect is next in receive()
            pass
