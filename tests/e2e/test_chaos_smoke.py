"""Smoke test of loadtests/chaos.py: `--help` always, `--quick` (three short faults on the
thread worker, ~10 s) prints its table with zero errors where the fault is fixed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHAOS = ROOT / "loadtests" / "chaos.py"


def test_chaos_help() -> None:
    proc = subprocess.run([sys.executable, str(CHAOS), "--help"], cwd=str(ROOT),
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "--quick" in proc.stdout and "orphan" in proc.stdout


def test_chaos_quick_prints_a_table() -> None:
    proc = subprocess.run([sys.executable, str(CHAOS), "--quick"], cwd=str(ROOT),
                          capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "| scenario | class | requests | errors | recovery s | peak RSS MB |" in out, out
    for line in out.splitlines():
        if line.startswith(("| kill -9 master", "| stalled log reader")):
            assert line.split("|")[4].strip() == "0", line     # errors column
