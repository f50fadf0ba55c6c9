"""A Flask app for the HTTP/2 client tests, the answers of tests/apps/h2_fastapi.py: the
same answers are expected over HTTP/1.1 and HTTP/2."""

from collections.abc import Iterator

from flask import Flask, Response, request

app = Flask(__name__)


@app.get("/")
def hello() -> Response:
    version = request.environ["SERVER_PROTOCOL"].removeprefix("HTTP/")
    return Response(f"hello {version} {request.scheme}", mimetype="text/plain")


@app.post("/echo")
def echo() -> Response:
    stream = request.stream          # the generator runs outside the request context

    def body() -> Iterator[bytes]:
        while chunk := stream.read(65536):
            yield chunk
    return Response(body(), mimetype="application/octet-stream")


@app.get("/big")
def big() -> Response:
    n = int(request.args.get("n", "1000000"))
    return Response((b"x" * min(65536, n - i) for i in range(0, n, 65536)),
                    mimetype="application/octet-stream")
