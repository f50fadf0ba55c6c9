"""The servers the bench compares: how to start each one, probe it, measure it and stop it.

Every server runs `loadtests/apps.py` with 2 workers on a loopback ephemeral port,
in its own session (process group), so `stop()` ends it and everything it forked.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORKERS = 2
HOST = "127.0.0.1"


@dataclass(frozen=True)
class Spec:
    """One server configuration: name, interface, the module it needs, its argv."""

    name: str
    interface: str  # "wsgi" | "asgi"
    needs: str  # importable module that must exist in the bench interpreter
    argv: Callable[[str, int], list[str]]  # (python, port) -> command line
    peer: bool = True
    reference: bool = False  # shown for scale (the ceiling), never ranked
    only: tuple[str, ...] = ()  # scenarios it can serve; () = all
    pythonpath: str = ""  # imported first (a baseline's reclusterd, see baseline_specs)

    def serves(self, scenario: str) -> bool:
        return not self.only or scenario in self.only

    def available(self) -> bool:
        """True if the module this server needs is importable here."""
        return importlib.util.find_spec(self.needs) is not None


def _reclusterd(app: str) -> Callable[[str, int], list[str]]:
    return lambda py, port: [py, "-m", "reclusterd", app, "-w", str(WORKERS),
                             "-b", f"{HOST}:{port}", "--log-level", "warning"]


def _gunicorn(kind: str, *extra: str) -> Callable[[str, int], list[str]]:
    return lambda py, port: [py, "-m", "gunicorn", "-w", str(WORKERS), "-k", kind, *extra,
                             "-b", f"{HOST}:{port}", "--log-level", "warning",
                             "apps:asgi_app" if "Uvicorn" in kind else "apps:wsgi_app"]


def _uvicorn(py: str, port: int) -> list[str]:
    return [py, "-m", "uvicorn", "apps:asgi_app", "--host", HOST, "--port", str(port),
            "--workers", str(WORKERS), "--http", "httptools", "--loop", "uvloop",
            "--no-access-log", "--log-level", "warning"]


def _granian(interface: str) -> Callable[[str, int], list[str]]:
    def argv(py: str, port: int) -> list[str]:
        return [py, "-m", "granian", "--interface", interface, "--host", HOST,
                "--port", str(port), "--workers", str(WORKERS), "--log-level", "warning",
                f"apps:{interface}_app"]
    return argv


SPECS: list[Spec] = [
    Spec("reclusterd-wsgi", "wsgi", "reclusterd", _reclusterd("apps:wsgi_app"), peer=False),
    Spec("gunicorn-sync", "wsgi", "gunicorn", _gunicorn("sync")),
    Spec("gunicorn-gthread", "wsgi", "gunicorn", _gunicorn("gthread", "--threads", "4")),
    Spec("granian-wsgi", "wsgi", "granian", _granian("wsgi")),
    Spec("reclusterd-asgi", "asgi", "reclusterd", _reclusterd("apps:asgi_app"), peer=False),
    Spec("uvicorn", "asgi", "uvicorn", _uvicorn),
    Spec("gunicorn-uvicorn", "asgi", "uvicorn_worker",
         _gunicorn("uvicorn_worker.UvicornWorker")),
    Spec("granian-asgi", "asgi", "granian", _granian("asgi")),
    Spec("ceiling", "raw", "uvloop",
         lambda py, port: [py, str(HERE / "ceiling.py"), str(port), str(WORKERS)],
         peer=False, reference=True, only=("hello", "pipeline")),
]
BY_NAME = {s.name: s for s in SPECS}


def baseline_specs(ref: str, wanted: list[Spec]) -> list[Spec]:
    """`reclusterd-*@REF` next to each wanted reclusterd server: the package as of git REF
    (exported to a temporary directory), so a change is measured before/after in one run.
    Shown for scale, never ranked."""
    out = Path(tempfile.mkdtemp(prefix="bench-baseline-"))
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "reclusterd"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
    return [replace(s, name=f"{s.name}@{ref}", reference=True, pythonpath=str(out))
            for s in wanted if s.name.startswith("reclusterd-")]


def free_port() -> int:
    """An ephemeral loopback port that was free a moment ago."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def probe(port: int, path: str = "/hello", timeout: float = 1.0) -> bool:
    """One GET with Connection: close; True on a 200 answer."""
    req = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\r\n".encode()
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            s.sendall(req)
            head = s.recv(64)
    except OSError:
        return False
    return head.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200"))


@dataclass
class Running:
    """A started server: its process, port, log files and boot facts."""

    spec: Spec
    proc: subprocess.Popen[bytes]
    port: int
    logdir: Path
    startup_s: float = 0.0
    idle_rss_mb: float = 0.0
    idle_uss_mb: float = 0.0
    total_rss_mb: float = 0.0
    nworkers: int = 0
    error: str = ""
    notes: list[str] = field(default_factory=list)

    def log_tail(self, lines: int = 15) -> str:
        """Last lines of the server's stderr, to say why it failed."""
        path = self.logdir / "stderr.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = 5.0) -> None:
        """TERM the whole process group, then KILL what is left after `grace` seconds."""
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.proc.wait(wait)
                # the leader is gone; make sure no worker of its group lingers
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (subprocess.TimeoutExpired, ProcessLookupError, PermissionError):
                continue
            return


def start(spec: Spec, python: str = sys.executable, boot_timeout: float = 30.0,
          ready: Callable[[int], bool] | None = None) -> Running:
    """Start `spec`, wait until it answers GET /hello with 200 (or `ready(port)` says it
    serves: an HTTP/2-only or TLS server), and measure boot facts."""
    port = free_port()
    logdir = Path(tempfile.mkdtemp(prefix=f"bench-{spec.name}-"))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([p for p in (spec.pythonpath,) if p]
                                        + [str(ROOT), str(HERE)] + (
        [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.pop("WEB_CONCURRENCY", None)
    t0 = time.monotonic()
    with open(logdir / "stdout.log", "wb") as out, open(logdir / "stderr.log", "wb") as err:
        proc = subprocess.Popen(spec.argv(python, port), cwd=str(HERE), env=env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                start_new_session=True)
    run = Running(spec, proc, port, logdir)
    deadline = t0 + boot_timeout
    while True:
        if proc.poll() is not None:
            run.error = f"exited with {proc.returncode} before answering"
            return run
        if ready(port) if ready is not None else probe(port, timeout=0.5):
            run.startup_s = time.monotonic() - t0
            break
        if time.monotonic() > deadline:
            run.error = f"no 200 on /hello within {boot_timeout:.0f}s"
            return run
        time.sleep(0.01)
    measure_memory(run)
    return run


def _workers(pid: int) -> tuple[list[object], float]:
    """(worker processes, total RSS MB) of the tree under `pid`; helpers are not workers."""
    import psutil

    try:
        root = psutil.Process(pid)
        kids = root.children(recursive=True)
        total = root.memory_info().rss
    except psutil.Error:
        return [], 0.0
    workers = []
    for k in kids:
        try:
            cmd = " ".join(k.cmdline())
            total += k.memory_info().rss
        except psutil.Error:
            continue
        if "resource_tracker" in cmd or "semaphore_tracker" in cmd:
            continue
        workers.append(k)
    return (workers or [root]), total / 2**20


def measure_memory(run: Running, settle: float = 5.0) -> None:
    """Idle RSS/USS per worker, once the worker count has been stable for 0.5 s."""
    import psutil

    deadline = time.monotonic() + settle
    last, stable_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        n = len(_workers(run.proc.pid)[0])
        if n != last:
            last, stable_since = n, time.monotonic()
        elif n >= WORKERS and time.monotonic() - stable_since > 0.5:
            break
        time.sleep(0.05)
    workers, total = _workers(run.proc.pid)
    rss, uss = [], []
    for w in workers:
        try:
            info = w.memory_full_info()  # type: ignore[attr-defined]
        except psutil.Error:
            continue
        rss.append(info.rss / 2**20)
        uss.append(info.uss / 2**20)
    run.nworkers = len(rss)
    run.total_rss_mb = total
    if rss:
        run.idle_rss_mb = sum(rss) / len(rss)
        run.idle_uss_mb = sum(uss) / len(uss)


def cpu_seconds(run: Running) -> tuple[float, float]:
    """(user, system) CPU seconds used so far by the server's live processes."""
    import psutil

    user = system = 0.0
    try:
        root = psutil.Process(run.proc.pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0, 0.0
    for p in procs:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        user += t.user
        system += t.system
    return user, system


def machine_busy() -> tuple[float, float, float]:
    """(busy CPU seconds of the whole machine, CPU seconds of our finished children, wall)."""
    import resource

    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        busy = (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):  # not Linux: no machine-wide figure
        busy = float("nan")
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return busy, ru.ru_utime + ru.ru_stime, time.monotonic()


def stop_all(runs: list[Running]) -> None:
    """Stop every server started; never raises."""
    for run in runs:
        try:
            run.stop()
        except Exception as exc:  # noqa: BLE001 - cleanup must go on
            print(f"warning: stopping {run.spec.name}: {exc}", file=sys.stderr)
