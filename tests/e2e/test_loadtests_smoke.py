"""Smoke test of the benchmark runner: one short round, a table comes out.

Speed is never asserted; only that `loadtests/bench.py --quick` starts reclusterd (and a
peer when installed), drives it with wrk, prints its tables and writes a results file.
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

pytestmark = pytest.mark.skipif(shutil.which("wrk") is None,
                                reason="wrk not installed (apt-get install wrk)")


def test_bench_quick_prints_table(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--no-venv", "--results", str(results)],
        cwd=str(ROOT), capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "| case | server | req/s (median) | p99 ms (median)" in proc.stdout, out
    row = re.search(r"^\| hello ka c64 \| reclusterd-wsgi \| ([\d,]+) \| ([\d.]+) \| (\d+) \|",
                    proc.stdout, re.M)
    assert row, out
    assert int(row.group(1).replace(",", "")) > 0, out
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
