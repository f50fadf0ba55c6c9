"""Smoke test of the benchmark runner: one short round, a table comes out.

Speed is never asserted; only that `loadtests/bench.py --quick` starts reclusterd (and a
peer when installed), drives it with wrk, prints its tables and writes a results file,
and that --dry-run plans the framework scenarios (or says why one is skipped).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "loadtests" / "bench.py"

needs_wrk = pytest.mark.skipif(shutil.which("wrk") is None,
                               reason="wrk not installed (apt-get install wrk)")


def _bench(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(BENCH), *args], cwd=str(ROOT),
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def test_bench_dry_run_plans_framework_scenarios() -> None:
    """The framework scenarios get their own server instances (WSGI servers for Django
    and Flask, ASGI servers for FastAPI); a missing redis-server or package is a skip
    that names what is missing, never an error. Nothing is started."""
    proc = _bench("--dry-run", "--scenarios", "hello,django,flask,fastapi", "--modes", "ka")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    plan = re.search(r"on (\d+) cases \(([^)]*)\): (\d+) server instances \(app groups: "
                     r"([^)]*)\)", out)
    assert plan, out
    cases = plan.group(2).split(", ")
    assert "hello ka c64" in cases, out
    for scen in ("django", "flask", "fastapi"):
        if f"skip scenario {scen}:" in out:
            assert f"{scen} ka c64" not in cases, out
        else:
            assert f"{scen} ka c64" in cases and scen in plan.group(4), out
    if shutil.which("redis-server") is None:
        assert "skip scenario flask: redis-server not found" in out, out


def test_bench_dry_run_rejects_unknown_scenario() -> None:
    proc = _bench("--dry-run", "--scenarios", "hello,rails")
    assert proc.returncode != 0
    assert "unknown scenario" in proc.stderr and "django" in proc.stderr


@needs_wrk
def test_bench_quick_prints_table(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--no-venv", "--results", str(results)],
        cwd=str(ROOT), capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "| case | server | req/s (median) | req/s min-max | p99 ms (median)" in proc.stdout, out
    row = re.search(r"^\| hello ka c64 \| reclusterd-wsgi \| ([\d,]+) \| [\d,]+-[\d,]+ \| "
                    r"([\d.]+) \| [\d.]+-[\d.]+ \| (\d+) \|", proc.stdout, re.M)
    assert row, out
    assert int(row.group(1).replace(",", "")) > 0, out
    # per-worker share and memory per worker (idle and after load) are reported
    share = re.search(r"^\| hello ka c64 \| (\d+)%-(\d+)% \|", proc.stdout, re.M)
    assert share and int(share.group(1)) <= int(share.group(2)), out
    assert re.search(r"^\| reclusterd-wsgi \| [\d.]+ \| 2 \| [\d.]+ \(", proc.stdout, re.M), out
    assert "FAILED to start" not in out, out
    text = results.read_text()
    assert text.startswith("# Benchmark results")
    assert "cores" in text and "Python" in text
    assert "reclusterd-wsgi" in text

    # every server the bench started is gone (they run in their own sessions)
    psutil = pytest.importorskip("psutil")
    ports = {int(p) for p in re.findall(r"up on :(\d+)", proc.stdout)}
    assert ports, out
    listening = {c.laddr.port for c in psutil.net_connections("tcp")
                 if c.status == psutil.CONN_LISTEN}
    assert not listening & ports, out


# ---- pure logic of the report (no processes): the loadtests modules by path


@pytest.fixture(scope="module")
def lt() -> dict[str, ModuleType]:
    """The bench's modules (goals, wrkrun, procstats), imported from loadtests/."""
    import importlib

    sys.path.insert(0, str(ROOT / "loadtests"))
    try:
        return {name: importlib.import_module(name)
                for name in ("goals", "wrkrun", "procstats")}
    finally:
        sys.path.remove(str(ROOT / "loadtests"))


def test_goal_ratio_per_round_against_that_rounds_best_peer(lt: dict[str, ModuleType]) -> None:
    goals, wrkrun = lt["goals"], lt["wrkrun"]
    case, R = wrkrun.Case("hello", "ka", 64), wrkrun.Result
    raw = {(case, "me"): [R(rps=100, p99_ms=2.0), R(rps=100, p99_ms=2.0), R(failed="died")],
           (case, "a"): [R(rps=50, p99_ms=4.0), R(rps=200, p99_ms=1.0), R(rps=1, p99_ms=1)],
           (case, "b"): [R(rps=80, p99_ms=8.0), R(rps=10, p99_ms=9.0), R(rps=1, p99_ms=1)]}
    assert goals.per_round(raw, case, "me", ["a", "b"], p99=False) == [1.25, 0.5]
    assert goals.per_round(raw, case, "me", ["a", "b"], p99=True) == [0.5, 2.0]
    check = goals.Check("g", "w", [1.25, 0.5], "≥ 1", goals._ge(1.0))
    assert check.row()[-1] == "not met (1 of 2 rounds)"
    assert goals.Check("g", "w", [1.25, 1.0], "≥ 1", goals._ge(1.0)).row()[-1] == "**met**"


def test_worker_share_and_default_plan(lt: dict[str, ModuleType]) -> None:
    procstats, wrkrun = lt["procstats"], lt["wrkrun"]
    assert procstats.shares({1: 1.0, 2: 1.0, 3: 5.0}, {1: 2.0, 2: 4.0, 4: 9.0}) == [0.25, 0.75]
    assert procstats.shares({1: 1.0}, {1: 1.0}) == []
    labels = {c.label for c in wrkrun.build_cases(["hello", "big", "django"], ["ka", "close"],
                                                   None)}
    assert {"hello ka c64", "hello close c64", "hello ka c256", "big ka c64",
            "django ka c64"} <= labels
    assert "django close c64" not in labels and "big close c64" not in labels
