"""--proxy-protocol end to end: raw PROXY v1/v2 headers before HTTP and before TLS, on
every worker class; the client address reaches the app and the access log; a bad header,
none, or a peer not allowed is closed with one log line and never reaches the app."""

from __future__ import annotations

import json
import socket
import ssl
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reclusterd.http.proxyproto import V2_SIGNATURE
from tests.support.http_client import ops_make_cert
from tests.support.process import Server, reclusterd, wait_log

KINDS = [("sync", "wsgi"), ("thread", "wsgi"), ("asyncio", "asgi")]
CORPUS = json.loads((Path(__file__).parents[1] / "data" / "proxyproto" / "gunicorn.json")
                    .read_text())
V1 = b"PROXY TCP4 192.0.2.7 198.51.100.1 4321 443\r\n"
V2 = (V2_SIGNATURE + b"\x21\x21\x00\x24" + bytes(15) + b"\x05" + bytes(15) + b"\x06"
      + struct.pack("!HH", 6000, 443))
GET = b"GET /who HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"


def exchange(port: int, head: bytes, request: bytes = GET,
             tls: bool = False) -> bytes:
    """Send the PROXY bytes, then (over TLS if asked) the request; all the server said."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(head)
        sock: socket.socket = raw
        try:
            if tls:
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                sock = ctx.wrap_socket(raw, server_hostname="localhost")
            sock.sendall(request)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        except (OSError, ssl.SSLError):
            return b""
        return data


def client_of(data: bytes, flavour: str) -> list[Any]:
    assert data.startswith(b"HTTP/1.1 200"), data
    doc = json.loads(data.split(b"\r\n\r\n", 1)[1])
    if flavour == "asgi":
        return [*doc["client"], doc["scheme"]]
    return [doc["REMOTE_ADDR"], int(doc["REMOTE_PORT"]), doc["wsgi.url_scheme"]]


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    got = ops_make_cert(tmp_path_factory.mktemp("cert"))
    if got is None:
        pytest.fail("openssl is needed to make a test certificate")
    return got


def serve(kind: str, flavour: str, *opts: str) -> Server:
    return reclusterd(f"tests.apps.proxied:{flavour}", "-w", "1", "-k", kind,
                      "--proxy-protocol", "--access-logfile", "-", *opts)


@pytest.fixture(params=KINDS, ids=[k for k, _ in KINDS])
def plain(request: pytest.FixtureRequest) -> Iterator[tuple[str, Server]]:
    kind, flavour = request.param
    with serve(kind, flavour) as srv:
        srv.wait_ready()
        yield flavour, srv


def test_v1_v2_local_and_refusals(plain: tuple[str, Server]) -> None:
    flavour, srv = plain
    assert client_of(exchange(srv.port, V1), flavour) == ["192.0.2.7", 4321, "http"]
    assert client_of(exchange(srv.port, V2), flavour) == ["::5", 6000, "http"]
    local = V2_SIGNATURE + b"\x20\x00\x00\x00"        # LOCAL: the real peer stays
    assert client_of(exchange(srv.port, local), flavour)[0] == "127.0.0.1"
    assert exchange(srv.port, b"") == b""                       # no header: closed
    wait_log(srv, "closing the connection from 127.0.0.1: no PROXY protocol header")
    assert exchange(srv.port, b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n") == b""
    wait_log(srv, "bad PROXY v1 port")
    # a header split across writes, with the request in the same segment as its end
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(V1[:9])
        s.sendall(V1[9:] + GET)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert client_of(data, flavour)[:2] == ["192.0.2.7", 4321]


@pytest.mark.parametrize("kind,flavour", KINDS, ids=[k for k, _ in KINDS])
def test_gunicorn_corpus(kind: str, flavour: str) -> None:
    with serve(kind, flavour) as srv:
        srv.wait_ready()
        for case in CORPUS:
            data = exchange(srv.port, bytes.fromhex(case["bytes_hex"]), b"")
            if case["outcome"] == "refused":
                assert data == b"", case["name"]
                continue
            assert data.startswith(b"HTTP/1.1 %d" % case["status"]), (case["name"], data)
            if case["status"] == 200:
                assert client_of(data, flavour)[:2] == case["client"], case["name"]


@pytest.mark.parametrize("kind,flavour", KINDS, ids=[k for k, _ in KINDS])
def test_header_before_tls(kind: str, flavour: str, cert: tuple[str, str]) -> None:
    with serve(kind, flavour, "--certfile", cert[0], "--keyfile", cert[1]) as srv:
        srv.wait_ready()
        assert client_of(exchange(srv.port, V1, tls=True), flavour) == [
            "192.0.2.7", 4321, "https"]
        assert client_of(exchange(srv.port, V2, tls=True), flavour) == ["::5", 6000, "https"]
        assert exchange(srv.port, b"", tls=True) == b""     # a ClientHello is no header
        wait_log(srv, "no PROXY protocol header")


@pytest.mark.parametrize("kind,flavour", KINDS, ids=[k for k, _ in KINDS])
def test_peer_not_allowed(kind: str, flavour: str) -> None:
    with serve(kind, flavour, "--proxy-allow-ips", "10.0.0.0/8") as srv:
        srv.wait_ready()
        assert exchange(srv.port, V1) == b""
        log = wait_log(srv, "closing the connection from 127.0.0.1: not in --proxy-allow-ips")
        assert "GET /who" not in srv.stdout() and '"GET' not in log


@pytest.mark.parametrize("kind,flavour", KINDS, ids=[k for k, _ in KINDS])
def test_stalled_header_is_closed_at_the_deadline_with_one_line(kind: str,
                                                               flavour: str) -> None:
    """A PROXY header that starts and then stalls: closed at --header-timeout, one line
    in the log, nothing reaches the app (as a truncated one that the client closes)."""
    with serve(kind, flavour, "--header-timeout", "1") as srv:
        srv.wait_ready()
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.sendall(V1[:14])
            assert s.recv(100) == b""          # closed by the server, nothing answered
        line = "PROXY header not complete in time"
        wait_log(srv, line)
        assert srv.stderr().count(line) == 1 and "/who" not in srv.stdout()
