"""Process control for end-to-end tests: start reclusterd in its own process group, wait on
conditions with deadlines (never bare sleeps), read its logs, find its workers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import psutil

from reclusterd.control import CTL_SUFFIX, ctl_dir
from reclusterd.ctl import CtlFailure
from reclusterd.ctl import request as ctl_request

ROOT = Path(__file__).resolve().parent.parent.parent
T = TypeVar("T")


def free_port(host: str = "127.0.0.1") -> int:
    """An ephemeral loopback port that was free a moment ago."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for(cond: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.02,
             what: str = "condition") -> T:
    """Poll `cond` until it returns something truthy, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = cond()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def port_answers(port: int, host: str = "127.0.0.1") -> bool:
    """True when a TCP connect to host:port succeeds (something is listening)."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class Server:
    """A reclusterd (or other) process started in its own process group.

    `{port}` in `args` becomes the chosen port; `pass_fds` are inherited under the same
    numbers (for `fd://N` binds and systemd's LISTEN_FDS).
    """

    def __init__(self, args: Sequence[str], cwd: str | Path | None = None,
                 env: dict[str, str] | None = None, port: int | None = None,
                 host: str = "127.0.0.1", pass_fds: Sequence[int] = ()) -> None:
        self.port = port if port is not None else free_port(host)
        self.host = host
        self.logdir = Path(tempfile.mkdtemp(prefix="reclusterd-test-"))
        self.stdout_path = self.logdir / "stdout.log"
        self.stderr_path = self.logdir / "stderr.log"
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT)] + ([full_env["PYTHONPATH"]] if full_env.get("PYTHONPATH") else []))
        full_env.pop("WEB_CONCURRENCY", None)
        full_env["PYTHONUNBUFFERED"] = "1"
        if env:
            full_env.update(env)
        self.env = full_env
        self.args = [a.replace("{port}", str(self.port)) for a in args]
        self._out = open(self.stdout_path, "wb")  # noqa: SIM115
        self._err = open(self.stderr_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.args, cwd=str(cwd or ROOT), env=full_env, stdin=subprocess.DEVNULL,
            stdout=self._out, stderr=self._err, start_new_session=True,
            pass_fds=tuple(pass_fds))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 15.0) -> Server:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"server exited with {self.proc.returncode}:\n{self.stderr()}")
            return port_answers(self.port, self.host) and self.listens()
        deadline = time.monotonic() + timeout
        wait_for(ready, timeout, what=f"port {self.port} to answer")
        # The master binds before any worker has booted: a request now waits in the
        # backlog for as long as the boot takes (seconds on a loaded machine), longer
        # than a client's timeout. Where the arbiter's control socket says how many
        # workers are ready, wait (softly, within the same deadline) for one.
        while time.monotonic() < deadline and self._ready_workers() == 0:
            time.sleep(0.05)
        return self

    def _ready_workers(self) -> int | None:
        """Ready workers by `ctl status`; None when there is no control socket to ask."""
        path = os.path.join(ctl_dir(self.env), f"{self.pid}{CTL_SUFFIX}")
        if not os.path.exists(path):
            return None
        try:
            reply = ctl_request(path, {"cmd": "status"}, timeout=2.0)
        except CtlFailure:
            return None
        ready = reply.get("ready_workers")
        return ready if isinstance(ready, int) else None

    def listens(self) -> bool:
        """Our process holds the listening socket: the port answering is not enough on a
        shared machine, where another test's server may have taken the free port first
        (then ours fails to bind and exits, which wait_ready reports with its stderr)."""
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]   # a launcher (unshare) forks
        except psutil.Error:
            return False
        for proc in procs:
            try:
                conns = proc.net_connections(kind="tcp")
            except psutil.Error:
                continue
            if any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == self.port
                   for c in conns):
                return True
        return False

    def workers(self) -> set[int]:
        """PIDs of the live (non-zombie) children of the arbiter."""
        try:
            children = psutil.Process(self.pid).children()
        except psutil.NoSuchProcess:
            return set()
        out = set()
        for c in children:
            try:
                if c.status() != psutil.STATUS_ZOMBIE:
                    out.add(c.pid)
            except psutil.NoSuchProcess:
                pass
        return out

    def wait_workers(self, n: int, timeout: float = 15.0) -> set[int]:
        return wait_for(lambda: w if len(w := self.workers()) == n else None, timeout,
                        what=f"{n} workers")

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def wait_exit(self, timeout: float = 15.0) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """Kill the whole process group (the arbiter and every worker it forked)."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        else:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self._out.close()
        self._err.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def reclusterd(app: str, *opts: str, **kw: object) -> Server:
    """Start `python -m reclusterd APP --bind 127.0.0.1:{port} OPTS...`."""
    args = [sys.executable, "-m", "reclusterd", app, "--bind", "127.0.0.1:{port}", *opts]
    return Server(args, **kw)  # type: ignore[arg-type]


def arbiter_server(directory: Path, *opts: str, app: str = "app:app",
                   env: dict[str, str] | None = None) -> Server:
    """reclusterd on a fresh port, cwd = directory (the app's home), no stale .pyc."""
    full_env = {"PYTHONDONTWRITEBYTECODE": "1"}
    full_env.update(env or {})
    return reclusterd(app, *opts, cwd=directory, env=full_env)


def proc_title(pid: int) -> str:
    """The process title as ps shows it (setproctitle rewrites /proc/PID/cmdline)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def wait_log(server: Server, text: str, timeout: float = 15.0, count: int = 1) -> str:
    """Wait until `text` appears `count` times in the server's stderr; return the stderr."""
    def found() -> str | None:
        err = server.stderr()
        return err if err.count(text) >= count else None
    try:
        return wait_for(found, timeout, what=f"log line {text!r}")
    except AssertionError:
        raise AssertionError(f"no {text!r} in log:\n{server.stderr()[-4000:]}") from None


def wait_worker_pids(server: Server, n: int, timeout: float = 15.0,
                     exclude: set[int] | frozenset[int] = frozenset()) -> set[int]:
    """Wait for exactly n live workers (children of the arbiter), none of them in `exclude`."""
    def check() -> set[int] | None:
        w = server.workers()
        return w if len(w) == n and not (w & exclude) else None
    return wait_for(check, timeout, what=f"{n} workers (excluding {sorted(exclude)})")
