"""ASGI worker drain under keep-alive load: HUP reload and --max-requests recycling lose
no request, idle keep-alive connections are served with Connection: close while draining,
and a stalled request body ends at the idle deadline (--header-timeout)."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.apps import ASGI_ROUTES, write_app
from tests.support.http_client import get_body, read_responses, server_closes
from tests.support.load import LoadGen
from tests.support.process import (
    Server,
    arbiter_server,
    reclusterd,
    wait_for,
    wait_log,
    wait_worker_pids,
)


def write_vapp(directory: Path, version: str) -> None:
    write_app(directory, version, name="vapp", template="asgi_versioned")


def start_wrk(port: int, seconds: int) -> subprocess.Popen[str] | None:
    """wrk -t2 -c32 keep-alive load when wrk is installed (the test passes without it)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    return subprocess.Popen([wrk, "-t2", "-c32", f"-d{seconds}s", "--timeout", "10s",
                             f"http://127.0.0.1:{port}/"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def check_wrk(proc: subprocess.Popen[str] | None) -> None:
    if proc is None:
        return
    out, _ = proc.communicate(timeout=60)
    assert re.search(r"\d+ requests in", out), out
    assert "Socket errors" not in out, out
    assert "Non-2xx" not in out, out


def check_load(load: LoadGen) -> None:
    assert load.failures == [], load.failures[:5]
    assert load.retried == 0, f"{load.retried} keep-alive requests lost (closed unanswered)"


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_hup_under_keep_alive_load_loses_nothing(tmp_path: Path, http: str) -> None:
    write_vapp(tmp_path, "v1")
    with arbiter_server(tmp_path, "--workers", "2", "--http", http, app="vapp:app") as srv:
        srv.wait_ready()
        wait_log(srv, "ready in", count=2)
        old = srv.wait_workers(2)
        wrk = start_wrk(srv.port, 5)
        with LoadGen(srv.port, keepalive=12, fresh=2) as load:
            load.wait_requests(200, timeout=20)
            write_vapp(tmp_path, "v2")
            srv.signal(signal.SIGHUP)
            wait_worker_pids(srv, 2, timeout=30, exclude=old)
            wait_for(lambda: get_body(srv.port).startswith("v2"), what="new code answers")
            load.wait_requests(200, timeout=20)
        check_wrk(wrk)
        check_load(load)
        assert {"v1", "v2"} <= load.bodies
        assert get_body(srv.port).startswith("v2")


def test_max_requests_recycling_under_keep_alive_load(tmp_path: Path) -> None:
    write_vapp(tmp_path, "v1")
    with arbiter_server(tmp_path, "--workers", "2", "--max-requests", "150",
                        "--max-requests-jitter", "50", app="vapp:app") as srv:
        srv.wait_ready()
        first = srv.wait_workers(2)
        wrk = start_wrk(srv.port, 4)
        with LoadGen(srv.port, keepalive=12, fresh=2) as load:
            wait_for(lambda: not (srv.workers() & first), timeout=40,
                     what="both first workers recycled")
            load.wait_requests(100, timeout=20)
        check_wrk(wrk)
        check_load(load)


def _get(sock: socket.socket) -> tuple[int, dict[str, str], bool]:
    sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    (r,), closed = read_responses(sock, ["GET"])
    return r.status, r.headers, closed


def test_drain_keeps_idle_keep_alive_open_for_one_more_request(tmp_path: Path) -> None:
    with reclusterd(ASGI_ROUTES, "--workers", "1", "--chdir", str(tmp_path),
                    "--keep-alive", "5") as srv:
        srv.wait_ready()
        wait_log(srv, "ready in")
        (pid,) = srv.wait_workers(1)
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as a, \
                socket.create_connection(("127.0.0.1", srv.port), timeout=10) as b:
            assert _get(a)[0] == 200 and _get(b)[0] == 200
            srv.signal(signal.SIGTERM)
            wait_log(srv, f"worker {pid} draining")   # not the master's "draining in"
            # an idle keep-alive connection is still served, with Connection: close
            status, headers, _ = _get(a)
            assert status == 200 and headers.get("connection") == "close"
            assert server_closes(a, 5)
            b.setblocking(False)            # the silent one is still open...
            with pytest.raises(BlockingIOError):
                b.recv(1)
            b.setblocking(True)
            # ...until the keep-alive timeout closes it; then the worker exits
            assert server_closes(b, 15)
        assert srv.wait_exit(20) == 0


def _stalled_body(srv: Server, path: str) -> tuple[bytes, float]:
    with socket.create_connection(("127.0.0.1", srv.port), timeout=20) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc".encode())
        t0 = time.monotonic()
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        return data, time.monotonic() - t0


def test_stalled_body_ends_at_header_timeout(tmp_path: Path) -> None:
    with reclusterd(ASGI_ROUTES, "--workers", "1", "--chdir", str(tmp_path),
                    "--keep-alive", "1", "--header-timeout", "2") as srv:
        srv.wait_ready()
        data, elapsed = _stalled_body(srv, "/echo")
        assert data.startswith(b"HTTP/1.1 408"), data
        assert 1.5 < elapsed < 6, elapsed
        assert get_body(srv.port) == "Hello, world!"    # the worker is fine
