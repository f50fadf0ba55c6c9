"""`reclusterd ctl [--socket PATH | -p PIDFILE] [--json] status | workers N | reload | stop`.

The exact counterpart of the signals (which the kernel merges in bursts): one
request per command over the arbiter's control socket (see control.py for the
path and the wire format). Errors are one line on stderr, exit status 1.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from typing import NoReturn

from reclusterd import control

TIMEOUT = 10.0   # a reload loads the config in the arbiter before it answers
FAILED = 1


class CtlFailure(Exception):
    """One line for stderr."""


def plural(n: object, word: str) -> str:
    """'1 worker', '2 workers' (the arbiter's own rule; ctl imports nothing of it)."""
    return f"{n} {word}" + ("" if n == 1 else "s")


class _Parser(argparse.ArgumentParser):
    """A usage mistake is one line and exit status 1, like every other ctl error."""

    def error(self, message: str) -> NoReturn:
        raise CtlFailure(f"{message} (see reclusterd ctl --help)")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="reclusterd ctl", description="Talk to a running "
                                "reclusterd master over its control socket.")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--socket", metavar="PATH", help="the control socket "
                       "(--control-socket of the server)")
    where.add_argument("-p", "--pid", metavar="PIDFILE", help="the server's --pid file: its "
                       "control socket is beside it (app.pid -> app.ctl)")
    p.add_argument("--json", action="store_true", help="print the reply as JSON")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    sub.add_parser("status", help="generation, workers and their states")
    workers = sub.add_parser("workers", help="set the number of workers exactly")
    workers.add_argument("n", type=int, metavar="N")
    sub.add_parser("reload", help="zero-downtime reload (as HUP)")
    sub.add_parser("stop", help="graceful stop (as TERM)")
    return p


def find_socket(sock: str | None, pidfile: str | None, environ: Mapping[str, str]) -> str:
    """--socket, else beside --pid, else the one live socket in the default directory."""
    if sock:
        return sock
    if pidfile:
        return control.pidfile_ctl(pidfile)
    directory = control.ctl_dir(environ)
    found = sorted(glob.glob(os.path.join(directory, "*" + control.CTL_SUFFIX)))
    live = [p for p in found if _answers(p)]
    if len(live) == 1:
        return live[0]
    if not live:
        raise CtlFailure(f"no reclusterd control socket in {directory} "
                         "(use --socket PATH or -p PIDFILE)")
    raise CtlFailure(f"{len(live)} reclusterd servers in {directory} ("
                     f"{', '.join(os.path.basename(p) for p in live)}): pick one with --socket")


def _answers(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(path)
        except OSError:
            return False
    return True


def request(path: str, message: Mapping[str, object],
            timeout: float = TIMEOUT) -> dict[str, object]:
    """Send one request, return the reply; CtlFailure (one line) on any problem."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(path)
        except FileNotFoundError:
            raise CtlFailure(f"no reclusterd control socket at {path}") from None
        except ConnectionRefusedError:
            raise CtlFailure(f"{path} refuses connections: its master is gone (a "
                             "SIGKILL leaves the file behind)") from None
        except OSError as e:
            raise CtlFailure(f"{path}: {e.strerror or e}") from None
        try:
            s.sendall(control.ctl_encode(message))
            data = b""
            while b"\n" not in data:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError as e:
            raise CtlFailure(f"{path}: {e.strerror or e}") from None
    try:
        return control.ctl_decode(data.partition(b"\n")[0])
    except ValueError:
        raise CtlFailure(f"{path}: no valid reply (is this a reclusterd control "
                         "socket?)") from None


def format_status(reply: Mapping[str, object]) -> str:
    """Human-readable `ctl status`: a summary line, then one line per worker."""
    pending = reply.get("pending_generation")
    lines = [f"master {reply.get('pid')}: generation {reply.get('generation')}"
             + (f" (reloading to {pending})" if pending else "")
             + f", {reply.get('ready_workers')} of "
             + plural(reply.get("target_workers"), "worker") + " ready"
             + (", shutting down" if reply.get("shutting_down") else "")]
    workers = reply.get("worker_list")
    for w in workers if isinstance(workers, list) else []:
        reason = f" ({w['stopping_reason']})" if w.get("stopping_reason") else ""
        lines.append(f"  worker {w.get('pid')}  gen {w.get('generation')}  "
                     f"{w.get('state')}{reason}  up {float(w.get('age') or 0):.1f}s")
    return "\n".join(lines)


def main(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """`reclusterd ctl ...`: 0 on success, 1 with one line on stderr otherwise."""
    try:
        args = _parser().parse_args(list(argv))
    except CtlFailure as e:
        sys.stderr.write(f"reclusterd ctl: error: {e}\n")
        return FAILED
    message: dict[str, object] = {"cmd": args.cmd}
    if args.cmd == "workers":
        message["n"] = args.n
    try:
        path = find_socket(args.socket, args.pid, environ)
        reply = request(path, message)
    except CtlFailure as e:
        sys.stderr.write(f"reclusterd ctl: error: {e}\n")
        return FAILED
    if args.json:
        print(json.dumps(reply, indent=2, sort_keys=True))
    elif reply.get("ok") and args.cmd == "status":
        print(format_status(reply))
    elif reply.get("ok") and args.cmd == "workers":
        print(f"workers: {reply.get('previous')} -> {reply.get('workers')}")
    elif reply.get("ok") and args.cmd == "reload":
        print(f"reload started: booting generation {reply.get('generation')}")
    elif reply.get("ok"):
        print("stopping (graceful)")
    if not reply.get("ok"):
        sys.stderr.write(f"reclusterd ctl: error: {reply.get('error', 'failed')}\n")
        return FAILED
    return 0
