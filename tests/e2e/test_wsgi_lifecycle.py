"""Worker side of the lifecycle (issue 3): drain on TERM, QUIT, ABRT stack dump, stuck-request
timeout, max-requests and memory recycling, hooks, wrong worker class."""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time

import pytest

from tests.support.http_client import read_responses, server_closes
from tests.support.process import reclusterd, wait_for, wait_log

APP = "tests.e2e.test_wsgi_apps:app"
KINDS = ["thread", "sync"]


def start_get(port: int, path: str) -> tuple[socket.socket, threading.Thread, list]:  # type: ignore[type-arg]
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
    out: list = []  # type: ignore[type-arg]
    t = threading.Thread(target=lambda: out.append(read_responses(s, ["GET"], timeout=20)))
    t.start()
    return s, t, out


def get_status(port: int, path: str = "/hello") -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
        return read_responses(s, ["GET"])[0][0].status


@pytest.mark.parametrize("kind", KINDS)
def test_term_drains_in_flight_request(kind: str) -> None:
    with reclusterd(APP, "--workers", "1", "--worker-class", kind, "--keep-alive", "30") as srv:
        srv.wait_ready()
        (wpid,) = srv.wait_workers(1)
        idle = None
        if kind == "thread":
            idle = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            idle.sendall(b"GET /hello HTTP/1.1\r\nHost: h\r\n\r\n")
            assert read_responses(idle, ["GET"])[0][0].status == 200
        s, t, out = start_get(srv.port, "/sleep?1.5")
        wait_for(lambda: "app: sleeping 1.5" in srv.stderr(), what="the request in the app")
        os.kill(wpid, signal.SIGTERM)
        if idle is not None:
            assert server_closes(idle, timeout=3)        # idle keep-alive closed at once
        t.join(10)
        rs, _ = out[0]
        assert rs[0].status == 200 and rs[0].body == b"slept\n"
        assert rs[0].headers["connection"] == "close"
        wait_for(lambda: wpid not in srv.workers(), timeout=5, what="worker exit")
        s.close()
        wait_for(lambda: f"worker {wpid}" in srv.stderr() and "exited" in srv.stderr(),
                 timeout=15, what="the arbiter's exit line")


def test_quit_exits_at_once_with_a_request_hanging() -> None:
    with reclusterd(APP, "--workers", "1") as srv:
        srv.wait_ready()
        (wpid,) = srv.wait_workers(1)
        s, t, out = start_get(srv.port, "/sleep?30")
        wait_for(lambda: "app: sleeping 30" in srv.stderr(), what="the request in the app")
        t0 = time.monotonic()
        os.kill(wpid, signal.SIGQUIT)
        wait_for(lambda: wpid not in srv.workers(), timeout=3, what="worker exit")
        assert time.monotonic() - t0 < 2
        t.join(10)
        s.close()


@pytest.mark.parametrize("kind", KINDS)
def test_stuck_request_killed_after_timeout_with_stacks(kind: str) -> None:
    with reclusterd(APP, "--workers", "1", "--worker-class", kind, "--timeout", "2") as srv:
        srv.wait_ready()
        (wpid,) = srv.wait_workers(1)
        s, t, out = start_get(srv.port, "/sleep?60")
        wait_for(lambda: wpid not in srv.workers(), timeout=10, what="stuck worker killed")
        srv.wait_workers(1)
        t.join(10)
        s.close()
        log = srv.stderr()
        assert "test_wsgi_apps.py" in log and "in sleep" in log, log[-3000:]
        wait_for(lambda: get_status(srv.port) == 200, timeout=10)


@pytest.mark.parametrize("kind", KINDS)
def test_slow_reader_is_progress_not_a_stuck_worker(kind: str) -> None:
    """A client reading a 40 MiB response for longer than --timeout does not get the worker
    killed: writes that make progress keep the heartbeats going."""
    with reclusterd(APP, "--workers", "1", "--worker-class", kind, "--timeout", "2") as srv:
        srv.wait_ready()
        pids = srv.wait_workers(1)
        with socket.create_connection(("127.0.0.1", srv.port), timeout=20) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            s.sendall(b"GET /big?40 HTTP/1.1\r\nHost: h\r\n\r\n")
            t0 = time.monotonic()
            got = 0
            while got < 40 << 20:
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                got += len(chunk)
                time.sleep(0.01)
            assert time.monotonic() - t0 > 3, "reader was not slow enough to test anything"
        assert got >= 40 << 20
        assert srv.workers() == pids


def test_idle_worker_is_not_killed_by_timeout() -> None:
    with reclusterd(APP, "--workers", "1", "--timeout", "1") as srv:
        srv.wait_ready()
        pids = srv.wait_workers(1)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:           # heartbeats keep flowing when idle
            assert get_status(srv.port) == 200
            time.sleep(0.2)
        assert srv.workers() == pids


@pytest.mark.parametrize("kind", KINDS)
def test_max_requests_recycles_without_losing_requests(kind: str) -> None:
    with reclusterd(APP, "--workers", "2", "--worker-class", kind, "--max-requests", "10",
                    "--max-requests-jitter", "5") as srv:
        srv.wait_ready()
        first = srv.wait_workers(2)
        for _ in range(80):
            assert get_status(srv.port, "/pid") == 200
        wait_for(lambda: len(srv.workers() - first) >= 1, timeout=10, what="recycled worker")
        wait_log(srv, "max-requests")


def test_memory_recycle() -> None:
    with reclusterd(APP, "--workers", "1", "--max-worker-memory", "100") as srv:
        srv.wait_ready()
        (wpid,) = srv.wait_workers(1)
        assert get_status(srv.port, "/grow?150") == 200
        wait_for(lambda: wpid not in srv.workers() and len(srv.workers()) == 1, timeout=15,
                 what="memory recycle")
        wait_log(srv, "memory")
        assert get_status(srv.port) == 200


def test_abrt_dumps_every_thread() -> None:
    with reclusterd(APP, "--workers", "1") as srv:
        srv.wait_ready()
        (wpid,) = srv.wait_workers(1)
        s, t, out = start_get(srv.port, "/sleep?30")
        wait_for(lambda: "app: sleeping 30" in srv.stderr(), what="the request in the app")
        os.kill(wpid, signal.SIGABRT)
        wait_for(lambda: wpid not in srv.workers(), timeout=5)
        log = srv.stderr()
        assert log.count("Thread 0x") >= 2 and "in sleep" in log, log[-2000:]
        t.join(10)
        s.close()


def test_hooks() -> None:
    hooks = "tests.e2e.test_wsgi_apps"
    with reclusterd(APP, "--workers", "1", "--post-fork", f"{hooks}:post_fork",
                    "--pre-request", f"{hooks}:pre_request",
                    "--post-request", f"{hooks}:post_request") as srv:
        srv.wait_ready()
        assert get_status(srv.port, "/hook-me") == 200
        wait_for(lambda: "HOOK post_request /hook-me 200" in srv.stderr(), timeout=5)
        log = srv.stderr()
        assert "HOOK post_fork pid=" in log and f"app={APP}" in log
        assert "HOOK pre_request /hook-me" in log


@pytest.mark.parametrize("kind", KINDS)
def test_asgi_app_on_a_wsgi_worker_class_is_a_clear_boot_error(kind: str) -> None:
    srv = reclusterd("tests.e2e.test_wsgi_apps:asgi_app", "--workers", "1",
                     "--worker-class", kind)
    try:
        assert srv.wait_exit(20) != 0
        wait_log(srv, f"worker class '{kind}' serves WSGI apps only")
    finally:
        srv.stop()


def test_plugin_worker_class() -> None:
    with reclusterd(APP, "--workers", "1",
                    "--worker-class", "reclusterd.workers.thread:ThreadWorker") as srv:
        srv.wait_ready()
        assert get_status(srv.port) == 200
    bad = reclusterd(APP, "--workers", "1", "--worker-class", "nosuch.mod:Worker")
    try:
        assert bad.wait_exit(20) != 0
        wait_log(bad, "nosuch.mod")
    finally:
        bad.stop()


assert sys.version_info >= (3, 10)
