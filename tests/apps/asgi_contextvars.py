"""An ASGI app for the contextvars tests: answers the value it found, then sets it to the path
(which must not leak into the next request); /suspend sleeps first, /after goes on after its
response.
"""

import asyncio
import contextvars

VAR = contextvars.ContextVar("var", default="unset")

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"]
    if asyncio.current_task() is None:
        raise RuntimeError("no current task")
    seen = VAR.get()
    VAR.set(path)                       # must not leak into the next request
    if path == "/suspend":
        await asyncio.sleep(0.01)       # suspends before the response: runs as a task
    body = seen.encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
    if path == "/after":
        await asyncio.sleep(0.05)       # goes on after its response is complete
        VAR.set("late")
