#!/usr/bin/env python3
"""Side-by-side benchmark: reclusterd vs Gunicorn, Uvicorn and Granian, with wrk.

From the repository root, after installing the `bench` extra (the peers, locust, py-spy)
into the project's virtualenv:

    python3 -m venv .venv && .venv/bin/pip install -e '.[bench]'
    .venv/bin/python loadtests/bench.py           # full run (~25 min on 2 cores): RESULTS.md
    .venv/bin/python loadtests/bench.py --quick   # reclusterd + one peer, hello, 1 round of 1 s
    .venv/bin/python loadtests/bench.py --servers reclusterd-asgi,uvicorn --scenarios hello,json
    .venv/bin/python loadtests/bench.py --dry-run # check the arguments, print the plan, run nothing

Servers run with this interpreter; one whose package is missing is skipped, said so.
wrk must be on PATH. Servers listen on 127.0.0.1 only and are stopped (whole process
group) on exit, errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import signal
import statistics
import sys
import time
from pathlib import Path
from types import FrameType

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # bench modules; reclusterd of this checkout

import backing  # noqa: E402
import procstats  # noqa: E402
import report  # noqa: E402
import resultsfile  # noqa: E402
import servers  # noqa: E402
import wrkrun  # noqa: E402

QUICK_SERVERS = ["reclusterd-wsgi", "gunicorn-gthread"]
NOISY_CORES = 0.25  # other work above this (cores, mean): the results say they are noisy
INSTALL_HINT = "install the bench extra: .venv/bin/pip install -e '.[bench]'"


H2_START, H2_END = "<!-- h2:start -->", "<!-- h2:end -->"   # h2bench.py


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help=f"smoke run: {', '.join(QUICK_SERVERS)}; hello keep-alive c64; "
                         "1 round of 1 s")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--duration", type=int, default=2,
                    help="whole seconds per wrk run (default 2; wrk takes no fractions)")
    ap.add_argument("--scenarios", default=",".join(wrkrun.DEFAULT_SCENARIOS),
                    help=f"comma list of {', '.join(wrkrun.SCENARIOS)}")
    ap.add_argument("--modes", default="ka,close", help="ka (keep-alive), close")
    ap.add_argument("--conns", default=None,
                    help="comma list of connection counts for every scenario (default: 64 "
                         "everywhere, and 256 for hello and sleep)")
    ap.add_argument("--servers", default=None,
                    help=f"comma list (default all available): {', '.join(servers.BY_NAME)}")
    ap.add_argument("--dry-run", action="store_true",
                    help="check the arguments, print what would run, start nothing")
    ap.add_argument("--no-venv", action="store_true",
                    help=argparse.SUPPRESS)  # old flag: the current interpreter is always used
    ap.add_argument("--results", default=None,
                    help="where to write the results (default loadtests/RESULTS.md; "
                         "--quick writes none unless given)")
    ap.add_argument("--no-results", action="store_true", help="do not write a results file")
    ap.add_argument("--baseline", default=None, metavar="REF",
                    help="also run reclusterd as of git REF (e.g. main), as "
                         "reclusterd-wsgi@REF: before/after a change in the same run")
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.duration = 1, 1
        args.scenarios, args.modes, args.conns = "hello", "ka", "64"
        args.servers = args.servers or ",".join(QUICK_SERVERS)
    return args


def pick_specs(names: str | None) -> list[servers.Spec]:
    """The requested servers that can run here (missing packages are skipped, said so)."""
    wanted = names.split(",") if names else list(servers.BY_NAME)
    specs = []
    for name in wanted:
        spec = servers.BY_NAME.get(name.strip())
        if spec is None:
            sys.exit(f"unknown server {name!r}; choose from {', '.join(servers.BY_NAME)}")
        if spec.available():
            specs.append(spec)
        else:
            print(f"skip {spec.name}: python package {spec.needs!r} not installed "
                  f"({INSTALL_HINT})", flush=True)
    return specs


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def runnable(scenarios: list[str]) -> list[str]:
    """`scenarios` minus framework ones that cannot run here (package or redis-server
    missing), each skip said so."""
    out = []
    for s in scenarios:
        missing = [m for m in backing.NEEDS.get(s, ()) if importlib.util.find_spec(m) is None]
        if missing:
            print(f"skip scenario {s}: python package(s) {', '.join(missing)} not installed "
                  f"({INSTALL_HINT})", flush=True)
        elif s in backing.USES_REDIS and backing.redis_server() is None:
            print(f"skip scenario {s}: redis-server not found on PATH (apt-get install "
                  "redis-server)", flush=True)
        else:
            out.append(s)
    return out


def plan(args: argparse.Namespace) -> tuple[list[wrkrun.Case], list[servers.Spec]]:
    """The wrk cases and the servers to run; bad names exit with the valid choices."""
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    bad = [s for s in scenarios if s not in wrkrun.SCENARIOS]
    if bad:
        sys.exit(f"unknown scenario(s) {bad}; choose from {', '.join(wrkrun.SCENARIOS)}")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not set(modes) <= {"ka", "close"}:
        sys.exit(f"unknown mode(s) in {args.modes!r}; choose from ka, close")
    try:
        conns = [int(c) for c in args.conns.split(",")] if args.conns else None
    except ValueError:
        sys.exit(f"--conns: comma list of integers, got {args.conns!r}")
    specs = pick_specs(args.servers)
    if args.baseline and not args.dry_run:
        specs += servers.baseline_specs(args.baseline, specs)
    return wrkrun.build_cases(runnable(scenarios), modes, conns), specs


def serves(spec: servers.Spec, case: wrkrun.Case) -> bool:
    return spec.serves(case.scenario, case.mode, wrkrun.group(case.scenario))


def instances(cases: list[wrkrun.Case], specs: list[servers.Spec]
              ) -> list[tuple[servers.Spec, str]]:
    """(server, app group) pairs to start: one instance per group a server has cases in."""
    groups = list(dict.fromkeys(wrkrun.group(c.scenario) for c in cases))
    return [(s, g) for g in groups for s in specs
            if any(serves(s, c) and wrkrun.group(c.scenario) == g for c in cases)]


def measure(run: servers.Running, case: wrkrun.Case, duration: float,
            foreign: list[float]) -> wrkrun.Result:
    """One wrk run against `run`, with the server's CPU per request, each worker's share
    of that CPU, and the CPU used meanwhile by other work on the machine (to `foreign`)."""
    if not run.alive():
        return wrkrun.Result(failed="server died")
    pid = run.proc.pid
    w0, (u0, s0), m0 = procstats.worker_cpu(pid), procstats.cpu_seconds(pid), \
        procstats.machine_busy()
    res = wrkrun.run_wrk(case, run.port, duration)
    m1, (u1, s1), w1 = procstats.machine_busy(), procstats.cpu_seconds(pid), \
        procstats.worker_cpu(pid)
    # CPU used by neither the server nor wrk: other work on the box
    other = (m1[0] - m0[0]) - (m1[1] - m0[1]) - (u1 - u0 + s1 - s0)
    if other == other:  # not NaN
        foreign.append(max(0.0, other) / (m1[2] - m0[2]))
    if res.requests:
        res.user_us = (u1 - u0) * 1e6 / res.requests
        res.sys_us = (s1 - s0) * 1e6 / res.requests
        res.shares = procstats.shares(w0, w1)
    return res


def start_all(pairs: list[tuple[servers.Spec, str]], env: dict[str, str], say: bool
              ) -> list[servers.Running]:
    runs = []
    for spec, grp in pairs:
        run = servers.start(spec, grp, env)
        runs.append(run)
        name = spec.name if grp == "bench" else f"{spec.name} [{grp}]"
        if run.error:
            print(f"{name}: FAILED to start: {run.error}\n{run.log_tail()}", flush=True)
        elif say:
            print(f"{name}: up on :{run.port} in {run.startup_s:.2f}s, {run.nworkers} "
                  f"workers, idle RSS {run.idle.rss:.1f} MB / USS {run.idle.uss:.1f} MB "
                  "per worker", flush=True)
    return runs


def run_group(args: argparse.Namespace, cases: list[wrkrun.Case], live: list[servers.Running],
              table: dict[tuple[wrkrun.Case, str], list[wrkrun.Result]],
              foreign: list[float], rnd: int) -> None:
    """One round of one app group: warm each instance up, then every case on every
    instance serving it (case by case, so the servers of a case run back to back). The
    server order rotates by one each round: no server always runs right after the same
    neighbour (or always first after a warm-up)."""
    live = live[rnd % len(live):] + live[:rnd % len(live)] if live else live
    wrkrun.warm_up([(wrkrun.Case(next(c.scenario for c in cases
                                      if wrkrun.group(c.scenario) == run.group), "ka", 16),
                     run.port) for run in live])
    for case in cases:
        for run in live:
            if run.group != wrkrun.group(case.scenario) or not serves(run.spec, case):
                continue
            res = measure(run, case, args.duration, foreign)
            table.setdefault((case, run.spec.name), []).append(res)
            if res.failed:
                print(f"  {case.label} {run.spec.name}: {res.failed}", flush=True)
            time.sleep(0.2)  # let the last connections drain before the next run
    for run in live:  # memory after the load (pools have grown, caches are full)
        if run.alive():
            run.loaded = procstats.memory(run.proc.pid)


def run_rounds(args: argparse.Namespace, cases: list[wrkrun.Case],
               pairs: list[tuple[servers.Spec, str]], env: dict[str, str],
               runs: list[servers.Running], foreign: list[float]
               ) -> dict[tuple[wrkrun.Case, str], list[wrkrun.Result]]:
    """Interleaved rounds. Each round starts every server afresh, one app group at a
    time (only the instances of the group being measured are alive), so boot facts and
    memory get a spread over rounds too. Started instances are appended to `runs`."""
    table: dict[tuple[wrkrun.Case, str], list[wrkrun.Result]] = {}
    groups = list(dict.fromkeys(g for _, g in pairs))
    for rnd in range(1, args.rounds + 1):
        t0 = time.monotonic()
        for grp in groups:
            started = start_all([p for p in pairs if p[1] == grp], env, say=rnd == 1)
            runs += started
            try:
                run_group(args, cases, [r for r in started if not r.error], table, foreign,
                          rnd - 1)
            finally:
                servers.stop_all(started)
        print(f"round {rnd}/{args.rounds} done in {time.monotonic() - t0:.0f}s", flush=True)
    return table


def bench(args: argparse.Namespace, argv: list[str]) -> int:
    cases, specs = plan(args)
    pairs = instances(cases, specs)
    nruns = sum(1 for c in cases for s in specs if serves(s, c))
    est = args.rounds * (nruns * (args.duration + 0.45) + len(pairs) * 2.5)
    if args.dry_run:
        groups = sorted({g for _, g in pairs})
        print(f"would run {len(specs)} servers ({', '.join(s.name for s in specs)}) on "
              f"{len(cases)} cases ({', '.join(c.label for c in cases)}): {len(pairs)} "
              f"server instances (app groups: {', '.join(groups)}), {nruns} wrk runs x "
              f"{args.rounds} rounds x {args.duration}s, about {est / 60:.0f} min")
        return 0
    if wrkrun.wrk_path() is None:
        print(wrkrun.WRK_INSTALL_HINT, file=sys.stderr)
        return 2
    facts = report.machine_facts()
    print(f"{len(pairs)} server instances, {nruns} wrk runs x {args.rounds} rounds x "
          f"{args.duration:g}s: about {est / 60:.1f} min", flush=True)
    t_start = time.monotonic()
    runs: list[servers.Running] = []
    foreign: list[float] = []  # cores busy with other work during each wrk run
    back = None
    try:
        back = backing.start(sorted({g for _, g in pairs if g != "bench"}))
        table = run_rounds(args, cases, pairs, back.env, runs, foreign)
    finally:
        servers.stop_all(runs)
        if back is not None:
            back.stop()
    summary = {k: report.summarize(v) for k, v in table.items()}
    if foreign:
        noise = (f"- other work on the machine during the wrk runs: {statistics.mean(foreign):.2f}"
                 f" cores on average (max {max(foreign):.2f}) of {os.cpu_count()}, i.e. CPU "
                 "used by neither the server under test nor wrk")
        facts += "\n" + noise
        print(noise[2:], flush=True)
        if statistics.mean(foreign) > NOISY_CORES:
            facts = (f"**Not a quiet machine**: other work took {statistics.mean(foreign):.2f} "
                     "cores on average during the runs. A server with more runnable threads "
                     "(Granian's Rust runtime) gets a larger share of a contended CPU, so "
                     "req/s ratios and p99 here say little; compare the CPU µs per request "
                     "tables, and rerun on a quiet machine.\n\n" + facts)
    facts += f"\n- the whole run took {(time.monotonic() - t_start) / 60:.1f} min"
    shown = [s for s in specs if any(r.spec is s and not r.error for r in runs)]
    print()
    print(resultsfile.console(summary, table, cases, shown, runs))
    if args.results is None and not args.quick:
        args.results = str(HERE / "RESULTS.md")
    if args.results and not args.no_results:
        command = ".venv/bin/python loadtests/bench.py" + "".join(" " + shlex.quote(a)
                                                                   for a in argv)
        text = resultsfile.results_md(summary, table, cases, shown, runs, command, facts,
                                 args.rounds, args.duration)
        path = Path(args.results)
        old = path.read_text() if path.exists() else ""
        start, end = old.find(H2_START), old.find(H2_END)
        if 0 <= start < end:      # h2bench.py's section: another run's, kept as it is
            text = text.rstrip("\n") + "\n\n" + old[start:end + len(H2_END)] + "\n"
        path.write_text(text)
        print(f"wrote {args.results}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGHUP, _raise_interrupt)
    try:
        return bench(args, argv)
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
