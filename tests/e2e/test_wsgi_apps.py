"""WSGI apps the e2e tests serve (`tests.e2e.test_wsgi_apps:app`); no tests in here.

`app` routes on the first path segment so one server answers every test of a module.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.validate import validator

Start = Callable[..., Any]
Env = dict[str, Any]


def _reply(start: Start, body: bytes, status: str = "200 OK",
           ctype: str = "application/json") -> list[bytes]:
    start(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]


def echo(environ: Env, start: Start) -> list[bytes]:
    """The conformance echo app (see tests/data/conformance/README.md)."""
    inp = environ["wsgi.input"]
    body = b"".join(iter(lambda: inp.read(65536), b""))
    data = {
        "method": environ["REQUEST_METHOD"], "path": environ["PATH_INFO"],
        "query": environ["QUERY_STRING"],
        "headers": {k[5:]: v for k, v in environ.items() if k.startswith("HTTP_")},
        "content_type": environ.get("CONTENT_TYPE"),
        "content_length": environ.get("CONTENT_LENGTH"),
        "body": body.decode("latin-1"),
    }
    return _reply(start, json.dumps(data).encode())


def environ_dump(environ: Env, start: Start) -> list[bytes]:
    out: dict[str, Any] = {k: (v if isinstance(v, (str, bool, int)) else repr(v))
                           for k, v in environ.items()}
    out["wsgi.version"] = list(environ["wsgi.version"])
    return _reply(start, json.dumps(out).encode())


def rss_kb() -> int:
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)


def upload(environ: Env, start: Start) -> list[bytes]:
    """Reads the body in 64 KiB pieces; answers how much and the peak RSS."""
    inp = environ["wsgi.input"]
    total = 0
    peak = rss_kb()
    while True:
        chunk = inp.read(65536)
        if not chunk:
            break
        total += len(chunk)
        if total % (8 << 20) < 65536:
            peak = max(peak, rss_kb())
    return _reply(start, json.dumps({"bytes": total, "peak_rss_kb": max(peak, rss_kb()),
                                     "pid": os.getpid()}).encode())


def lines(environ: Env, start: Start) -> list[bytes]:
    inp = environ["wsgi.input"]
    first = inp.readline()
    limited = inp.readline(3)
    rest = list(inp)
    return _reply(start, json.dumps({"first": first.decode(), "limited": limited.decode(),
                                     "rest": [r.decode() for r in rest]}).encode())


def stream(environ: Env, start: Start) -> Iterator[bytes]:
    start("200 OK", [("Content-Type", "text/plain")])
    for i in range(5):
        yield b"part %d\n" % i


def big(environ: Env, start: Start) -> Iterator[bytes]:
    """N MiB (query), with a Content-Length: for slow readers."""
    n = int(environ["QUERY_STRING"] or "20")
    start("200 OK", [("Content-Type", "application/octet-stream"),
                     ("Content-Length", str(n << 20))])
    block = b"b" * (1 << 20)
    for _ in range(n):
        yield block


def writer(environ: Env, start: Start) -> list[bytes]:
    write = start("200 OK", [("Content-Type", "text/plain")])
    write(b"from write\n")
    return [b"from iterable\n"]


def boom(environ: Env, start: Start) -> list[bytes]:
    raise RuntimeError("boom in the app")


def boom_late(environ: Env, start: Start) -> Iterator[bytes]:
    start("200 OK", [("Content-Type", "text/plain")])
    yield b"first\n"
    raise RuntimeError("boom after the response started")


def bad_header(environ: Env, start: Start) -> list[bytes]:
    start("200 OK", [("X-Evil", "a\r\nSet-Cookie: pwned=1")])
    return [b"never"]


def exc_info_app(environ: Env, start: Start) -> list[bytes]:
    start("200 OK", [("Content-Type", "text/plain")])
    try:
        raise ValueError("changed my mind")
    except ValueError:
        start("503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info())
    return [b"sorry\n"]


class Closing:
    """An iterable whose close() prints a mark to stderr (PEP 3333: close() always called)."""

    def __init__(self, tag: str, fail: bool) -> None:
        self.tag = tag
        self.fail = fail

    def __iter__(self) -> Iterator[bytes]:
        yield b"x"
        if self.fail:
            raise RuntimeError("iteration failed")

    def close(self) -> None:
        print(f"CLOSED {self.tag}", file=sys.stderr, flush=True)


def closing(environ: Env, start: Start) -> Iterable[bytes]:
    tag, _, fail = environ["QUERY_STRING"].partition("&")
    start("200 OK", [("Content-Type", "text/plain")])
    return Closing(tag, fail == "fail")


_FILE = os.path.join(tempfile.gettempdir(), f"reclusterd-test-file-{os.getpid()}")


def file(environ: Env, start: Start) -> Iterable[bytes]:
    data = bytes(range(256)) * 4096            # 1 MiB
    if not os.path.exists(_FILE):
        with open(_FILE, "wb") as out:
            out.write(data)
    f = open(_FILE, "rb")  # noqa: SIM115 - closed by the server via close()
    headers = [("Content-Type", "application/octet-stream")]
    if environ["QUERY_STRING"] != "nolength":
        headers.append(("Content-Length", str(len(data))))
    start("200 OK", headers)
    return environ["wsgi.file_wrapper"](f, 65536)  # type: ignore[no-any-return]


def sleep(environ: Env, start: Start) -> list[bytes]:
    # announced on stderr so a test can wait until the request is in the app
    print(f"app: sleeping {environ['QUERY_STRING']}", file=sys.stderr, flush=True)
    time.sleep(float(environ["QUERY_STRING"] or "1"))
    return _reply(start, b"slept\n", ctype="text/plain")


def pid(environ: Env, start: Start) -> list[bytes]:
    return _reply(start, b"%d %d" % (os.getpid(), threading.get_ident()), ctype="text/plain")


def hello(environ: Env, start: Start) -> list[bytes]:
    return _reply(start, b"Hello, world!\n", ctype="text/plain")


_HOARD: list[bytearray] = []


def grow(environ: Env, start: Start) -> list[bytes]:
    """Allocate (and touch) N MB that stay allocated: drives --max-worker-memory."""
    _HOARD.append(bytearray(b"x" * (int(environ["QUERY_STRING"] or "10") << 20)))
    return _reply(start, b"%d" % rss_kb(), ctype="text/plain")


def post_fork(info: Any) -> None:
    print(f"HOOK post_fork pid={info.pid} gen={info.generation} app={info.cfg.app}",
          file=sys.stderr, flush=True)


def pre_request(worker: Any, environ: Env) -> None:
    print(f"HOOK pre_request {environ['PATH_INFO']}", file=sys.stderr, flush=True)


def post_request(worker: Any, environ: Env, status: int) -> None:
    print(f"HOOK post_request {environ['PATH_INFO']} {status}", file=sys.stderr, flush=True)


async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
    """An ASGI app, to check that sync/thread refuse it with a clear boot error."""


def _validated(environ: Env, start: Start) -> Iterable[bytes]:
    inner = environ["PATH_INFO"][len("/validate"):] or "/"
    environ["PATH_INFO"] = inner
    return ROUTES.get(inner.split("/")[1], hello)(environ, start)


validated = validator(_validated)

ROUTES: dict[str, Callable[[Env, Start], Iterable[bytes]]] = {
    "echo": echo, "environ": environ_dump, "upload": upload, "lines": lines,
    "stream": stream, "write": writer, "boom": boom, "boom_late": boom_late,
    "bad_header": bad_header, "exc_info": exc_info_app, "closing": closing, "file": file,
    "sleep": sleep, "pid": pid, "grow": grow, "big": big, "hello": hello, "validate": validated,
}


def app(environ: Env, start: Start) -> Iterable[bytes]:
    """Route on the first path segment ("/echo/..." -> echo)."""
    return ROUTES.get(environ["PATH_INFO"].split("/")[1], hello)(environ, start)
