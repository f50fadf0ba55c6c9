"""Each request runs in a task of its own (asyncio.current_task() works: anyio, asyncio.timeout)
started from the connection's context: contextvars never leak from one request into the
next, even when the previous request's task launches it (pipelining), and apps that go on
after their response or suspend before it keep the order."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.http_client import read_responses
from tests.support.process import Server, reclusterd


@pytest.fixture(scope="module", params=["httptools", "h11"])
def srv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
        ) -> Iterator[Server]:
    d: Path = tmp_path_factory.mktemp("ctxv")
    s = reclusterd("tests.apps.asgi_contextvars:app",
                   "--workers", "1", "--http", request.param, "--chdir", str(d))
    try:
        s.wait_ready()
        yield s
    finally:
        s.stop()


def pipeline(srv: Server, paths: list[str]) -> list[bytes]:
    with socket.create_connection(("127.0.0.1", srv.port), timeout=20) as c:
        c.sendall(b"".join(f"GET {p} HTTP/1.1\r\nHost: h\r\n\r\n".encode() for p in paths))
        rs, _ = read_responses(c, ["GET"] * len(paths), timeout=20)
    assert [r.status for r in rs] == [200] * len(paths)
    return [r.body for r in rs]


def test_deep_pipelining_no_recursion(srv: Server) -> None:
    paths = ["/p"] * 600
    assert pipeline(srv, paths) == [b"unset"] * 600


def test_mixed_suspending_and_after_response(srv: Server) -> None:
    paths = ["/a", "/suspend", "/after", "/b", "/after", "/suspend", "/c"] * 20
    assert pipeline(srv, paths) == [b"unset"] * len(paths)
