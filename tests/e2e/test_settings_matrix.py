"""Every timeout/limit setting means the same on every worker class and both parsers.

sync, thread and asyncio x httptools and h11; each combination gets four servers
(three shared by the tests of that combination): one with short timeouts and small
limits, one with `--keep-alive 0 --header-timeout 0 --worker-connections 2`, one with the
defaults (unread request bodies), and one that is stopped with TERM to see
--graceful-timeout. Expected: the same status, the same
`Connection` header and the same "socket closes / stays open" everywhere; the only
documented difference is the sync worker, which answers one request per connection
(always `Connection: close`) and serves one connection at a time (so
--worker-connections does not apply to it).
"""

from __future__ import annotations

import select
import signal
import socket
from collections.abc import Iterator

import psutil
import pytest

from tests.support.http_client import server_closes
from tests.support.process import Server, reclusterd, wait_for

KINDS = [(k, p) for k in ("sync", "thread", "asyncio") for p in ("httptools", "h11")]
APPS = {"sync": "tests.apps.matrix:wsgi", "thread": "tests.apps.matrix:wsgi",
        "asyncio": "tests.apps.matrix:asgi"}
GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
SHORT = ["--keep-alive", "1", "--header-timeout", "1", "--limit-request-line", "100",
         "--limit-request-fields", "5", "--limit-request-field-size", "100",
         "--limit-request-body", "1000"]
OFF = ["--keep-alive", "0", "--header-timeout", "0", "--worker-connections", "2"]


def start(kind: str, parser: str, *opts: str) -> Server:
    return reclusterd(APPS[kind], "--workers", "1", "--worker-class", kind, "--http", parser,
                      "--lifespan", "off", "--threads", "4", *opts).wait_ready()


@pytest.fixture(scope="module", params=KINDS, ids=[f"{k}-{p}" for k, p in KINDS])
def combo(request: pytest.FixtureRequest) -> Iterator[tuple[str, Server, Server]]:
    kind, parser = request.param
    with start(kind, parser, *SHORT) as short, start(kind, parser, *OFF) as off:
        yield kind, short, off


@pytest.fixture(scope="module", params=KINDS, ids=[f"{k}-{p}" for k, p in KINDS])
def roomy(request: pytest.FixtureRequest) -> Iterator[tuple[str, Server]]:
    """The defaults (keep-alive 5 s, no body limit)."""
    kind, parser = request.param
    with start(kind, parser) as srv:
        yield kind, srv


def connect(srv: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", srv.port), timeout=10)


def responses(sock: socket.socket, n: int,
              timeout: float = 10.0) -> list[tuple[int, dict[str, str], bytes]]:
    """Read `n` responses with Content-Length bodies (pipelined ones may arrive in one
    segment): [(status, lower-case headers, body)]."""
    sock.settimeout(timeout)
    buf = b""
    out: list[tuple[int, dict[str, str], bytes]] = []
    while len(out) < n:
        while b"\r\n\r\n" not in buf:
            data = sock.recv(65536)
            assert data, f"closed before a response: {buf!r}"
            buf += data
        head, _, buf = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip()
                   for k, _, v in (x.partition(":") for x in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(buf) < length:
            data = sock.recv(65536)
            assert data, "closed inside the body"
            buf += data
        out.append((int(lines[0].split()[1]), headers, buf[:length]))
        buf = buf[length:]
    return out


def response(sock: socket.socket, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Read one response with a Content-Length body: (status, lower-case headers, body)."""
    return responses(sock, 1, timeout)[0]


def stays_open(sock: socket.socket, seconds: float) -> bool:
    """Nothing arrives and the socket stays open for `seconds` (a deadline, not a sleep)."""
    ready, _, _ = select.select([sock], [], [], seconds)
    return not ready


def exchange(srv: Server, raw: bytes) -> tuple[int, dict[str, str], bool]:
    """One request on a new connection: (status, headers, the server closed after it)."""
    with connect(srv) as s:
        s.sendall(raw)
        status, headers, _ = response(s)
        return status, headers, server_closes(s)


# -- keep-alive --------------------------------------------------------------------------

def test_keep_alive_serves_several_requests_then_closes_when_idle(
        combo: tuple[str, Server, Server]) -> None:
    kind, short, _ = combo
    with connect(short) as s:
        for _ in range(2 if kind != "sync" else 1):
            s.sendall(GET)
            status, headers, body = response(s)
            assert (status, body) == (200, b"ok")
        if kind == "sync":
            assert headers.get("connection") == "close" and server_closes(s)
            return
        assert headers.get("connection") != "close"
        assert server_closes(s, timeout=10), "idle past --keep-alive 1: closed"


def test_keep_alive_zero_says_close_and_closes(combo: tuple[str, Server, Server]) -> None:
    _, _, off = combo
    status, headers, closed = exchange(off, GET)
    assert status == 200 and headers.get("connection") == "close" and closed


# -- header timeout ----------------------------------------------------------------------

def test_slow_head_gets_408_and_close(combo: tuple[str, Server, Server]) -> None:
    _, short, _ = combo
    with connect(short) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        status, headers, _ = response(s)
        assert status == 408 and headers.get("connection") == "close"
        assert server_closes(s)


def test_header_timeout_zero_is_off(combo: tuple[str, Server, Server]) -> None:
    _, _, off = combo
    with connect(off) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        assert stays_open(s, 1.5), "no 408 and no close: the header timeout is off"
        s.sendall(b"\r\n")
        status, headers, _ = response(s)
        assert status == 200 and headers.get("connection") == "close"


# -- request bodies ----------------------------------------------------------------------

def test_body_that_stops_arriving_gets_408_and_close(
        combo: tuple[str, Server, Server]) -> None:
    """RFC 9110 §15.5.9: no body byte for the idle limit (--header-timeout) and no response
    started: 408, Connection: close, closed."""
    _, short, _ = combo
    with connect(short) as s:
        s.sendall(b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"b" * 10)
        status, headers, _ = response(s)
        assert status == 408 and headers.get("connection") == "close"
        assert server_closes(s)


AFTER = b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n"


def test_small_unread_body_is_skipped_and_the_connection_kept(
        roomy: tuple[str, Server]) -> None:
    kind, srv = roomy
    with connect(srv) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"b" * 100
                  + AFTER)
        if kind == "sync":
            status, headers, _ = response(s)
            assert status == 200 and headers.get("connection") == "close"
            assert server_closes(s)
            return
        (status, headers, _), (status2, _, body) = responses(s, 2)
        assert status == 200 and headers.get("connection") != "close"
        assert (status2, body) == (200, b"ok")


@pytest.mark.parametrize("raw", [
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"b" * 100000,
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n0\r\n\r\n",
], ids=["over-drain-limit", "chunked"])
def test_unread_body_too_big_or_of_unknown_size_closes(
        roomy: tuple[str, Server], raw: bytes) -> None:
    """The app did not read the body: a rest over 64 KiB, or chunked (size unknown until
    read), is not skipped: the response says close and the pipelined GET is not served, on
    every worker class (whatever the transport happened to buffer already)."""
    _, srv = roomy
    with connect(srv) as s:
        s.sendall(raw + AFTER)
        status, headers, _ = response(s)
        assert status == 200 and headers.get("connection") == "close"
        assert server_closes(s)


def test_sync_warns_when_header_timeout_is_off(combo: tuple[str, Server, Server]) -> None:
    """--header-timeout 0 is off everywhere; on sync one silent client then holds the worker,
    so that worker says so at start."""
    kind, _, off = combo
    if kind == "sync":      # logged by the worker before it reports ready; the log may lag
        wait_for(lambda: "--header-timeout 0 with -k sync" in off.stderr(), timeout=10,
                 what="the sync worker's warning")
    else:
        assert "--header-timeout 0" not in off.stderr()


# -- limits ------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "want"), [
    (b"GET /" + b"a" * 200 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(6))
     + b"\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 200 + b"\r\n\r\n", 431),
    (b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n" + b"b" * 2000, 413),
], ids=["request-line", "request-fields", "request-field-size", "request-body"])
def test_limits(combo: tuple[str, Server, Server], raw: bytes, want: int) -> None:
    _, short, _ = combo
    status, headers, closed = exchange(short, raw)
    assert status == want and headers.get("connection") == "close" and closed


def test_body_within_limit_is_served(combo: tuple[str, Server, Server]) -> None:
    kind, short, _ = combo
    status, headers, closed = exchange(
        short, b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 900\r\n\r\n" + b"b" * 900)
    assert status == 200 and closed    # at once (sync) or after --keep-alive 1 idle
    assert (headers.get("connection") == "close") == (kind == "sync")


# -- worker connections ------------------------------------------------------------------

def test_worker_connections_over_the_limit_get_503(combo: tuple[str, Server, Server]) -> None:
    kind, _, off = combo
    if kind == "sync":
        pytest.skip("sync serves one connection at a time (README): no connection limit")
    held: list[socket.socket] = []
    try:
        def refused() -> bool:
            s = connect(off)
            held.append(s)
            s.sendall(b"GET / HTTP/1.1\r\n")    # a head that never ends: stays open
            return not stays_open(s, 0.3)
        wait_for(refused, timeout=10, interval=0, what="a connection over the limit")
        assert len(held) <= 3, "the 503 comes at the third connection at the latest"
        status, headers, _ = response(held[-1])
        assert status == 503 and headers.get("connection") == "close"
        assert server_closes(held[-1])
    finally:
        for s in held:
            s.close()
    # once they are gone, the worker answers again
    wait_for(lambda: exchange(off, GET)[0] == 200, timeout=10, what="a 200 again")


def holds_no_connection(srv: Server) -> bool:
    """No process of the server has a connection open on its port (the readiness probe's
    and earlier tests' are closed and forgotten), so the next ones are counted from 0."""
    root = psutil.Process(srv.pid)
    for proc in (root, *root.children(recursive=True)):
        try:
            conns = proc.net_connections(kind="tcp")
        except psutil.Error:
            continue
        if any(c.status != psutil.CONN_LISTEN and c.laddr and c.laddr.port == srv.port
               for c in conns):
            return False
    return True


def test_worker_connections_limit_is_exact(combo: tuple[str, Server, Server]) -> None:
    """--worker-connections 2: connections 1 and 2 are served, the third gets the 503.

    The kernel hands connections to accept() in the order they arrived, so however the
    worker's reads interleave, the third is accepted while the first two are open."""
    kind, _, off = combo
    if kind == "sync":
        pytest.skip("sync serves one connection at a time (README): no connection limit")
    wait_for(lambda: holds_no_connection(off), timeout=10, what="no connection open")
    held = [connect(off) for _ in range(3)]
    try:
        for s in held:
            s.sendall(b"GET / HTTP/1.1\r\n")    # a head that has not ended: stays open
        status, headers, _ = response(held[2])
        assert status == 503 and headers.get("connection") == "close"
        assert server_closes(held[2])
        for s in held[:2]:
            s.sendall(b"Host: x\r\n\r\n")
            status, headers, body = response(s)
            assert (status, body) == (200, b"ok")
    finally:
        for s in held:
            s.close()


# -- HTTP/1.0 ----------------------------------------------------------------------------

def test_http10_closes_by_default(combo: tuple[str, Server, Server]) -> None:
    _, short, _ = combo
    status, headers, closed = exchange(short, b"GET / HTTP/1.0\r\n\r\n")
    assert status == 200 and headers.get("connection") == "close" and closed


def test_http10_keep_alive_is_honoured(combo: tuple[str, Server, Server]) -> None:
    kind, short, _ = combo
    request = b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    with connect(short) as s:
        s.sendall(request)
        status, headers, body = response(s)
        assert (status, body) == (200, b"ok")
        if kind == "sync":      # one request per connection (README)
            assert headers.get("connection") == "close" and server_closes(s)
            return
        assert headers.get("connection", "").lower() == "keep-alive"
        s.sendall(request)
        status, headers, body = response(s)
        assert (status, body) == (200, b"ok")


# -- graceful timeout --------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "parser"), KINDS, ids=[f"{k}-{p}" for k, p in KINDS])
def test_graceful_timeout_finishes_short_requests_and_cuts_long_ones(
        kind: str, parser: str) -> None:
    with start(kind, parser, "--graceful-timeout", "2") as srv:
        long = connect(srv)
        long.sendall(b"GET /sleep?30 HTTP/1.1\r\nHost: x\r\n\r\n")
        short = None
        if kind != "sync":      # sync is busy with the long one: one connection at a time
            short = connect(srv)
            short.sendall(b"GET /sleep?0.5 HTTP/1.1\r\nHost: x\r\n\r\n")
        started = 1 if short is None else 2
        wait_for(lambda: srv.stderr().count("matrix: sleeping") == started, timeout=10,
                 what="the requests to reach the app")
        srv.signal(signal.SIGTERM)
        if short is not None:
            status, headers, body = response(short)
            assert (status, body) == (200, b"slept") and headers.get("connection") == "close"
            short.close()
        assert server_closes(long, timeout=15), "cut at --graceful-timeout"
        long.close()
        assert srv.wait_exit(15) == 0
