"""Tables (Markdown, also printed to the console) and RESULTS.md with machine facts."""

from __future__ import annotations

import datetime as dt
import importlib.metadata as md
import os
import platform
import shutil
import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path

import goals
from servers import ROOT, Running, Spec
from wrkrun import SCENARIO_TEXT, Case, Result, wrk_version

PACKAGES = ["reclusterd", "gunicorn", "uvicorn", "uvicorn-worker", "granian", "httptools",
            "uvloop", "h11", "psutil", "django", "flask", "fastapi", "redis"]


@dataclass
class Summary:
    """Medians over the rounds of one server on one case, and the spread (min-max)."""

    rps: float
    p99_ms: float
    socket_errors: int
    non2xx: int
    rounds: int
    failed: int
    user_us: float = 0.0
    sys_us: float = 0.0
    error_kinds: str = ""
    rps_lo: float = 0.0
    rps_hi: float = 0.0
    p99_lo: float = 0.0
    p99_hi: float = 0.0
    share_lo: float = 0.0  # the least busy worker's share of the server's CPU (median)
    share_hi: float = 0.0  # ... the busiest one's

    @property
    def clean(self) -> bool:
        return self.socket_errors == 0 and self.non2xx == 0 and self.failed == 0


def _med(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def summarize(results: list[Result]) -> Summary:
    ok = [r for r in results if not r.failed]
    rps, p99 = [r.rps for r in ok], [r.p99_ms for r in ok]
    shared = [r.shares for r in ok if r.shares]
    return Summary(
        rps=_med(rps), p99_ms=_med(p99),
        socket_errors=sum(r.socket_errors for r in results),
        non2xx=sum(r.non2xx for r in results),
        rounds=len(results), failed=len(results) - len(ok),
        user_us=_med([r.user_us for r in ok]), sys_us=_med([r.sys_us for r in ok]),
        error_kinds=" ".join(f"{k} {v}" for k, v in _merge(results).items()),
        rps_lo=min(rps, default=0.0), rps_hi=max(rps, default=0.0),
        p99_lo=min(p99, default=0.0), p99_hi=max(p99, default=0.0),
        share_lo=_med([sh[0] for sh in shared]), share_hi=_med([sh[-1] for sh in shared]))


def _merge(results: list[Result]) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for r in results:
        for k, v in r.error_kinds.items():
            kinds[k] = kinds.get(k, 0) + v
    return kinds


Table = dict[tuple[Case, str], Summary]


def _peers(table: Table, case: Case, specs: list[Spec], interface: str
           ) -> list[tuple[str, Summary]]:
    """The peers (default and tuned rows, not reclusterd, not references) of `interface`
    that answered on `case`."""
    return [(s.name, table[(case, s.name)]) for s in specs
            if s.peer and s.interface == interface and (case, s.name) in table
            and table[(case, s.name)].rps > 0]


def best_peer(table: Table, case: Case, specs: list[Spec], interface: str
              ) -> tuple[str, Summary] | None:
    """The fastest peer of `interface` on `case` (median req/s)."""
    peers = _peers(table, case, specs, interface)
    return max(peers, key=lambda p: p[1].rps) if peers else None


def ranked(spec: Spec) -> bool:
    """A reclusterd row that gets ratios (not a peer, not a reference)."""
    return not spec.peer and not spec.reference


def ratio(table: Table, case: Case, spec: Spec, specs: list[Spec]) -> str:
    """`x1.23 vs NAME` (req/s) for a reclusterd server, '' for peers or without data."""
    if not ranked(spec) or (case, spec.name) not in table:
        return ""
    best = best_peer(table, case, specs, spec.interface)
    if best is None:
        return "no peer"
    return f"x{table[(case, spec.name)].rps / best[1].rps:.2f} vs {best[0]}"


def p99_ratio(table: Table, case: Case, spec: Spec, specs: list[Spec]) -> str:
    """`x0.80 of NAME` : our p99 / the lowest p99 among the peers (<= 1 is as good)."""
    if not ranked(spec) or (case, spec.name) not in table or not table[(case, spec.name)].rps:
        return ""
    peers = [p for p in _peers(table, case, specs, spec.interface) if p[1].p99_ms > 0]
    if not peers:
        return "no peer"
    name, best = min(peers, key=lambda p: p[1].p99_ms)
    return f"x{table[(case, spec.name)].p99_ms / best.p99_ms:.2f} of {name}"


def _fmt_rps(s: Summary) -> str:
    mark = "" if s.clean else " !"
    return f"{s.rps:,.0f}{mark}" if s.rps else f"failed{mark}"


def _md(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def wide_table(table: Table, cases: list[Case], specs: list[Spec], interface: str) -> str:
    """One row per case, one column per server of `interface`: req/s (p99 ms); then each
    reclusterd row's req/s ratio to the fastest peer and p99 ratio to the lowest peer p99."""
    cols = [s for s in specs if s.interface == interface]
    mine = [s for s in cols if ranked(s)]
    header = (["case"] + [s.name for s in cols] + [f"{s.name} req/s vs best peer"
                                                     for s in mine]
              + [f"{s.name} p99 vs best peer p99" for s in mine])
    rows = []
    for case in cases:
        row = [case.label]
        for s in cols:
            sm = table.get((case, s.name))
            row.append(f"{_fmt_rps(sm)} ({sm.p99_ms:.1f} ms)" if sm else "-")
        row += [ratio(table, case, s, specs) or "-" for s in mine]
        row += [p99_ratio(table, case, s, specs) or "-" for s in mine]
        if any((case, s.name) in table for s in cols):
            rows.append(row)
    return _md(header, rows)


def cpu_table(table: Table, cases: list[Case], specs: list[Spec], interface: str) -> str:
    """Server CPU time per request (user + system µs): efficiency that machine load
    does not skew the way req/s is skewed on a shared or busy machine."""
    cols = [s for s in specs if s.interface == interface]
    mine = [s for s in cols if ranked(s)]
    rows = []
    for case in cases:
        row = [case.label]
        for s in cols:
            sm = table.get((case, s.name))
            row.append(f"{sm.user_us + sm.sys_us:.0f} ({sm.user_us:.0f}+{sm.sys_us:.0f})"
                       if sm and sm.rps else "-")
        for s in mine:
            sm = table.get((case, s.name))
            peers = _peers(table, case, specs, interface)
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


def _share(sm: Summary) -> str:
    return f"{sm.share_lo:.0%}-{sm.share_hi:.0%}" if sm.share_hi else "-"


def share_table(table: Table, cases: list[Case], specs: list[Spec]) -> str:
    """Per-worker share of the load: the least and the busiest worker's share of the
    server's worker CPU during the run (median over rounds; 50%-50% is an even spread
    over 2 workers). Keep-alive cases, where a connection stays on one worker."""
    cols = [s for s in specs if s.interface != "raw"]
    rows = []
    for case in cases:
        if case.mode != "ka":
            continue
        cells = [_share(table[(case, s.name)]) if (case, s.name) in table else "-"
                 for s in cols]
        if any(c != "-" for c in cells):
            rows.append([case.label, *cells])
    return _md(["case", *[s.name for s in cols]], rows)


def _spread(lo: float, hi: float, fmt: str) -> str:
    return f"{lo:{fmt}}-{hi:{fmt}}"


def long_table(table: Table, cases: list[Case], specs: list[Spec]) -> str:
    """Every (case, server): median and min-max req/s and p99, errors, CPU, worker share,
    ratios."""
    rows = []
    for case in cases:
        for s in specs:
            sm = table.get((case, s.name))
            if sm is None:
                continue
            rows.append([case.label, s.name, f"{sm.rps:,.0f}",
                         _spread(sm.rps_lo, sm.rps_hi, ",.0f"), f"{sm.p99_ms:.2f}",
                         _spread(sm.p99_lo, sm.p99_hi, ".1f"),
                         f"{sm.socket_errors} ({sm.error_kinds})" if sm.socket_errors
                         else "0", str(sm.non2xx), str(sm.failed),
                         f"{sm.user_us:.0f}+{sm.sys_us:.0f}", _share(sm),
                         ratio(table, case, s, specs), p99_ratio(table, case, s, specs)])
    return _md(["case", "server", "req/s (median)", "req/s min-max", "p99 ms (median)",
                "p99 min-max", "socket errors", "non-2xx", "failed runs",
                "CPU µs/req user+sys", "worker share min-max", "req/s vs best peer",
                "p99 vs best peer p99"], rows)


def headline(table: Table, specs: list[Spec]) -> str:
    """Hello world, c=64, keep-alive and close, per server: req/s, p99, CPU."""
    ka, close = Case("hello", "ka", 64), Case("hello", "close", 64)
    if not any((ka, s.name) in table for s in specs):
        return ""
    rows = []
    for s in specs:
        if not any((c, s.name) in table for c in (ka, close)):
            continue
        cells = [s.name, s.interface.upper() if s.interface != "raw" else "reference"]
        for case in (ka, close):
            sm = table.get((case, s.name))
            cells.append(f"{_fmt_rps(sm)} ({sm.p99_ms:.1f} ms)" if sm else "-")
            cells.append(f"{sm.user_us + sm.sys_us:.0f}" if sm and sm.rps else "-")
        cells.append(" / ".join(r for r in (ratio(table, ka, s, specs),
                                            ratio(table, close, s, specs)) if r) or "")
        rows.append(cells)
    return _md(["server", "interface", "keep-alive req/s (p99)", "CPU µs/req",
                "close req/s (p99)", "CPU µs/req", "vs best peer (ka / close)"], rows)


def _mb(values: list[float]) -> str:
    """Median (min-max) of one figure over the rounds."""
    vals = [v for v in values if v]
    if not vals:
        return "-"
    return f"{statistics.median(vals):.1f} ({min(vals):.1f}-{max(vals):.1f})"


def memory_table(runs: list[Running]) -> str:
    """Per-worker RSS and USS after boot (idle) and after the load: median over the
    rounds (each round starts every server afresh) and the min-max."""
    by: dict[tuple[str, str], list[Running]] = {}
    for r in runs:
        by.setdefault((r.spec.name, r.group), []).append(r)
    rows = []
    for (name, grp), rs in by.items():
        label = name if grp == "bench" else f"{name} [{grp}]"
        ok = [r for r in rs if not r.error]
        if not ok:
            rows.append([label, "failed: " + rs[0].error] + [""] * 7)
            continue
        rows.append([label, f"{statistics.median(r.startup_s for r in ok):.2f}",
                     str(max(r.idle.workers for r in ok)),
                     _mb([r.idle.rss for r in ok]), _mb([r.idle.uss for r in ok]),
                     _mb([r.loaded.rss for r in ok]), _mb([r.loaded.uss for r in ok]),
                     _mb([r.idle.total_rss for r in ok]),
                     _mb([r.loaded.total_rss for r in ok])])
    return _md(["server [app]", "startup to first 200 (s)", "workers",
                "idle RSS/worker MB", "idle USS/worker MB", "after-load RSS/worker MB",
                "after-load USS/worker MB", "total RSS MB idle", "total RSS MB after load"],
               rows)


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


def _redis_version() -> str:
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True,
                         check=False) if shutil.which("redis-server") else None
    words = out.stdout.split() if out else []
    return " ".join(words[:3]) if words else "redis-server not installed"


def machine_facts() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [
        f"- date: {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {os.cpu_count()} cores, {_cpu_model()}, {platform.system()} "
        f"{platform.release()}; load average before the run {load}",
        f"- Python {platform.python_version()} ({platform.python_implementation()}); "
        f"{wrk_version()}; reclusterd commit {_git_rev()}",
        "- packages: " + ", ".join(f"{p} {_version(p)}" for p in PACKAGES)
        + f"; {_redis_version()}",
    ]
    return "\n".join(lines)


def servers_table(specs: list[Spec]) -> str:
    return _md(["server", "settings (2 workers, 127.0.0.1, log level warning, no access log)"],
               [[s.name, s.what] for s in specs])


METHOD = (
    "Fairness (issue 15 \"How\": one run gave Granian's WSGI hello 41.8k req/s where "
    "Granian started by hand gave 67-69k). Every server runs with its own defaults; only "
    "the worker count (2), the address and `--log-level warning` are given, so no server "
    "writes an access log (Granian and Gunicorn have none by default, Uvicorn's is "
    "suppressed by the level). Each peer also gets one `-tuned` row (table below) on the "
    "scenarios its knob is for; `best peer` ratios count the tuned rows too. What was "
    "checked, in interleaved runs on this 2-core box (hello keep-alive c64 unless said):"
    "\n\n"
    "- **Granian's WSGI default thread pool: the cause.** Granian 2.x runs WSGI apps on "
    "`--blocking-threads` = backpressure/2 = 256 Python threads per worker; every request "
    "hops from its Rust runtime thread to one of them. The same Granian with "
    "`--blocking-threads 1` used 12-16 µs of CPU per request against 36-52 µs with the "
    "default, and served 40-58k req/s against 27-33k in the same rounds (`--blocking-"
    "threads 8`: 21-26 µs; `32` with `--backpressure 128`: 31-37 µs). So a hand-started "
    "Granian with a small pool is 1.5-2x faster on fast requests than its defaults; the "
    "bench keeps the defaults as the `granian-wsgi` row and adds `granian-wsgi-tuned` "
    "(`--blocking-threads 1`) on the CPU-bound scenarios (with one thread `sleep` would be "
    "capped at 200 req/s, so it does not run there: the default's 256 threads are the "
    "right setting for it).\n"
    "- **Output to a pipe nobody reads**: the bench writes each server's output to files; "
    "`loadtests/profile.py` gave the server's stderr a pipe it read only after the run "
    "(a server that logs more than 64 KiB would block); now a file.\n"
    "- **Idle servers alive during another's run**: the old bench kept all 9 servers "
    "running for the whole run; idle, they used 0.00-0.03 cores each (uvicorn 0.03, "
    "reclusterd-wsgi and gunicorn-uvicorn 0.02, Granian and Gunicorn sync/gthread about 0). "
    "Now each round starts every server afresh, one app group at a time (the framework "
    "instances live only during their scenario), and stops them after the group.\n"
    "- **Start order / position**: the server order within a case now rotates every "
    "round, so no server always runs first or right after the same neighbour.\n"
    "- **Warm-up**: a run right after 35 s idle (Granian's idle blocking threads exit "
    "after 30 s; reclusterd's pool shrinks) was not slower than one right after another "
    "run (Granian hello 23.7k/18.0k and 25.2k/20.0k cold/warm; sleep c256 11.4k/11.4k), "
    "so one 1 s warm-up per instance (all of a group at once) is kept.\n"
    "- **wrk threads, workers**: `wrk -t1` against `-t2` gave no consistent difference "
    "for Granian, Uvicorn or reclusterd under the box's noise; Granian with 1 worker was "
    "not faster than with 2 (10-30k vs 27-33k, though its rounds had more other work: "
    "inconclusive). wrk keeps `-t2`; every server keeps 2 workers.\n"
    "- **CPU placement and priority**: nothing is pinned or reniced: wrk and the server "
    "share both cores, as a 2-core host would; the \"other work\" figure above says how "
    "much else ran.")


def results_md(summary: Table, raw: goals.Raw, cases: list[Case], specs: list[Spec],
               runs: list[Running], command: str, facts: str, rounds: int,
               duration: float) -> str:
    """The whole RESULTS.md text: goals first, then the tables."""
    used = list(dict.fromkeys(c.scenario for c in cases))
    parts = [
        "# Benchmark results", "",
        f"Written by `{command}`. Each server runs with 2 workers on 127.0.0.1; wrk "
        f"(`-t2 --latency`, {duration:g} s per run) shares the same cores. Numbers are "
        f"medians of {rounds} interleaved rounds (every server once per round), with the "
        "spread (min-max over the rounds) in the full table. Absolute numbers drift "
        "between machines and runs; compare ratios. req/s needs a quiet machine (see "
        "\"other work\" below); the server CPU µs per request tables (CPU time of all the "
        "server's processes / requests answered) hold up better when other work shares "
        "the cores.", "",
        facts, "",
        *goals.section(raw, cases, specs, runs),
        "## Method", "", METHOD, "", servers_table(specs), "",
        "Scenarios: " + "; ".join(f"`{s}` {SCENARIO_TEXT[s]}" for s in used)
        + ". `ka` = keep-alive, `close` = `Connection: close` on every request; "
        "`cN` = N connections. `!` marks a server with socket errors or non-2xx answers "
        "(see the full table).", "",
    ]
    head = headline(summary, specs)
    if head:
        parts += ["## Headline: hello world, 64 connections", "", head, ""]
    for interface in ("wsgi", "asgi", "raw"):
        if any(s.interface == interface for s in specs):
            title = "ceiling (uvloop + httptools, canned answer, no app)" \
                if interface == "raw" else interface.upper()
            parts += [f"## {title}: req/s (p99 latency)", "",
                      wide_table(summary, cases, specs, interface), "",
                      f"### {title}: server CPU per request, µs (user+system)",
                      "", cpu_table(summary, cases, specs, interface), ""]
    parts += ["## Per-worker share of the load", "",
              "The least and the busiest worker's share of the server's worker CPU time "
              "during each run (median over the rounds; 50%-50% = even over 2 workers). "
              "Request counts are not exposed by every server; within one server CPU per "
              "request is about equal across workers, so the CPU share is the request "
              "share.", "", share_table(summary, cases, specs), "",
              "## Startup and memory per worker", "",
              "Per worker, mean over the workers of an instance; median over the rounds "
              "(min-max in brackets: every round starts each server afresh). USS = memory "
              "only that worker maps (what one more worker costs). Idle = after boot; "
              "after load = at the end of the instance's round.", "", memory_table(runs), "",
              "## Every run (medians and spread)", "", long_table(summary, cases, specs), ""]
    return "\n".join(parts)


def console(summary: Table, raw: goals.Raw, cases: list[Case], specs: list[Spec],
            runs: list[Running]) -> str:
    """What bench.py prints at the end."""
    parts = []
    for interface in ("wsgi", "asgi", "raw"):
        if any(s.interface == interface for s in specs):
            parts += [f"{interface.upper()}: req/s median (p99 median)",
                      wide_table(summary, cases, specs, interface), "",
                      f"{interface.upper()}: server CPU per request, user+system µs (median)",
                      cpu_table(summary, cases, specs, interface), ""]
    parts += [long_table(summary, cases, specs), ""]
    head = headline(summary, specs)
    if head:
        parts += ["Headline: hello world, 64 connections", head, ""]
    parts += ["Per-worker share (keep-alive)", share_table(summary, cases, specs), "",
              memory_table(runs), ""]
    parts += goals.section(raw, cases, specs, runs)
    return "\n".join(parts)
