"""Master-process chores kept out of the loop: title, pidfile, log files, exit status."""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NoReturn

from reclusterd import __version__
from reclusterd.arbiter.table import plural
from reclusterd.logging import open_log, warn_unread_fifo

if TYPE_CHECKING:
    from reclusterd import control
    from reclusterd.config import Config
    from reclusterd.sockets import Listener

log = logging.getLogger("reclusterd.error")
AUTO_CLASS = "auto (thread for WSGI, asyncio for ASGI)"


def set_title(name: str) -> None:
    """`reclusterd: master [NAME]` (setproctitle; silently skipped if missing)."""
    try:
        import setproctitle

        setproctitle.setproctitle(f"reclusterd: master [{name}]")
    except ImportError:
        pass


def url(listener: Listener, tls: bool) -> str:
    """What to open for one listener: http(s)://HOST:PORT (the bound port), or unix:PATH."""
    sock = listener.sock
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return listener.address       # unix:PATH as written, or fd://N
    host, port = sock.getsockname()[:2]
    host = f"[{host}]" if sock.family == socket.AF_INET6 else host
    return f"{'https' if tls else 'http'}://{host}:{port}"


def start_line(pid: int, cfg: Config, listeners: Sequence[Listener]) -> str:
    """The first thing an operator reads: version, app, workers, class, parser, URLs."""
    klass = AUTO_CLASS if cfg.worker_class == "auto" else cfg.worker_class
    urls = ", ".join(url(lis, bool(cfg.certfile)) for lis in listeners)
    return (f"reclusterd {__version__} master {pid} started: {cfg.app}, "
            f"{plural(cfg.workers, 'worker')}, worker class {klass}, parser {cfg.http}; "
            f"open {urls}")


def pidfile_owner(path: str, pid: int) -> int | None:
    """The live process (not `pid`) a pidfile already names, if any.

    Written before bind, a pidfile must not be clobbered by a second start that is
    about to fail on the busy port: a stale file (dead pid, garbage) is fine.
    """
    try:
        with open(path) as f:
            other = int(f.read().strip() or 0)
    except (OSError, ValueError):
        return None
    if other <= 0 or other == pid or not pid_alive(other):
        return None
    return other


def pid_alive(pid: int) -> bool:
    """True if a process has this pid (another user's counts: kill says EPERM)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        pass
    return True


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


def log_file_problem(cfg: Config) -> str | None:
    """One line naming the setting if the error or access log file cannot be opened.

    Checked by the master (after dropping privileges, as the workers will run) at start
    and before a HUP reload, so a typo is a clear error, not a traceback or a crashing
    worker; opening creates the file, as the loggers would. A FIFO nobody reads yet is
    no error (and does not block: logging.open_log): one warning line says so.
    """
    for setting, path in (("error-logfile", cfg.error_logfile),
                          ("access-logfile", cfg.access_logfile)):
        if not path or path == "-":
            continue
        try:
            fd, unread = open_log(path)
        except OSError as e:
            return f"{setting}: cannot open {path}: {e.strerror or e}"
        os.close(fd)
        if unread:      # (one the master has open itself has a reader: no warning)
            warn_unread_fifo(setting, path)
    return None


def exit_description(status: int) -> str:
    """'exited with code 3' or 'killed by SIGKILL', from a waitpid() status."""
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


PR_SET_PDEATHSIG = 1   # linux/prctl.h


def die_with_parent(parent: int, sig: int = signal.SIGTERM) -> None:
    """In a forked worker: get `sig` (TERM: drain and exit) when the master dies.

    Without it a master killed by SIGKILL or the OOM killer leaves its workers serving
    forever as orphans, holding the port. Linux only (prctl); if the master is already
    gone by the time this runs, the signal is sent at once.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:
        os.kill(os.getpid(), sig)


def own_logs(cfg: Config, uid: int | None, gid: int | None) -> None:
    """Give the log files to the workers' --user/--group (as Gunicorn does), so a worker
    that reopens them (USR1) after switching users still can; the master keeps writing
    through the descriptors it has."""
    if uid is None and gid is None:
        return
    for path in (cfg.error_logfile, cfg.access_logfile):
        if path and path != "-" and os.path.isfile(path):
            try:
                os.chown(path, -1 if uid is None else uid, -1 if gid is None else gid)
            except OSError as e:
                log.warning("cannot give %s to the workers' user: %s", path, e.strerror or e)


def fork_shared() -> int:
    """os.fork() with the master's objects frozen in the child (gc.freeze): the child's
    cyclic GC never walks them, so it does not write to (and copy) the pages they share
    with the master. The master unfreezes at once: its own garbage is still collected.
    OSError as os.fork()."""
    gc.freeze()
    try:
        pid = os.fork()
    except OSError:
        gc.unfreeze()
        raise
    if pid:
        gc.unfreeze()
    return pid


def become_worker(parent: int, closers: Sequence[Callable[[], None]], cfg: Config,
                  listeners: list[Listener], chan: control.WorkerChannel, generation: int,
                  app: object) -> NoReturn:
    """The forked child's life: close the master's fds (`closers`), run the worker,
    `_exit` with its status (never return into the master's stack)."""
    code = 1
    try:
        die_with_parent(parent)
        for close in closers:
            close()
        from reclusterd.workers.boot import run_worker

        run_worker(cfg, listeners, chan, generation, app)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        log.exception("worker %d crashed", os.getpid())
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)
