"""ASGI over the asyncio worker, HTTP side: scope, bodies, pipelining, HEAD, errors, limits.

Every test runs under both parsers (--http httptools and h11).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.apps import ASGI_ROUTES
from tests.support.http_client import read_responses, server_closes
from tests.support.process import Server, reclusterd, wait_log

PARSERS = ["httptools", "h11"]


@pytest.fixture(scope="module", params=PARSERS)
def srv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
        ) -> Iterator[Server]:
    d: Path = tmp_path_factory.mktemp("asgi")
    s = reclusterd(ASGI_ROUTES, "--workers", "1", "--http", request.param, "--chdir", str(d))
    try:
        s.wait_ready()
        yield s
    finally:
        s.stop()


def conn(srv: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", srv.port), timeout=10)


def exchange(srv: Server, data: bytes, methods: list[str]) -> tuple[list, bool]:  # type: ignore[type-arg]
    with conn(srv) as s:
        s.sendall(data)
        return read_responses(s, methods)


def test_get_and_scope(srv: Server) -> None:
    (r,), _ = exchange(srv, b"GET /scope/caf%C3%A9%20x?a=1&b=%20 HTTP/1.1\r\nHost: h\r\n"
                            b"X-Custom: Value\r\n\r\n", ["GET"])
    assert r.status == 200
    scope = json.loads(r.body)
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/scope/café x"
    assert scope["raw_path"] == "/scope/caf%C3%A9%20x"
    assert scope["query_string"] == "a=1&b=%20"
    assert scope["root_path"] == ""
    assert ["x-custom", "Value"] in scope["headers"] and ["host", "h"] in scope["headers"]
    assert scope["client"][0] == "127.0.0.1" and isinstance(scope["client"][1], int)
    assert scope["server"] == ["127.0.0.1", srv.port]
    assert "started_by" in scope["state"]          # lifespan state copied into the scope


def test_post_content_length(srv: Server) -> None:
    (r,), _ = exchange(srv, b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n"
                            b"hello world", ["POST"])
    assert (r.status, r.body) == (200, b"hello world")


def test_post_chunked(srv: Server) -> None:
    (r,), _ = exchange(srv, b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", ["POST"])
    assert (r.status, r.body) == (200, b"hello world")


def test_large_body_streams(srv: Server) -> None:
    body = bytes(range(256)) * 8192          # 2 MiB
    with conn(srv) as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % len(body))
        s.sendall(body)
        (r,), _ = read_responses(s, ["POST"], timeout=30)
    assert r.status == 200 and r.body == body
    assert int(r.headers["x-chunks"]) > 1     # more_body streaming, not one buffer


def test_pipelined_in_order(srv: Server) -> None:
    data = (b"GET /scope/1 HTTP/1.1\r\nHost: h\r\n\r\n"
            b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
            b"GET /stream HTTP/1.1\r\nHost: h\r\n\r\n"
            b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n"
            b"GET /scope/5 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    rs, closed = exchange(srv, data, ["GET", "POST", "GET", "HEAD", "GET"])
    assert [r.status for r in rs] == [200] * 5
    assert json.loads(rs[0].body)["path"] == "/scope/1"
    assert rs[1].body == b"abc"
    assert rs[2].body == b"".join(b"part%d\n" % i for i in range(5))
    assert rs[3].body == b"" and rs[3].headers["content-length"] == "13"
    assert json.loads(rs[4].body)["path"] == "/scope/5"
    assert closed


def test_keep_alive_reuses_connection(srv: Server) -> None:
    with conn(srv) as s:
        clients = []
        for _ in range(3):
            s.sendall(b"GET /scope HTTP/1.1\r\nHost: h\r\n\r\n")
            (r,), closed = read_responses(s, ["GET"])
            assert r.status == 200 and not closed
            clients.append(tuple(json.loads(r.body)["client"]))
        assert len(set(clients)) == 1


def test_streaming_response_chunked(srv: Server) -> None:
    (r,), _ = exchange(srv, b"GET /stream HTTP/1.1\r\nHost: h\r\n\r\n", ["GET"])
    assert r.headers.get("transfer-encoding") == "chunked"
    assert r.body == b"part0\npart1\npart2\npart3\npart4\n"


def test_http10(srv: Server) -> None:
    (r,), closed = exchange(srv, b"GET /stream HTTP/1.0\r\n\r\n", ["GET"])
    assert r.status == 200 and r.body.startswith(b"part0") and closed


def test_expect_100_continue(srv: Server) -> None:
    with conn(srv) as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        s.sendall(b"ping")
        (r,), _ = read_responses(s, ["POST"])
    assert r.body == b"ping"


@pytest.mark.parametrize("path", ["/error", "/noresponse", "/badmsg"])
def test_app_error_before_start_is_500(srv: Server, path: str) -> None:
    (r,), closed = exchange(srv, b"GET %s HTTP/1.1\r\nHost: h\r\n\r\n" % path.encode(), ["GET"])
    assert r.status == 500 and closed
    wait_log(srv, f"(GET {path})")  # logged with the request


def test_app_error_after_start_closes(srv: Server) -> None:
    (r,), closed = exchange(srv, b"GET /error-after-start HTTP/1.1\r\nHost: h\r\n\r\n", ["GET"])
    assert r.status == 200 and not r.complete and closed
    assert b"partial" in r.body


def test_bad_request_400_and_close(srv: Server) -> None:
    with conn(srv) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1x\r\n\r\n")
        (r,), closed = read_responses(s, ["GET"])
        assert r.status == 400
        assert closed or server_closes(s)


def test_server_still_answers(srv: Server) -> None:
    (r,), _ = exchange(srv, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", ["GET"])
    assert r.body == b"Hello, world!"


def test_unread_small_body_keeps_connection(srv: Server) -> None:
    body = b"z" * 10000
    with conn(srv) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s"
                  b"GET /scope/next HTTP/1.1\r\nHost: h\r\n\r\n" % (len(body), body))
        rs, _ = read_responses(s, ["POST", "GET"])
    assert [r.status for r in rs] == [200, 200]
    assert json.loads(rs[1].body)["path"] == "/scope/next"


def test_unread_large_body_answers_then_closes(srv: Server) -> None:
    with conn(srv) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 50000000\r\n\r\n")
        s.sendall(b"x" * 1_000_000)
        (r,), closed = read_responses(s, ["POST"])
        assert r.status == 200 and r.body == b"Hello, world!"
        assert closed or server_closes(s, 5)


def test_forwarded_headers_from_trusted_peer(srv: Server) -> None:
    (r,), _ = exchange(srv, b"GET /scope HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.1.2.3\r\n"
                            b"X-Forwarded-Proto: https\r\n\r\n", ["GET"])
    scope = json.loads(r.body)
    assert scope["client"][0] == "10.1.2.3" and scope["scheme"] == "https"


def test_header_pairs_as_lists(srv: Server) -> None:
    (r,), _ = exchange(srv, b"GET /listheaders HTTP/1.1\r\nHost: h\r\n\r\n", ["GET"])
    assert (r.status, r.headers["x-list"], r.body) == (201, "yes", b"ok")


@pytest.mark.parametrize("path", ["/twice", "/raise"])
def test_error_after_start_before_body_is_500(tmp_path: Path, path: str) -> None:
    """The head is held back until the first body piece: nothing was sent, so 500 + close."""
    with reclusterd("tests.apps.asgi_twice:app", "--workers", "1", "--chdir", str(tmp_path)) as s:
        s.wait_ready()
        with conn(s) as c:
            c.sendall(f"GET {path} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
            (r,), closed = read_responses(c, ["GET"])
            assert r.status == 500
            assert closed or r.headers.get("connection") == "close"
        wait_log(s, "Traceback")
