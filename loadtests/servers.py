"""The servers the bench compares: how to start each one, probe it, measure it and stop it.

Every server runs 2 workers on a loopback ephemeral port, in its own session (process
group), so `stop()` ends it and everything it forked. Each peer runs with its own
defaults (only the worker count, the address and `--log-level warning` are given: no
access log anywhere), plus one `-tuned` row per peer with the knob its docs offer for
throughput. An app group (`bench` = loadtests/apps.py, or a framework app) is one
running instance of a server.
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

import procstats

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORKERS = 2
HOST = "127.0.0.1"

# app group -> interface -> import target (cwd loadtests/)
APPS: dict[str, dict[str, str]] = {
    "bench": {"wsgi": "apps:wsgi_app", "asgi": "apps:asgi_app", "raw": ""},
    "django": {"wsgi": "fw_django:application"},
    "flask": {"wsgi": "fw_flask:app"},
    "fastapi": {"asgi": "fw_fastapi:app"},
}
# scenarios a -tuned row runs (its `only`, keep-alive, sleep both ways): the cases its
# knob is for; the others would only lengthen the run
CPU_BOUND = ("hello", "json", "django", "flask")
IO_BOUND = ("sleep", "django", "flask")

# (python, port) -> command line serving the bench app (APPS["bench"]); for another app
# group, start() swaps that argument for the group's app
Argv = Callable[[str, int], list[str]]


@dataclass(frozen=True)
class Spec:
    """One server configuration: name, interface, the module it needs, its argv."""

    name: str
    interface: str  # "wsgi" | "asgi" | "raw"
    needs: str  # importable module that must exist in the bench interpreter
    argv: Argv
    peer: bool = True
    reference: bool = False  # shown for scale (the ceiling, a baseline), never ranked
    tuned: bool = False  # a peer's (or our) tuned row; default rows are the headline
    only: tuple[str, ...] = ()  # scenarios it can serve; () = all
    pythonpath: str = ""  # imported first (a baseline's reclusterd, see baseline_specs)
    what: str = ""  # the settings, for the report

    def serves(self, scenario: str, mode: str = "ka", group: str = "bench") -> bool:
        if self.interface not in APPS[group] or (self.only and scenario not in self.only):
            return False
        return not self.tuned or mode == "ka" or scenario == "sleep"

    def available(self) -> bool:
        """True if the module this server needs is importable here."""
        return importlib.util.find_spec(self.needs) is not None


def _reclusterd(interface: str, *extra: str) -> Argv:
    app = APPS["bench"][interface]
    return lambda py, port: [py, "-m", "reclusterd", app, "-w", str(WORKERS), *extra,
                             "-b", f"{HOST}:{port}", "--log-level", "warning"]


def _gunicorn(interface: str, kind: str, *extra: str) -> Argv:
    app = APPS["bench"][interface]
    return lambda py, port: [py, "-m", "gunicorn", "-w", str(WORKERS), "-k", kind, *extra,
                             "-b", f"{HOST}:{port}", "--log-level", "warning", app]


def _uvicorn(*extra: str) -> Argv:
    app = APPS["bench"]["asgi"]
    return lambda py, port: [py, "-m", "uvicorn", app, "--host", HOST, "--port", str(port),
                             "--workers", str(WORKERS), *extra, "--log-level", "warning"]


def _granian(interface: str, *extra: str) -> Argv:
    app = APPS["bench"][interface]
    return lambda py, port: [py, "-m", "granian", "--interface", interface, "--host", HOST,
                             "--port", str(port), "--workers", str(WORKERS), *extra,
                             "--log-level", "warning", app]


def _ceiling(py: str, port: int) -> list[str]:
    return [py, str(HERE / "ceiling.py"), str(port), str(WORKERS)]


SPECS: list[Spec] = [
    Spec("reclusterd-wsgi", "wsgi", "reclusterd", _reclusterd("wsgi"), peer=False,
         what="thread worker, `--threads auto`"),
    Spec("gunicorn-sync", "wsgi", "gunicorn", _gunicorn("wsgi", "sync"), what="`-k sync`"),
    Spec("gunicorn-gthread", "wsgi", "gunicorn", _gunicorn("wsgi", "gthread"),
         what="`-k gthread` (its default `--threads 1`)"),
    Spec("granian-wsgi", "wsgi", "granian", _granian("wsgi"),
         what="its defaults: 1 runtime thread, blocking threads = backpressure/2 = 256"),
    Spec("reclusterd-asgi", "asgi", "reclusterd", _reclusterd("asgi"), peer=False,
         what="asyncio worker (uvloop)"),
    Spec("uvicorn", "asgi", "uvicorn", _uvicorn(),
         what="its defaults (picks uvloop + httptools when installed)"),
    Spec("gunicorn-uvicorn", "asgi", "uvicorn_worker",
         _gunicorn("asgi", "uvicorn_worker.UvicornWorker"),
         what="`-k uvicorn_worker.UvicornWorker`"),
    Spec("granian-asgi", "asgi", "granian", _granian("asgi"), what="its defaults"),
    Spec("ceiling", "raw", "uvloop", _ceiling, peer=False, reference=True, only=("hello",),
         what="loadtests/ceiling.py: uvloop + httptools, canned answer, no app"),
    # one tuned row each, on the scenarios its knob is for
    Spec("reclusterd-wsgi-tuned", "wsgi", "reclusterd", _reclusterd("wsgi", "--threads", "64"),
         peer=False, tuned=True, only=IO_BOUND, what="`--threads 64` (a fixed pool)"),
    Spec("gunicorn-gthread-tuned", "wsgi", "gunicorn",
         _gunicorn("wsgi", "gthread", "--threads", "32"), tuned=True,
         only=(*CPU_BOUND, "sleep"),
         what="`-k gthread --threads 32`"),
    Spec("granian-wsgi-tuned", "wsgi", "granian", _granian("wsgi", "--blocking-threads", "1"),
         tuned=True, only=CPU_BOUND,
         what="`--blocking-threads 1`: one Python thread per worker (its default 256 "
              "costs 2-3x the CPU per fast request; useless for `sleep`, so not run there)"),
    Spec("uvicorn-tuned", "asgi", "uvicorn",
         _uvicorn("--http", "httptools", "--loop", "uvloop", "--no-access-log"), tuned=True,
         only=("hello", "json", "sleep", "fastapi"),
         what="`--http httptools --loop uvloop --no-access-log`"),
    Spec("granian-asgi-tuned", "asgi", "granian", _granian("asgi", "--task-impl", "rust"),
         tuned=True, only=("hello", "json", "sleep", "fastapi"), what="`--task-impl rust`"),
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
    """A started server instance (one spec serving one app group): process, port, logs,
    boot facts, and its memory after boot and after the load."""

    spec: Spec
    proc: subprocess.Popen[bytes]
    port: int
    logdir: Path
    group: str = "bench"
    startup_s: float = 0.0
    idle: procstats.Memory = field(default_factory=procstats.Memory)
    loaded: procstats.Memory = field(default_factory=procstats.Memory)
    error: str = ""

    @property
    def nworkers(self) -> int:
        return self.idle.workers

    def log_tail(self, lines: int = 15) -> str:
        """Last lines of the server's stderr, to say why it failed."""
        path = self.logdir / "stderr.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def terminate(self) -> None:
        """TERM the whole process group (stop() then waits)."""
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass

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


def command(spec: Spec, python: str, port: int, group: str) -> list[str]:
    """`spec`'s command line serving app group `group` (its bench app swapped for the
    group's)."""
    argv = spec.argv(python, port)
    bench_app, app = APPS["bench"].get(spec.interface), APPS[group][spec.interface]
    return [app if a == bench_app and bench_app else a for a in argv]


def start(spec: Spec, group: str = "bench", env_extra: dict[str, str] | None = None,
          python: str = sys.executable, boot_timeout: float = 30.0,
          ready: Callable[[int], bool] | None = None) -> Running:
    """Start `spec` on app group `group`, wait until it answers GET /hello with 200 (or
    `ready(port)` says it serves), and measure boot facts. Output goes to files (a pipe
    nobody reads would stall a server once its buffer fills)."""
    port = free_port()
    logdir = Path(tempfile.mkdtemp(prefix=f"bench-{spec.name}-{group}-"))
    env = dict(os.environ)
    env.update(env_extra or {})
    env["PYTHONPATH"] = os.pathsep.join([p for p in (spec.pythonpath,) if p]
                                        + [str(ROOT), str(HERE)] + (
        [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.pop("WEB_CONCURRENCY", None)
    t0 = time.monotonic()
    with open(logdir / "stdout.log", "wb") as out, open(logdir / "stderr.log", "wb") as err:
        proc = subprocess.Popen(command(spec, python, port, group), cwd=str(HERE), env=env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                start_new_session=True)
    run = Running(spec, proc, port, logdir, group)
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
    procstats.wait_stable(proc.pid, WORKERS)
    run.idle = procstats.memory(proc.pid)
    return run


def cpu_seconds(run: Running) -> tuple[float, float]:
    """(user, system) CPU seconds used so far by the server's live processes."""
    return procstats.cpu_seconds(run.proc.pid)


def stop_all(runs: list[Running]) -> None:
    """Stop every server started (TERM to all first, so they drain at the same time, then
    wait for each); never raises."""
    for run in runs:
        run.terminate()
    for run in runs:
        try:
            run.stop()
        except Exception as exc:  # noqa: BLE001 - cleanup must go on
            print(f"warning: stopping {run.spec.name}: {exc}", file=sys.stderr)
