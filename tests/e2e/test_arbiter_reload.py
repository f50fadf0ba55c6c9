"""HUP reloads under load (zero failed requests), rollback of broken deploys, respawn backoff."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

from tests.support.apps import write_app
from tests.support.http_client import get_body
from tests.support.load import LoadGen
from tests.support.process import arbiter_server, wait_for, wait_log, wait_worker_pids


def test_hup_under_load_switches_code_with_zero_failed_requests(tmp_path: Path) -> None:
    write_app(tmp_path, "v1")
    with arbiter_server(tmp_path, "--workers", "2", "--graceful-timeout", "10") as srv:
        srv.wait_ready()
        wait_log(srv, "generation 1 ready:")
        old = wait_worker_pids(srv, 2)
        with LoadGen(srv.port, keepalive=3, fresh=3) as load:
            load.wait_requests(200)
            write_app(tmp_path, "v2")
            srv.signal(signal.SIGHUP)
            wait_log(srv, "reload completed: generation 2")
            wait_for(lambda: get_body(srv.port).startswith("v2 "), what="v2 to answer")
            # old workers drain and exit while the load goes on
            wait_worker_pids(srv, 2, exclude=old, timeout=15)
            load.bodies.clear()
            load.wait_requests(200)
        assert load.failures == [], load.failures[:5]
        assert load.bodies == {"v2"}
        err = srv.stderr()
        assert "reload started: booting generation 2" in err
        assert "(gen 1) retiring (reload)" in err


def test_hup_with_code_raising_at_import_rolls_back(tmp_path: Path) -> None:
    write_app(tmp_path, "v1")
    with arbiter_server(tmp_path, "--workers", "2") as srv:
        srv.wait_ready()
        wait_log(srv, "generation 1 ready:")
        old = wait_worker_pids(srv, 2)
        with LoadGen(srv.port, keepalive=1, fresh=1) as load:
            load.wait_requests(20)
            write_app(tmp_path, "v2", extra="raise ImportError('deploy is broken')")
            srv.signal(signal.SIGHUP)
            err = wait_log(srv, "reload rolled back: generation 2 failed")
            wait_log(srv, "ImportError: deploy is broken")
            load.wait_requests(20)
            assert srv.proc.poll() is None
            assert srv.workers() >= old
            assert get_body(srv.port).startswith("v1 ")
            assert "generation 1 keeps serving" in err
            # the fixed deploy goes through on the next HUP
            write_app(tmp_path, "v3")
            srv.signal(signal.SIGHUP)
            wait_log(srv, "reload completed: generation 3")
            wait_for(lambda: get_body(srv.port).startswith("v3 "), what="v3 to answer")
        assert load.failures == [], load.failures[:5]
        assert load.bodies <= {"v1", "v3"}


def test_hup_with_code_hanging_at_import_rolls_back_after_boot_timeout(tmp_path: Path) -> None:
    write_app(tmp_path, "v1")
    with arbiter_server(tmp_path, "--workers", "2", "--boot-timeout", "1.5") as srv:
        srv.wait_ready()
        wait_log(srv, "generation 1 ready:")
        write_app(tmp_path, "v2", extra="time.sleep(120)")
        srv.signal(signal.SIGHUP)
        err = wait_log(srv, "reload rolled back: generation 2 failed", timeout=10)
        assert "boot-timeout" in err or "boot timeout" in err
        assert get_body(srv.port).startswith("v1 ")
        # the stuck new workers are gone (stack dumped first); the old ones serve
        wait_for(lambda: srv.stderr().count("(gen 2) exited") + srv.stderr().count(
            "(gen 2) killed") == 2, 10, what="both gen 2 workers to exit")
        wait_log(srv, "in <module>")  # faulthandler's dump of the import
        assert srv.proc.poll() is None
        assert get_body(srv.port).startswith("v1 ")


def test_bad_config_on_hup_keeps_serving(tmp_path: Path) -> None:
    write_app(tmp_path, "v1")
    conf = tmp_path / "r.toml"
    conf.write_text("workers = 1\n")
    with arbiter_server(tmp_path, "-c", str(conf)) as srv:
        srv.wait_ready()
        wait_log(srv, "generation 1 ready:")
        conf.write_text("workers = 'many'\n")
        srv.signal(signal.SIGHUP)
        wait_log(srv, "reload aborted: configuration error")
        assert get_body(srv.port).startswith("v1 ")
        conf.write_text("workers = 2\n")
        srv.signal(signal.SIGHUP)
        wait_log(srv, "reload completed: generation 2")
        wait_worker_pids(srv, 2)


def test_hup_keeps_settings_that_need_a_restart_and_says_so(tmp_path: Path) -> None:
    write_app(tmp_path, "v1")
    conf = tmp_path / "r.toml"
    conf.write_text('workers = 1\npid = "a.pid"\n')
    with arbiter_server(tmp_path, "-c", str(conf)) as srv:
        srv.wait_ready()
        wait_log(srv, "generation 1 ready:")
        assert (tmp_path / "a.pid").read_text().strip() == str(srv.pid)
        conf.write_text('workers = 2\npid = "b.pid"\nbacklog = 64\n')
        srv.signal(signal.SIGHUP)
        err = wait_log(srv, "reload completed: generation 2")
        line = next(x for x in err.splitlines() if "need a restart" in x)
        assert "backlog" in line and "pid" in line and "workers" not in line, line
        wait_worker_pids(srv, 2)          # the reloadable change applies
        assert get_body(srv.port).startswith("v1 ")
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit(20) == 0
        assert not (tmp_path / "a.pid").exists() and not (tmp_path / "b.pid").exists()


def test_hup_with_an_unopenable_log_file_is_aborted(tmp_path: Path) -> None:
    write_app(tmp_path, "v1")
    conf = tmp_path / "r.toml"
    conf.write_text("workers = 1\n")
    with arbiter_server(tmp_path, "-c", str(conf)) as srv:
        srv.wait_ready()
        wait_log(srv, "generation 1 ready:")
        bad = tmp_path / "no-such-dir" / "access.log"
        conf.write_text(f'workers = 1\naccess_logfile = "{bad}"\n')
        srv.signal(signal.SIGHUP)
        err = wait_log(srv, "reload aborted: access-logfile: cannot open")
        assert "booting generation 2" not in err
        assert get_body(srv.port).startswith("v1 ")


def delays_in(log: str) -> list[float]:
    return [float(x) for x in re.findall(r"respawning in ([0-9.]+)s", log)]


def test_crashing_worker_is_retried_at_growing_intervals_and_recovers(tmp_path: Path) -> None:
    write_app(tmp_path, "v1")
    with arbiter_server(tmp_path, "--workers", "1", "--backoff", "0.8") as srv:
        srv.wait_ready()
        wait_log(srv, "generation 1 ready:")
        (pid,) = wait_worker_pids(srv, 1)
        write_app(tmp_path, "v2", extra="raise RuntimeError('crash loop')")
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: len(delays_in(srv.stderr())) >= 6, 20, what="six failed respawns")
        delays = delays_in(srv.stderr())[:6]
        assert delays[0] == 0.1, delays
        assert all(b >= a for a, b in zip(delays, delays[1:], strict=False)), delays
        assert max(delays) == 0.8 and delays[-1] == 0.8, delays
        err = srv.stderr()
        # the arbiter logs the traceback once; later failures get one line
        assert err.count("failed to boot:\nTraceback") == 1, err
        assert "failed to boot (same error as before: " in err
        assert srv.proc.poll() is None
        write_app(tmp_path, "v3")
        wait_for(lambda: get_body(srv.port).startswith("v3 "), 10, what="the fixed code")
