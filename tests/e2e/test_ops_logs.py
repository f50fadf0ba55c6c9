"""OPS e2e: access log lines (Gunicorn format, JSON) and USR1 reopen after rotation."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

from tests.support.apps import OPS_ECHO
from tests.support.http_client import http_get
from tests.support.process import free_port, reclusterd, wait_for


def all_ready(status_port: int, n: int) -> bool:
    try:
        text = http_get(status_port, "/metrics", timeout=2)[2].decode()
    except OSError:
        return False
    return f'reclusterd_workers{{state="ready"}} {n}\n' in text


def test_access_log_and_usr1_reopen(tmp_path: Path) -> None:
    app = OPS_ECHO
    log = tmp_path / "access.log"
    errlog = tmp_path / "error.log"
    sport = free_port()
    with reclusterd(app, "--workers", "2", "--access-logfile", str(log),
                    "--error-logfile", str(errlog), "--status-bind", f"127.0.0.1:{sport}",
                    cwd=tmp_path) as srv:
        srv.wait_ready()
        # USR1 to a still-booting worker is a separate (arbiter) matter: test the reopen
        wait_for(lambda: all_ready(sport, 2), 15, what="both workers ready")
        assert http_get(srv.port, "/first?a=1", headers={"User-Agent": "ops-test"})[0] == 200
        line = wait_for(lambda: log.exists() and log.read_text(), 10, what="access log line")
        assert re.search(r'^127\.0\.0\.1 - - \[[^\]]+\] "GET /first\?a=1 HTTP/1\.1" 200 \d+ '
                         r'"-" "ops-test"$', line, re.M), line
        os.rename(log, tmp_path / "access.log.1")
        os.rename(errlog, tmp_path / "error.log.1")
        srv.signal(signal.SIGUSR1)

        def reopened() -> bool:
            http_get(srv.port, "/second")
            return log.exists() and "/second" in log.read_text()
        wait_for(reopened, 10, interval=0.1, what="access log reopened after USR1")
        assert "/first" not in log.read_text()
        wait_for(lambda: errlog.exists(), 10, what="error log reopened after USR1")
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit(20) == 0


def test_access_log_json_to_stdout(tmp_path: Path) -> None:
    app = OPS_ECHO
    with reclusterd(app, "--workers", "1", "--access-logfile", "-",
                    "--access-logformat", "json", cwd=tmp_path) as srv:
        srv.wait_ready()
        assert http_get(srv.port, "/j?x=2")[0] == 200
        out = wait_for(lambda: "/j" in srv.stdout() and srv.stdout(), 10,
                       what="JSON access line on stdout")
        rec = json.loads([ln for ln in out.splitlines() if '"/j"' in ln][0])
        assert rec["path"] == "/j" and rec["query"] == "x=2" and rec["status"] == 200
