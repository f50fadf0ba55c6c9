"""Small master-process chores kept out of the loop: title, pidfile, status fds after fork."""

from __future__ import annotations

import os


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
