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
