"""Issue 14 item 1: a draining thread or sync worker closes its copy of the listeners at
once, so a connection that arrives during the drain is refused (one worker) or served by
another worker, never accepted by the kernel and then reset when the worker exits."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.process import reclusterd, wait_for, wait_log

APP = "tests.e2e.test_worker_drain_accept:app"


def app(environ: dict[str, Any], start: Any) -> Iterator[bytes]:
    """/slow?S: the head and a first line at once, the last line S seconds later."""
    if environ["PATH_INFO"] == "/slow":
        start("200 OK", [("Content-Type", "text/plain")])
        yield b"start\n"
        time.sleep(float(environ["QUERY_STRING"] or "2"))
        yield b"end\n"
        return
    start("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
    yield b"ok\n"


def begin_slow(port: int, seconds: float) -> socket.socket:
    """Client A: a slow request, returned once the app is running it (its first line)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(f"GET /slow?{seconds} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
    got = b""
    while b"start\n" not in got:
        chunk = s.recv(4096)
        assert chunk, "client A: the server closed before the app started"
        got += chunk
    return s


def read_to_eof(s: socket.socket) -> bytes:
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out


def refused(port: int) -> bool:
    """True if a connect is refused; a connect that succeeds is closed again at once."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.parametrize("klass", ["thread", "sync"])
def test_draining_single_worker_refuses_new_connections_at_once(klass: str) -> None:
    with reclusterd(APP, "-k", klass, "--workers", "1", "--graceful-timeout", "10") as srv:
        srv.wait_ready()
        a = begin_slow(srv.port, 3)
        with a:
            t_term = time.monotonic()
            srv.signal(signal.SIGTERM)
            wait_log(srv, "draining", timeout=5)
            # Refused while A is still running (it ends 3 s after it started).
            wait_for(lambda: refused(srv.port), timeout=1.5, interval=0.01,
                     what="a new connection to be refused while draining")
            assert time.monotonic() - t_term < 2.5
            assert refused(srv.port)
            rest = read_to_eof(a)
        assert b"end\n" in rest, rest
        assert srv.wait_exit(10) == 0


@pytest.mark.parametrize("klass", ["thread", "sync"])
def test_requests_during_a_ttou_drain_go_to_the_other_worker(klass: str) -> None:
    with reclusterd(APP, "-k", klass, "--workers", "2", "--graceful-timeout", "10") as srv:
        srv.wait_ready()
        wait_log(srv, ") ready in", count=2)
        slow = [begin_slow(srv.port, 2), begin_slow(srv.port, 2)] if klass == "thread" \
            else [begin_slow(srv.port, 2)]
        srv.signal(signal.SIGTTOU)
        wait_log(srv, "draining", timeout=5)
        statuses = []
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as b:
                b.sendall(b"POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n"
                          b"Connection: close\r\n\r\nhi")
                statuses.append(read_to_eof(b)[:12])
        for s in slow:
            with s:
                assert b"end\n" in read_to_eof(s)
        assert statuses and all(st == b"HTTP/1.1 200" for st in statuses), statuses
        srv.wait_workers(1)
