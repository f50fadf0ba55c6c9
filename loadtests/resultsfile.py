"""RESULTS.md and the console summary: the Goals section first, the method (what was
checked for fairness), then every table of report.py."""

from __future__ import annotations

import goals
import report
from report import Table
from servers import Running, Spec
from wrkrun import SCENARIO_TEXT, Case


def servers_table(specs: list[Spec]) -> str:
    return report.md_table(["server", "settings (2 workers, 127.0.0.1, log level warning, "
                            "no access log)"], [[s.name, s.what] for s in specs])


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
    head = report.headline(summary, specs)
    if head:
        parts += ["## Headline: hello world, 64 connections", "", head, ""]
    for interface in ("wsgi", "asgi", "raw"):
        if any(s.interface == interface for s in specs):
            title = "ceiling (uvloop + httptools, canned answer, no app)" \
                if interface == "raw" else interface.upper()
            parts += [f"## {title}: req/s (p99 latency)", "",
                      report.wide_table(summary, cases, specs, interface), "",
                      f"### {title}: server CPU per request, µs (user+system)",
                      "", report.cpu_table(summary, cases, specs, interface), ""]
    parts += ["## Per-worker share of the load", "",
              "The least and the busiest worker's share of the server's worker CPU time "
              "during each run (median over the rounds; 50%-50% = even over 2 workers). "
              "Request counts are not exposed by every server; within one server CPU per "
              "request is about equal across workers, so the CPU share is the request "
              "share.", "", report.share_table(summary, cases, specs), "",
              "## Startup and memory per worker", "",
              "Per worker, mean over the workers of an instance; median over the rounds "
              "(min-max in brackets: every round starts each server afresh). USS = memory "
              "only that worker maps (what one more worker costs). Idle = after boot; "
              "after load = at the end of the instance's round.", "",
              report.memory_table(runs), "",
              "## Every run (medians and spread)", "",
              report.long_table(summary, cases, specs), ""]
    return "\n".join(parts)


def console(summary: Table, raw: goals.Raw, cases: list[Case], specs: list[Spec],
            runs: list[Running]) -> str:
    """What bench.py prints at the end."""
    parts = []
    for interface in ("wsgi", "asgi", "raw"):
        if any(s.interface == interface for s in specs):
            parts += [f"{interface.upper()}: req/s median (p99 median)",
                      report.wide_table(summary, cases, specs, interface), "",
                      f"{interface.upper()}: server CPU per request, user+system µs (median)",
                      report.cpu_table(summary, cases, specs, interface), ""]
    parts += [report.long_table(summary, cases, specs), ""]
    head = report.headline(summary, specs)
    if head:
        parts += ["Headline: hello world, 64 connections", head, ""]
    parts += ["Per-worker share (keep-alive)", report.share_table(summary, cases, specs), "",
              report.memory_table(runs), ""]
    parts += goals.section(raw, cases, specs, runs)
    return "\n".join(parts)
