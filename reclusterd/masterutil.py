"""Small master-process chores kept out of the loop: title, pidfile, status fds after fork."""

from __future__ import annotations

import os
import signal
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reclusterd.config import Config


def set_title(name: str) -> None:
    """`reclusterd: master [NAME]` (setproctitle; silently skipped if missing)."""
    try:
        import setproctitle

        setproctitle.setproctitle(f"reclusterd: master [{name}]")
    except ImportError:
        pass


def write_pidfile(path: str, pid: int) -> None:
    """Atomically write PID to PATH (OSError propagates to the caller)."""
    tmp = f"{path}.{pid}.tmp"
    try:
        with open(tmp, "w") as f:
            f.write(f"{pid}\n")
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def remove_pidfile(path: str, pid: int) -> None:
    """Remove PATH if it still names PID (a newer master may own it after USR2)."""
    try:
        with open(path) as f:
            mine = f.read().strip() == str(pid)
        if mine:
            os.unlink(path)
    except OSError:
        pass


def close_status_in_child(status: object) -> None:
    """Close a StatusServer's fds in a forked child without unlinking a unix socket file.

    Otherwise a worker would keep status connections open (the client never sees EOF).
    """
    closer = getattr(status, "close_in_child", None)
    if closer is not None:
        closer()
        return
    lis = getattr(status, "listener", None)
    socks = [getattr(lis, "sock", None)]
    socks += [getattr(c, "sock", None) for c in getattr(status, "conns", {}).values()]
    for sock in socks:
        if sock is not None:
            sock.close()
    sel = getattr(status, "selector", None)
    if sel is not None:
        sel.close()


def log_file_problem(cfg: Config) -> str | None:
    """One line naming the setting if the error or access log file cannot be opened.

    Checked by the master (after dropping privileges, as the workers will run) at start
    and before a HUP reload, so a typo is a clear error, not a traceback or a crashing
    worker; opening creates the file, as the loggers would.
    """
    for setting, path in (("error-logfile", cfg.error_logfile),
                          ("access-logfile", cfg.access_logfile)):
        if not path or path == "-":
            continue
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            return f"{setting}: cannot open {path}: {e.strerror or e}"
        os.close(fd)
    return None


PR_SET_PDEATHSIG = 1   # linux/prctl.h


def die_with_parent(parent: int, sig: int = signal.SIGTERM) -> None:
    """In a forked worker: get `sig` (TERM: drain and exit) when the master dies.

    Without it a master killed by SIGKILL or the OOM killer leaves its workers serving
    forever as orphans, holding the port. Linux only (prctl); if the master is already
    gone by the time this runs, the signal is sent at once.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:
        os.kill(os.getpid(), sig)
