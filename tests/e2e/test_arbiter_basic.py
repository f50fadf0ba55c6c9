"""Arbiter basics with real processes: titles, replacement, TERM/QUIT, pidfile, errors, scaling."""

from __future__ import annotations

import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.support.apps import write_app
from tests.support.http_client import get_body, http_get
from tests.support.process import (
    arbiter_server,
    port_answers,
    proc_title,
    wait_for,
    wait_log,
    wait_worker_pids,
)


def port_is_free(port: int) -> bool:
    """Can a new server (SO_REUSEADDR, like every server) listen on the port again?"""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
        except OSError:
            return False
        return True


def test_workers_with_titles_and_a_killed_worker_is_replaced(tmp_path: Path) -> None:
    write_app(tmp_path)
    with arbiter_server(tmp_path, "--workers", "3") as srv:
        srv.wait_ready()
        pids = wait_worker_pids(srv, 3)
        log = wait_log(srv, "ready in", count=3)
        assert "s (thread, WSGI)" in log          # the class the auto rule chose
        assert proc_title(srv.pid).startswith("reclusterd: master [app:app]")
        for pid in pids:
            assert proc_title(pid).startswith("reclusterd: worker [app:app]")
        victim = min(pids)
        srv_pids_before = set(pids)
        import os
        os.kill(victim, signal.SIGKILL)
        new = wait_worker_pids(srv, 3, exclude={victim}, timeout=10)
        assert len(new - srv_pids_before) == 1
        log = wait_log(srv, f"worker {victim} (gen 1) killed by SIGKILL")
        assert get_body(srv.port).startswith("v1 ")
        assert "ready in" in log


def test_name_replaces_app_in_titles(tmp_path: Path) -> None:
    write_app(tmp_path)
    with arbiter_server(tmp_path, "--workers", "1", "--name", "shop") as srv:
        srv.wait_ready()
        (pid,) = wait_worker_pids(srv, 1)
        wait_log(srv, "ready in")
        assert proc_title(srv.pid).startswith("reclusterd: master [shop]")
        assert proc_title(pid).startswith("reclusterd: worker [shop]")


def test_term_waits_for_in_flight_request_then_exits_0_and_frees_port(tmp_path: Path) -> None:
    write_app(tmp_path)
    result: list[tuple[int, bytes]] = []
    with arbiter_server(tmp_path, "--workers", "2", "--graceful-timeout", "10") as srv:
        srv.wait_ready()

        def slow() -> None:
            status, _, body = http_get(srv.port, "/slow?2", timeout=15)
            result.append((status, body))

        t = threading.Thread(target=slow)
        t.start()
        wait_for(lambda: (tmp_path / "slow-started").exists(), what="slow request to start")
        start = time.monotonic()
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit(15) == 0
        took = time.monotonic() - start
        t.join(5)
        assert result and result[0][0] == 200 and result[0][1].startswith(b"v1 ")
        assert took >= 1.0, "TERM did not wait for the in-flight request"
        assert port_is_free(srv.port)
        wait_log(srv, "graceful shutdown")


def test_term_kills_requests_that_outlive_the_graceful_timeout(tmp_path: Path) -> None:
    write_app(tmp_path)
    with arbiter_server(tmp_path, "--workers", "1", "--graceful-timeout", "1") as srv:
        srv.wait_ready()
        t = threading.Thread(target=lambda: get_body(srv.port, "/hang", timeout=10), daemon=True)
        t.start()
        wait_for(lambda: (tmp_path / "hang-started").exists(), what="hanging request")
        start = time.monotonic()
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit(10) == 0
        assert time.monotonic() - start < 5
        wait_log(srv, "SIGKILL")


@pytest.mark.parametrize("sig", [signal.SIGQUIT, signal.SIGINT])
def test_quit_and_int_are_fast_even_with_a_hanging_request(tmp_path: Path,
                                                           sig: signal.Signals) -> None:
    write_app(tmp_path)
    with arbiter_server(tmp_path, "--workers", "2", "--graceful-timeout", "30") as srv:
        srv.wait_ready()
        t = threading.Thread(target=lambda: get_body(srv.port, "/hang", timeout=10), daemon=True)
        t.start()
        wait_for(lambda: (tmp_path / "hang-started").exists(), what="hanging request")
        start = time.monotonic()
        srv.signal(sig)
        assert srv.wait_exit(10) == 0
        assert time.monotonic() - start < 3
        wait_for(lambda: port_is_free(srv.port), 3, what="port to be free")


def test_pidfile_written_and_removed(tmp_path: Path) -> None:
    write_app(tmp_path)
    pidfile = tmp_path / "run" / "r.pid"
    pidfile.parent.mkdir()
    with arbiter_server(tmp_path, "--workers", "1", "--pid", str(pidfile)) as srv:
        srv.wait_ready()
        assert pidfile.read_text().strip() == str(srv.pid)
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit(10) == 0
        assert not pidfile.exists()


def test_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    write_app(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        srv = arbiter_server(tmp_path, "--workers", "1")
        srv.args = [a.replace(f"127.0.0.1:{srv.port}", f"127.0.0.1:{port}") for a in srv.args]
        srv.stop()
        from tests.support.process import reclusterd

        with reclusterd("app:app", "--workers", "1", cwd=tmp_path, port=port) as srv2:
            code = srv2.wait_exit(10)
            err = srv2.stderr()
        assert code == 1
        assert f"127.0.0.1:{port}" in err and "in use" in err
        assert "Traceback" not in err
        assert len(err.strip().splitlines()) <= 2


@pytest.mark.parametrize("setting", ["error-logfile", "access-logfile"])
def test_unopenable_log_file_is_a_one_line_error(tmp_path: Path, setting: str) -> None:
    write_app(tmp_path)
    path = tmp_path / "missing-dir" / "x.log"
    with arbiter_server(tmp_path, "--workers", "1", f"--{setting}", str(path)) as srv:
        assert srv.wait_exit(10) == 1
        err = srv.stderr()
    assert f"{setting}: cannot open {path}: No such file or directory" in err, err
    assert "Traceback" not in err and "worker" not in err, err


def test_import_error_at_first_start_exits_1_with_traceback_once(tmp_path: Path) -> None:
    write_app(tmp_path, extra="raise RuntimeError('boom at import')")
    with arbiter_server(tmp_path, "--workers", "3") as srv:
        assert srv.wait_exit(15) == 1
        err = srv.stderr()
    assert err.count("raise RuntimeError('boom at import')") == 1, err
    assert err.count("Traceback (most recent call last)") == 1, err
    assert "RuntimeError: boom at import" in err
    assert "app.py" in err
    assert not port_answers(srv.port)


def test_ttin_adds_and_ttou_retires_a_worker(tmp_path: Path) -> None:
    write_app(tmp_path)
    with arbiter_server(tmp_path, "--workers", "2") as srv:
        srv.wait_ready()
        before = wait_worker_pids(srv, 2)
        srv.signal(signal.SIGTTIN)
        three = wait_worker_pids(srv, 3)
        assert before < three
        wait_log(srv, "ready in", count=3)
        srv.signal(signal.SIGTTOU)
        two = wait_worker_pids(srv, 2)
        assert two < three
        wait_log(srv, "(scale-down)")
        srv.signal(signal.SIGTTOU)
        wait_worker_pids(srv, 1)
        srv.signal(signal.SIGTTOU)   # never below one
        wait_log(srv, "TTOU ignored: already at the minimum of 1 worker")
        assert len(srv.workers()) == 1
        assert get_body(srv.port).startswith("v1 ")


def test_usr1_reopens_logs(tmp_path: Path) -> None:
    write_app(tmp_path)
    log = tmp_path / "error.log"
    with arbiter_server(tmp_path, "--workers", "1", "--error-logfile", str(log)) as srv:
        srv.wait_ready()
        wait_for(lambda: "ready in" in log.read_text(), what="ready in the log file")
        log.rename(tmp_path / "error.log.1")
        srv.signal(signal.SIGUSR1)
        wait_for(lambda: log.exists() and "SIGUSR1" in log.read_text(), 10,
                 what="a reopened error log")
