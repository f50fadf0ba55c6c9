"""Scenarios, the wrk command line for each, and parsing of wrk's output."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

WRK_DIR = Path(__file__).resolve().parent / "wrk"

# scenario -> (path, extra wrk args)
SCENARIOS: dict[str, tuple[str, list[str]]] = {
    "hello": ("/hello", []),
    "json": ("/json", []),
    "big": ("/big", []),
    "post": ("/post", ["-s", str(WRK_DIR / "post.lua")]),
    "sleep": ("/sleep", []),
    "pipeline": ("/hello", ["-s", str(WRK_DIR / "pipeline.lua")]),
    "django": ("/django", []),
    "flask": ("/flask", []),
    "fastapi": ("/fastapi", []),
}
# scenarios served by a framework app (its own server instances), not loadtests/apps.py
FRAMEWORKS = ("django", "flask", "fastapi")
DEFAULT_SCENARIOS = ["hello", "json", "big", "post", "sleep", *FRAMEWORKS]
SCENARIO_TEXT = {
    "hello": "12-byte text",
    "json": "json.dumps of a small dict",
    "big": "64 KiB body",
    "post": "POST 16 KiB body, answer its length",
    "sleep": "10 ms I/O wait (time.sleep / asyncio.sleep)",
    "pipeline": "16 pipelined GET /hello per write",
    "django": "Django view: 10 of 100 rows read with the ORM from SQLite, rendered by a "
              "template (loadtests/fw_django.py)",
    "flask": "Flask view: GET + INCR on a redis-server started by the bench, `redis` "
             "client, one pool per process (loadtests/fw_flask.py)",
    "fastapi": "FastAPI endpoint: the same 2 redis round trips with `redis.asyncio` "
               "(loadtests/fw_fastapi.py)",
}
MODES = ["ka", "close"]
WRK_INSTALL_HINT = ("wrk not found: install it with `sudo apt-get install wrk` (Debian/Ubuntu), "
                    "`brew install wrk` (macOS), or build it from its source.")


@dataclass(frozen=True)
class Case:
    """One measured combination: scenario x keep-alive/close x connections."""

    scenario: str
    mode: str  # "ka" | "close"
    conns: int

    @property
    def label(self) -> str:
        return f"{self.scenario} {self.mode} c{self.conns}"


@dataclass
class Result:
    """What one wrk run reports."""

    rps: float = 0.0
    p99_ms: float = 0.0
    requests: int = 0
    socket_errors: int = 0
    non2xx: int = 0
    failed: str = ""
    error_kinds: dict[str, int] = field(default_factory=dict)
    user_us: float = 0.0  # server CPU per request (all its processes), user mode
    sys_us: float = 0.0  # ... and kernel mode
    shares: list[float] = field(default_factory=list)  # each worker's CPU share, sorted


def group(scenario: str) -> str:
    """The app group serving `scenario`: a framework app, or "bench" (loadtests/apps.py)."""
    return scenario if scenario in FRAMEWORKS else "bench"


# the default plan: every scenario keep-alive at c64; Connection: close at c64 where it
# says something new (big/post close and the framework apps are kernel- or app-bound);
# c256 where the goals ask for it
CLOSE_C64 = ("hello", "json", "sleep")
C256 = {("hello", "ka"), ("hello", "close"), ("json", "ka"), ("sleep", "ka"),
        ("sleep", "close")}


def build_cases(scenarios: list[str], modes: list[str], conns: list[int] | None
                ) -> list[Case]:
    """The default plan (keep-alive at c=64, close at c=64 for CLOSE_C64, c=256 where
    C256 says), or with `conns` the full product."""
    if conns is not None:
        cases = [Case(s, m, c) for c in conns for s in scenarios for m in modes]
    else:
        cases = [Case(s, m, 64) for s in scenarios for m in modes
                 if m == "ka" or s in CLOSE_C64]
        cases += [Case(s, m, 256) for s in scenarios for m in modes if (s, m) in C256]
    # pipelining needs a connection that stays open
    return [c for c in cases if not (c.scenario == "pipeline" and c.mode == "close")]


def wrk_path() -> str | None:
    return shutil.which("wrk")


def wrk_version() -> str:
    exe = wrk_path()
    if not exe:
        return "missing"
    out = subprocess.run([exe, "-v"], capture_output=True, text=True, check=False)
    first = (out.stdout or out.stderr).splitlines()
    return first[0].split("Copyright")[0].strip() if first else "unknown"


def wrk_argv(case: Case, port: int, duration: float, threads: int = 2) -> list[str]:
    """The wrk command for `case` against 127.0.0.1:port."""
    path, extra = SCENARIOS[case.scenario]
    argv = [wrk_path() or "wrk", f"-t{threads}", f"-c{case.conns}", f"-d{max(1, round(duration))}s",
            "--latency", "--timeout", "2s"]
    if case.mode == "close":
        argv += ["-H", "Connection: close"]
    argv += extra
    argv.append(f"http://127.0.0.1:{port}{path}")
    if case.scenario == "pipeline":
        argv += ["--", "16", path]
    return argv


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def parse(text: str) -> Result:
    """Parse wrk --latency output into a Result (failed is set when there is no rate)."""
    res = Result()
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not m:
        lines = text.strip().splitlines()
        res.failed = lines[0][:120] if lines else "no output"
        return res
    res.rps = float(m.group(1))
    m = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
    if m:
        res.p99_ms = float(m.group(1)) * _UNIT_MS[m.group(2)]
    m = re.search(r"(\d+) requests in", text)
    if m:
        res.requests = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        counts = [int(g) for g in m.groups()]
        res.socket_errors = sum(counts)
        names = ("connect", "read", "write", "timeout")
        res.error_kinds = {k: n for k, n in zip(names, counts, strict=True) if n}
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        res.non2xx = int(m.group(1))
    return res


def run_wrk(case: Case, port: int, duration: float) -> Result:
    """Run wrk once; bounded by a timeout well past the test duration."""
    argv = wrk_argv(case, port, duration)
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False,
                             timeout=duration + 15)
    except subprocess.TimeoutExpired:
        return Result(failed="wrk timed out")
    return parse(out.stdout + out.stderr)


def warm_up(targets: list[tuple[Case, int]], duration: int = 1) -> None:
    """Run wrk against every (case, port) at once: warm-up only (imports, first-request
    paths, pools), nothing is measured, so the instances may share the cores."""
    procs = [subprocess.Popen(wrk_argv(case, port, duration), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for case, port in targets]
    for p in procs:
        try:
            p.wait(duration + 15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
