#!/usr/bin/env python3
"""Where does reclusterd spend its time? py-spy under wrk load, summarized per function.

    .venv/bin/python loadtests/profile.py wsgi     # from the repository root; or: asgi
    .venv/bin/python loadtests/profile.py asgi --scenario json --seconds 8

Starts reclusterd (2 workers, bench apps) under `py-spy record --subprocesses --gil`
(only the thread holding the GIL is sampled: Python CPU time, not waits; py-spy
cannot attach to a running process here, so it launches the server), drives it with
wrk, then prints the functions with the most samples (self and inclusive) in the
worker processes, grouped by file. Needs py-spy (in the `bench` extra:
`.venv/bin/pip install -e '.[bench]'`) and wrk. Loopback only; the server is stopped afterwards.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import servers  # noqa: E402
import wrkrun  # noqa: E402

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def parse_collapsed(path: Path, keep: str = "") -> tuple[collections.Counter[str],
                                                         collections.Counter[str], int]:
    """(self samples, inclusive samples, total) per `func (file)` from py-spy raw output."""
    self_c: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit() or (keep and keep not in stack):
            continue
        n = int(count)
        total += n
        names = []
        for frame in stack.split(";"):
            m = _FRAME.match(frame)
            if m:
                names.append(f"{m['func']} ({Path(m['file']).name})")
        if not names:
            continue
        self_c[names[-1]] += n
        for name in set(names):
            incl[name] += n
    return self_c, incl, total


def by_file(self_c: collections.Counter[str]) -> collections.Counter[str]:
    files: collections.Counter[str] = collections.Counter()
    for name, n in self_c.items():
        files[name[name.rfind("(") + 1:-1]] += n
    return files


def report(path: Path, top: int, keep: str) -> str:
    self_c, incl, total = parse_collapsed(path, keep)
    if not total:
        return "no samples"
    lines = [f"{total} samples (threads holding the GIL, worker processes)", "",
             "self time by file:"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in by_file(self_c).most_common(top)]
    lines += ["", "self time by function:"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in self_c.most_common(top)]
    lines += ["", "inclusive time by function:"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in incl.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("interface", choices=["wsgi", "asgi"])
    ap.add_argument("--scenario", default="hello",
                    choices=[s for s in wrkrun.SCENARIOS if s not in wrkrun.FRAMEWORKS])
    ap.add_argument("--mode", default="ka", choices=wrkrun.MODES)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--seconds", type=int, default=6)
    ap.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--out", default=None, help="keep the raw py-spy output here")
    ap.add_argument("--extra", default="", help="extra reclusterd options, space separated")
    args = ap.parse_args(argv)
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(pyspy).exists() or wrkrun.wrk_path() is None:
        print("needs py-spy (.venv/bin/pip install -e '.[bench]') and wrk (apt-get install wrk)",
              file=sys.stderr)
        return 2
    out = Path(args.out or tempfile.mktemp(prefix="reclusterd-prof-", suffix=".txt"))
    port = servers.free_port()
    python = sys.executable      # the venv's (its realpath is the base interpreter, without h11)
    cmd = [pyspy, "record", "--subprocesses", "--gil", "-r", str(args.rate), "-f", "raw",
           "-o", str(out),
           "--", python, "-m", "reclusterd", f"apps:{args.interface}_app", "-w", "2",
           "-b", f"127.0.0.1:{port}", "--log-level", "warning", *args.extra.split()]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parent), str(HERE)]))
    # stderr to a file: a pipe nobody drains during the run would block the server's
    # logging (and then the server) once its 64 KiB buffer fills
    errlog = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, cwd=str(HERE), env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=errlog)
    try:
        deadline = time.monotonic() + 30
        while not servers.probe(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                errlog.seek(0)
                print("server did not start:", errlog.read().decode(errors="replace")[-2000:],
                      file=sys.stderr)
                return 1
            time.sleep(0.05)
        case = wrkrun.Case(args.scenario, args.mode, args.conns)
        res = wrkrun.run_wrk(case, port, args.seconds)
        print(f"{case.label}: {res.rps:,.0f} req/s under the profiler, p99 {res.p99_ms:.1f} ms, "
              f"errors {res.socket_errors}, non-2xx {res.non2xx}")
    finally:
        # INT to the arbiter (py-spy's child) so workers exit; py-spy then writes its file
        for p in _children(proc.pid):
            os.kill(p, signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if not out.exists():
        print("py-spy wrote no output", file=sys.stderr)
        return 1
    print(report(out, args.top, keep="worker"))
    print(f"\nraw collapsed stacks: {out}")
    return 0


def _children(pid: int) -> list[int]:
    import psutil

    try:
        return [c.pid for c in psutil.Process(pid).children()]
    except psutil.Error:
        return []


if __name__ == "__main__":
    sys.exit(main())
