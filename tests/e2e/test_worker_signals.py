"""Signals that reach a worker while it is still importing the app."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.support.apps import write_app
from tests.support.http_client import http_get
from tests.support.process import reclusterd, wait_for


def test_stray_signals_do_not_kill_a_booting_worker(tmp_path: Path) -> None:
    # The app blocks at import until a file appears, so the workers are surely booting.
    gate = tmp_path / "go"
    write_app(tmp_path, extra=(
        "import os, time\n"
        f"while not os.path.exists({str(gate)!r}):\n"
        "    time.sleep(0.02)\n"))
    with reclusterd("app:app", "--workers", "2", "--chdir", str(tmp_path)) as srv:
        booting = wait_for(lambda: w if len(w := srv.workers()) == 2 else None,
                           what="2 booting workers")
        for pid in booting:
            for sig in (signal.SIGUSR1, signal.SIGHUP, signal.SIGTTIN, signal.SIGUSR2):
                os.kill(pid, sig)
        gate.touch()
        srv.wait_ready()
        try:
            status = http_get(srv.port, "/")[0]
        except OSError as e:
            raise AssertionError(srv.stderr()) from e
        assert status == 200
        assert srv.workers() == booting, srv.stderr()
