#!/usr/bin/env python3
"""Side-by-side benchmark: reclusterd vs Gunicorn, Uvicorn and Granian, with wrk.

From the repository root, after installing the `bench` extra (the peers, locust, py-spy)
into the project's virtualenv:

    python3 -m venv .venv && .venv/bin/pip install -e '.[bench]'
    .venv/bin/python loadtests/bench.py           # full run (~9 min), writes loadtests/RESULTS.md
    .venv/bin/python loadtests/bench.py --quick   # reclusterd + one peer, hello, 1 round of 1 s
    .venv/bin/python loadtests/bench.py --servers reclusterd-asgi,uvicorn --scenarios hello,json
    .venv/bin/python loadtests/bench.py --dry-run # check the arguments, print the plan, run nothing

Servers run with this interpreter; one whose package is missing is skipped, said so.
wrk must be on PATH. Servers listen on 127.0.0.1 only and are stopped (whole process
group) on exit, errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
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

import report  # noqa: E402
import servers  # noqa: E402
import wrkrun  # noqa: E402

QUICK_SERVERS = ["reclusterd-wsgi", "gunicorn-gthread"]
INSTALL_HINT = "install the bench extra: .venv/bin/pip install -e '.[bench]'"


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help=f"smoke run: {', '.join(QUICK_SERVERS)}; hello keep-alive c64; "
                         "1 round of 1 s")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--duration", type=int, default=1,
                    help="whole seconds per wrk run (default 1; wrk takes no fractions)")
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
    return wrkrun.build_cases(scenarios, modes, conns), specs


def bench(args: argparse.Namespace, argv: list[str]) -> int:
    cases, specs = plan(args)
    if args.dry_run:
        print(f"would run {len(specs)} servers ({', '.join(s.name for s in specs)}) x "
              f"{len(cases)} cases ({', '.join(c.label for c in cases)}) x {args.rounds} "
              f"rounds x {args.duration}s")
        return 0
    if wrkrun.wrk_path() is None:
        print(wrkrun.WRK_INSTALL_HINT, file=sys.stderr)
        return 2
    facts = report.machine_facts()
    est = args.rounds * len(cases) * len(specs) * (args.duration + 0.4)
    print(f"{len(specs)} servers x {len(cases)} cases x {args.rounds} rounds x "
          f"{args.duration:g}s: about {est / 60:.1f} min of load", flush=True)

    runs: list[servers.Running] = []
    foreign: list[float] = []  # cores busy with other work during each wrk run
    table: dict[tuple[wrkrun.Case, str], list[wrkrun.Result]] = {}
    try:
        for spec in specs:
            run = servers.start(spec)
            runs.append(run)
            if run.error:
                print(f"{spec.name}: FAILED to start: {run.error}\n{run.log_tail()}",
                      flush=True)
            else:
                print(f"{spec.name}: up on :{run.port} in {run.startup_s:.2f}s, "
                      f"{run.nworkers} workers, idle RSS {run.idle_rss_mb:.1f} MB/worker",
                      flush=True)
        live = [r for r in runs if not r.error]
        for run in live:  # warm-up: imports, first-request paths, caches
            wrkrun.run_wrk(wrkrun.Case("hello", "ka", 16), run.port, 0.5)
        for rnd in range(1, args.rounds + 1):
            t0 = time.monotonic()
            for case in cases:
                for run in live:
                    if not run.spec.serves(case.scenario):
                        continue
                    if not run.alive():
                        res = wrkrun.Result(failed="server died")
                    else:
                        u0, s0 = servers.cpu_seconds(run)
                        m0 = servers.machine_busy()
                        res = wrkrun.run_wrk(case, run.port, args.duration)
                        m1 = servers.machine_busy()
                        u1, s1 = servers.cpu_seconds(run)
                        # CPU used by neither the server nor wrk: other work on the box
                        other = (m1[0] - m0[0]) - (m1[1] - m0[1]) - (u1 - u0 + s1 - s0)
                        if other == other:  # not NaN
                            foreign.append(max(0.0, other) / (m1[2] - m0[2]))
                        if res.requests:
                            res.user_us = (u1 - u0) * 1e6 / res.requests
                            res.sys_us = (s1 - s0) * 1e6 / res.requests
                    table.setdefault((case, run.spec.name), []).append(res)
                    if res.failed:
                        print(f"  {case.label} {run.spec.name}: {res.failed}", flush=True)
                    time.sleep(0.2)  # let the last connections drain before the next run
            print(f"round {rnd}/{args.rounds} done in {time.monotonic() - t0:.0f}s", flush=True)
    finally:
        servers.stop_all(runs)

    summary = {k: report.summarize(v) for k, v in table.items()}
    if foreign:
        noise = (f"- other work on the machine during the wrk runs: {statistics.mean(foreign):.2f}"
                 f" cores on average (max {max(foreign):.2f}) of {os.cpu_count()}, i.e. CPU "
                 "used by neither the server under test nor wrk")
        facts += "\n" + noise
        print(noise[2:], flush=True)
    shown = [s for s in specs if any(r.spec is s and not r.error for r in runs)]
    print()
    for interface in ("wsgi", "asgi", "raw"):
        if any(s.interface == interface for s in shown):
            print(f"{interface.upper()}: req/s median (p99 median)")
            print(report.wide_table(summary, cases, shown, interface), "\n")
            print(f"{interface.upper()}: server CPU per request, user+system µs (median)")
            print(report.cpu_table(summary, cases, shown, interface), "\n")
    print(report.long_table(summary, cases, shown), "\n")
    head = report.headline(summary, shown)
    if head:
        print("Headline: hello world, 64 connections\n" + head, "\n")
    print(report.boot_table(runs), "\n")
    if args.results is None and not args.quick:
        args.results = str(HERE / "RESULTS.md")
    if args.results and not args.no_results:
        command = ".venv/bin/python loadtests/bench.py" + "".join(" " + shlex.quote(a)
                                                                   for a in argv)
        text = report.results_md(summary, cases, shown, runs, command, facts, args.rounds,
                                 args.duration)
        Path(args.results).write_text(text)
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
