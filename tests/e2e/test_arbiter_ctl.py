"""`reclusterd ctl` over the arbiter's control socket (issue 14 item 11)."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

from tests.support.apps import write_app
from tests.support.process import ROOT, arbiter_server, wait_for, wait_log, wait_worker_pids


def ctl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run([sys.executable, "-m", "reclusterd", "ctl", *args], cwd=ROOT,
                          env=full, capture_output=True, text=True, timeout=30)


def test_a_burst_of_ctl_workers_applies_every_change(tmp_path: Path) -> None:
    write_app(tmp_path)
    sock = str(tmp_path / "r.ctl")
    with arbiter_server(tmp_path, "--workers", "1", "--control-socket", sock) as srv:
        wait_log(srv, "generation 1 ready:")
        counts = [2, 3, 4, 3, 2, 3, 4, 5, 4, 3]
        previous = 1
        for n in counts:                  # back to back, no waiting in between
            r = ctl("--socket", sock, "--json", "workers", str(n))
            assert r.returncode == 0, r.stderr
            reply = json.loads(r.stdout)
            assert (reply["previous"], reply["workers"]) == (previous, n)
            previous = n
        wait_worker_pids(srv, 3, timeout=30)
        status = json.loads(ctl("--socket", sock, "--json", "status").stdout)
        assert status["target_workers"] == 3
        wait_for(lambda: "3 of 3 workers ready" in ctl("--socket", sock, "status").stdout,
                 30, what="3 ready workers in ctl status")


def test_socket_is_owner_only_beside_the_pidfile_and_ctl_reload_and_stop(
        tmp_path: Path) -> None:
    write_app(tmp_path)
    pidfile = tmp_path / "app.pid"
    with arbiter_server(tmp_path, "--workers", "1", "--pid", str(pidfile)) as srv:
        wait_log(srv, "generation 1 ready:")
        sock = tmp_path / "app.ctl"
        mode = os.stat(sock).st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
        out = ctl("-p", str(pidfile), "status")
        assert out.returncode == 0 and f"master {srv.pid}: generation 1" in out.stdout
        assert "ready" in out.stdout.splitlines()[1]
        r = ctl("-p", str(pidfile), "reload")
        assert r.returncode == 0 and "generation 2" in r.stdout, r.stderr
        wait_log(srv, "reload completed: generation 2")
        assert ctl("-p", str(pidfile), "stop").returncode == 0
        assert srv.wait_exit(30) == 0
        assert not sock.exists()


def test_two_servers_get_their_own_sockets_in_the_runtime_dir(tmp_path: Path) -> None:
    write_app(tmp_path)
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = {"XDG_RUNTIME_DIR": str(runtime)}
    with arbiter_server(tmp_path, "--workers", "1", env=env) as a, \
            arbiter_server(tmp_path, "--workers", "1", env=env) as b:
        wait_log(a, "generation 1 ready:")
        wait_log(b, "generation 1 ready:")
        path_a = runtime / "reclusterd" / f"{a.pid}.ctl"
        path_b = runtime / "reclusterd" / f"{b.pid}.ctl"
        for srv, path in ((a, path_a), (b, path_b)):
            reply = json.loads(ctl("--socket", str(path), "--json", "status").stdout)
            assert reply["pid"] == srv.pid
        both = ctl("status", env=env)        # no --socket: ambiguous, says so in one line
        assert both.returncode == 1 and "pick one with --socket" in both.stderr
        assert len(both.stderr.strip().splitlines()) == 1


def test_no_server_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "none.ctl"
    r = ctl("--socket", str(path), "status")
    assert r.returncode == 1
    assert r.stderr.strip() == f"reclusterd ctl: error: no reclusterd control socket at {path}"


def _socket_file(path: Path, listen: bool) -> socket.socket | None:
    """A unix socket file at `path`: kept listening (returned) or closed at once (a
    stale file: connecting to it is refused)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    if listen:
        s.listen(1)
        return s
    s.close()
    return None


def test_stale_sockets_of_dead_masters_are_swept_and_only_those(tmp_path: Path) -> None:
    """Issue 14 QA: PID-named sockets left by masters killed without cleanup (SIGKILL,
    OOM) were never removed from the runtime dir."""
    write_app(tmp_path)
    runtime = tmp_path / "run"
    (runtime / "reclusterd").mkdir(parents=True, mode=0o700)
    ctl_dir = runtime / "reclusterd"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = int(gone.stdout)             # a pid whose process has exited
    stale = ctl_dir / f"{dead}.ctl"
    _socket_file(stale, listen=False)
    live_pid = ctl_dir / f"{os.getpid()}.ctl"     # a live pid, even if nobody listens
    _socket_file(live_pid, listen=False)
    listening = _socket_file(ctl_dir / f"{dead + 1}.ctl", listen=True)   # answers: kept
    other = ctl_dir / "other.ctl"                  # not our naming pattern
    _socket_file(other, listen=False)
    plain = ctl_dir / f"{dead + 2}.ctl"            # not a socket
    plain.write_text("")
    try:
        with arbiter_server(tmp_path, "--workers", "1",
                            env={"XDG_RUNTIME_DIR": str(runtime)}) as srv:
            wait_log(srv, "generation 1 ready:")
            assert "removed 1 stale socket(s)" in srv.stderr()
            assert not stale.exists()
            left = {p.name for p in ctl_dir.iterdir()}
            assert left == {live_pid.name, f"{dead + 1}.ctl", other.name, plain.name,
                            f"{srv.pid}.ctl"}
    finally:
        assert listening is not None
        listening.close()


def test_a_socket_left_by_a_killed_master_is_named_as_such(tmp_path: Path) -> None:
    path = tmp_path / "app.ctl"
    left = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    left.bind(str(path))             # bound, never listening: what a SIGKILL leaves
    left.close()
    r = ctl("--socket", str(path), "status")
    assert r.returncode == 1
    assert r.stderr.strip() == (f"reclusterd ctl: error: {path} refuses connections: its "
                                "master is gone (a SIGKILL leaves the file behind)")


def test_a_usage_mistake_is_one_line_and_status_1(tmp_path: Path) -> None:
    r = ctl("--socket", str(tmp_path / "x.ctl"), "workers", "abc")
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith("reclusterd ctl: error: argument N: invalid int value: 'abc'")
