"""Issue 15 item 1: the default (auto) thread pool serves blocking WSGI apps: it grows
while every thread waits in a request and shrinks back when idle."""

from __future__ import annotations

import socket
import threading
import time

import psutil

from tests.support.http_client import read_responses
from tests.support.process import reclusterd, wait_for

APP = "tests.e2e.test_wsgi_apps:app"
N = 64


def _get(port: int, path: str) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n".encode())
        rs, _ = read_responses(s, ["GET"])
    return rs[0].status


def test_default_pool_overlaps_blocking_requests_and_shrinks_when_idle() -> None:
    with reclusterd(APP, "--workers", "1", "--worker-class", "thread") as srv:
        srv.wait_ready()
        (pid,) = srv.wait_workers(1)
        worker = psutil.Process(pid)
        assert _get(srv.port, "/hello") == 200      # the worker serves: its pool is up
        idle = worker.num_threads()
        statuses: list[int] = []
        done = threading.Event()
        peak = [idle]

        def sample() -> None:
            while not done.wait(0.01):
                peak[0] = max(peak[0], worker.num_threads())

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        ts = [threading.Thread(target=lambda: statuses.append(_get(srv.port, "/sleep?0.1")))
              for _ in range(N)]
        t0 = time.monotonic()
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        took = time.monotonic() - t0
        done.set()
        sampler.join()
        assert statuses == [200] * N
        # Serialized, 64 x 0.1 s = 6.4 s; on 4 fixed threads 1.6 s + overhead. A generous
        # bound that fails only when the pool does not grow past a handful of threads.
        assert took < 3.0, f"{N} blocking requests took {took:.2f}s"
        assert peak[0] >= idle + 16, (idle, peak[0])
        # Back to the pool's floor; +2: a thread or two of the worker's own (the orphan
        # watchdog, the boot spares) may not have been counted in `idle` yet.
        wait_for(lambda: worker.num_threads() <= idle + 2, timeout=30,
                 what=f"the pool to shrink back from {peak[0]} to about {idle} threads")
