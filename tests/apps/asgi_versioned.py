"""An ASGI app answering "VERSION PID" (lifespan completed); the template
`tests.support.apps.write_app(..., template="asgi_versioned")` copies into a test's
directory with another VERSION, for the HUP and recycle drain tests.
"""

import os

VERSION = "v1"
# EXTRA: write_app puts import-time code here (e.g. a raise)


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            m = await receive()
            await send({"type": m["type"] + ".complete"})
            if m["type"] == "lifespan.shutdown":
                return
    body = f"{VERSION} {os.getpid()}\n".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
