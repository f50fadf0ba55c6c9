"""Issue 14 items 4 and 14: a worker killed right after it served, and a paused master."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

from tests.support.apps import write_app
from tests.support.http_client import http_get
from tests.support.process import arbiter_server, wait_for, wait_log

ITERATIONS = 15


def answered(port: int) -> int | None:
    """The pid of the worker that answered a GET, or None if nothing answered."""
    try:
        status, _, body = http_get(port, timeout=2)
    except OSError:
        return None
    return int(body.split()[1]) if status == 200 else None


def test_worker_killed_right_after_it_served_never_stops_a_first_start(
        tmp_path: Path) -> None:
    """Issue 14 item 14: SIGKILL the only worker the moment it has answered, 15 times."""
    write_app(tmp_path)
    for i in range(ITERATIONS):
        with arbiter_server(tmp_path, "--workers", "1", "--backoff", "1") as srv:
            first = wait_for(lambda s=srv: answered(s.port), 20, interval=0.005,
                             what="a first answer")
            os.kill(first, signal.SIGKILL)
            second = wait_for(lambda s=srv: s.proc.poll() is None and answered(s.port), 20,
                              what=f"a replacement worker (iteration {i})")
            assert second != first, srv.stderr()
            assert "cannot start" not in srv.stderr()


PAUSE = 5.0   # the injected fault: the master stopped for longer than --timeout


def test_a_paused_master_does_not_kill_healthy_workers_on_resume(tmp_path: Path) -> None:
    """Issue 14 item 4: kill -STOP master; (pause > --timeout); kill -CONT master."""
    write_app(tmp_path)
    with arbiter_server(tmp_path, "--workers", "2", "--timeout", "2") as srv:
        wait_log(srv, "generation 1 ready:")
        before = srv.wait_workers(2)
        srv.signal(signal.SIGSTOP)
        try:
            time.sleep(PAUSE)   # the fault itself, not a wait for a condition
        finally:
            srv.signal(signal.SIGCONT)
        err = wait_log(srv, "master was not running for")
        # the whole pause is reported (it was under-reported by the sleep asked for)
        found = re.search(r"master was not running for ([0-9.]+)s", err)
        assert found is not None and float(found[1]) >= PAUSE - 0.1, err
        assert wait_for(lambda: answered(srv.port), 10, what="an answer after resume")
        assert srv.workers() == before
        assert "SIGABRT" not in srv.stderr(), srv.stderr()
