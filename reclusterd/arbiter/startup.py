"""The master's start-up steps that touch the OS: pidfile, listeners, TLS, side servers.

Each step either succeeds or raises `StartupError` with one line for the log (the
loop logs it and exits 1). Kept out of the loop so the loop reads as select/reap/
manage; the order of the steps is still decided there.
"""

from __future__ import annotations

import logging
import os
import selectors
from collections.abc import Mapping
from typing import TYPE_CHECKING

from reclusterd import control, sockets, tls
from reclusterd.arbiter.ctlserver import ControlServer, CtlError, Handler, sweep_stale
from reclusterd.arbiter.process import log_file_problem, own_logs, pidfile_owner, write_pidfile
from reclusterd.arbiter.status import Snapshot, StatusServer

if TYPE_CHECKING:
    from reclusterd.config import Config

log = logging.getLogger("reclusterd.error")


class StartupError(Exception):
    """Could not start (bind, TLS, pidfile): one line for the log; exit 1."""


def claim_pidfile(path: str, pid: int) -> None:
    """Write `pid` to `path` unless a live process other than us already owns it."""
    other = pidfile_owner(path, pid)
    if other is not None:
        raise StartupError(f"pid: {path} names process {other}, which is running "
                           "(another reclusterd?); stop it or remove the file")
    try:
        write_pidfile(path, pid)
    except OSError as e:
        raise StartupError(f"pid: cannot write pidfile {path}: {e.strerror or e}") from None


def open_listeners(cfg: Config, environ: Mapping[str, str]) -> list[sockets.Listener]:
    """Bind (or inherit) every --bind, check TLS and the log files: fail fast, here."""
    try:
        uid, gid = sockets.owner_ids(cfg.user, cfg.group)
        options = sockets.BindOptions(cfg.backlog, cfg.reuse_port, cfg.umask, uid, gid)
        listeners = sockets.bind_listeners(cfg.bind, environ, options)
        # Built once here to fail fast; forked workers inherit it (tls caches it).
        tls.ssl_context(tls.TLSOptions.of(cfg, tls.HTTP1_ALPN))
        # Only the umask here: the master keeps its user (as Gunicorn's does), so it can
        # remove its pidfile and sockets, reopen logs, bind --status-bind and re-read
        # certificates on HUP; each worker switches to --user/--group (workers/boot).
        sockets.drop_privileges(None, None, cfg.umask)
        own_logs(cfg, uid, gid)
    except (sockets.BindError, tls.TLSError) as e:
        raise StartupError(str(e)) from None
    except OSError as e:
        raise StartupError(f"cannot listen: {e}") from None
    problem = log_file_problem(cfg)
    if problem:
        raise StartupError(problem)
    return listeners


def status_server(cfg: Config, environ: Mapping[str, str],
                  snapshot: Snapshot) -> StatusServer | None:
    """Bind --status-bind; None means "retry later" (a re-exec'd master whose old
    master still holds the port). A first start that cannot bind it fails."""
    try:
        return StatusServer(cfg, snapshot)
    except (OSError, sockets.BindError) as e:
        if sockets.FDS_ENV not in environ:
            raise StartupError(f"status-bind {cfg.status_bind}: {e}") from None
        log.warning("status-bind %s: %s; retrying (old master still holds it?)",
                    cfg.status_bind, e)
        return None


def control_server(cfg: Config, pid: int, environ: Mapping[str, str],
                   selector: selectors.BaseSelector, handler: Handler) -> ControlServer | None:
    """`reclusterd ctl`'s socket; a problem with it is a warning, not a failed start."""
    try:    # no writable runtime/temp directory (a read-only container): a warning
        path = control.ctl_path(cfg.control_socket, cfg.pid, pid, environ)
    except OSError as e:
        log.warning("control socket: %s; `reclusterd ctl` will not work (signals still "
                    "do); set --control-socket PATH or off", e)
        return None
    if path is None:
        return None
    if not cfg.control_socket and not cfg.pid:    # the PID-named default: sweep its dir
        directory = os.path.dirname(path)
        removed = sweep_stale(directory, pid)
        if removed:
            log.info("control socket: removed %d stale socket(s) of masters that are gone "
                     "from %s", removed, directory)
    try:
        server = ControlServer(path, selector, handler)
    except CtlError as e:
        log.warning("%s; `reclusterd ctl` will not work (signals still do)", e)
        return None
    log.info("control socket: %s (reclusterd ctl --socket %s status)", path, path)
    return server
