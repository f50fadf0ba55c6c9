"""systemd integration: sd_notify, socket activation fds, watchdog interval (stdlib only).

Everything is a no-op without the corresponding environment variables, so the
arbiter can call these unconditionally.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

SD_LISTEN_FDS_START = 3


def _notify_address(environ: Mapping[str, str]) -> str | bytes | None:
    addr = environ.get("NOTIFY_SOCKET")
    if not addr:
        return None
    if addr.startswith("@"):          # abstract namespace socket
        return b"\0" + addr[1:].encode()
    return addr


def stamped(state: str) -> str:
    """`state` with MONOTONIC_USEC= added to a RELOADING=1 message.

    systemd's Type=notify-reload (sd_notify(3)) requires it: the CLOCK_MONOTONIC
    time in microseconds at which the reload began, so it can tell this RELOADING=1
    from one for an earlier reload.
    """
    lines = state.split("\n")
    if "RELOADING=1" not in lines or any(x.startswith("MONOTONIC_USEC=") for x in lines):
        return state
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return "\n".join(["RELOADING=1", f"MONOTONIC_USEC={usec}",
                      *(x for x in lines if x != "RELOADING=1")])


def notify(state: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send `state` (e.g. "READY=1", "STATUS=...") to NOTIFY_SOCKET; False when not sent.

    RELOADING=1 gets its MONOTONIC_USEC= here (see `stamped`). Never raises: a
    broken notify socket must not take the server down.
    """
    addr = _notify_address(os.environ if environ is None else environ)
    if addr is None:
        return False
    state = stamped(state)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.setblocking(False)
            s.connect(addr)
            s.sendall(state.encode())
        return True
    except OSError:
        return False


def listen_fds(environ: Mapping[str, str] | None = None, pid: int | None = None) -> list[int]:
    """Socket-activation fds (3, 4, ...) when LISTEN_PID names this process, else []."""
    env = os.environ if environ is None else environ
    try:
        n = int(env.get("LISTEN_FDS", "0"))
        listen_pid = int(env.get("LISTEN_PID", "0"))
    except ValueError:
        return []
    if n <= 0 or listen_pid != (os.getpid() if pid is None else pid):
        return []
    return list(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + n))


def watchdog_interval(environ: Mapping[str, str] | None = None,
                      pid: int | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC), or None when not asked."""
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", "0"))
        wpid = env.get("WATCHDOG_PID")
        if wpid and int(wpid) != (os.getpid() if pid is None else pid):
            return None
    except ValueError:
        return None
    if usec <= 0:
        return None
    return usec / 2_000_000
