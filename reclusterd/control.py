"""Arbiter <-> worker control channel (one AF_UNIX datagram socketpair per worker), and
the wire format and path of the operator's control socket (`reclusterd ctl`).

One datagram is one message: the kind as ASCII, a space, then a JSON payload.
The worker side must never stall serving because the arbiter is slow, so
heartbeats are sent with MSG_DONTWAIT and every error is swallowed (a lost
heartbeat is harmless: the next one follows within a second). The one-off
messages (ready, boot_error, recycle) wait briefly for room, because losing
them would change what the arbiter does.
"""

from __future__ import annotations

import errno
import json
import os
import select
import socket
import tempfile
from collections.abc import Mapping
from typing import Final

READY: Final = "ready"
HEARTBEAT: Final = "hb"
BOOT_ERROR: Final = "boot_error"
RECYCLE: Final = "recycle"
KINDS: Final = frozenset({READY, HEARTBEAT, BOOT_ERROR, RECYCLE})

# Datagrams above the socket send buffer fail with EMSGSIZE; tracebacks are
# truncated (keeping the end, where the exception is) to stay well below it.
MAX_TEXT: Final = 32 * 1024
RETRY_WAIT: Final = 1.0
RECV_BATCH: Final = 256   # recv_all's default limit: a full batch means "read again"

Stats = dict[str, int | float]


def encode(kind: str, payload: object = None) -> bytes:
    """One message as bytes: b"KIND JSON"."""
    if kind not in KINDS:
        raise ValueError(f"unknown control message kind: {kind!r}")
    return kind.encode("ascii") + b" " + json.dumps(payload, separators=(",", ":")).encode()


def decode(datagram: bytes) -> tuple[str, object]:
    """Arbiter side: parse a datagram into (kind, payload); ValueError if malformed.

    Payloads: ready -> str (may be ""), hb -> dict of numbers, boot_error -> str,
    recycle -> str.
    """
    kind_b, sep, rest = datagram.partition(b" ")
    try:
        kind = kind_b.decode("ascii")
    except UnicodeDecodeError:
        raise ValueError("malformed control message") from None
    if not sep or kind not in KINDS:
        raise ValueError(f"unknown control message: {datagram[:40]!r}")
    try:
        payload: object = json.loads(rest) if rest else None
    except (ValueError, UnicodeDecodeError):
        raise ValueError(f"bad payload in {kind} message") from None
    if kind == HEARTBEAT:
        if payload is None:
            payload = {}
        if not isinstance(payload, dict):
            raise ValueError("heartbeat payload is not an object")
    elif kind in (READY, BOOT_ERROR, RECYCLE):
        payload = "" if payload is None else str(payload)
    return kind, payload


def _truncate(text: str) -> str:
    if len(text) <= MAX_TEXT:
        return text
    return "...(truncated)...\n" + text[-MAX_TEXT:]


class WorkerChannel:
    """Worker end of the control channel (inherited over fork)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        sock.setblocking(False)
        # What the arbiter's "ready in" line names (the class the auto rule chose, the
        # app's interface); set at boot so every worker class sends it without knowing.
        self.ready_note = ""

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def ready(self) -> None:
        """Tell the arbiter this worker is accepting (app loaded, startup done)."""
        self._send_reliable(encode(READY, self.ready_note or None))

    def heartbeat(self, stats: Stats | None = None) -> None:
        """Liveness + counters. Never blocks, never raises: a dropped beat is fine."""
        try:
            self.sock.send(encode(HEARTBEAT, stats or {}), socket.MSG_DONTWAIT)
        except (OSError, ValueError, TypeError):
            pass

    def boot_error(self, text: str) -> None:
        """The app failed to load: message plus traceback, logged once by the arbiter."""
        self._send_reliable(encode(BOOT_ERROR, _truncate(text)))

    def recycle(self, reason: str) -> None:
        """Ask for a replacement (max-requests / memory); the arbiter TERMs us later."""
        self._send_reliable(encode(RECYCLE, reason[:200]))

    def _send_reliable(self, data: bytes) -> None:
        # Try now; if the arbiter's queue is full wait (bounded) for room once.
        for attempt in range(2):
            try:
                self.sock.send(data, socket.MSG_DONTWAIT)
                return
            except BlockingIOError:
                if attempt == 0:
                    try:
                        select.select([], [self.sock], [], RETRY_WAIT)
                    except (OSError, ValueError):
                        return
            except OSError as e:
                if e.errno in (errno.EPIPE, errno.ECONNREFUSED, errno.ENOTCONN,
                               errno.EBADF, errno.EMSGSIZE):
                    return
                raise


def pair() -> tuple[socket.socket, WorkerChannel]:
    """A new channel: (arbiter end, non-blocking; worker end as a WorkerChannel).

    Both fds are non-inheritable across exec; fork keeps them, which is what we want.
    """
    arb, wrk = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    arb.setblocking(False)
    return arb, WorkerChannel(wrk)


def recv_all(sock: socket.socket, limit: int = RECV_BATCH) -> list[bytes]:
    """Arbiter side: drain pending datagrams (up to `limit`) without blocking."""
    out: list[bytes] = []
    for _ in range(limit):
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            break
        except OSError:
            break
        if not data:
            # A zero-length datagram is legal but never sent by us; stop so a
            # closed peer cannot keep us spinning.
            break
        out.append(data)
    return out


# ------------------------------------------------------------ the operator's control socket
# `reclusterd ctl` <-> the arbiter: a unix stream socket (mode 0600), one JSON request
# line, one JSON reply line, then close. Exact where signals are best-effort: ten
# `ctl workers N` in a row are ten requests, ten TTINs may merge into one.

CTL_SUFFIX: Final = ".ctl"
CTL_MAX_LINE: Final = 4096
CTL_COMMANDS: Final = frozenset({"status", "workers", "reload", "stop"})


def ctl_dir(environ: Mapping[str, str]) -> str:
    """Where control sockets go without --pid or --control-socket: $XDG_RUNTIME_DIR/
    reclusterd, else /run/reclusterd (root), else TMPDIR/reclusterd-UID. One per user."""
    runtime = environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime):
        return os.path.join(runtime, "reclusterd")
    if os.geteuid() == 0:
        return "/run/reclusterd"
    return os.path.join(tempfile.gettempdir(), f"reclusterd-{os.geteuid()}")


def ctl_path(setting: str | None, pidfile: str | None, pid: int,
             environ: Mapping[str, str]) -> str | None:
    """The control socket path: the setting; else beside the pidfile (app.pid -> app.ctl);
    else ctl_dir()/MASTERPID.ctl, so two servers never share one. None: "off"."""
    if setting:
        return None if setting.strip().lower() in ("off", "none") else setting
    if pidfile:
        return pidfile_ctl(pidfile)
    return os.path.join(ctl_dir(environ), f"{pid}{CTL_SUFFIX}")


def pidfile_ctl(pidfile: str) -> str:
    """The control socket beside a pidfile: /run/app.pid -> /run/app.ctl."""
    root, ext = os.path.splitext(pidfile)
    return (root if ext == ".pid" else pidfile) + CTL_SUFFIX


def ctl_encode(message: Mapping[str, object]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def ctl_decode(line: bytes) -> dict[str, object]:
    """One JSON object from a line; ValueError if it is anything else."""
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("not JSON") from None
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    return obj
