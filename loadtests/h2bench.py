#!/usr/bin/env python3
"""HTTP/2 benchmark with h2load: reclusterd vs Granian (`--http 2`), Hypercorn and
Gunicorn (`--http-protocols h2,h1`, gthread), over TLS (ALPN h2) and h2c (prior
knowledge), 1 and 100 concurrent streams per connection, hello and 64 KiB bodies.

From the repository root, with the `bench` extra installed and h2load on PATH (Debian's
nghttp2-client):

    .venv/bin/python loadtests/h2bench.py            # full run (~10 min): RESULTS.md's h2 section
    .venv/bin/python loadtests/h2bench.py --quick    # reclusterd + Hypercorn, hello h2c, 1 s
    .venv/bin/python loadtests/h2bench.py --dry-run  # check the arguments, print the plan

Each server runs loadtests/apps.py with 2 workers on 127.0.0.1 (loadtests/servers.py
starts, measures and stops them). Rounds are interleaved: every server runs each case
once per round. Figures: req/s (h2load), p99 latency (from h2load's per-request log),
server CPU µs per request (user+system of the server's process tree / requests).
The results go between `<!-- h2:start -->` and `<!-- h2:end -->` in RESULTS.md; the
rest of the file is left as it is.
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # bench modules; reclusterd of this checkout

import report  # noqa: E402
import servers  # noqa: E402

START, END = "<!-- h2:start -->", "<!-- h2:end -->"
PATHS = {"hello": "/hello", "big": "/big"}
TRANSPORTS = ("h2c", "tls")
STREAMS = (1, 100)
CLIENTS = 8                # h2load connections
WARM_UP = "500ms"          # h2load's, per run: connections and TLS handshakes not counted
QUICK = ["reclusterd-asgi", "hypercorn-asgi"]
Tls = tuple[str, str] | None        # (certificate, PKCS#8 key) files, None: h2c
Argv = Callable[[str, int, Tls], list[str]]


@dataclass(frozen=True)
class Case:
    scenario: str
    transport: str
    streams: int

    @property
    def label(self) -> str:
        return f"{self.scenario} {self.transport} m{self.streams}"


@dataclass
class Result:
    rps: float = 0.0
    p99_ms: float = float("nan")
    cpu_us: float = float("nan")
    failed: str = ""


@dataclass(frozen=True)
class H2Spec:
    """A server as the h2 bench starts it; `argv` gets the TLS files (None: h2c)."""

    name: str
    interface: str
    needs: str
    argv: Argv
    why_not: Callable[[], str] = field(default=lambda: "")   # "": it can run here

    def spec(self, tls: Tls) -> servers.Spec:
        return servers.Spec(self.name, self.interface, self.needs,
                            lambda py, port: self.argv(py, port, tls))


def _reclusterd(app: str, kind: str) -> Argv:
    def argv(py: str, port: int, tls: Tls) -> list[str]:
        out = [py, "-m", "reclusterd", app, "-w", str(servers.WORKERS), "-k", kind,
               "-b", f"{servers.HOST}:{port}", "--log-level", "warning"]
        return out + (["--certfile", tls[0], "--keyfile", tls[1]] if tls else
                      ["--http2-cleartext", "prior-knowledge"])
    return argv


def _granian(interface: str) -> Argv:
    def argv(py: str, port: int, tls: Tls) -> list[str]:
        out = [py, "-m", "granian", "--interface", interface, "--http", "2", "--host",
               servers.HOST, "--port", str(port), "--workers", str(servers.WORKERS),
               "--log-level", "warning"]
        tls_args = ["--ssl-certificate", tls[0], "--ssl-keyfile", tls[1]] if tls else []
        return out + tls_args + [f"apps:{interface}_app"]
    return argv


def _hypercorn(interface: str) -> Argv:
    def argv(py: str, port: int, tls: Tls) -> list[str]:
        out = [py, "-m", "hypercorn", "-w", str(servers.WORKERS), "-b",
               f"{servers.HOST}:{port}", "--log-level", "warning"]
        tls_args = ["--certfile", tls[0], "--keyfile", tls[1]] if tls else []
        return out + tls_args + [f"apps:{interface}_app"]
    return argv


def _gunicorn(py: str, port: int, tls: Tls) -> list[str]:
    # A TLS HTTP/2 connection holds one gthread thread while open: with bench.py's 4
    # threads, a worker given 5 of h2load's 8 connections never served the 5th (the run
    # never ended). 16 threads: every connection is served.
    out = [py, "-m", "gunicorn", "-w", str(servers.WORKERS), "-k", "gthread", "--threads",
           "16", "--http-protocols", "h2,h1", "-b", f"{servers.HOST}:{port}",
           "--log-level", "warning"]
    tls_args = (["--certfile", tls[0], "--keyfile", tls[1]] if tls else
                ["--http2-cleartext", "prior-knowledge"])
    return out + tls_args + ["apps:wsgi_app"]


def _thread_speaks_h2() -> str:
    from reclusterd.workers.thread import ThreadWorker
    return "" if ThreadWorker.speaks_h2 else "the thread worker speaks HTTP/1 only"


def _gunicorn_h2() -> str:
    """Gunicorn serves HTTP/2 from 25 on (--http-protocols; h2c from 26.2)."""
    try:
        from gunicorn.config import KNOWN_SETTINGS
    except ImportError:
        return "gunicorn not installed"
    names = {s.name for s in KNOWN_SETTINGS}
    return "" if {"http_protocols", "http2_cleartext"} <= names else \
        "this gunicorn has no --http-protocols/--http2-cleartext"


SPECS = [
    H2Spec("reclusterd-asgi", "asgi", "reclusterd", _reclusterd("apps:asgi_app", "asyncio")),
    H2Spec("granian-asgi", "asgi", "granian", _granian("asgi")),
    H2Spec("hypercorn-asgi", "asgi", "hypercorn", _hypercorn("asgi")),
    H2Spec("reclusterd-wsgi", "wsgi", "reclusterd", _reclusterd("apps:wsgi_app", "thread"),
           _thread_speaks_h2),
    H2Spec("granian-wsgi", "wsgi", "granian", _granian("wsgi")),
    H2Spec("hypercorn-wsgi", "wsgi", "hypercorn", _hypercorn("wsgi")),
    H2Spec("gunicorn-gthread", "wsgi", "gunicorn", _gunicorn, _gunicorn_h2),
]
BY_NAME = {s.name: s for s in SPECS}


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help=f"smoke run: {', '.join(QUICK)}; hello, h2c, m1; 1 round of 1 s")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--duration", type=int, default=2, help="seconds per h2load run")
    ap.add_argument("--servers", default=None,
                    help=f"comma list (default all that can run): {', '.join(BY_NAME)}")
    ap.add_argument("--scenarios", default="hello,big", help="hello, big (64 KiB)")
    ap.add_argument("--transports", default="h2c,tls", help="h2c, tls")
    ap.add_argument("--streams", default="1,100", help="concurrent streams per connection")
    ap.add_argument("--results", default=str(HERE / "RESULTS.md"),
                    help="file whose h2 section is written (default loadtests/RESULTS.md)")
    ap.add_argument("--no-results", action="store_true", help="write no results")
    ap.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.duration = 1, 1
        args.scenarios, args.transports, args.streams = "hello", "h2c", "1"
        args.servers = args.servers or ",".join(QUICK)
    return args


def plan(args: argparse.Namespace) -> tuple[list[Case], list[H2Spec]]:
    """The cases and the servers that can run here (the others are said and skipped)."""
    def pick(value: str, allowed: tuple[str, ...], what: str) -> list[str]:
        items = [v.strip() for v in value.split(",") if v.strip()]
        if not items or not set(items) <= set(allowed):
            sys.exit(f"--{what}: comma list of {', '.join(allowed)}; got {value!r}")
        return items
    scenarios = pick(args.scenarios, tuple(PATHS), "scenarios")
    transports = pick(args.transports, TRANSPORTS, "transports")
    streams = [int(m) for m in pick(args.streams, tuple(str(m) for m in range(1, 1001)),
                                    "streams")]
    cases = [Case(s, t, m) for t in transports for s in scenarios for m in streams]
    specs = []
    for name in pick(args.servers or ",".join(BY_NAME), tuple(BY_NAME), "servers"):
        spec = BY_NAME[name]
        why = spec.why_not() or ("" if spec.spec(None).available() else
                                 f"python package {spec.needs!r} not installed")
        if why:
            print(f"skip {name}: {why}", flush=True)
        else:
            specs.append(spec)
    return cases, specs


def make_tls(directory: Path) -> tuple[str, str]:
    """A self-signed (trustme) certificate for 127.0.0.1 and its PKCS#8 key (Granian
    reads no other key format)."""
    import trustme
    from cryptography.hazmat.primitives import serialization as ser

    leaf = trustme.CA().issue_cert("127.0.0.1")
    key = ser.load_pem_private_key(leaf.private_key_pem.bytes(), None)
    cert, keyfile = directory / "cert.pem", directory / "key.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    keyfile.write_bytes(key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8,
                                          ser.NoEncryption()))
    return str(cert), str(keyfile)


def _url(port: int, tls: bool, path: str) -> str:
    return f"{'https' if tls else 'http'}://{servers.HOST}:{port}{path}"


def answers_h2(port: int, tls: bool) -> bool:
    """One HTTP/2 GET /hello with h2load succeeds (the server is up and speaks h2)."""
    try:
        out = subprocess.run(["h2load", "-n", "1", "-c", "1", _url(port, tls, "/hello")],
                             capture_output=True, text=True, timeout=5).stdout
    except subprocess.TimeoutExpired:
        return False
    return "1 succeeded" in out and "1 2xx" in out


_FINISHED = re.compile(r"finished in [\d.]+m?s, ([\d.]+) req/s")
_REQS = re.compile(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed")


def run_h2load(case: Case, port: int, duration: int, log: Path) -> tuple[Result, int]:
    """(result without CPU, requests succeeded) of one h2load run."""
    log.unlink(missing_ok=True)     # h2load appends to its --log-file
    url = _url(port, case.transport == "tls", PATHS[case.scenario])
    cmd = ["h2load", "-D", str(duration), "--warm-up-time", WARM_UP, "-c", str(CLIENTS),
           "-m", str(case.streams), "-t", "1", "--log-file", str(log), url]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 15)
    except subprocess.TimeoutExpired:
        return Result(failed="h2load timed out"), 0
    fin, reqs = _FINISHED.search(out.stdout), _REQS.search(out.stdout)
    if not fin or not reqs:
        return Result(failed=f"h2load: {(out.stdout + out.stderr)[-200:]!r}"), 0
    ok, failed = int(reqs.group(1)), int(reqs.group(2))
    lat = sorted(int(f[2]) for f in (line.split("\t") for line in log.read_text().splitlines())
                 if len(f) == 3 and f[1] == "200")
    res = Result(float(fin.group(1)), lat[min(len(lat) - 1, int(len(lat) * 0.99))] / 1000
                 if lat else float("nan"), failed=f"{failed} failed" if failed else "")
    return res, ok


def measure(case: Case, run: servers.Running, duration: int, log: Path) -> Result:
    u0, s0 = servers.cpu_seconds(run)
    res, ok = run_h2load(case, run.port, duration, log)
    u1, s1 = servers.cpu_seconds(run)
    if ok:
        res.cpu_us = (u1 - u0 + s1 - s0) * 1e6 / ok
    return res


Table = dict[tuple[Case, str], list[Result]]


def bench_transport(transport: str, cases: list[Case], specs: list[H2Spec], tls: Tls,
                    args: argparse.Namespace, table: Table, tmp: Path) -> list[str]:
    """Start every server for one transport, run the interleaved rounds, stop them;
    returns the names of servers that failed to start."""
    secure = tls is not None
    runs = []
    failed = []
    try:
        for spec in specs:
            run = servers.start(spec.spec(tls), ready=lambda port: answers_h2(port, secure))
            runs.append(run)
            if run.error:
                failed.append(spec.name)
                print(f"{spec.name} ({transport}): FAILED to start: {run.error}\n"
                      f"{run.log_tail()}", flush=True)
        live = [r for r in runs if not r.error]
        for run in live:      # warm-up: imports, first-request paths
            run_h2load(Case("hello", transport, 10), run.port, 1, tmp / "warm.log")
        for rnd in range(1, args.rounds + 1):
            for case in cases:
                for run in live:
                    res = measure(case, run, args.duration, tmp / "h2load.log") \
                        if run.alive() else Result(failed="server died")
                    table.setdefault((case, run.spec.name), []).append(res)
                    if res.failed:
                        print(f"  {case.label} {run.spec.name}: {res.failed}", flush=True)
            print(f"{transport}: round {rnd}/{args.rounds} done", flush=True)
    finally:
        servers.stop_all(runs)
    return failed


def _median(values: list[float]) -> float:
    vals = [v for v in values if v == v]
    return statistics.median(vals) if vals else float("nan")


def cell(results: list[Result]) -> str:
    """`req/s (p99 ms) [CPU µs/req]`, medians over the rounds."""
    ok = [r for r in results if r.rps]
    fails = "; ".join(sorted({r.failed or "0 req/s" for r in results
                              if r.failed or not r.rps}))
    if not ok:
        return fails or "-"
    rps, p99, cpu = (_median([getattr(r, k) for r in ok]) for k in ("rps", "p99_ms",
                                                                     "cpu_us"))
    return f"{rps:,.0f} ({p99:.1f} ms) [{cpu:,.0f} µs]" + (f" ⚠ {fails}" if fails else "")


def section(table: Table, cases: list[Case], specs: list[H2Spec], command: str,
            args: argparse.Namespace) -> str:
    parts = [START, "## HTTP/2 (h2load)", "",
             f"Written by `{command}`. h2load `-c {CLIENTS} -t 1 -D {args.duration} "
             f"--warm-up-time {WARM_UP}` (and "
             "`-m` streams per connection) on the same cores as the servers; 2 workers "
             "each; TLS is ALPN h2 with a trustme certificate, h2c is prior knowledge. "
             f"Cells: req/s (p99 latency) [server CPU µs per request], medians of "
             f"{args.rounds} interleaved rounds; ⚠ notes the failures h2load counted in a "
             "round (in its timing mode also streams cut by the end of the run).", "",
             report.machine_facts(), ""]
    for interface in ("asgi", "wsgi"):
        shown = [s for s in specs if s.interface == interface]
        if not shown:
            continue
        parts += [f"### {interface.upper()}", "",
                  "| case | " + " | ".join(s.name for s in shown) + " |",
                  "|---|" + "---|" * len(shown)]
        parts += ["| " + " | ".join([c.label] + [cell(table.get((c, s.name), []))
                                                  for s in shown]) + " |" for c in cases]
        parts.append("")
    parts.append(END)
    return "\n".join(parts)


def write_section(path: Path, text: str) -> None:
    """Replace the h2 section of `path` (append it when the file has none)."""
    old = path.read_text() if path.exists() else ""
    if START in old and END in old:
        new = old[:old.index(START)] + text + old[old.index(END) + len(END):]
    else:
        new = old.rstrip("\n") + ("\n\n" if old else "") + text + "\n"
    path.write_text(new)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    cases, specs = plan(args)
    print(f"{len(specs)} servers ({', '.join(s.name for s in specs)}) x {len(cases)} cases "
          f"({', '.join(c.label for c in cases)}) x {args.rounds} rounds x "
          f"{args.duration} s", flush=True)
    if args.dry_run:
        return 0
    if shutil.which("h2load") is None:
        print("h2load not found: apt-get install nghttp2-client", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="h2bench-"))
    table: Table = {}
    try:
        for transport in dict.fromkeys(c.transport for c in cases):
            tls = make_tls(tmp) if transport == "tls" else None
            bench_transport(transport, [c for c in cases if c.transport == transport],
                            specs, tls, args, table, tmp)
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        return 130
    command = ".venv/bin/python loadtests/h2bench.py" + "".join(" " + shlex.quote(a)
                                                                 for a in argv)
    text = section(table, cases, specs, command, args)
    print(text)
    if not args.no_results:
        write_section(Path(args.results), text)
        print(f"wrote the h2 section of {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
