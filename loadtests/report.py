"""Tables (Markdown, also printed to the console) and RESULTS.md with machine facts."""

from __future__ import annotations

import datetime as dt
import importlib.metadata as md
import os
import platform
import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path

from servers import ROOT, Running, Spec
from wrkrun import SCENARIO_TEXT, Case, Result, wrk_version

PACKAGES = ["reclusterd", "gunicorn", "uvicorn", "uvicorn-worker", "granian", "httptools",
            "uvloop", "h11", "psutil"]


@dataclass
class Summary:
    """Medians over the rounds of one server on one case."""

    rps: float
    p99_ms: float
    socket_errors: int
    non2xx: int
    rounds: int
    failed: int
    user_us: float = 0.0
    sys_us: float = 0.0
    error_kinds: str = ""

    @property
    def clean(self) -> bool:
        return self.socket_errors == 0 and self.non2xx == 0 and self.failed == 0


def summarize(results: list[Result]) -> Summary:
    ok = [r for r in results if not r.failed]
    return Summary(
        rps=statistics.median([r.rps for r in ok]) if ok else 0.0,
        p99_ms=statistics.median([r.p99_ms for r in ok]) if ok else 0.0,
        socket_errors=sum(r.socket_errors for r in results),
        non2xx=sum(r.non2xx for r in results),
        rounds=len(results), failed=len(results) - len(ok),
        user_us=statistics.median([r.user_us for r in ok]) if ok else 0.0,
        sys_us=statistics.median([r.sys_us for r in ok]) if ok else 0.0,
        error_kinds=" ".join(f"{k} {v}" for k, v in _merge(results).items()))


def _merge(results: list[Result]) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for r in results:
        for k, v in r.error_kinds.items():
            kinds[k] = kinds.get(k, 0) + v
    return kinds


Table = dict[tuple[Case, str], Summary]


def best_peer(table: Table, case: Case, specs: list[Spec], interface: str
              ) -> tuple[str, Summary] | None:
    """The fastest peer (not reclusterd) of `interface` on `case`."""
    peers = [(s.name, table[(case, s.name)]) for s in specs
             if s.peer and s.interface == interface and (case, s.name) in table]
    peers = [p for p in peers if p[1].rps > 0]
    return max(peers, key=lambda p: p[1].rps) if peers else None


def ratio(table: Table, case: Case, spec: Spec, specs: list[Spec]) -> str:
    """`x1.23 vs NAME` for a reclusterd server, '' for peers or without data."""
    if spec.peer or spec.reference or (case, spec.name) not in table:
        return ""
    best = best_peer(table, case, specs, spec.interface)
    if best is None:
        return "no peer"
    return f"x{table[(case, spec.name)].rps / best[1].rps:.2f} vs {best[0]}"


def _fmt_rps(s: Summary) -> str:
    mark = "" if s.clean else " !"
    return f"{s.rps:,.0f}{mark}" if s.rps else f"failed{mark}"


def _md(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def wide_table(table: Table, cases: list[Case], specs: list[Spec], interface: str) -> str:
    """One row per case, one column per server of `interface`: req/s (p99 ms)."""
    cols = [s for s in specs if s.interface == interface]
    mine = [s for s in cols if not s.peer and not s.reference]
    header = ["case"] + [s.name for s in cols] + [f"{s.name} vs best peer" for s in mine]
    rows = []
    for case in cases:
        row = [case.label]
        for s in cols:
            sm = table.get((case, s.name))
            row.append(f"{_fmt_rps(sm)} ({sm.p99_ms:.1f} ms)" if sm else "-")
        row += [ratio(table, case, s, specs) or "-" for s in mine]
        if any((case, s.name) in table for s in cols):
            rows.append(row)
    return _md(header, rows)


def cpu_table(table: Table, cases: list[Case], specs: list[Spec], interface: str) -> str:
    """Server CPU time per request (user + system µs): efficiency that machine load
    does not skew the way req/s is skewed on a shared or busy machine."""
    cols = [s for s in specs if s.interface == interface]
    mine = [s for s in cols if not s.peer and not s.reference]
    rows = []
    for case in cases:
        row = [case.label]
        for s in cols:
            sm = table.get((case, s.name))
            row.append(f"{sm.user_us + sm.sys_us:.0f} ({sm.user_us:.0f}+{sm.sys_us:.0f})"
                       if sm and sm.rps else "-")
        for s in mine:
            sm = table.get((case, s.name))
            peers = [(p.name, table[(case, p.name)]) for p in cols
                     if p.peer and (case, p.name) in table and table[(case, p.name)].rps]
            if sm and sm.rps and peers:
                name, best = min(peers, key=lambda p: p[1].user_us + p[1].sys_us)
                row.append(f"x{(best.user_us + best.sys_us) / (sm.user_us + sm.sys_us):.2f}"
                           f" vs {name}")
            else:
                row.append("-")
        if any((case, s.name) in table for s in cols):
            rows.append(row)
    return _md(["case"] + [s.name for s in cols]
               + [f"{s.name} efficiency vs leanest peer" for s in mine], rows)


def long_table(table: Table, cases: list[Case], specs: list[Spec]) -> str:
    """Every (case, server): median req/s, median p99, errors, ratio."""
    rows = []
    for case in cases:
        for s in specs:
            sm = table.get((case, s.name))
            if sm is None:
                continue
            rows.append([case.label, s.name, f"{sm.rps:,.0f}", f"{sm.p99_ms:.2f}",
                         f"{sm.socket_errors} ({sm.error_kinds})" if sm.socket_errors
                         else "0", str(sm.non2xx), str(sm.failed),
                         f"{sm.user_us:.0f}+{sm.sys_us:.0f}", ratio(table, case, s, specs)])
    return _md(["case", "server", "req/s (median)", "p99 ms (median)", "socket errors",
                "non-2xx", "failed runs", "CPU µs/req user+sys", "ratio to best peer"], rows)


def headline(table: Table, specs: list[Spec]) -> str:
    """The issue-6 style summary: hello world, c=64, keep-alive and close, per server."""
    ka, close = Case("hello", "ka", 64), Case("hello", "close", 64)
    if not any((ka, s.name) in table for s in specs):
        return ""
    rows = []
    for s in specs:
        cells = [s.name, s.interface.upper() if s.interface != "raw" else "reference"]
        for case in (ka, close):
            sm = table.get((case, s.name))
            cells.append(f"{_fmt_rps(sm)}" if sm else "-")
            cells.append(f"{sm.user_us + sm.sys_us:.0f}" if sm and sm.rps else "-")
        cells.append(" / ".join(r for r in (ratio(table, ka, s, specs),
                                            ratio(table, close, s, specs)) if r) or "")
        rows.append(cells)
    return _md(["server", "interface", "keep-alive req/s", "CPU µs/req", "close req/s",
                "CPU µs/req", "vs best peer (ka / close)"], rows)


def boot_table(runs: list[Running]) -> str:
    rows = []
    for r in runs:
        if r.error:
            rows.append([r.spec.name, "failed: " + r.error, "", "", "", ""])
            continue
        rows.append([r.spec.name, f"{r.startup_s:.2f}", str(r.nworkers), f"{r.idle_rss_mb:.1f}",
                     f"{r.idle_uss_mb:.1f}", f"{r.total_rss_mb:.1f}"])
    return _md(["server", "startup to first 200 (s)", "workers", "idle RSS/worker MB",
                "idle USS/worker MB", "total RSS MB (all processes)"], rows)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(pkg: str) -> str:
    try:
        return md.version(pkg)
    except md.PackageNotFoundError:
        return "not installed"


def _git_rev() -> str:
    out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True, check=False)
    return out.stdout.strip() or "unknown"


def machine_facts() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [
        f"- date: {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {os.cpu_count()} cores, {_cpu_model()}, {platform.system()} "
        f"{platform.release()}; load average before the run {load}",
        f"- Python {platform.python_version()} ({platform.python_implementation()}); "
        f"{wrk_version()}; reclusterd commit {_git_rev()}",
        "- packages: " + ", ".join(f"{p} {_version(p)}" for p in PACKAGES),
    ]
    return "\n".join(lines)


def results_md(table: Table, cases: list[Case], specs: list[Spec], runs: list[Running],
               command: str, facts: str, rounds: int, duration: float) -> str:
    """The whole RESULTS.md text."""
    used = sorted({c.scenario for c in cases})
    parts = [
        "# Benchmark results", "",
        f"Written by `{command}`. Each server runs `loadtests/apps.py` with 2 workers on "
        f"127.0.0.1; wrk (`-t2 --latency`, {duration:g} s per run) shares the same cores. "
        f"Numbers are medians of {rounds} interleaved rounds (every server once per round). "
        "Absolute numbers drift between machines and runs; compare ratios. req/s needs a "
        "quiet machine (see the load average below); the server CPU µs per request tables "
        "(CPU time of all the server's processes / requests answered) hold up far better "
        "when other work shares the cores (and on a contended CPU a server with more "
        "runnable threads, like Granian's Rust runtime, also gets a larger share of it).", "",
        facts, "",
        "Scenarios: " + "; ".join(f"`{s}` {SCENARIO_TEXT[s]}" for s in used)
        + ". `ka` = keep-alive, `close` = `Connection: close` on every request; "
        "`cN` = N connections. `!` marks a server with socket errors or non-2xx answers "
        "(see the full table).", "",
    ]
    head = headline(table, specs)
    if head:
        parts += ["## Headline: hello world, 64 connections", "", head, ""]
    for interface in ("wsgi", "asgi", "raw"):
        if any(s.interface == interface for s in specs):
            title = "ceiling (uvloop + httptools, canned answer, no app)" \
                if interface == "raw" else interface.upper()
            parts += [f"## {title}: req/s (p99 latency)", "",
                      wide_table(table, cases, specs, interface), "",
                      f"### {title}: server CPU per request, µs (user+system)",
                      "", cpu_table(table, cases, specs, interface), ""]
    parts += ["## Startup and idle memory", "", boot_table(runs), "",
              "## Every run (medians)", "", long_table(table, cases, specs), ""]
    return "\n".join(parts)
