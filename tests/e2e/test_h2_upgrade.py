"""`Upgrade: h2c` (RFC 9113 §3.1 / RFC 7540 §3.2) on the asyncio worker: a trusted
peer's HTTP/1.1 request, body included, is answered 101 and then on stream 1, and the
connection goes on as HTTP/2; untrusted peers, or the mode off, get HTTP/1 as before."""

from __future__ import annotations

import socket

import h2.config
import h2.connection
import h2.events
import pytest

from tests.support.process import Server, reclusterd

FASTAPI = "tests.apps.h2_fastapi:app"


def _upgrade_request(settings: bytes, body: bytes) -> bytes:
    return (b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
            b"HTTP2-Settings: " + settings + b"\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body)


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """(the HTTP/1 head, the bytes after it)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _h2_answers(sock: socket.socket, conn: h2.connection.H2Connection, first: bytes,
                want: set[int]) -> dict[int, tuple[int, bytes]]:
    """Feed `first`, then read until every stream in `want` ended: {sid: (status, body)}."""
    status: dict[int, int] = {}
    body: dict[int, bytes] = {}
    ended: set[int] = set()
    data = first
    while True:
        for e in conn.receive_data(data):
            if isinstance(e, h2.events.ResponseReceived):
                status[e.stream_id] = int(dict(e.headers)[b":status"])
            elif isinstance(e, h2.events.DataReceived):
                body[e.stream_id] = body.get(e.stream_id, b"") + e.data
                conn.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
            elif isinstance(e, h2.events.StreamEnded):
                ended.add(e.stream_id)
        sock.sendall(conn.data_to_send())
        if want <= ended:
            return {sid: (status[sid], body.get(sid, b"")) for sid in want}
        data = sock.recv(65536)
        assert data, "connection closed"


@pytest.fixture(scope="module")
def upgrade_server() -> Server:
    with reclusterd(FASTAPI, "-w", "1", "-k", "asyncio", "--http2-cleartext", "upgrade") as srv:
        srv.wait_ready()
        yield srv


def test_trusted_upgrade_answers_on_stream_1_then_speaks_h2(upgrade_server: Server) -> None:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    settings = conn.initiate_upgrade_connection()
    with socket.create_connection(("127.0.0.1", upgrade_server.port), timeout=15) as sock:
        sock.sendall(_upgrade_request(settings, b"hello h2c"))
        head, rest = _read_head(sock)
        assert head.startswith(b"HTTP/1.1 101 ")
        assert b"upgrade: h2c" in head.lower()
        sock.sendall(conn.data_to_send())        # the client preface follows the 101
        assert _h2_answers(sock, conn, rest, {1}) == {1: (200, b"hello h2c")}
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(":method", "GET"), (":path", "/"), (":scheme", "http"),
                                (":authority", "127.0.0.1")], end_stream=True)
        sock.sendall(conn.data_to_send())
        assert _h2_answers(sock, conn, b"", {sid}) == {sid: (200, b"hello 2 http")}


def test_bodiless_get_upgrade(upgrade_server: Server) -> None:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    settings = conn.initiate_upgrade_connection()
    with socket.create_connection(("127.0.0.1", upgrade_server.port), timeout=15) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                     b"Upgrade: h2c\r\nHTTP2-Settings: " + settings + b"\r\n\r\n")
        head, rest = _read_head(sock)
        assert head.startswith(b"HTTP/1.1 101 ")
        sock.sendall(conn.data_to_send())
        assert _h2_answers(sock, conn, rest, {1}) == {1: (200, b"hello 2 http")}


def _served_as_http1(port: int) -> bytes:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    settings = conn.initiate_upgrade_connection()
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(_upgrade_request(settings, b"plain"))
        head, rest = _read_head(sock)
        while b"plain" not in rest:      # a streamed (chunked) echo
            more = sock.recv(65536)
            assert more
            rest += more
        return head.split(b"\r\n")[0] + b" " + rest


@pytest.mark.parametrize("opts", [
    ("--http2-cleartext", "upgrade", "--forwarded-allow-ips", "10.9.9.9"),   # untrusted
    ("--http2-cleartext", "prior-knowledge"),                                # mode
    ("--http2-cleartext", "upgrade", "--http-protocols", "h1"),              # h2 off
], ids=["untrusted", "prior-knowledge-only", "h1-only"])
def test_upgrade_ignored_is_served_as_http1(opts: tuple[str, ...]) -> None:
    with reclusterd(FASTAPI, "-w", "1", "-k", "asyncio", *opts) as srv:
        srv.wait_ready()
        assert _served_as_http1(srv.port).startswith(b"HTTP/1.1 200 OK ")


@pytest.mark.parametrize("framing", ["oversized", "chunked"])
def test_oversized_or_chunked_upgrade_body_stays_http1(upgrade_server: Server,
                                                       framing: str) -> None:
    """A body larger than one stream window, or of unknown length, is not read ahead:
    the request is served as HTTP/1.1 and the Upgrade ignored."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    settings = conn.initiate_upgrade_connection()
    request = _upgrade_request(settings, b"z" * 70000)
    if framing == "chunked":
        request = _upgrade_request(settings, b"").replace(
            b"Content-Length: 0\r\n", b"Transfer-Encoding: chunked\r\n") + b"3\r\nabc\r\n0\r\n\r\n"
    with socket.create_connection(("127.0.0.1", upgrade_server.port), timeout=15) as sock:
        sock.sendall(request)
        head, _ = _read_head(sock)
        assert head.startswith(b"HTTP/1.1 200 ")


def test_upgrade_waiting_for_100_continue(upgrade_server: Server) -> None:
    """The body is read before the switch: a client that waits for 100 Continue gets it."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    settings = conn.initiate_upgrade_connection()
    head = _upgrade_request(settings, b"later").replace(
        b"\r\n\r\nlater", b"\r\nExpect: 100-continue\r\n\r\n")
    with socket.create_connection(("127.0.0.1", upgrade_server.port), timeout=15) as sock:
        sock.sendall(head)
        interim, rest = _read_head(sock)
        assert interim == b"HTTP/1.1 100 Continue" and rest == b""
        sock.sendall(b"later")
        switched, rest = _read_head(sock)
        assert switched.startswith(b"HTTP/1.1 101 ")
        sock.sendall(conn.data_to_send())
        assert _h2_answers(sock, conn, rest, {1}) == {1: (200, b"later")}


@pytest.mark.parametrize("worker", ["asyncio", "thread"])
def test_upgrade_with_invalid_settings_is_served_as_http1(worker: str) -> None:
    """HTTP2-Settings that decode but break RFC 9113 §6.5.2 (MAX_FRAME_SIZE=0,
    ENABLE_PUSH=2, a window over 2**31-1): no 101, the request is answered as HTTP/1.1
    and the connection stays HTTP/1.1 (it used to close after an error traceback)."""
    app = {"asyncio": "tests.apps.h2_ok:asgi", "thread": "tests.apps.h2_ok:wsgi"}[worker]
    with reclusterd(app, "-w", "1", "-k", worker, "--http2-cleartext", "upgrade") as srv:
        srv.wait_ready()
        with socket.create_connection(("127.0.0.1", srv.port), timeout=15) as sock:
            for value in (b"AAUAAAAA", b"AAIAAAAC", b"AASAAAAA"):
                sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, "
                             b"HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: "
                             + value + b"\r\n\r\n")
                head, rest = _read_head(sock)
                assert head.startswith(b"HTTP/1.1 200 "), (value, head)
                while len(rest) < 2:         # Content-Length: 2, "ok"
                    more = sock.recv(65536)
                    assert more, value
                    rest += more
                assert rest == b"ok", value
