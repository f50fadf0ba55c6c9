"""Issue 14 item 10: --max-worker-memory holds under load and catches idle workers.

RSS is sampled from outside with psutil (every worker of the arbiter, every 10 ms).
"""

from __future__ import annotations

import threading
from pathlib import Path

import psutil
import pytest

from tests.support.http_client import http_get
from tests.support.load import LoadGen
from tests.support.process import Server, reclusterd, wait_for, wait_log

LIMIT_MB = 150
LEAK_APP = '''
import os
import threading

_leak = []


def _grow(mb):
    _leak.append(b"g" * (mb << 20))                                 # touched, resident


def app(environ, start_response):
    if environ["PATH_INFO"] == "/grow":
        # Grows after its response: no request end will ever see it, only the heartbeat.
        threading.Timer(0.3, _grow, (int(environ["QUERY_STRING"]),)).start()
    else:
        _leak.append(b"x" * (5 << 20))                              # ~5 MB a request
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
'''


class PeakRSS:
    """Samples the RSS of every child of `server` in a thread until stopped."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.peak = 0
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakRSS:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.thread.join(5)

    def _run(self) -> None:
        while not self.stop_event.wait(0.01):
            for pid in self.server.workers():
                try:
                    self.peak = max(self.peak, psutil.Process(pid).memory_info().rss)
                except psutil.NoSuchProcess:
                    pass


@pytest.mark.parametrize("klass", ["thread", "sync"])
def test_a_leaking_app_stays_within_one_and_a_half_times_the_limit(
        tmp_path: Path, klass: str) -> None:
    (tmp_path / "leakapp.py").write_text(LEAK_APP)
    with reclusterd("leakapp:app", "-k", klass, "--workers", "2", "--max-worker-memory",
                    str(LIMIT_MB), cwd=tmp_path) as srv:
        srv.wait_ready()
        first = srv.wait_workers(2)
        with PeakRSS(srv) as rss, LoadGen(srv.port) as load:
            load.wait_requests(200, timeout=60)     # ~1 GB leaked in all: many recycles
        assert not load.failures, load.failures[:5]
        assert not first & srv.workers(), "the leaking workers were never recycled"
        assert rss.peak <= 1.5 * LIMIT_MB * 2 ** 20, f"peak RSS {rss.peak / 2 ** 20:.0f} MB"
        wait_log(srv, "asks to be recycled (memory)")


def test_a_worker_that_grew_past_twice_the_limit_is_replaced_while_idle(
        tmp_path: Path) -> None:
    (tmp_path / "leakapp.py").write_text(LEAK_APP)
    with reclusterd("leakapp:app", "--workers", "1", "--max-worker-memory", "100",
                    cwd=tmp_path) as srv:
        srv.wait_ready()
        (worker,) = srv.wait_workers(1)
        status, _, body = http_get(srv.port, "/grow?210")
        assert status == 200 and int(body) == worker
        # No more requests: only the heartbeat can see it.
        assert srv.workers() == {worker}
        wait_for(lambda: len(w := srv.workers()) == 1 and worker not in w, 10,
                 what="the grown worker to be replaced")
        assert "over twice --max-worker-memory" in srv.stderr() or \
            "asks to be recycled (memory)" in srv.stderr()
