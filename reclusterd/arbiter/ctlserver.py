"""The arbiter's end of `reclusterd ctl`: a unix socket, mode 0600, in the select loop.

Never blocks the loop: the listener and every connection are non-blocking and
registered in the arbiter's selector (their `handle_io()` is called when readable).
A request is one JSON line (control.ctl_encode); the reply is one JSON line, then
the connection is closed. The answer comes from `handler` (the loop), which does
what the matching signal would, exactly once per request.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import socket
import stat
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from reclusterd import control
from reclusterd.arbiter.process import pid_alive
from reclusterd.arbiter.scaling import MAX_WORKERS

if TYPE_CHECKING:
    from reclusterd.arbiter.policy import Policy

log = logging.getLogger("reclusterd.error")

Handler = Callable[[dict[str, object]], dict[str, object]]
Action = Callable[[float], None]     # the loop's HUP/TERM handler, given "now"
MAX_CONNS = 16            # owner-only socket: a cap against a stuck script, not an attacker
CONN_TIMEOUT = 5.0        # a client that sends no full line within this is dropped


class CtlError(Exception):
    """The control socket could not be set up (one line for the log)."""


def _private_dir(path: str) -> None:
    """Create the socket's directory 0700 if missing; refuse one others can write to."""
    directory = os.path.dirname(path) or "."
    with contextlib.suppress(FileExistsError):
        os.makedirs(directory, mode=0o700)
    mode = os.stat(directory).st_mode
    if mode & (stat.S_IWGRP | stat.S_IWOTH) and not mode & stat.S_ISVTX:
        raise CtlError(f"{directory} is writable by others (anyone could replace the socket)")


def _refused(path: str) -> bool:
    """True if connecting to the socket at `path` is refused (nobody listens on it)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.setblocking(False)    # a live listener with a full backlog: EAGAIN, kept
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            return True
        except OSError:
            return False
    return False


def sweep_stale(directory: str, own_pid: int) -> int:
    """Remove the PID-named control sockets (`PID.ctl`, control.ctl_path's default) that
    masters killed without their cleanup (SIGKILL, OOM) left in `directory`: only
    sockets whose PID is gone and whose connect is refused, so a live master's (even in
    another PID namespace) stays. Returns how many were removed."""
    try:
        names = os.listdir(directory)
    except OSError:
        return 0
    removed = 0
    for name in names:
        stem, suffix = os.path.splitext(name)
        if suffix != control.CTL_SUFFIX or not stem.isdigit() or int(stem) == own_pid:
            continue
        path = os.path.join(directory, name)
        try:
            if not stat.S_ISSOCK(os.lstat(path).st_mode):
                continue
            if not pid_alive(int(stem)) and _refused(path):
                os.unlink(path)
                removed += 1
        except OSError:
            continue        # gone meanwhile, or not ours to remove
    return removed


class ControlServer:
    """Listens on `path`; `close()` removes the file only if it is still ours."""

    def __init__(self, path: str, selector: selectors.BaseSelector, handler: Handler) -> None:
        self.path = path
        self.selector = selector
        self.handler = handler
        self.conns: dict[socket.socket, tuple[bytearray, float]] = {}
        try:
            _private_dir(path)
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISSOCK(os.lstat(path).st_mode):
                    os.unlink(path)   # stale, or a USR2 predecessor's: the newest master wins
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            old = os.umask(0o177)     # born 0600: no window where others could connect
            try:
                self.sock.bind(path)
            finally:
                os.umask(old)
            self.sock.listen(16)
        except OSError as e:
            raise CtlError(f"control socket {path}: {e.strerror or e}") from None
        self.sock.setblocking(False)
        self.inode = os.stat(path).st_ino
        selector.register(self.sock.fileno(), selectors.EVENT_READ, self)

    def handle_io(self) -> None:
        """The listener is readable: accept what is waiting, drop stale connections."""
        now = time.monotonic()
        for conn, (_, since) in list(self.conns.items()):
            if now - since > CONN_TIMEOUT:
                self._drop(conn)
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.warning("control socket: accept failed: %s", e)
                return
            if len(self.conns) >= MAX_CONNS:
                conn.close()
                continue
            conn.setblocking(False)
            self.conns[conn] = (bytearray(), now)
            self.selector.register(conn.fileno(), selectors.EVENT_READ, _Conn(self, conn))

    def on_readable(self, conn: socket.socket) -> None:
        entry = self.conns.get(conn)
        if entry is None:
            return
        buf = entry[0]
        try:
            data = conn.recv(control.CTL_MAX_LINE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        buf += data
        if b"\n" not in buf and data and len(buf) < control.CTL_MAX_LINE:
            return
        line = bytes(buf).partition(b"\n")[0]
        reply = self._answer(line) if line else {"ok": False, "error": "empty request"}
        try:
            conn.send(control.ctl_encode(reply))   # small: fits the socket buffer
        except OSError:
            pass
        self._drop(conn)

    def _answer(self, line: bytes) -> dict[str, object]:
        try:
            request = control.ctl_decode(line)
        except ValueError as e:
            return {"ok": False, "error": f"bad request: {e}"}
        if request.get("cmd") not in control.CTL_COMMANDS:
            return {"ok": False, "error": f"unknown command {request.get('cmd')!r}"}
        try:
            return self.handler(request)
        except Exception as e:
            log.exception("control socket: %s failed", request.get("cmd"))
            return {"ok": False, "error": f"internal error: {e}"}

    def _drop(self, conn: socket.socket) -> None:
        self.conns.pop(conn, None)
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(conn.fileno())
        conn.close()

    def close_in_child(self) -> None:
        """A forked worker drops the fds (the file stays: the master owns it)."""
        for conn in list(self.conns):
            conn.close()
        self.conns.clear()
        self.sock.close()

    def close(self) -> None:
        for conn in list(self.conns):
            self._drop(conn)
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(self.sock.fileno())
        self.sock.close()
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self.inode:
                os.unlink(self.path)


class _Conn:
    """Selector data for one client connection."""

    def __init__(self, server: ControlServer, conn: socket.socket) -> None:
        self.server = server
        self.conn = conn

    def handle_io(self) -> None:
        self.server.on_readable(self.conn)


def command(request: dict[str, object], policy: Policy,
            snapshot: Callable[[], dict[str, object]], reload: Action,
            stop: Action) -> dict[str, object]:
    """One `reclusterd ctl` request: what the matching signal does, exactly once."""
    cmd = request.get("cmd")
    now = time.monotonic()
    if cmd == "status":
        return {"ok": True, **snapshot()}
    if policy.stopping is not None:
        return {"ok": False, "error": "shutting down"}
    log.info("control socket: %s%s", cmd, f" {request.get('n')}" if "n" in request else "")
    if cmd == "workers":
        n = request.get("n")
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_WORKERS:
            return {"ok": False, "error": f"workers must be a whole number from 1 to "
                                          f"{MAX_WORKERS}, got {n!r}"}
        old = policy.set_workers(n)
        return {"ok": True, "workers": policy.target, "previous": old}
    if cmd == "reload":
        reload(now)
        p = policy.rollout.pending
        return {"ok": p is not None, "generation": p.generation if p else None,
                **({} if p else {"error": "reload aborted (see the error log)"})}
    stop(now)
    return {"ok": True}
