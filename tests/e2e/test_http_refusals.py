"""What the server answers by itself (issue 13 items 1-6, 12), on every worker class and
both parsers: bytes that cannot begin a request, targets no URI holds, CONNECT, an Upgrade
that is not taken up, errors to HEAD, fixed error texts, and `Connection: close` before
every close. Raw bytes over real sockets; the app is tests/apps/matrix.py."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from http import HTTPStatus

import pytest

from tests.support.http_client import read_responses, server_closes
from tests.support.process import Server, reclusterd, wait_log

H = b"Host: example.com\r\n"
COMBOS = [("sync", "httptools"), ("sync", "h11"), ("thread", "httptools"),
          ("thread", "h11"), ("asyncio", "httptools"), ("asyncio", "h11")]


@pytest.fixture(scope="module", params=COMBOS, ids=[f"{k}-{p}" for k, p in COMBOS])
def srv(request: pytest.FixtureRequest) -> Iterator[Server]:
    kind, parser = request.param
    app = "tests.apps.matrix:" + ("asgi" if kind == "asyncio" else "wsgi")
    # a long header deadline: an early answer cannot be the 408 of a timeout
    s = reclusterd(app, "--workers", "1", "--worker-class", kind, "--http", parser,
                   "--header-timeout", "60", "--limit-request-body", "100",
                   "--log-level", "info")
    s.kind = kind  # type: ignore[attr-defined]
    try:
        yield s.wait_ready()
    finally:
        s.stop()


def _exchange(port: int, data: bytes, close_write: bool = False) -> bytes:
    """Send `data` (keeping the connection open unless `close_write`), read to EOF."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        if close_write:
            s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            try:
                got = s.recv(65536)
            except ConnectionResetError:
                break
            if not got:
                break
            out += got
        return out


def _refused(raw: bytes, status: int, head: bool = False) -> None:
    """One error response that says close, its body the fixed phrase (none for HEAD)."""
    assert raw.startswith(b"HTTP/1.1 %d " % status), raw
    top, _, body = raw.partition(b"\r\n\r\n")
    lines = [ln.lower() for ln in top.split(b"\r\n")[1:]]
    assert b"connection: close" in lines, raw
    phrase = HTTPStatus(status).phrase.encode() + b"\n"
    assert b"content-length: %d" % len(phrase) in lines, raw
    assert body == (b"" if head else phrase), raw


# -- item 1: bytes that cannot begin a request: answered at once, not at the deadline ------
EARLY = [
    (b"\x00\x00\x00", 400),
    (b"   GET / HTTP/1.1", 400),
    (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", 400),   # a TLS ClientHello
    (b"\r\n\tGET", 400),
    (b"GET\t/", 400),
    (b"G(T /", 400),
    (b"GET /a\x01", 400),
    (b"GET /\xc3\xa9", 400),
    (b"GET  /", 400),
    (b"GET / HTTX", 400),
    (b"GET / HTTP/1.1 ", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\n\x00", 400),
    (b"TOOLONGFORAMETHOD", 501),
    (b"BREW ", 501),
    (b"CONNECT ", 501),
]


@pytest.mark.parametrize("data,status", EARLY, ids=[repr(d[:12]) for d, _ in EARLY])
def test_impossible_start_answered_at_once(srv: Server, data: bytes, status: int) -> None:
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(data)
        rs, closed = read_responses(s, ["GET"])
        assert rs and rs[0].status == status, rs
        assert rs[0].headers.get("connection") == "close"
        assert closed or server_closes(s)


def test_tls_on_plain_port_logged_once_per_connection(srv: Server) -> None:
    hello = b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 40
    for _ in range(2):
        _refused(_exchange(srv.port, hello), 400)
    wait_log(srv, "TLS handshake on a plain HTTP port", count=2)


# -- item 2: octets no request-target holds --------------------------------------------------
@pytest.mark.parametrize("target", [b"/x#frag?b=2", b"/x?b=2#f", b"/#", b'/"q"', b"/<a>",
                                    b"http://example.com/p#f"])
def test_target_octets_refused(srv: Server, target: bytes) -> None:
    _refused(_exchange(srv.port, b"GET " + target + b" HTTP/1.1\r\n" + H + b"\r\n"), 400)


def test_browser_octets_accepted(srv: Server) -> None:
    raw = _exchange(srv.port, b"GET /a[1]|^{x}?q[]=1&r={y}|`\\ HTTP/1.1\r\n" + H
                    + b"Connection: close\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 200 ") and raw.endswith(b"ok"), raw


# -- item 3: CONNECT and the forms the server does not serve ----------------------------------
@pytest.mark.parametrize("line", [b"CONNECT victim.example:443 HTTP/1.1",
                                  b"CONNECT / HTTP/1.1", b"CONNECT [::1]:22 HTTP/1.0"])
def test_connect_is_501_and_nothing_after_is_read(srv: Server, line: bytes) -> None:
    after = b"GET / HTTP/1.1\r\n" + H + b"\r\n"      # a tunnel's bytes: never a request
    raw = _exchange(srv.port, line + b"\r\nHost: victim.example:443\r\n\r\n" + after)
    _refused(raw, 501)


@pytest.mark.parametrize("line", [b"GET example.com:443 HTTP/1.1", b"POST * HTTP/1.1",
                                  b"HEAD * HTTP/1.1"])
def test_forms_for_other_methods_refused(srv: Server, line: bytes) -> None:
    _refused(_exchange(srv.port, line + b"\r\n" + H + b"\r\n"), 400, line.startswith(b"HEAD"))


# -- item 4: an Upgrade the server does not take up is ignored (RFC 9110 §7.8) ---------------
UPGRADES = [
    (b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
     b"HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n"
     b"Content-Length: 5\r\n\r\nhello", b"5"),
    (b"Connection: upgrade\r\nUpgrade: websocket\r\nContent-Length: 3\r\n\r\nabc", b"3"),
    (b"Connection: upgrade\r\nUpgrade: foo\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"4\r\nabcd\r\n0\r\nX-T: 1\r\n\r\n", b"4"),
]


@pytest.mark.parametrize("fields,want", UPGRADES, ids=["h2c", "websocket-post", "chunked"])
def test_upgrade_with_body_served(srv: Server, fields: bytes, want: bytes) -> None:
    req = b"POST /body HTTP/1.1\r\n" + H + fields
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(req + b"GET / HTTP/1.1\r\n" + H + b"\r\n")
        rs, _ = read_responses(s, ["POST", "GET"])
    if srv.kind == "asyncio" and b"websocket" in fields:  # type: ignore[attr-defined]
        # The asyncio worker does switch to WebSocket, so this is a failed handshake:
        # RFC 6455 §4.2.1 wants a GET, else 400 (with the version it speaks) and close.
        assert rs[0].status == 400 and rs[0].headers["sec-websocket-version"] == "13", rs
        return
    assert rs[0].status == 200 and rs[0].body == want, rs
    if srv.kind != "sync":  # type: ignore[attr-defined]
        assert len(rs) == 2 and rs[1].body == b"ok", "the connection goes on as HTTP/1.1"


# -- item 5: no response to HEAD has content, whoever made it --------------------------------
HEADS = [
    (b"HEAD / HTTP/1.1\r\n\r\n", 400),                                     # no Host
    (b"HEAD /#x HTTP/1.1\r\n" + H + b"\r\n", 400),
    (b"HEAD /" + b"a" * 9000 + b" HTTP/1.1\r\n" + H + b"\r\n", 414),
    (b"HEAD / HTTP/1.1\r\n" + H + b"X: " + b"v" * 9000 + b"\r\n\r\n", 431),
    (b"HEAD / HTTP/1.1\r\n" + H + b"Content-Length: 1000\r\n\r\n", 413),
    (b"HEAD / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n", 501),
    (b"HEAD / HTTP/2.0\r\n" + H + b"\r\n", 505),
    (b"HEAD /boom HTTP/1.1\r\n" + H + b"\r\n", 500),
    (b"HEAD /body HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
]


@pytest.mark.parametrize("data,status", HEADS, ids=[str(s) for _, s in HEADS])
def test_head_errors_have_no_body(srv: Server, data: bytes, status: int) -> None:
    _refused(_exchange(srv.port, data, close_write=True), status, head=True)


def test_head_timeout_has_no_body() -> None:
    s = reclusterd("tests.apps.matrix:wsgi", "--workers", "1", "--header-timeout", "1")
    try:
        s.wait_ready()
        _refused(_exchange(s.port, b"HEAD / HTTP/1.1\r\n"), 408, head=True)
        _refused(_exchange(s.port, b"GET / HTTP/1.1\r\n"), 408)
    finally:
        s.stop()


# -- item 6: error bodies are fixed texts, never the client's bytes -------------------------
@pytest.mark.parametrize("bad", [b"Evil: evil\x00", b"Evil: \x7f", b"Ev il: x", b" fold",
                                 b"X: a\rb", b"\xff\xfe: x"])
def test_error_bodies_never_echo_the_client(srv: Server, bad: bytes) -> None:
    raw = _exchange(srv.port, b"GET / HTTP/1.1\r\nHost: a\r\n" + bad + b"\r\n\r\n")
    _refused(raw, 400)


# -- item 12: every response after which the server closes says so --------------------------
@pytest.mark.parametrize("fields", [
    b"Content-Length: 10\r\nExpect: 100-continue\r\n\r\n",          # body held back
    b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",            # a rest of unknown size
], ids=["expect", "chunked"])
def test_early_answer_says_close(srv: Server, fields: bytes) -> None:
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"POST / HTTP/1.1\r\n" + H + fields)
        rs, closed = read_responses(s, ["POST"])
        assert rs and rs[0].status == 200 and rs[0].body == b"ok", rs
        assert rs[0].headers.get("connection") == "close", rs
        assert closed or server_closes(s)

