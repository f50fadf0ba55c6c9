"""HUP under h2load (h2c, several connections, many streams each) loses no stream: the
old workers send GOAWAY (RFC 9113 §6.8: first 2**31-1 and a PING, then the last stream),
finish every stream already open, and the new generation serves.

What h2load's summary can and cannot show: it opens no new connection after an HTTP/2
GOAWAY (only after HTTP/1's `Connection: close`), so the requests it had not sent yet are
"failed" without reaching a server; and the ones it had queued in nghttp2 when the GOAWAY
arrived are "started" but never sent (nghttp2 starts no stream once it has a GOAWAY, the
RFC's rule). So "no stream lost" is checked from both ends: every stream the server
answered reached h2load (access log 200s == h2load's 2xx == succeeded), the server
refused none (no "refused" line at debug level), none timed out or got another status,
at most one stream window per connection was queued and unsent; and a run after the
reload has 0 failed.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from reclusterd.workers.asyncio import AsyncioWorker
from reclusterd.workers.thread import ThreadWorker
from tests.support.process import Server, reclusterd, wait_for, wait_log, wait_worker_pids

pytestmark = pytest.mark.skipif(not shutil.which("h2load"),
                                reason="h2load (nghttp2-client) missing")
CLASSES = [pytest.param(k, marks=pytest.mark.skipif(not w.speaks_h2,
                                                    reason=f"{k} worker speaks HTTP/1 only"))
           for k, w in (("asyncio", AsyncioWorker), ("thread", ThreadWorker))]
APPS = {"asyncio": "tests.apps.h2_ok:asgi", "thread": "tests.apps.h2_ok:wsgi"}
CLIENTS, STREAMS = 4, 10      # h2load connections, concurrent streams per connection
_REQUESTS = re.compile(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                       r"(\d+) failed, (\d+) errored, (\d+) timeout")
_STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")


def h2load_counts(out: str) -> dict[str, int]:
    """h2load's request and status counters from its summary."""
    req, status = _REQUESTS.search(out), _STATUS.search(out)
    assert req and status, out
    names = ("total", "started", "done", "succeeded", "failed", "errored", "timeout")
    counts = dict(zip(names, map(int, req.groups()), strict=True))
    counts.update(zip(("2xx", "3xx", "4xx", "5xx"), map(int, status.groups()), strict=True))
    return counts


@pytest.fixture(params=CLASSES)
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    kind = request.param
    with reclusterd(APPS[kind], "-w", "2", "-k", kind, "--http2-cleartext",
                    "prior-knowledge", "--log-level", "debug", "--access-logfile",
                    str(tmp_path / "access.log")) as srv:
        srv.wait_ready()
        srv.wait_workers(2)
        yield srv


def _h2load(port: int, n: int, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["h2load", "-n", str(n), "-c", str(CLIENTS), "-m", str(STREAMS),
                             f"http://127.0.0.1:{port}/"],
                            stdout=out.open("wb"), stderr=subprocess.STDOUT)


def _answered(tmp_path: Path) -> int:
    """HTTP/2 200s in the access log."""
    path = tmp_path / "access.log"
    return path.read_text().count('HTTP/2" 200 ') if path.exists() else 0


def test_hup_under_h2load_loses_no_stream(server: Server, tmp_path: Path) -> None:
    old = server.workers()
    out = tmp_path / "h2load.txt"
    load = _h2load(server.port, 40000, out)
    try:
        wait_for(lambda: "progress: 10% done" in out.read_text(), 30,
                 what="h2load under way")
        assert load.poll() is None, out.read_text()
        server.signal(signal.SIGHUP)
        wait_log(server, "reload completed", timeout=30)
        assert load.wait(60) == 0, out.read_text()
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()
    c = h2load_counts(out.read_text())
    assert c["started"] == c["done"] and c["succeeded"] == c["2xx"], c
    assert not (c["3xx"] or c["4xx"] or c["5xx"] or c["timeout"]), c
    assert c["started"] - c["succeeded"] <= CLIENTS * STREAMS, c      # queued, unsent
    answered = c["succeeded"]
    wait_for(lambda: _answered(tmp_path) == answered or None, 15,
             what=f"{answered} access log lines")
    assert "refused: opened after the final GOAWAY" not in server.stderr()
    wait_worker_pids(server, 2, exclude=old)
    after = _h2load(server.port, 2000, tmp_path / "after.txt")
    assert after.wait(60) == 0
    c = h2load_counts((tmp_path / "after.txt").read_text())
    assert c["succeeded"] == c["2xx"] == 2000 and not c["failed"], c
    wait_for(lambda: _answered(tmp_path) == answered + 2000 or None, 15, what="access log")
