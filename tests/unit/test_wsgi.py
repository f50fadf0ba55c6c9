"""The WSGI adapter without a server or a Worker: a socketpair for the connection, a Meter."""

from __future__ import annotations

import select
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reclusterd import config
from reclusterd.meter import Meter
from reclusterd.wsgi.conn import Conn
from reclusterd.wsgi.handler import WSGIHandler
from reclusterd.wsgi.input import Input
from tests.support.process import wait_for


def make(app: Any, *opts: str) -> tuple[WSGIHandler, Meter]:
    cfg = config.load(["x:app", "--workers", "2", *opts], {})
    meter = Meter()
    return WSGIHandler(cfg, app, meter, multithread=True, secure=False), meter


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def run(app: Any, raw: bytes, pair: tuple[socket.socket, socket.socket],
        *opts: str) -> tuple[bytes, bool]:
    """Feed `raw` as the client, serve one request, return (what the client got, keep)."""
    handler, _ = make(app, *opts)
    server, client = pair
    env = {"SERVER_NAME": "s", "SERVER_PORT": "80", "wsgi.url_scheme": "http",
           "SCRIPT_NAME": "", "wsgi.version": (1, 0)}
    conn = handler.new_conn(server, ("10.0.0.1", 1234), env)
    client.sendall(raw)
    conn.read_more(2)
    while not conn.events:
        conn.read_more(2)
    req = conn.events.popleft()
    keep = handler.serve(conn, req)
    client.settimeout(0.5)
    out = b""
    try:
        while chunk := client.recv(65536):
            out += chunk
    except TimeoutError:
        pass
    return out, keep


def test_environ_keys(pair: tuple[socket.socket, socket.socket]) -> None:
    seen: dict[str, Any] = {}

    def app(environ: dict[str, Any], start: Any) -> list[bytes]:
        seen.update(environ)
        start("200 OK", [("Content-Length", "0")])
        return []

    run(app, b"GET /a%2Fb%20c?x=%41 HTTP/1.1\r\nHost: h.example:8080\r\nA-B: 1\r\n"
             b"a-b: 2\r\nX_Y: no\r\nContent-Type: t/x\r\n\r\n", pair)
    assert seen["PATH_INFO"] == "/a/b c" and seen["QUERY_STRING"] == "x=%41"
    assert seen["HTTP_A_B"] == "1,2" and "HTTP_X_Y" not in seen
    assert seen["CONTENT_TYPE"] == "t/x" and "CONTENT_LENGTH" not in seen
    assert (seen["SERVER_NAME"], seen["SERVER_PORT"]) == ("h.example", "8080")
    assert (seen["REMOTE_ADDR"], seen["REMOTE_PORT"]) == ("10.0.0.1", "1234")


def test_input_streaming_reads(pair: tuple[socket.socket, socket.socket]) -> None:
    got: dict[str, Any] = {}

    def app(environ: dict[str, Any], start: Any) -> list[bytes]:
        inp: Input = environ["wsgi.input"]
        got["a"] = inp.read(3)
        got["line"] = inp.readline()
        got["lines"] = inp.readlines()
        got["end"] = inp.read()
        start("200 OK", [])
        return [b"ok"]

    body = b"abcdef\nline2\nline3"
    out, keep = run(app, b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body), pair)
    assert got == {"a": b"abc", "line": b"def\n", "lines": [b"line2\n", b"line3"], "end": b""}
    assert b"transfer-encoding: chunked" in out.lower() and out.endswith(b"2\r\nok\r\n0\r\n\r\n")
    assert keep


def test_exc_info_replaces_headers_before_sending(pair: tuple[socket.socket, socket.socket]
                                                  ) -> None:
    def app(environ: dict[str, Any], start: Any) -> list[bytes]:
        start("200 OK", [("X-A", "1")])
        try:
            raise KeyError("x")
        except KeyError:
            start("500 Oops", [("X-B", "2")], sys.exc_info())
        return [b"err"]

    out, _ = run(app, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", pair)
    assert out.startswith(b"HTTP/1.1 500 Oops\r\n") and b"X-B: 2" in out and b"X-A" not in out


def test_second_start_response_without_exc_info_is_an_error(
        pair: tuple[socket.socket, socket.socket]) -> None:
    def app(environ: dict[str, Any], start: Any) -> list[bytes]:
        start("200 OK", [])
        start("201 Created", [])
        return [b""]

    out, keep = run(app, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", pair)
    assert out.startswith(b"HTTP/1.1 500 ") and not keep


@pytest.mark.parametrize("status", ["200", "OK 200", "2000 x", 200])
def test_bad_status_gives_500(pair: tuple[socket.socket, socket.socket], status: Any) -> None:
    def app(environ: dict[str, Any], start: Any) -> list[bytes]:
        start(status, [])
        return [b"x"]

    out, _ = run(app, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", pair)
    assert out.startswith(b"HTTP/1.1 500 ")


def test_non_bytes_body_gives_500(pair: tuple[socket.socket, socket.socket]) -> None:
    def app(environ: dict[str, Any], start: Any) -> list[str]:
        start("200 OK", [])
        return ["text"]

    out, _ = run(app, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", pair)
    assert out.startswith(b"HTTP/1.1 500 ")


def test_unread_small_body_is_drained_large_closes(pair: tuple[socket.socket, socket.socket]
                                                   ) -> None:
    def app(environ: dict[str, Any], start: Any) -> list[bytes]:
        start("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    _, keep = run(app, b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789",
                  pair)
    assert keep
    a, b = socket.socketpair()
    try:
        out, keep = run(app, b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10000000\r\n\r\n"
                        + b"x" * 1000, (a, b))
        assert not keep and b"connection: close" in out.lower()
    finally:
        a.close()
        b.close()


def test_keep_alive_zero_closes(pair: tuple[socket.socket, socket.socket]) -> None:
    def app(environ: dict[str, Any], start: Any) -> list[bytes]:
        start("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    out, keep = run(app, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", pair, "--keep-alive", "0")
    assert not keep and b"connection: close" in out.lower()


def test_meter_accounting_and_max_requests() -> None:
    recycled: list[str] = []
    meter = Meter(timeout=30, max_requests=3)
    meter.on_recycle = recycled.append
    for _ in range(5):
        meter.finished(meter.started(), 200)
    assert meter.requests == 5 and meter.stats()["s2xx"] == 5
    assert recycled == ["max-requests"]
    t = meter.started()
    meter.in_flight[t] -= 1000
    assert meter.stuck(meter.in_flight[t] + 1000)
    meter.progress(t)
    assert not meter.stuck(meter.in_flight[t] + 1)


def test_waiting_for_the_client_is_not_app_time() -> None:
    """Meter.waiting: a request waiting on its client is never stuck, beats meanwhile,
    and its --timeout clock restarts at the next progress (issue 14 QA (a))."""
    beats: list[float] = []
    meter = Meter(timeout=2)
    meter.on_progress = beats.append
    assert meter.beat == 0.5
    t = meter.started()
    meter.waiting(t)
    assert beats and not meter.stuck(beats[-1] + 1000)
    meter.progress(t)
    assert meter.stuck(meter.in_flight[t] + 3)


def test_a_blocking_wait_pauses_the_clock_and_restarts_it(
        pair: tuple[socket.socket, socket.socket]) -> None:
    """Conn.wait, the one blocking wait for the client: paused (renewed every beat) while
    it lasts, restarted when it ends, also on the deadline."""
    handler, meter = make(lambda e, s: [])
    meter.timeout, meter.beat = 0.05, 0.02
    server, client = pair
    conn = handler.new_conn(server, ("10.0.0.1", 1), {"wsgi.url_scheme": "http"})
    seen: list[bool] = []
    meter.on_progress = lambda now: seen.append(meter.stuck(now + 0.06))

    class Clock:
        beat = 0.02
        token = meter.started()

        def progress(self) -> None:
            meter.progress(self.token)

        def waiting(self) -> None:
            meter.waiting(self.token)

    conn.clock = Clock()
    assert not conn.wait(select.POLLIN, 0.1)
    assert len(seen) >= 4 and not any(seen[:-1]) and seen[-1]


def test_handler_counts_and_calls_hooks(pair: tuple[socket.socket, socket.socket]) -> None:
    seen: list[object] = []
    handler, meter = make(lambda e, s: (s("204 No Content", []), [])[1])
    meter.pre_request = lambda owner, env: seen.append(("pre", env["PATH_INFO"]))
    meter.post_request = lambda owner, env, status: seen.append(("post", status))
    server, client = pair
    conn = handler.new_conn(server, ("10.0.0.1", 1), {"wsgi.url_scheme": "http"})
    client.sendall(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
    while not conn.events:
        conn.read_more(2)
    req = conn.events.popleft()
    assert handler.serve(conn, req)
    assert seen == [("pre", "/x"), ("post", 204)]
    assert meter.requests == 1 and meter.status_counts[2] == 1 and not meter.in_flight


def test_conn_is_conn_type(pair: tuple[socket.socket, socket.socket]) -> None:
    handler, _ = make(lambda e, s: [])
    conn = handler.new_conn(pair[0], ("1.2.3.4", 5), {})
    assert isinstance(conn, Conn) and conn.recv_now() == -1


def test_access_log_prints_response_header_and_environ_atoms(
        pair: tuple[socket.socket, socket.socket], tmp_path: Path) -> None:
    log = tmp_path / "access.log"

    def app(environ: dict[str, Any], start: Any) -> list[bytes]:
        start("200 OK", [("Content-Length", "2"), ("X-Trace", "t1")])
        return [b"ok"]

    run(app, b"GET /p HTTP/1.1\r\nHost: h\r\n\r\n", pair, "--access-logfile", str(log),
        "--access-logformat", "%({x-trace}o)s %({PATH_INFO}e)s %({REMOTE_ADDR}e)s")
    assert wait_for(lambda: log.read_text().strip() if log.exists() else None,
                    timeout=5) == "t1 /p 10.0.0.1"


def test_over_the_limit_a_request_gets_503_and_close_not_the_app(
        pair: tuple[socket.socket, socket.socket]) -> None:
    called: list[str] = []

    def app(environ: dict[str, Any], start: Any) -> list[bytes]:
        called.append(environ["PATH_INFO"])
        start("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    cfg = config.load(["x:app", "--max-worker-memory", "100"], {})
    meter = Meter(max_rss_kb=100 << 10)
    assert meter.memory is not None
    meter.memory.reader = lambda: 101 << 10        # RSS in kB: over the limit
    handler = WSGIHandler(cfg, app, meter, multithread=True, secure=False)
    server, client = pair
    conn = handler.new_conn(server, ("10.0.0.1", 1), {"wsgi.url_scheme": "http"})
    client.sendall(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
    while not conn.events:
        conn.read_more(2)
    assert not handler.serve(conn, conn.events.popleft())
    client.settimeout(2)
    out = client.recv(65536)
    assert out.startswith(b"HTTP/1.1 503 ") and b"connection: close" in out.lower()
    assert not called and meter.status_counts[5] == 1 and not meter.in_flight
