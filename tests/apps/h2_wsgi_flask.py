"""A Flask app (plus a few raw WSGI paths) for the HTTP/2 tests on the thread worker:
the same answers are expected over HTTP/1 and HTTP/2."""

import json
import os
import sys
import tempfile
import threading
import time

from flask import Flask, Response, request

flask_app = Flask(__name__)
_BARRIER = threading.Barrier(20, timeout=10)        # /together: 20 calls at once
_FILE = os.path.join(tempfile.mkdtemp(prefix="h2flask-"), "data.bin")
with open(_FILE, "wb") as f:
    f.write(bytes(range(256)) * 1000)


@flask_app.get("/")
def hello() -> str:
    return f"hello {request.environ['SERVER_PROTOCOL']} {request.scheme}"


@flask_app.post("/echo")
def echo() -> Response:
    stream = request.stream

    def body():  # type: ignore[no-untyped-def]
        while True:
            chunk = stream.read(10000)
            if not chunk:
                return
            yield chunk
    return Response(body(), mimetype="application/octet-stream")


@flask_app.get("/big")
def big() -> Response:
    n = int(request.args.get("n", "1000000"))

    def body():  # type: ignore[no-untyped-def]
        for i in range(0, n, 65536):
            yield b"x" * min(65536, n - i)
    return Response(body(), mimetype="application/octet-stream")


@flask_app.get("/env")
def env() -> Response:
    e = request.environ
    keys = ("SERVER_PROTOCOL", "wsgi.url_scheme", "REMOTE_ADDR", "HTTP_X_OK", "HTTP_HOST")
    out = {k: e.get(k) for k in keys}
    out["underscore"] = any("UNDER" in k for k in e)
    return Response(json.dumps(out), mimetype="application/json")


@flask_app.get("/together")
def together() -> str:
    _BARRIER.wait()         # BrokenBarrierError (a 500) unless 20 calls run at once
    return "met"


def app(environ, start_response):  # type: ignore[no-untyped-def]
    """Raw WSGI for what Flask does not show: write(), file_wrapper, resets, drains."""
    path = environ["PATH_INFO"]
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        write(b"then ")
        return [b"returned"]
    if path == "/file":
        f = open(_FILE, "rb")  # noqa: SIM115 - closed by the server (file_wrapper)
        start_response("200 OK", [("Content-Length", str(os.path.getsize(_FILE)))])
        return environ["wsgi.file_wrapper"](f)
    if path == "/wait":         # writes until the client resets the stream
        write = start_response("200 OK", [])
        try:
            while True:
                write(b"x" * 1000)
                time.sleep(0.02)
        except OSError:
            print("write failed after reset", environ["SERVER_PROTOCOL"], file=sys.stderr,
                  flush=True)
        return []
    if path == "/slow":         # started before a drain, answered after it
        print("slow started", file=sys.stderr, flush=True)
        time.sleep(2.0)
        start_response("200 OK", [])
        return [b"2"]
    return flask_app(environ, start_response)
