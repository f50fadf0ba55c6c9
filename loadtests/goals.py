"""The "Goals" section of RESULTS.md: one line per issue-15 goal check, with the ratio
measured in EVERY round against the peers of the same round (a lead counts only when it
holds in every round), the target, and met / not met.

A round's ratio compares runs of the same round only (rounds are interleaved: every
server ran the case once per round, minutes apart at most)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from servers import Running, Spec
from wrkrun import FRAMEWORKS, Case, Result

Raw = dict[tuple[Case, str], list[Result]]
Pick = Callable[[list[Result]], float | None]  # one round's peers -> the value to beat


@dataclass
class Check:
    """One goal line: what, the per-round values, the target, and the verdict."""

    goal: str
    what: str
    values: list[float]  # one per round (a ratio, or MB for memory)
    target: str
    ok: Callable[[float], bool]
    fmt: str = "x{:.2f}"

    def row(self) -> list[str]:
        if not self.values:
            return [self.goal, self.what, "not measured", self.target, "-"]
        met = sum(1 for v in self.values if self.ok(v))
        verdict = ("**met**" if met == len(self.values)
                   else f"not met ({met} of {len(self.values)} rounds)")
        return [self.goal, self.what, ", ".join(self.fmt.format(v) for v in self.values),
                self.target, verdict]


def _round(raw: Raw, case: Case, name: str, i: int) -> Result | None:
    res = raw.get((case, name), [])
    return res[i] if i < len(res) and not res[i].failed and res[i].rps else None


def _rounds(raw: Raw, case: Case) -> int:
    return max((len(v) for (c, _), v in raw.items() if c == case), default=0)


def per_round(raw: Raw, case: Case, mine: str, others: list[str], p99: bool
              ) -> list[float]:
    """Per round: mine / the best of `others` that round (req/s: the fastest; p99: the
    lowest). Rounds where either side has no clean run are left out."""
    out = []
    for i in range(_rounds(raw, case)):
        me = _round(raw, case, mine, i)
        them = [r for r in (_round(raw, case, o, i) for o in others) if r is not None]
        if me is None or not them:
            continue
        if p99:
            best = min(r.p99_ms for r in them)
            if best > 0:
                out.append(me.p99_ms / best)
        else:
            out.append(me.rps / max(r.rps for r in them))
    return out


def _peers(specs: list[Spec], interface: str) -> list[str]:
    return [s.name for s in specs if s.peer and s.interface == interface]


def _ge(x: float) -> Callable[[float], bool]:
    return lambda v: v >= x


def _le(x: float) -> Callable[[float], bool]:
    return lambda v: v <= x


def checks(raw: Raw, cases: list[Case], specs: list[Spec], runs: list[Running]
           ) -> list[Check]:
    """Every goal check the run has data for (cases not run are not listed)."""
    out: list[Check] = []
    ran = set(cases)

    def add(goal: str, case: Case, mine: str, others: list[str], p99: bool, x: float,
            label: str) -> None:
        if case in ran and (case, mine) in raw:
            sign = "≤" if p99 else "≥"
            out.append(Check(goal, f"{case.label}: {mine} {label}",
                             per_round(raw, case, mine, others, p99), f"{sign} {x:g}",
                             _le(x) if p99 else _ge(x)))

    rw, ra = "reclusterd-wsgi", "reclusterd-asgi"
    for c in (64, 256):
        for m in ("ka", "close"):
            case = Case("sleep", m, c)
            add("1 I/O-bound WSGI", case, rw, ["granian-wsgi"], False, 1.0,
                "req/s vs granian-wsgi")
            add("1 I/O-bound WSGI", case, rw, ["granian-wsgi"], True, 1.0,
                "p99 vs granian-wsgi p99")
    for scen in ("hello", "json"):
        for c in (64, 256):
            add("1 fast WSGI", Case(scen, "ka", c), rw, ["granian-wsgi"], False, 1.5,
                "req/s vs granian-wsgi")
    for scen in ("hello", "json"):
        for c in (64, 256):
            for mine, iface in ((rw, "wsgi"), (ra, "asgi")):
                add("2 tail latency", Case(scen, "ka", c), mine, _peers(specs, iface), True,
                    1.0, "p99 vs best peer p99")
    for scen in FRAMEWORKS:
        iface = "asgi" if scen == "fastapi" else "wsgi"
        mine = ra if iface == "asgi" else rw
        for case in [k for k in cases if k.scenario == scen]:
            add("3 real frameworks", case, mine, _peers(specs, iface), False, 1.0,
                "req/s vs best peer")
            add("3 real frameworks", case, mine, _peers(specs, iface), True, 1.0,
                "p99 vs best peer p99")
    out += memory_checks(runs)
    for c in (64, 256):
        for mine in (rw, ra):
            add("5 ceiling", Case("hello", "ka", c), mine, ["ceiling"], False, 0.6,
                "req/s vs ceiling")
    add("5 ASGI vs Uvicorn", Case("hello", "ka", 64), ra, ["uvicorn"], False, 1.5,
        "req/s vs uvicorn")
    add("5 ASGI vs Uvicorn", Case("hello", "close", 64), ra, ["uvicorn"], False, 1.3,
        "req/s vs uvicorn")
    return out


def memory_checks(runs: list[Running]) -> list[Check]:
    """Goal 4: idle USS per worker <= Gunicorn's, per round (each round boots every
    server afresh; the bench app), shown as our MB minus theirs."""
    idle: dict[str, list[float]] = {}
    for r in runs:
        if r.group == "bench":
            idle.setdefault(r.spec.name, []).append(r.idle.uss if not r.error else 0.0)
    out = []
    for mine, theirs in (("reclusterd-wsgi", "gunicorn-sync"),
                         ("reclusterd-wsgi", "gunicorn-gthread"),
                         ("reclusterd-asgi", "gunicorn-uvicorn")):
        pairs = [(a, b) for a, b in zip(idle.get(mine, []), idle.get(theirs, []),
                                        strict=False) if a and b]
        if pairs:
            out.append(Check("4 memory", f"idle USS/worker, {mine} minus {theirs} (MB)",
                             [a - b for a, b in pairs], "≤ 0 MB", _le(0.0), "{:+.1f}"))
    return out


def section(raw: Raw, cases: list[Case], specs: list[Spec], runs: list[Running]) -> list[str]:
    """Markdown lines of the Goals section ([] when nothing was measured)."""
    rows = [c.row() for c in checks(raw, cases, specs, runs)]
    if not rows:
        return []
    header = ["goal", "check", "per round", "target", "met in every round?"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return ["## Goals (issue 15)", "",
            "Each ratio is taken within one round (the peers of the same round), listed for "
            "every round; a goal is met only when it holds in every round. `best peer` = the "
            "fastest (or lowest-p99) peer row of the same interface, default or tuned. "
            "Memory: after boot, every round (each round boots every server afresh).", "",
            *lines, ""]
