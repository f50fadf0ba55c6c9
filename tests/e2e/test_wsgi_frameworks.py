"""Real frameworks served unchanged (issue 4): Flask and Django (WSGI), both worker classes."""

from __future__ import annotations

import json
import socket
import textwrap
from pathlib import Path

import pytest

from tests.support.http_client import read_responses
from tests.support.process import reclusterd, wait_log

FLASK_APP = '''
from flask import Flask, request, jsonify, Response, stream_with_context

app = Flask(__name__)

@app.route("/")
def index():
    return "flask ok"

@app.route("/json", methods=["POST"])
def echo_json():
    return jsonify(got=request.get_json(), form=None, args=request.args.to_dict())

@app.route("/form", methods=["POST"])
def form():
    f = request.files["upload"]
    return jsonify(name=request.form["name"], file=f.filename, size=len(f.read()))

@app.route("/stream")
def stream():
    return Response(stream_with_context(f"row {i}\\n" for i in range(3)), mimetype="text/plain")

@app.route("/boom")
def boom():
    raise RuntimeError("flask boom")
'''

DJANGO_APP = '''
import json
from django.conf import settings

settings.configure(
    DEBUG=False, SECRET_KEY="test", ROOT_URLCONF=__name__, ALLOWED_HOSTS=["*"],
    MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
)

import django
django.setup()

from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import path
from django.core.wsgi import get_wsgi_application


def index(request):
    return HttpResponse("django ok")


def echo(request, rest):
    return JsonResponse({"method": request.method, "body": request.body.decode(),
                         "q": request.GET.get("q"), "host": request.get_host(),
                         "path": request.path})


def stream(request):
    return StreamingHttpResponse((f"row {i}\\n" for i in range(3)), content_type="text/plain")


urlpatterns = [path("", index), path("echo/<path:rest>", echo), path("stream", stream)]
application = get_wsgi_application()
'''


def ask(port: int, raw: bytes, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(raw)
        rs, _ = read_responses(s, [method])
    return rs[0].status, rs[0].headers, rs[0].body


@pytest.mark.parametrize("kind", ["thread", "sync"])
def test_flask(tmp_path: Path, kind: str) -> None:
    pytest.importorskip("flask")
    (tmp_path / "flaskapp.py").write_text(textwrap.dedent(FLASK_APP))
    with reclusterd("flaskapp:app", "--workers", "2", "--worker-class", kind,
                    "--chdir", str(tmp_path)) as srv:
        srv.wait_ready()
        assert ask(srv.port, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")[2] == b"flask ok"
        body = b'{"a": [1, 2]}'
        st, _, out = ask(srv.port, b"POST /json?x=1 HTTP/1.1\r\nHost: h\r\nContent-Type: "
                         b"application/json\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body),
                         "POST")
        assert st == 200 and json.loads(out) == {"got": {"a": [1, 2]}, "form": None,
                                                 "args": {"x": "1"}}
        mp = (b"--XX\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nbob\r\n"
              b"--XX\r\nContent-Disposition: form-data; name=\"upload\"; filename=\"f.bin\"\r\n"
              b"Content-Type: application/octet-stream\r\n\r\n" + b"\0" * 5000 + b"\r\n--XX--\r\n")
        st, _, out = ask(srv.port, b"POST /form HTTP/1.1\r\nHost: h\r\nContent-Type: multipart/"
                         b"form-data; boundary=XX\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%b"
                         b"\r\n0\r\n\r\n" % (len(mp), mp), "POST")
        assert st == 200 and json.loads(out) == {"name": "bob", "file": "f.bin", "size": 5000}
        st, hdrs, out = ask(srv.port, b"GET /stream HTTP/1.1\r\nHost: h\r\n\r\n")
        assert out == b"row 0\nrow 1\nrow 2\n"
        assert ask(srv.port, b"GET /boom HTTP/1.1\r\nHost: h\r\n\r\n")[0] == 500
        assert ask(srv.port, b"GET /nope HTTP/1.1\r\nHost: h\r\n\r\n")[0] == 404
        wait_log(srv, "flask boom")


@pytest.mark.parametrize("kind", ["thread", "sync"])
def test_django(tmp_path: Path, kind: str) -> None:
    pytest.importorskip("django")
    (tmp_path / "djangoapp.py").write_text(textwrap.dedent(DJANGO_APP))
    with reclusterd("djangoapp:application", "--workers", "2", "--worker-class", kind,
                    "--chdir", str(tmp_path)) as srv:
        srv.wait_ready()
        assert ask(srv.port, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")[2] == b"django ok"
        st, _, out = ask(srv.port, b"PUT /echo/a%20b?q=%C3%A9 HTTP/1.1\r\nHost: example.org:81"
                         b"\r\nContent-Length: 5\r\n\r\nhello", "PUT")
        assert st == 200
        assert json.loads(out) == {"method": "PUT", "body": "hello", "q": "\u00e9",
                                   "host": "example.org:81", "path": "/echo/a b"}
        st, _, out = ask(srv.port, b"GET /stream HTTP/1.1\r\nHost: h\r\n\r\n")
        assert out == b"row 0\nrow 1\nrow 2\n"
        assert ask(srv.port, b"GET /missing HTTP/1.1\r\nHost: h\r\n\r\n")[0] == 404
