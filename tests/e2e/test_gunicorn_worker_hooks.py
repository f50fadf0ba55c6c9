"""Gunicorn's worker-side server hooks from a real gunicorn.conf.py (issue 16 item 2):
post_worker_init per worker, worker_int on QUIT, worker_abort on a --timeout kill,
worker_exit as the worker leaves. Each hook appends a line to a file next to the config."""

from __future__ import annotations

import os
import signal
import socket
import textwrap
from pathlib import Path

from tests.support.process import reclusterd, wait_for, wait_log

APP = "tests.e2e.test_wsgi_apps:app"

CONF = textwrap.dedent('''
    import os
    import multiprocessing

    workers = 2
    timeout = 30
    LOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hooks.log")


    def _line(text):
        with open(LOG, "a") as f:
            f.write(text + "\\n")


    def post_worker_init(worker):
        worker.log.info("worker %s initialised", worker.pid)
        _line(f"post_worker_init {worker.pid} ppid={worker.ppid} app={worker.cfg.app} "
              f"alive={worker.alive}")


    def worker_int(worker):
        _line(f"worker_int {worker.pid}")


    def worker_abort(worker):
        _line(f"worker_abort {worker.pid}")


    def worker_exit(server, worker):
        _line(f"worker_exit {worker.pid} server={server.pid}")
''')


def lines(tmp: Path, prefix: str) -> list[str]:
    path = tmp / "hooks.log"
    text = path.read_text() if path.exists() else ""
    return [ln for ln in text.splitlines() if ln.startswith(prefix + " ")]


def test_post_worker_init_per_worker_and_worker_int_on_quit(tmp_path: Path) -> None:
    (tmp_path / "gunicorn.conf.py").write_text(CONF)
    with reclusterd(APP, "-c", str(tmp_path / "gunicorn.conf.py")) as srv:
        srv.wait_ready()
        pids = srv.wait_workers(2)
        inits = wait_for(lambda: got if len(got := lines(tmp_path, "post_worker_init")) == 2
                         else None, what="post_worker_init from both workers")
        assert {int(ln.split()[1]) for ln in inits} == pids
        assert all(f"ppid={srv.pid} app={APP} alive=True" in ln for ln in inits), inits
        wait_log(srv, "initialised")  # worker.log is the error log

        victim = min(pids)
        os.kill(victim, signal.SIGQUIT)
        wait_for(lambda: lines(tmp_path, "worker_exit"), what="worker_exit after QUIT")
        assert lines(tmp_path, "worker_int") == [f"worker_int {victim}"]
        assert lines(tmp_path, "worker_exit") == [f"worker_exit {victim} server={srv.pid}"]
        # the arbiter replaces it; the new worker runs post_worker_init too
        wait_for(lambda: len(lines(tmp_path, "post_worker_init")) == 3, timeout=30,
                 what="replacement")
        assert lines(tmp_path, "worker_abort") == []
        # a graceful stop: every worker leaving after its drain runs worker_exit
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit(30) == 0
        assert len(lines(tmp_path, "worker_exit")) == 3
        assert len(lines(tmp_path, "worker_int")) == 1


def test_worker_abort_on_a_timeout_kill(tmp_path: Path) -> None:
    (tmp_path / "gunicorn.conf.py").write_text(CONF)
    with reclusterd(APP, "-c", str(tmp_path / "gunicorn.conf.py"), "--workers", "1",
                    "--timeout", "2") as srv:
        srv.wait_ready()
        (wpid,) = srv.wait_workers(1)
        with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as s:
            s.sendall(b"GET /sleep?60 HTTP/1.1\r\nHost: h\r\n\r\n")
            wait_for(lambda: lines(tmp_path, "worker_abort"), timeout=20,
                     what="worker_abort after the --timeout kill")
        assert lines(tmp_path, "worker_abort") == [f"worker_abort {wpid}"]
        wait_for(lambda: f"worker_exit {wpid} server={srv.pid}"
                 in lines(tmp_path, "worker_exit"), what="worker_exit after the abort")
        assert lines(tmp_path, "worker_int") == []
