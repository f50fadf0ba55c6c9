"""WSGI edge cases: SystemExit in the app, Upgrade requests, absolute-form targets."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.http_client import http_get, raw_request
from tests.support.process import reclusterd, wait_log


@pytest.mark.parametrize("kind", ["thread", "sync"])
def test_app_exit_gives_500_and_the_worker_keeps_serving(tmp_path: Path, kind: str) -> None:
    with reclusterd("tests.apps.wsgi_exit:app",
                    "--workers", "1", "--worker-class", kind, "--threads", "2",
                    "--chdir", str(tmp_path)) as srv:
        srv.wait_ready()
        pids = srv.wait_workers(1)
        for _ in range(3):      # more than --threads: no pool thread may be lost
            assert http_get(srv.port, "/exit")[0] == 500
            assert http_get(srv.port, "/kbd")[0] == 500
        assert http_get(srv.port, "/")[0] == 200
        assert srv.workers() == pids
        wait_log(srv, "SystemExit")


def test_upgrade_request_to_wsgi_is_served_as_http() -> None:
    """WSGI cannot switch protocols, so Upgrade is ignored (RFC 9110 §7.8): the request is
    served and the connection goes on as HTTP/1.1 (issue 13 item 4)."""
    with reclusterd("examples.hello:app", "--workers", "1") as srv:
        srv.wait_ready()
        raw = raw_request(srv.port, b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                          b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                          b"Sec-WebSocket-Version: 13\r\n\r\n"
                          b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert raw.count(b"HTTP/1.1 200 ") == 2, raw
        first = raw.split(b"\r\n\r\n", 1)[0].lower()
        assert b"\r\nconnection: close" not in first


def test_absolute_form_target_authority_wins_over_host(tmp_path: Path) -> None:
    # RFC 9112 §3.2.2: the origin server ignores Host and uses the target's authority.
    import json

    with reclusterd("tests.apps.wsgi_host_env:app",
                    "--workers", "1", "--chdir", str(tmp_path)) as srv:
        srv.wait_ready()
        raw = raw_request(srv.port, b"GET http://other.example:9/env?q=1 HTTP/1.1\r\n"
                          b"Host: x\r\nConnection: close\r\n\r\n")
        env = json.loads(raw.split(b"\r\n\r\n", 1)[1])
        assert env == {"SERVER_NAME": "other.example", "SERVER_PORT": "9",
                       "HTTP_HOST": "other.example:9", "PATH_INFO": "/env",
                       "QUERY_STRING": "q=1"}
        raw = raw_request(srv.port, b"GET https://secure.example/ HTTP/1.1\r\n"
                          b"Host: x\r\nConnection: close\r\n\r\n")
        env = json.loads(raw.split(b"\r\n\r\n", 1)[1])
        assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("secure.example", "443")


def test_post_fork_hook_is_imported_from_the_app_directory(tmp_path: Path) -> None:
    (tmp_path / "hooks.py").write_text(
        "import os\n"
        "def post_fork(worker):\n"
        f"    open(os.path.join({str(tmp_path)!r}, 'forked-%d' % os.getpid()), 'w').close()\n")
    # started from another directory: only --chdir makes hooks.py importable
    with reclusterd("tests.apps.wsgi_host_env:app", "--workers", "1", "--chdir", str(tmp_path),
                    "--post-fork", "hooks:post_fork", cwd="/") as srv:
        srv.wait_ready()
        (pid,) = srv.wait_workers(1)
        assert http_get(srv.port, "/")[0] == 200
        assert (tmp_path / f"forked-{pid}").exists()
