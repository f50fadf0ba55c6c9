"""An app that raises SystemExit or KeyboardInterrupt is an app error, not a dead thread."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import http_get, reclusterd

APP = '''
import sys

def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/exit":
        sys.exit(1)
    if path == "/kbd":
        raise KeyboardInterrupt
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]
'''


@pytest.mark.parametrize("kind", ["thread", "sync"])
def test_app_exit_gives_500_and_the_worker_keeps_serving(tmp_path: Path, kind: str) -> None:
    (tmp_path / "exitapp.py").write_text(APP)
    with reclusterd("exitapp:app", "--workers", "1", "--worker-class", kind, "--threads", "2",
                    "--chdir", str(tmp_path)) as srv:
        srv.wait_ready()
        pids = srv.wait_workers(1)
        for _ in range(3):      # more than --threads: no pool thread may be lost
            assert http_get(srv.port, "/exit")[0] == 500
            assert http_get(srv.port, "/kbd")[0] == 500
        assert http_get(srv.port, "/")[0] == 200
        assert srv.workers() == pids
        assert "SystemExit" in srv.stderr()
