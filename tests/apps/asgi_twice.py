"""An ASGI app that fails after http.response.start and before any body; /twice sends the start
twice first.
"""

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    start = {"type": "http.response.start", "status": 200, "headers": []}
    await send(start)
    if scope["path"] == "/twice":
        await send(start)
    raise RuntimeError("after start, before any body")
