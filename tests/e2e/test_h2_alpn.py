"""ALPN on real TLS handshakes: which protocol each worker class negotiates."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.support.process import reclusterd


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, trustme.CA]]:
    ca = trustme.CA()
    d = tmp_path_factory.mktemp("alpn")
    ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(
        str(d / "srv.pem"))
    yield d / "srv.pem", ca


def negotiated(port: int, offer: list[str]) -> str | None:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(offer)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw) as s:
        return s.selected_alpn_protocol()


@pytest.mark.parametrize(("worker", "app", "protocols", "expected"), [
    ("sync", "examples.hello:app", "h1,h2", "http/1.1"),
    ("asyncio", "tests.apps.asgi_echo:app", "h1,h2", "h2"),
    ("asyncio", "tests.apps.asgi_echo:app", "h1", "http/1.1"),
    ("thread", "examples.hello:app", "h1,h2", "h2"),
    ("thread", "examples.hello:app", "h1", "http/1.1"),
])
def test_alpn_by_worker_class(cert: tuple[Path, trustme.CA], worker: str, app: str,
                              protocols: str, expected: str) -> None:
    pem = str(cert[0])
    with reclusterd(app, "-w", "1", "-k", worker, "--certfile", pem, "--keyfile", pem,
                    "--http-protocols", protocols) as srv:
        srv.wait_ready()
        assert negotiated(srv.port, ["h2", "http/1.1"]) == expected
        assert negotiated(srv.port, ["http/1.1"]) == "http/1.1"
