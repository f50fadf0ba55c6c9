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

from servers import ROOT, Running, Spec
from wrkrun import Case, Result, wrk_version

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


def md_table(header: list[str], rows: list[list[str]]) -> str:
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
    return md_table(header, rows)


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
    return md_table(["case"] + [s.name for s in cols]
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
    return md_table(["case", *[s.name for s in cols]], rows)


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
    return md_table(["case", "server", "req/s (median)", "req/s min-max", "p99 ms (median)",
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
    return md_table(["server", "interface", "keep-alive req/s (p99)", "CPU µs/req",
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
    return md_table(["server [app]", "startup to first 200 (s)", "workers",
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
