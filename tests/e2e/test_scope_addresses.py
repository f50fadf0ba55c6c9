"""Issue 13, items 7-8: every address key of the WSGI environ / ASGI scope is well-formed
on every listener kind (TCP v4/v6, unix, fd://, TLS), and behind a trusted proxy the
client (address and port) is the forwarded one, never a non-IP value nor the proxy's port.
"""

from __future__ import annotations

import json
import socket
import ssl
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.http_client import ops_make_cert
from tests.support.process import Server, free_port, wait_for

KINDS = [("sync", "wsgi"), ("thread", "wsgi"), ("asyncio", "asgi")]
Addr = tuple[int, Any]      # (family, address)


def fetch(addr: Addr, head: bytes, tls: bool = False) -> tuple[dict[str, Any], int]:
    """GET /env with this request head; (the app's JSON, the client socket's own port)."""
    family, where = addr
    with socket.socket(family, socket.SOCK_STREAM) as raw:
        raw.settimeout(10)
        raw.connect(where)
        own = raw.getsockname()
        sock: socket.socket = raw
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            sock = ctx.wrap_socket(raw, server_hostname="localhost")
        sock.sendall(head)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status, _, rest = data.partition(b"\r\n")
    assert b" 200 " in status, data
    return json.loads(rest.split(b"\r\n\r\n", 1)[1]), own[1] if isinstance(own, tuple) else 0


def get(addr: Addr, tls: bool = False, **headers: str) -> tuple[dict[str, Any], int]:
    lines = "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in headers.items())
    version = "1.1" if headers else "1.0"     # HTTP/1.0 without Host: the listener's name
    extra = "Connection: close\r\n" if headers else ""
    return fetch(addr, f"GET /env HTTP/{version}\r\n{lines}{extra}\r\n".encode(), tls)


@pytest.fixture(scope="module")
def v6() -> bool:
    try:
        free_port("::1")
        return True
    except OSError:
        return False


@pytest.fixture(params=[(k, f, p) for k, f in KINDS for p in ("httptools", "h11")],
                ids=lambda v: f"{v[0]}-{v[2]}")
def listeners(request: pytest.FixtureRequest, tmp_path: Path,
              v6: bool) -> Iterator[tuple[str, dict[str, Addr], Server]]:
    """One server listening on TCP v4, v6, unix and an inherited fd:// socket."""
    kind, flavour, parser = request.param
    unix = str(tmp_path / "s.sock")
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    port4, fd = free_port(), lsock.fileno()
    binds = ["--bind", f"127.0.0.1:{port4}", "--bind", f"unix:{unix}", "--bind", f"fd://{fd}"]
    addrs: dict[str, Addr] = {"v4": (socket.AF_INET, ("127.0.0.1", port4)),
                              "unix": (socket.AF_UNIX, unix),
                              "fd": (socket.AF_INET, lsock.getsockname())}
    if v6:
        port6 = free_port("::1")
        binds += ["--bind", f"[::1]:{port6}"]
        addrs["v6"] = (socket.AF_INET6, ("::1", port6))
    args = [sys.executable, "-m", "reclusterd", f"tests.apps.details:{flavour}", "--workers",
            "1", "--worker-class", kind, "--http", parser, *binds]
    try:
        with Server(args, port=port4, pass_fds=[fd]) as srv:
            lsock.close()
            srv.wait_ready()
            wait_for(lambda: _answers(addrs["unix"]), 15, what="the unix listener")
            yield flavour, addrs, srv
    finally:
        lsock.close()


def _answers(addr: Addr) -> bool:
    try:
        get(addr)
        return True
    except OSError:
        return False


def test_every_listener_kind_gives_well_formed_addresses(
        listeners: tuple[str, dict[str, Addr], Server]) -> None:
    flavour, addrs, _ = listeners
    for name, addr in addrs.items():
        env, own = get(addr)
        if name == "unix":
            path = addr[1]
            if flavour == "asgi":   # ASGI spec: server = [path, None], client = None
                assert (env["server"], env["client"]) == ([path, None], None)
                continue
            # PEP 3333: SERVER_PORT is never empty: the scheme's default port
            assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("localhost", "80")
            assert env["request_uri"] == "http://localhost/env"
            assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("", None)
            continue
        host, port = addr[1][0], addr[1][1]
        if flavour == "asgi":
            assert env["server"] == [host, port] and env["client"] == [host, own]
            continue
        name_ = f"[{host}]" if ":" in host else host     # RFC 3875 §4.1.14
        assert (env["SERVER_NAME"], env["SERVER_PORT"]) == (name_, str(port))
        assert env["request_uri"] == f"http://{name_}:{port}/env"
        assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == (host, str(own))


@pytest.mark.parametrize("host", ["h.example:", "h.example:x", "h.example"])
def test_a_host_without_a_usable_port_gives_the_default_port(
        listeners: tuple[str, dict[str, Addr], Server], host: str) -> None:
    flavour, addrs, _ = listeners
    if flavour == "asgi":
        pytest.skip("ASGI has no SERVER_PORT: scope['server'] is the listener's")
    for addr in (addrs["v4"], addrs["unix"]):
        env, _ = get(addr, Host=host)
        assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("h.example", "80")


FORWARDED = [
    ({"X_Forwarded_For": "10.0.0.5"}, ("10.0.0.5", 0)),
    ({"X_Forwarded_For": "10.0.0.5:5555"}, ("10.0.0.5", 5555)),
    ({"Forwarded": 'for="[2001:db8::1]:4711"'}, ("2001:db8::1", 4711)),
    ({"Forwarded": "for=192.0.2.60;proto=https"}, ("192.0.2.60", 0)),
    ({"X_Forwarded_For": "10.0.0.5", "X_Forwarded_Port": "8443"}, ("10.0.0.5", 0)),
]
NOT_AN_IP = ["not-an-ip", "unknown", "_hidden", "example.com", "1.2.3"]


def _client(flavour: str, env: dict[str, Any]) -> tuple[str, int] | None:
    if flavour == "asgi":
        return tuple(env["client"]) if env["client"] else None  # type: ignore[return-value]
    port = env["REMOTE_PORT"]
    return env["REMOTE_ADDR"], int(port) if port is not None else -1


def test_trusted_proxy_gives_the_forwarded_client_and_port(
        listeners: tuple[str, dict[str, Addr], Server]) -> None:
    flavour, addrs, _ = listeners
    for addr in (addrs["v4"], addrs["unix"]):    # a unix-socket peer is a local proxy
        for headers, client in FORWARDED:
            env, _ = get(addr, Host="a", **headers)
            assert _client(flavour, env) == client, headers
        for value in NOT_AN_IP:
            for headers in ({"X_Forwarded_For": value}, {"Forwarded": f"for={value}"}):
                env, own = get(addr, Host="a", **headers)
                # the client is unknown: the peer that reported it stands in
                peer = ("127.0.0.1", own) if addr is addrs["v4"] else \
                    None if flavour == "asgi" else ("", -1)
                assert _client(flavour, env) == peer, headers


@pytest.mark.parametrize(("kind", "flavour"), KINDS)
def test_tls_listeners_say_https_and_port_443_on_unix(tmp_path: Path, kind: str,
                                                      flavour: str) -> None:
    cert = ops_make_cert(tmp_path)
    if cert is None:
        pytest.skip("openssl CLI not available")
    unix = str(tmp_path / "tls.sock")
    port = free_port()
    args = [sys.executable, "-m", "reclusterd", f"tests.apps.details:{flavour}", "--workers",
            "1", "--worker-class", kind, "--bind", f"127.0.0.1:{port}", "--bind",
            f"unix:{unix}", "--certfile", cert[0], "--keyfile", cert[1]]
    with Server(args, port=port) as srv:
        srv.wait_ready()
        v4: Addr = (socket.AF_INET, ("127.0.0.1", port))
        env, own = wait_for(lambda: _try_tls(v4), 15, what="a TLS answer")
        if flavour == "asgi":
            assert (env["scheme"], env["server"], env["client"]) == \
                ("https", ["127.0.0.1", port], ["127.0.0.1", own])
        else:
            assert env["request_uri"] == f"https://127.0.0.1:{port}/env"
        env, _ = wait_for(lambda: _try_tls((socket.AF_UNIX, unix)), 15, what="unix TLS")
        if flavour == "asgi":
            assert (env["scheme"], env["server"]) == ("https", [unix, None])
        else:
            assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("localhost", "443")
            assert env["request_uri"] == "https://localhost/env"
            env, _ = get((socket.AF_UNIX, unix), tls=True, Host="h.example")
            assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("h.example", "443")


def _try_tls(addr: Addr) -> tuple[dict[str, Any], int] | None:
    try:
        return get(addr, tls=True)
    except OSError:
        return None
