"""Slow and hostile clients (issue 5): header deadline, slowloris, body idle deadline,
keep-alive idle timeout, connection cap."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.support.http_client import read_responses, server_closes
from tests.support.process import Server, reclusterd

APP = "tests.e2e.test_wsgi_apps:app"


@pytest.fixture
def thread_srv() -> Iterator[Server]:
    s = reclusterd(APP, "--workers", "1", "--worker-class", "thread", "--threads", "4",
                   "--header-timeout", "2", "--keep-alive", "1", "--worker-connections", "200")
    try:
        yield s.wait_ready()
    finally:
        s.stop()


def quick_get(port: int, path: str = "/hello") -> tuple[int, float]:
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
        rs, _ = read_responses(s, ["GET"])
    return rs[0].status, time.monotonic() - t0


def test_slowloris_does_not_block_normal_clients(thread_srv: Server) -> None:
    port = thread_srv.port
    slow: list[socket.socket] = []
    for _ in range(50):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n")
        slow.append(s)
    stop = threading.Event()
    fates: dict[int, str] = {}

    def trickle() -> None:                       # one header byte per connection every 0.3 s
        while not stop.is_set():
            for i, s in enumerate(slow):
                if i in fates:
                    continue
                try:
                    s.sendall(b"X")
                except OSError:
                    fates[i] = "closed"
            stop.wait(0.3)

    t0 = time.monotonic()
    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    try:
        for _ in range(5):
            status, took = quick_get(port)
            assert status == 200 and took < 1.0
        # every slow connection is answered 408 (or closed) after the 2 s head deadline
        for i, s in enumerate(slow):
            s.settimeout(6)
            try:
                data = s.recv(65536)
            except ConnectionResetError:
                data = b""
            fates.setdefault(i, "408" if data.startswith(b"HTTP/1.1 408 ") else repr(data[:40]))
        took = time.monotonic() - t0
        assert set(fates.values()) <= {"408", "closed"}, fates
        assert took < 6, took
    finally:
        stop.set()
        for s in slow:
            s.close()
    assert quick_get(port)[0] == 200


def test_header_deadline_is_absolute(thread_srv: Server) -> None:
    with socket.create_connection(("127.0.0.1", thread_srv.port), timeout=10) as s:
        t0 = time.monotonic()
        s.sendall(b"GET /hello HTTP/1.1\r\n")
        for _ in range(5):                      # keeps sending, still cut at ~2 s
            time.sleep(0.3)
            s.sendall(b"X-A: 1\r\n")
        s.settimeout(5)
        data = s.recv(65536)
        assert data.startswith(b"HTTP/1.1 408 "), data
        assert 1.5 < time.monotonic() - t0 < 4
        assert server_closes(s)


def test_keep_alive_idle_timeout(thread_srv: Server) -> None:
    with socket.create_connection(("127.0.0.1", thread_srv.port), timeout=10) as s:
        s.sendall(b"GET /hello HTTP/1.1\r\nHost: h\r\n\r\n")
        rs, closed = read_responses(s, ["GET"])
        assert rs[0].status == 200 and not closed
        t0 = time.monotonic()
        assert server_closes(s, timeout=4)
        assert 0.7 < time.monotonic() - t0 < 3


def test_body_idle_deadline(thread_srv: Server) -> None:
    with socket.create_connection(("127.0.0.1", thread_srv.port), timeout=10) as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n0123456789")
        s.settimeout(6)
        data = s.recv(65536)    # the body stopped arriving, nothing sent yet: 408 + close
        assert data.startswith(b"HTTP/1.1 408 ") and b"Connection: close" in data, data
        assert server_closes(s, timeout=6)
    assert quick_get(thread_srv.port)[0] == 200


def test_connection_cap_gives_503() -> None:
    with reclusterd(APP, "--workers", "1", "--worker-class", "thread",
                    "--worker-connections", "5") as srv:
        srv.wait_ready()
        idle = []
        for _ in range(5):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            s.sendall(b"GET /hello HTTP/1.1\r\nHost: h\r\n\r\n")
            assert read_responses(s, ["GET"])[0][0].status == 200
            idle.append(s)
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.sendall(b"GET /hello HTTP/1.1\r\nHost: h\r\n\r\n")
            rs, closed = read_responses(s, ["GET"])
            assert rs[0].status == 503 and closed
        idle.pop().close()
        deadline = time.monotonic() + 5
        while True:                               # the freed slot is usable again
            status, _ = quick_get(srv.port)
            if status == 200 or time.monotonic() > deadline:
                break
        assert status == 200
        for s in idle:
            s.close()


def test_sync_header_deadline() -> None:
    with reclusterd(APP, "--workers", "1", "--worker-class", "sync",
                    "--header-timeout", "1") as srv:
        srv.wait_ready()
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.sendall(b"GET /hello HTTP/1.1\r\nHost: h\r\n")
            s.settimeout(5)
            assert s.recv(65536).startswith(b"HTTP/1.1 408 ")
        assert quick_get(srv.port)[0] == 200


def test_slow_requests_run_concurrently_on_the_pool() -> None:
    """4 threads: 4 blocking requests overlap, and a fast one is not stuck behind them."""
    with reclusterd(APP, "--workers", "1", "--worker-class", "thread", "--threads", "5") as srv:
        srv.wait_ready()
        t0 = time.monotonic()
        results: list[int] = []
        ts = [threading.Thread(target=lambda: results.append(quick_get(srv.port, "/sleep?1")[0]))
              for _ in range(4)]
        for t in ts:
            t.start()
        time.sleep(0.2)
        status, took = quick_get(srv.port)
        assert status == 200 and took < 0.5
        for t in ts:
            t.join(10)
        assert results == [200] * 4
        assert time.monotonic() - t0 < 1.8
