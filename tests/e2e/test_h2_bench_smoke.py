"""Smoke test of loadtests/h2bench.py: `--quick` starts reclusterd (and Hypercorn when
installed), drives them with h2load for 1 s, prints the table and writes the h2 section
of a results file, leaving the rest of the file alone. Speed is never asserted."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "loadtests" / "h2bench.py"

pytestmark = pytest.mark.skipif(shutil.which("h2load") is None,
                                reason="h2load not installed (apt-get install nghttp2-client)")


def test_h2bench_quick_writes_its_section(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\nkept\n<!-- h2:start -->\nold\n<!-- h2:end -->\n"
                       "after\n")
    proc = subprocess.run([sys.executable, str(BENCH), "--quick", "--results", str(results)],
                          cwd=str(ROOT), capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "FAILED to start" not in out, out
    row = re.search(r"^\| hello h2c m1 \| ([\d,]+) \(([\d.]+) ms\) \[([\d,]+) µs\]",
                    proc.stdout, re.M)
    assert row and int(row.group(1).replace(",", "")) > 0, out
    text = results.read_text()
    assert text.startswith("# Benchmark results\n\nkept\n<!-- h2:start -->\n## HTTP/2")
    assert text.endswith("<!-- h2:end -->\nafter\n") and "old" not in text
    assert "reclusterd-asgi" in text


def test_h2bench_dry_run_lists_the_plan() -> None:
    proc = subprocess.run([sys.executable, str(BENCH), "--dry-run"], cwd=str(ROOT),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "reclusterd-asgi" in proc.stdout and "hello tls m100" in proc.stdout
