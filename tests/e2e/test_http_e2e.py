"""HTTP/1.1 + WSGI end to end: real `python -m reclusterd` processes, raw sockets, h11 client.

Matrix: worker class (sync, thread) x parser (httptools, h11).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator

import pytest

from tests.support.http_client import Resp, read_responses, server_closes
from tests.support.process import Server, reclusterd, wait_for

APP = "tests.e2e.test_wsgi_apps:app"
MATRIX = [(k, p) for k in ("thread", "sync") for p in ("httptools", "h11")]


@pytest.fixture(scope="module", params=MATRIX, ids=[f"{k}-{p}" for k, p in MATRIX])
def srv(request: pytest.FixtureRequest) -> Iterator[Server]:
    kind, parser = request.param
    s = reclusterd(APP, "--workers", "2", "--worker-class", kind, "--http", parser,
                   "--threads", "4", "--timeout", "30")
    try:
        s.wait_ready()
        s.kind = kind  # type: ignore[attr-defined]
        yield s
    finally:
        s.stop()


def kind(srv: Server) -> str:
    return str(srv.kind)  # type: ignore[attr-defined]


def exchange(srv: Server, data: bytes, methods: tuple[str, ...] = ("GET",),
             info: list[int] | None = None) -> tuple[list[Resp], bool]:
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(data)
        return read_responses(s, methods, informational=info)


def get(srv: Server, target: str, extra: bytes = b"", method: str = "GET") -> Resp:
    raw = f"{method} {target} HTTP/1.1\r\nHost: example.com:8080\r\n".encode() + extra + b"\r\n"
    rs, _ = exchange(srv, raw, (method,))
    assert len(rs) == 1, rs
    return rs[0]


def test_get_and_environ(srv: Server) -> None:
    r = get(srv, "/environ/a%20b/%C3%A9?x=1%202&y",
            b"X-A: 1\r\nX-A: 2\r\nX_Bad: smuggled\r\nContent-Type: text/x\r\n")
    assert r.status == 200
    env = json.loads(r.body)
    assert env["PATH_INFO"] == "/environ/a b/\u00c3\u00a9"        # percent-decoded, latin-1
    assert env["QUERY_STRING"] == "x=1%202&y"
    assert env["SCRIPT_NAME"] == ""
    assert env["REQUEST_METHOD"] == "GET"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["HTTP_X_A"] == "1,2"
    assert "HTTP_X_BAD" not in env and not any("BAD" in k for k in env)
    assert env["CONTENT_TYPE"] == "text/x" and "HTTP_CONTENT_TYPE" not in env
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("example.com", "8080")
    assert env["REMOTE_ADDR"] == "127.0.0.1" and env["REMOTE_PORT"].isdigit()
    assert env["wsgi.url_scheme"] == "http" and env["wsgi.version"] == [1, 0]
    assert env["wsgi.input_terminated"] is True and env["wsgi.run_once"] is False
    assert env["wsgi.multithread"] is (kind(srv) == "thread")
    assert env["wsgi.multiprocess"] is True


def test_post_content_length(srv: Server) -> None:
    body = b"a=1&b=" + b"x" * 100_000
    raw = (b"POST /echo?q HTTP/1.1\r\nHost: h\r\nContent-Type: application/x-www-form-urlencoded"
           b"\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
    rs, _ = exchange(srv, raw, ("POST",))
    d = json.loads(rs[0].body)
    assert d["body"].encode("latin-1") == body
    assert d["content_length"] == str(len(body))
    assert d["content_type"] == "application/x-www-form-urlencoded"


def test_chunked_upload_with_trailers(srv: Server) -> None:
    raw = (b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
    rs, _ = exchange(srv, raw, ("POST",))
    d = json.loads(rs[0].body)
    assert d["body"] == "hello world"
    assert d["content_length"] is None
    assert "X_TRAILER" not in d["headers"]


def test_pipelining_in_order(srv: Server) -> None:
    raw = b"".join(b"GET /echo/%d HTTP/1.1\r\nHost: h\r\n\r\n" % i for i in range(3))
    raw += b"POST /echo/3 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
    rs, closed = exchange(srv, raw, ("GET", "GET", "GET", "POST"))
    if kind(srv) == "sync":
        assert len(rs) == 1 and rs[0].headers["connection"] == "close" and closed
        return
    assert [json.loads(r.body)["path"] for r in rs] == [f"/echo/{i}" for i in range(4)]
    assert json.loads(rs[3].body)["body"] == "abc"


def test_head_has_no_body(srv: Server) -> None:
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"HEAD /hello HTTP/1.1\r\nHost: h\r\n\r\nHEAD /stream HTTP/1.1\r\nHost: h\r\n\r\n"
                  b"GET /hello HTTP/1.1\r\nHost: h\r\n\r\n")
        rs, _ = read_responses(s, ("HEAD", "HEAD", "GET"))
    assert rs[0].status == 200 and rs[0].body == b"" and rs[0].headers["content-length"] == "14"
    if kind(srv) == "thread":
        assert rs[1].body == b"" and rs[2].body == b"Hello, world!\n"


def test_http10(srv: Server) -> None:
    rs, closed = exchange(srv, b"GET /stream HTTP/1.0\r\n\r\n")
    assert rs[0].status == 200 and closed
    assert rs[0].body == b"".join(b"part %d\n" % i for i in range(5))
    assert "transfer-encoding" not in rs[0].headers
    rs, closed = exchange(srv, b"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                               b"GET /hello HTTP/1.0\r\n\r\n", ("GET", "GET"))
    if kind(srv) == "thread":
        assert rs[0].headers["connection"] == "keep-alive"
        assert len(rs) == 2 and closed


def test_keep_alive_and_chunked_response(srv: Server) -> None:
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"GET /stream HTTP/1.1\r\nHost: h\r\n\r\n")
        rs, closed = read_responses(s, ("GET",))
        assert rs[0].body.count(b"part") == 5
        if kind(srv) == "sync":
            assert rs[0].headers["connection"] == "close" and server_closes(s)
            return
        assert rs[0].headers["transfer-encoding"] == "chunked" and not closed
        s.sendall(b"GET /write HTTP/1.1\r\nHost: h\r\n\r\n")
        rs, closed = read_responses(s, ("GET",))
        assert rs[0].body == b"from write\nfrom iterable\n" and not closed


def test_expect_100_continue(srv: Server) -> None:
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        s.sendall(b"hello")
        rs, _ = read_responses(s, ("POST",))
        assert json.loads(rs[0].body)["body"] == "hello"
    # The app answers without reading: no 100, a final response, the body never waited for.
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"POST /hello HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        info: list[int] = []
        rs, _ = read_responses(s, ("POST",), informational=info)
        assert rs[0].status == 200 and info == []
        assert rs[0].headers.get("connection") == "close"


def test_large_streaming_upload(srv: Server) -> None:
    total = 200 << 20
    block = os.urandom(1 << 20)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=60) as s:
        s.sendall(b"PUT /upload HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % total)
        for _ in range(total >> 20):
            s.sendall(block)
        rs, _ = read_responses(s, ("PUT",), timeout=60)
    d = json.loads(rs[0].body)
    assert d["bytes"] == total
    assert d["peak_rss_kb"] < 80_000, d          # never buffered: far below 200 MB


def test_app_exceptions(srv: Server) -> None:
    workers = srv.workers()
    r = get(srv, "/boom")
    assert r.status == 500
    assert b"boom" not in r.body  # no traceback to the client
    rs, closed = exchange(srv, b"GET /boom_late HTTP/1.1\r\nHost: h\r\n\r\n")
    assert closed and (not rs or not rs[0].complete)
    raw = b"GET /bad_header HTTP/1.1\r\nHost: h\r\n\r\n"
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(raw)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 500 ") and b"pwned" not in data
    r = get(srv, "/exc_info")
    assert r.status == 503 and r.body == b"sorry\n"
    assert get(srv, "/hello").status == 200
    assert srv.workers() == workers
    log = srv.stderr()
    assert "boom in the app" in log and "Traceback" in log


def test_close_always_called(srv: Server) -> None:
    tag = os.urandom(4).hex()
    assert get(srv, f"/closing?{tag}a").status == 200
    rs, closed = exchange(srv, f"GET /closing?{tag}b&fail HTTP/1.1\r\nHost: h\r\n\r\n".encode())
    assert closed and not rs[0].complete
    wait_for(lambda: f"CLOSED {tag}a" in srv.stderr() and f"CLOSED {tag}b" in srv.stderr(),
             what="close() called for both responses")


def test_file_wrapper(srv: Server) -> None:
    expected = bytes(range(256)) * 4096
    for q in ("", "?nolength"):
        rs, _ = exchange(srv, f"GET /file{q} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
        assert rs[0].status == 200 and rs[0].body == expected
    rs, _ = exchange(srv, b"HEAD /file HTTP/1.1\r\nHost: h\r\n\r\n", ("HEAD",))
    assert rs[0].body == b"" and rs[0].headers["content-length"] == str(len(expected))


def test_readline_and_iteration(srv: Server) -> None:
    body = b"line one\nabcdef\nl3\nl4"
    rs, _ = exchange(srv, b"POST /lines HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%b"
                     % (len(body), body), ("POST",))
    d = json.loads(rs[0].body)
    assert d == {"first": "line one\n", "limited": "abc", "rest": ["def\n", "l3\n", "l4"]}


def test_validator_finds_nothing(srv: Server) -> None:
    cases = (("/validate/echo", "POST", b"data"), ("/validate/stream", "GET", b""),
             ("/validate/write", "GET", b""), ("/validate/hello", "HEAD", b""),
             ("/validate/file", "GET", b""), ("/validate/lines", "POST", b"a\nb"),
             ("/validate/environ", "GET", b""))
    for path, method, body in cases:
        raw = (f"{method} {path} HTTP/1.1\r\nHost: h\r\nContent-Length: {len(body)}\r\n\r\n"
               .encode() + body)
        rs, _ = exchange(srv, raw, (method,))
        assert rs[0].status == 200, (path, rs)
    log = srv.stderr()
    assert "AssertionError" not in log and "WSGIWarning" not in log, log


def test_load_spreads_across_workers(srv: Server) -> None:
    import threading
    pids: set[str] = set()

    def hit() -> None:
        for _ in range(30):
            pids.add(get(srv, "/pid").body.split()[0].decode())

    def spread() -> bool:
        ts = [threading.Thread(target=hit) for _ in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return len(pids) == 2

    wait_for(spread, timeout=20, interval=0, what="requests answered by both workers")


@pytest.mark.parametrize("kind_", ["thread", "sync"])
def test_tls_keep_alive_and_body(tmp_path: object, kind_: str) -> None:
    import ssl
    from pathlib import Path

    from tests.support.http_client import ops_make_cert
    cert = ops_make_cert(Path(str(tmp_path)))
    if cert is None:
        pytest.skip("openssl CLI not available")
    with reclusterd(APP, "--workers", "1", "--worker-class", kind_, "--certfile", cert[0],
                    "--keyfile", cert[1]) as srv:
        srv.wait_ready()
        ctx = ssl.create_default_context(cafile=cert[0])
        ctx.check_hostname = False
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as raw, \
                ctx.wrap_socket(raw, server_hostname="localhost") as s:
            body = b"x" * 300_000
            s.sendall(b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%b"
                      % (len(body), body) + b"GET /environ HTTP/1.1\r\nHost: h\r\n\r\n")
            rs, _ = read_responses(s, ["POST", "GET"])
        assert json.loads(rs[0].body)["body"] == body.decode()
        if kind_ == "thread":
            assert len(rs) == 2 and json.loads(rs[1].body)["wsgi.url_scheme"] == "https"
