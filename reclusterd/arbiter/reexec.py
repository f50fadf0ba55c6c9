"""USR2: exec a new arbiter on the same listening sockets (binary upgrade).

The new master inherits the listeners (RECLUSTERD_FDS) and writes the pidfile;
this one renames its own to PIDFILE.oldbin and keeps serving until sent TERM.
If the new master dies, the pidfile name is given back.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence

from reclusterd import sockets
from reclusterd.arbiter.process import exit_description
from reclusterd.signals import reset_in_child

log = logging.getLogger("reclusterd.error")

OLDBIN = ".oldbin"
# systemd socket activation is for the first master only: the new one inherits ours.
DROPPED_ENV = ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")


class ReExec:
    """At most one new master at a time; `pid` is it while it runs."""

    def __init__(self) -> None:
        self.pid: int | None = None

    def start(self, argv: Sequence[str], environ: Mapping[str, str],
              listeners: Sequence[sockets.Listener], pidfile: str | None,
              before_exec: Callable[[], object] | None = None) -> str | None:
        """Fork+exec the new master; returns the pidfile path this master now owns.

        `before_exec` runs in the child just before exec (the pre_exec hook)."""
        if self.pid is not None:
            log.warning("USR2 ignored: new master %d is already running", self.pid)
            return pidfile
        env = {k: v for k, v in environ.items() if k not in DROPPED_ENV}
        env.update(sockets.inherit_environ(listeners))
        if pidfile:
            try:
                os.replace(pidfile, pidfile + OLDBIN)
                pidfile += OLDBIN
            except OSError as e:
                log.warning("cannot rename pidfile %s: %s", pidfile, e)
        args = [sys.executable, "-m", "reclusterd", *argv]
        pid = os.fork()
        if pid == 0:
            try:
                reset_in_child()
                if before_exec is not None:
                    before_exec()
                os.execve(sys.executable, args, env)
            finally:
                os._exit(127)
        self.pid = pid
        log.info("re-exec: new master %d started (%s); this master keeps running until TERM",
                 pid, " ".join(args[1:]))
        return pidfile

    def exited(self, status: int, master: int, pidfile: str | None) -> str | None:
        """The new master died: this one keeps serving and takes its pidfile name back."""
        log.error("new master %d %s; this master %d keeps serving", self.pid,
                  exit_description(status), master)
        self.pid = None
        if pidfile and pidfile.endswith(OLDBIN):
            orig = pidfile[: -len(OLDBIN)]
            try:
                os.replace(pidfile, orig)
                return orig
            except OSError:
                pass
        return pidfile
