"""Timeouts, recycling, USR2 binary upgrade, sd_notify, PID 1, status endpoint integration."""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from pathlib import Path

import psutil
import pytest

from tests.support.apps import write_app
from tests.support.http_client import get_body, http_get
from tests.support.load import LoadGen
from tests.support.process import (
    Server,
    arbiter_server,
    free_port,
    proc_title,
    wait_for,
    wait_log,
    wait_worker_pids,
)


def status_of(port: int, path: str) -> int:
    try:
        return http_get(port, path, timeout=2)[0]
    except Exception:
        return 0


def test_stuck_request_is_killed_after_timeout_with_its_stack_logged(tmp_path: Path) -> None:
    write_app(tmp_path)
    with arbiter_server(tmp_path, "--workers", "2", "--timeout", "1.5") as srv:
        srv.wait_ready()
        wait_log(srv, "generation 1 ready:")
        before = wait_worker_pids(srv, 2)
        t = threading.Thread(target=lambda: get_body(srv.port, "/hang", timeout=20), daemon=True)
        t.start()
        wait_for(lambda: (tmp_path / "hang-started").exists(), what="hanging request")
        # the other worker keeps serving while one is stuck
        for _ in range(5):
            assert get_body(srv.port).startswith("v1 ")
        err = wait_log(srv, "sending SIGABRT", timeout=10)
        line = next(x for x in err.splitlines() if "sending SIGABRT" in x)
        assert "silent for" in line and "(timeout 1.5s)" in line and "(gen 1)" in line
        stuck = int(line.split("worker ")[1].split()[0])
        assert stuck in before
        err = wait_log(srv, f"worker {stuck} (gen 1) ", timeout=10)
        wait_for(lambda: "in app" in srv.stderr() and "app.py" in srv.stderr(), 10,
                 what="the stuck request's stack in the log")
        wait_worker_pids(srv, 2, exclude={stuck})
        assert get_body(srv.port).startswith("v1 ")


@pytest.mark.parametrize("opts,trigger", [
    (("--max-requests", "15", "--max-requests-jitter", "5"), None),
    (("--max-worker-memory", "60"), "/hog?100"),
])
def test_recycling_replaces_workers_without_losing_a_request(
        tmp_path: Path, opts: tuple[str, ...], trigger: str | None) -> None:
    write_app(tmp_path)
    with arbiter_server(tmp_path, "--workers", "2", *opts) as srv:
        srv.wait_ready()
        wait_log(srv, "generation 1 ready:")
        # memory: a request the over-limit worker had received but not started gets 503 +
        # Connection: close (README: --max-worker-memory), retried on a new connection
        with LoadGen(srv.port, keepalive=2, fresh=2, unavailable_ok=bool(trigger)) as load:
            if trigger:
                load.wait_requests(20)
                status, _, _ = http_get(srv.port, trigger, timeout=10)
                assert status == 200
            # max-requests: retired by the arbiter once its replacement is ready; memory:
            # the worker stops taking requests and drains itself at once (it may be gone
            # before its replacement is ready), so wait for the replacement either way
            wait_log(srv, "starting its replacement first", count=1 if trigger else 3,
                     timeout=20)
            wait_log(srv, "exited", timeout=20)
            load.wait_requests(30)
        assert load.failures == [], load.failures[:5]
        err = srv.stderr()
        assert "recycling (" in err and "starting its replacement first" in err
        assert ("memory" if trigger else "max-requests") in err
        assert len(srv.workers()) >= 2


def test_usr2_then_term_old_master_leaves_the_new_one_serving(tmp_path: Path) -> None:
    write_app(tmp_path)
    pidfile = tmp_path / "r.pid"
    sport = free_port()
    with arbiter_server(tmp_path, "--workers", "2", "--pid", str(pidfile),
                        "--status-bind", f"127.0.0.1:{sport}") as srv:
        srv.wait_ready()
        wait_log(srv, "generation 1 ready:")
        old_workers = wait_worker_pids(srv, 2)
        srv.signal(signal.SIGUSR2)
        oldbin = Path(str(pidfile) + ".oldbin")
        wait_for(lambda: oldbin.exists() and pidfile.exists()
                 and pidfile.read_text().strip() not in ("", str(srv.pid)), 15,
                 what="the new master's pidfile")
        assert oldbin.read_text().strip() == str(srv.pid)
        new_master = int(pidfile.read_text())
        wait_for(lambda: len(psutil.Process(new_master).children()) == 2, 15,
                 what="the new master's workers")
        assert proc_title(new_master).startswith("reclusterd: master [app:app]")
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit(15) == 0
        assert not oldbin.exists()
        assert pidfile.read_text().strip() == str(new_master)
        for _ in range(10):
            body = get_body(srv.port)
            assert body.startswith("v1 ")
            assert int(body.split()[1]) not in old_workers
        # the new master takes over the status endpoint once the old one let go of it
        wait_for(lambda: status_of(sport, "/livez") == 200, 10, what="the new master's /livez")
        assert psutil.pid_exists(new_master)
        os.kill(new_master, signal.SIGTERM)
        wait_for(lambda: not psutil.pid_exists(new_master) or psutil.Process(
            new_master).status() == psutil.STATUS_ZOMBIE, 15, what="new master to exit")
        wait_for(lambda: not pidfile.exists(), 5, what="pidfile removal")


def test_sd_notify_ready_reloading_stopping(tmp_path: Path) -> None:
    write_app(tmp_path)
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(15)
    got: list[str] = []

    def expect(prefix: str) -> str:
        while True:
            msg = sock.recv(4096).decode()
            got.append(msg)
            if msg.startswith(prefix) or f"\n{prefix}" in msg:
                return msg

    try:
        with arbiter_server(tmp_path, "--workers", "2", env={"NOTIFY_SOCKET": path}) as srv:
            msg = expect("READY=1")
            assert len(srv.workers()) == 2 and "ready" in srv.stderr()
            assert "STATUS=" in msg
            srv.signal(signal.SIGHUP)
            expect("RELOADING=1")
            expect("READY=1")
            wait_log(srv, "reload completed")
            srv.signal(signal.SIGTERM)
            expect("STOPPING=1")
            assert srv.wait_exit(15) == 0
    finally:
        sock.close()


def test_as_pid_1_term_exits_0_and_orphans_are_reaped(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for unshare --pid")
    orphan_maker = (
        "import os as _os\n"
        "if _os.fork() == 0:\n"
        "    if _os.fork() == 0:\n"
        "        time.sleep(0.3)\n"
        "        _os._exit(0)\n"
        "    _os._exit(0)\n"
        "_os.wait()\n")
    write_app(tmp_path, extra=orphan_maker)
    port = free_port()
    args = ["unshare", "--pid", "--fork", "--kill-child", sys.executable, "-m", "reclusterd",
            "app:app", "--bind", f"127.0.0.1:{port}", "--workers", "2"]
    with Server(args, cwd=tmp_path, port=port, env={"PYTHONDONTWRITEBYTECODE": "1"}) as srv:
        srv.wait_ready()
        (master,) = wait_for(lambda: psutil.Process(srv.pid).children(), what="the arbiter")
        arb = psutil.Process(master.pid)
        wait_log(srv, "generation 1 ready:")
        # each worker's orphaned grandchild was re-parented to PID 1 (us) and must be reaped
        def reaped() -> bool:
            try:   # a child may vanish between children() and status(): poll again
                kids = arb.children()
                return len(kids) == 2 and all(c.status() != psutil.STATUS_ZOMBIE for c in kids)
            except (psutil.Error, OSError):
                return False
        wait_for(reaped, 10, what="orphans reaped")
        assert get_body(port).startswith("v1 ")
        os.kill(arb.pid, signal.SIGTERM)
        assert srv.wait_exit(15) == 0


def test_status_endpoint_served_by_the_arbiter(tmp_path: Path) -> None:
    write_app(tmp_path)
    sport = free_port()
    with arbiter_server(tmp_path, "--workers", "2", "--status-bind", f"127.0.0.1:{sport}",
                        "--shutdown-delay", "1.5") as srv:
        srv.wait_ready()
        wait_log(srv, "generation 1 ready:")
        for _ in range(7):
            assert get_body(srv.port).startswith("v1 ")
        assert http_get(sport, "/livez")[0] == 200
        wait_for(lambda: http_get(sport, "/readyz")[0] == 200, what="/readyz 200")

        def requests_total() -> float:
            text = http_get(sport, "/metrics")[2].decode()
            line = next(x for x in text.splitlines()
                        if x.startswith("reclusterd_requests_total "))
            return float(line.split()[1])
        wait_for(lambda: requests_total() >= 7, what="requests counted in /metrics")
        text = http_get(sport, "/metrics")[2].decode()
        assert 'reclusterd_workers{state="ready"} 2' in text
        srv.signal(signal.SIGTERM)
        wait_for(lambda: http_get(sport, "/readyz")[0] == 503, 5, what="/readyz 503")
        assert get_body(srv.port).startswith("v1 ")   # still serving during the delay
        assert srv.wait_exit(15) == 0
