"""ASGI worker lifecycle: lifespan, boot failure, TERM drain, concurrency, timeouts, limits."""

from __future__ import annotations

import concurrent.futures
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.support.apps import ASGI_ROUTES
from tests.support.http_client import http_get, read_responses, server_closes
from tests.support.process import reclusterd, wait_for, wait_log

PARSERS = ["httptools", "h11"]


def markers(path: Path) -> list[tuple[str, int]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        *words, pid = line.split()
        out.append((" ".join(words), int(pid)))
    return out


@pytest.mark.parametrize("http", PARSERS)
def test_lifespan_once_per_worker_and_term_exits_0(tmp_path: Path, http: str) -> None:
    marks = tmp_path / "marks"
    with reclusterd(ASGI_ROUTES, "--workers", "2", "--http", http, "--chdir", str(tmp_path),
                    env={"ASGI_MARKERS": str(marks)}) as srv:
        srv.wait_ready()
        workers = srv.wait_workers(2)
        wait_for(lambda: len(markers(marks)) == 2, what="2 startups")
        wait_log(srv, "ready in", count=2)      # both serving, as far as the arbiter knows
        for _ in range(10):
            assert http_get(srv.port, "/")[0] == 200
        assert sorted(markers(marks)) == sorted(("startup", p) for p in workers)
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit(20) == 0
        got = markers(marks)
        assert sorted(p for m, p in got if m == "shutdown") == sorted(workers)
        assert len(got) == 4


def test_failing_startup_fails_boot(tmp_path: Path) -> None:
    with reclusterd(ASGI_ROUTES, "--workers", "2", "--chdir", str(tmp_path),
                    env={"ASGI_FAIL_STARTUP": "1"}) as srv:
        code = srv.wait_exit(30)
        assert code == 1
        wait_log(srv, "db unreachable")


def test_lifespan_auto_ignores_apps_without_it(tmp_path: Path) -> None:
    (tmp_path / "plain.py").write_text(
        "async def app(scope, receive, send):\n"
        "    assert scope['type'] == 'http'\n"
        "    body = repr(sorted(scope)).encode()\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': body})\n")
    with reclusterd("plain:app", "--workers", "1", "--chdir", str(tmp_path)) as srv:
        srv.wait_ready()
        status, _, body = http_get(srv.port, "/")
        assert status == 200 and b"'state'" not in body
    with reclusterd("plain:app", "--workers", "1", "--chdir", str(tmp_path),
                    "--lifespan", "on") as srv:
        assert srv.wait_exit(30) == 1
        wait_log(srv, "lifespan")


def test_lifespan_off(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    with reclusterd(ASGI_ROUTES, "--workers", "1", "--chdir", str(tmp_path), "--lifespan", "off",
                    env={"ASGI_MARKERS": str(marks)}) as srv:
        srv.wait_ready()
        assert http_get(srv.port, "/")[0] == 200
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit(20) == 0
    assert markers(marks) == []


@pytest.mark.parametrize("http", PARSERS)
def test_40_concurrent_sleeps_overlap(tmp_path: Path, http: str) -> None:
    with reclusterd(ASGI_ROUTES, "--workers", "2", "--http", http,
                    "--chdir", str(tmp_path)) as srv:
        srv.wait_ready()
        srv.wait_workers(2)
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(40) as pool:
            results = list(pool.map(lambda _: http_get(srv.port, "/sleep", timeout=20),
                                    range(40)))
        elapsed = time.monotonic() - t0
        assert all(r[0] == 200 and r[2] == b"slept" for r in results)
        assert elapsed < 4.0, elapsed       # serial would be 20 s (10 s per worker)


def test_term_finishes_in_flight_then_exits_0(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    with reclusterd(ASGI_ROUTES, "--workers", "1", "--chdir", str(tmp_path),
                    env={"ASGI_MARKERS": str(marks)}) as srv:
        srv.wait_ready()
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.sendall(b"GET /sleep HTTP/1.1\r\nHost: h\r\n\r\n")
            wait_for(lambda: any(m == "sleeping" for m, _ in markers(marks)),
                     what="request in flight")
            srv.signal(signal.SIGTERM)
            (r,), closed = read_responses(s, ["GET"])
            assert r.status == 200 and r.body == b"slept"
            assert r.headers.get("connection") == "close" or closed
        assert srv.wait_exit(20) == 0


def test_keep_alive_timeout_closes_idle(tmp_path: Path) -> None:
    with reclusterd(ASGI_ROUTES, "--workers", "1", "--chdir", str(tmp_path),
                    "--keep-alive", "1") as srv:
        srv.wait_ready()
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            (r,), closed = read_responses(s, ["GET"])
            assert r.status == 200 and not closed
            t0 = time.monotonic()
            assert server_closes(s, 5)
            assert 0.8 < time.monotonic() - t0 < 3.5


def test_header_deadline_408_and_others_served(tmp_path: Path) -> None:
    with reclusterd(ASGI_ROUTES, "--workers", "1", "--chdir", str(tmp_path),
                    "--header-timeout", "1") as srv:
        srv.wait_ready()
        slow = [socket.create_connection(("127.0.0.1", srv.port), timeout=10)
                for _ in range(50)]
        try:
            for s in slow:
                s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n")
            assert http_get(srv.port, "/")[0] == 200       # not starved
            for s in slow:
                s.settimeout(5)
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
                assert data.startswith(b"HTTP/1.1 408")
        finally:
            for s in slow:
                s.close()


def test_worker_connections_cap_503(tmp_path: Path) -> None:
    with reclusterd(ASGI_ROUTES, "--workers", "1", "--chdir", str(tmp_path),
                    "--worker-connections", "2") as srv:
        srv.wait_ready()
        held: list[socket.socket] = []

        def hold_two() -> bool:
            """Two served connections (wait_ready's probe may still count for a moment)."""
            for s in held:
                s.close()
            held[:] = [socket.create_connection(("127.0.0.1", srv.port), timeout=10)
                       for _ in range(2)]
            for s in held:
                s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            return all(read_responses(s, ["GET"])[0][0].status == 200 for s in held)
        try:
            wait_for(hold_two, what="two connections served")
            status, headers, _ = http_get(srv.port, "/")
            assert status == 503 and headers["connection"] == "close"
        finally:
            for s in held:
                s.close()
        wait_for(lambda: http_get(srv.port, "/")[0] == 200, what="cap freed")


def test_wsgi_app_on_asyncio_worker_is_a_boot_error(tmp_path: Path) -> None:
    (tmp_path / "w.py").write_text("def app(environ, start_response):\n    return []\n")
    with reclusterd("w:app", "--workers", "1", "-k", "asyncio", "--chdir", str(tmp_path)) as srv:
        assert srv.wait_exit(30) != 0
        wait_log(srv, "--worker-class thread")


def test_quit_exits_at_once(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    with reclusterd(ASGI_ROUTES, "--workers", "1", "--chdir", str(tmp_path),
                    "--graceful-timeout", "30", env={"ASGI_MARKERS": str(marks)}) as srv:
        srv.wait_ready()
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.sendall(b"GET /sleep HTTP/1.1\r\nHost: h\r\n\r\n")
            wait_for(lambda: any(m == "sleeping" for m, _ in markers(marks)),
                     what="request in flight")
            t0 = time.monotonic()
            srv.signal(signal.SIGQUIT)
            assert srv.wait_exit(10) == 0
            assert time.monotonic() - t0 < 5
    assert not any(m == "shutdown" for m, _ in markers(marks))


def test_blocked_loop_is_replaced(tmp_path: Path) -> None:
    (tmp_path / "blocky.py").write_text(
        "import os, time\n"
        "async def app(scope, receive, send):\n"
        "    if scope['type'] != 'http':\n"
        "        return\n"
        "    if scope['path'] == '/block':\n"
        "        time.sleep(60)\n"
        "    body = str(os.getpid()).encode()\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': body})\n")
    with reclusterd("blocky:app", "--workers", "1", "--chdir", str(tmp_path),
                    "--timeout", "2") as srv:
        srv.wait_ready()
        (old,) = srv.wait_workers(1)
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.sendall(b"GET /block HTTP/1.1\r\nHost: h\r\n\r\n")
            wait_for(lambda: old not in srv.workers() and len(srv.workers()) == 1,
                     timeout=20, what="blocked worker replaced")
        status, _, body = http_get(srv.port, "/")
        assert status == 200 and int(body) != old


def test_loop_asyncio_serves(tmp_path: Path) -> None:
    with reclusterd(ASGI_ROUTES, "--workers", "1", "--loop", "asyncio",
                    "--chdir", str(tmp_path)) as srv:
        srv.wait_ready()
        assert http_get(srv.port, "/")[2] == b"Hello, world!"
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.sendall(b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"3\r\nabc\r\n0\r\n\r\nGET /stream HTTP/1.1\r\nHost: h\r\n\r\n")
            rs, _ = read_responses(s, ["POST", "GET"])
        assert rs[0].body == b"abc" and rs[1].body.startswith(b"part0")


def test_max_requests_recycles_gracefully(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    with reclusterd(ASGI_ROUTES, "--workers", "1", "--max-requests", "5",
                    "--chdir", str(tmp_path), env={"ASGI_MARKERS": str(marks)}) as srv:
        srv.wait_ready()
        (first,) = srv.wait_workers(1)
        for _ in range(5):
            assert http_get(srv.port, "/")[0] == 200
        wait_for(lambda: first not in srv.workers() and len(srv.workers()) == 1,
                 what="recycled worker")
        assert http_get(srv.port, "/")[0] == 200
        wait_for(lambda: ("shutdown", first) in markers(marks), what="lifespan shutdown")


def test_hup_with_failing_startup_rolls_back(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    with reclusterd(ASGI_ROUTES, "--workers", "2", "--chdir", str(tmp_path),
                    "--backoff", "1", env={"ASGI_MARKERS": str(marks)}) as srv:
        srv.wait_ready()
        old = srv.wait_workers(2)
        wait_for(lambda: len(markers(marks)) == 2, what="generation 1 started up")
        (tmp_path / "fail_startup").write_text("1")
        srv.signal(signal.SIGHUP)
        wait_for(lambda: "db unreachable" in srv.stderr(), timeout=30, what="failed generation")
        wait_for(lambda: srv.workers() == old, timeout=30, what="only the old generation")
        assert http_get(srv.port, "/")[0] == 200
        (tmp_path / "fail_startup").unlink()
        srv.signal(signal.SIGHUP)
        wait_for(lambda: len(w := srv.workers()) == 2 and not (w & old), timeout=30,
                 what="new generation after the fix")
        assert http_get(srv.port, "/")[0] == 200


SLOW_STARTUP = """
import asyncio, os
MARK = os.environ["ASGI_MARKERS"]

def mark(s):
    with open(MARK, "a") as f:
        f.write(f"{s} {os.getpid()}\\n")

async def app(scope, receive, send):
    assert scope["type"] == "lifespan"
    while True:
        m = await receive()
        if m["type"] == "lifespan.startup":
            mark("starting")
            await asyncio.sleep(1.0)
            mark("startup")
        else:
            mark("shutdown")
        await send({"type": m["type"] + ".complete"})
        if m["type"] == "lifespan.shutdown":
            return
"""


def test_term_during_lifespan_startup_still_runs_shutdown(tmp_path: Path) -> None:
    """TERM while startup is running: startup finishes, shutdown runs, exit 0."""
    (tmp_path / "slow.py").write_text(SLOW_STARTUP)
    marks = tmp_path / "marks"
    with reclusterd("slow:app", "--workers", "2", "--chdir", str(tmp_path),
                    env={"ASGI_MARKERS": str(marks)}) as srv:
        wait_for(lambda: sum(m == "starting" for m, _ in markers(marks)) == 2,
                 what="2 startups under way")
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit(20) == 0
        got = markers(marks)
        started = sorted(p for m, p in got if m == "startup")
        assert len(started) == 2
        assert sorted(p for m, p in got if m == "shutdown") == started
