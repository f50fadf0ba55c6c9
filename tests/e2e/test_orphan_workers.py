"""Issue 14 item 3: a worker whose master was SIGKILLed frees the port and exits within
--graceful-timeout, whatever its app is doing (here: a request asleep for 20 s)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest

from tests.e2e.test_arbiter_basic import port_is_free
from tests.support.http_client import raw_request
from tests.support.process import reclusterd, wait_for, wait_log

GRACE = 2.0
APP = '''
import os, time


def app(environ, start_response):
    if environ["PATH_INFO"] == "/sleep":
        open(os.environ["ORPHAN_MARK"], "w").close()
        time.sleep(20)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
'''


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("klass", ["sync", "thread"])
def test_orphaned_worker_frees_the_port_and_exits_within_graceful_timeout(
        tmp_path: Path, klass: str) -> None:
    (tmp_path / "orphanapp.py").write_text(APP)
    mark = tmp_path / "in-app"
    srv = reclusterd("orphanapp:app", "-k", klass, "--workers", "1",
                     "--graceful-timeout", str(GRACE), cwd=tmp_path,
                     env={"ORPHAN_MARK": str(mark)})
    with srv:
        srv.wait_ready()
        (worker,) = srv.wait_workers(1)
        client = threading.Thread(
            target=lambda: _ignore_errors(srv.port), daemon=True)
        client.start()
        wait_for(mark.exists, 10, what="the request to be inside the app")
        os.kill(srv.pid, signal.SIGKILL)
        killed = time.monotonic()
        srv.proc.wait(5)
        # The listener goes at once, not when the sleeping request ends.
        wait_for(lambda: port_is_free(srv.port), 1.0 + GRACE, what="the port to be free")
        wait_for(lambda: gone(worker), GRACE + 1.0 + 2.0, interval=0.05,
                 what="the orphaned worker to exit")
        took = time.monotonic() - killed
        assert took <= GRACE + 1.0, f"orphan lived {took:.1f}s after its master"
        assert port_is_free(srv.port)
        wait_log(srv, f"master {srv.pid} is gone")
        client.join(5)


def _ignore_errors(port: int) -> None:
    try:
        raw_request(port, b"GET /sleep HTTP/1.1\r\nHost: x\r\n\r\n", timeout=25)
    except OSError:
        pass
