"""/livez fails while the app crash-loops (no worker ready for longer than --boot-timeout)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.support.apps import write_app
from tests.support.http_client import http_get
from tests.support.process import arbiter_server, free_port, wait_for, wait_log

# A deploy whose respawns fail: once `broken` exists, importing the app raises.
BREAKABLE = 'if os.path.exists("broken"):\n    raise RuntimeError("broken on purpose")\n'


def probe(port: int, path: str) -> int:
    return http_get(port, path, timeout=3)[0]


def test_livez_fails_while_no_worker_can_boot_and_recovers(tmp_path: Path) -> None:
    write_app(tmp_path, extra=BREAKABLE)
    sport = free_port()
    with arbiter_server(tmp_path, "--workers", "1", "--boot-timeout", "2", "--backoff", "1",
                        "--status-bind", f"127.0.0.1:{sport}") as srv:
        wait_log(srv, "generation 1 ready:")
        assert probe(sport, "/livez") == 200
        (worker,) = srv.workers()
        (tmp_path / "broken").touch()
        os.kill(worker, signal.SIGKILL)          # its replacements cannot import the app
        wait_log(srv, "RuntimeError: broken on purpose")
        wait_for(lambda: probe(sport, "/livez") == 503, 20, what="/livez 503")
        wait_log(srv, "/livez failing: no worker ready for over 2s")
        assert probe(sport, "/readyz") == 503
        assert srv.proc.poll() is None           # the master keeps trying, never exits
        (tmp_path / "broken").unlink()
        wait_for(lambda: probe(sport, "/livez") == 200, 20, what="/livez 200 again")
        wait_log(srv, "/livez healthy again")
        assert probe(sport, "/readyz") == 200
