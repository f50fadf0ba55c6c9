"""Issue 14 item 6: a log reader that stops reading never stops serving.

stdout and stderr go to one pipe nobody reads (`2>&1 | cat` with cat stopped): once
the pipe is full, log lines are dropped and counted, and every request is still served.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
import threading

import pytest

from tests.support.http_client import http_get
from tests.support.process import ROOT, free_port, port_answers, wait_for

REQUESTS = 3000
CLIENTS = 4
LONG_PATH = "/" + "x" * 2000    # ~2 KB per access line: 6 MB in all, far over any buffer


def dropped(status_port: int) -> float:
    _, _, body = http_get(status_port, "/metrics", timeout=5)
    m = re.search(rb"^reclusterd_log_lines_dropped_total (\S+)$", body, re.M)
    assert m, body
    return float(m.group(1))


def _client(port: int, n: int, errors: list[str]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for _ in range(n):
            conn.request("GET", LONG_PATH)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                errors.append(f"status {resp.status}")
    except OSError as e:
        errors.append(repr(e))
    finally:
        conn.close()


@pytest.mark.parametrize("klass", ["thread", "sync", "asyncio"])
def test_a_stalled_log_reader_drops_lines_instead_of_blocking(klass: str) -> None:
    port, status_port = free_port(), free_port()
    app = "tests.apps.matrix:asgi" if klass == "asyncio" else "tests.apps.matrix:wsgi"
    read_end, write_end = os.pipe()    # the reader never reads: the stopped `cat`
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("WEB_CONCURRENCY", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "reclusterd", app, "-k", klass, "--workers", "2",
         "--bind", f"127.0.0.1:{port}", "--status-bind", f"127.0.0.1:{status_port}",
         "--access-logfile", "-", "--log-level", "debug"],
        cwd=str(ROOT), env=env, stdin=subprocess.DEVNULL, stdout=write_end,
        stderr=write_end, start_new_session=True)
    os.close(write_end)
    try:
        wait_for(lambda: port_answers(port), 20, what="the server to answer")
        errors: list[str] = []
        per = REQUESTS // CLIENTS
        clients = [threading.Thread(target=_client, args=(port, per, errors))
                   for _ in range(CLIENTS)]
        for t in clients:
            t.start()
        for t in clients:
            t.join(60)
        assert not errors, errors[:5]
        wait_for(lambda: dropped(status_port) > 0, 10, what="dropped log lines in /metrics")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        os.close(read_end)
