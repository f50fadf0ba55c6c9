"""Gunicorn server hooks called by the arbiter, in order (issue 16 item 2)."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.support.apps import write_app
from tests.support.process import arbiter_server, wait_for, wait_log, wait_worker_pids

CONF = '''
import multiprocessing, os

workers = 1
timeout = 30
graceful_timeout = 10
loglevel = "info"
LOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hooks.log")


def _note(*parts):
    with open(LOG, "a") as f:
        f.write(" ".join(str(p) for p in parts) + "\\n")


def on_starting(server):
    _note("on_starting", server.pid == os.getpid(), server.cfg.workers, server.proc_name)


def when_ready(server):
    _note("when_ready", server.num_workers, len(server.WORKERS))


def on_reload(server):
    _note("on_reload", os.environ.get("GREETING"))


def pre_fork(server, worker):
    _note("pre_fork", worker.pid, worker.age)


def child_exit(server, worker):
    _note("child_exit", worker.age)


def nworkers_changed(server, new_value, old_value):
    _note("nworkers_changed", new_value, old_value)


def on_exit(server):
    server.log.info("bye from on_exit")
    _note("on_exit")
'''


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_server_hooks_run_in_order_through_start_hup_ttin_term(tmp_path: Path) -> None:
    write_app(tmp_path)
    (tmp_path / "gunicorn.conf.py").write_text(CONF)
    (tmp_path / ".env").write_text("GREETING=hello\n")
    log = tmp_path / "hooks.log"
    with arbiter_server(tmp_path, "-c", "gunicorn.conf.py", "--env-file", ".env") as srv:
        wait_log(srv, "generation 1 ready:")
        wait_for(lambda: "when_ready 1 1" in lines(log), what="when_ready")
        (tmp_path / ".env").write_text("GREETING=again\n")
        srv.signal(signal.SIGHUP)
        wait_log(srv, "reload completed: generation 2")
        wait_for(lambda: "child_exit 1" in lines(log), what="the old worker's child_exit")
        srv.signal(signal.SIGTTIN)
        wait_worker_pids(srv, 2)
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit(30) == 0
    wait_log(srv, "bye from on_exit")
    assert lines(log) == [
        "on_starting True 1 app:app",
        "pre_fork None 1",
        "when_ready 1 1",
        "on_reload again",          # the env file is re-read on HUP
        "pre_fork None 2",
        "child_exit 1",
        "nworkers_changed 2 1",
        "pre_fork None 2",
        "child_exit 2",
        "child_exit 2",
        "on_exit",
    ]


def test_a_failing_on_starting_hook_fails_the_start(tmp_path: Path) -> None:
    write_app(tmp_path)
    (tmp_path / "gunicorn.conf.py").write_text(
        "def on_starting(server):\n    raise RuntimeError('no database')\n")
    with arbiter_server(tmp_path, "-c", "gunicorn.conf.py") as srv:
        assert srv.wait_exit(20) == 1
        wait_log(srv, "RuntimeError: no database")
        wait_log(srv, "on_starting hook failed")


def test_a_failing_hook_elsewhere_is_logged_and_serving_goes_on(tmp_path: Path) -> None:
    write_app(tmp_path)
    (tmp_path / "gunicorn.conf.py").write_text(
        "def pre_fork(server, worker):\n    raise RuntimeError('flaky')\n")
    with arbiter_server(tmp_path, "-c", "gunicorn.conf.py", "--workers", "1") as srv:
        wait_log(srv, "generation 1 ready:")
        wait_log(srv, "pre_fork hook failed")
        wait_log(srv, "RuntimeError: flaky")
