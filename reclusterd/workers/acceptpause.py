"""What a worker does when accept() fails for want of resources (EMFILE, ENFILE...).

The listener stays readable while the process is out of file descriptors, so a
worker that retries at once spins at 100 % CPU and writes one log line per try
(the issue 14 figure: 450,000 lines in 5 s). Instead the worker stops accepting
for PAUSE seconds (the pending connections wait in the kernel's queue, or go to
another worker) and keeps serving the connections it has; the log says so once
per REPORT_EVERY seconds, with a count. Pure logic: the caller gives the clock.
"""

from __future__ import annotations

import errno

__all__ = ["PAUSE", "REPORT_EVERY", "RESOURCE_ERRORS", "AcceptPause"]

PAUSE = 0.25            # s without accepting after a resource error
REPORT_EVERY = 10.0     # s between two log lines about it
# accept() errors that say "this process or the system is out of something", not
# "this connection failed": retrying at once cannot succeed.
RESOURCE_ERRORS = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))


class AcceptPause:
    """Back-off and log rate limit for accept() resource errors (one per worker)."""

    __slots__ = ("until", "count", "reported_at")

    def __init__(self) -> None:
        self.until = 0.0        # monotonic s: no accept() before this (0 = accepting)
        self.count = 0          # errors since the last log line
        self.reported_at = -REPORT_EVERY

    def failed(self, err: OSError, now: float) -> str | None:
        """accept() failed with a resource error at `now`: pause; the line to log, if
        one is due (the first error at once, then one per REPORT_EVERY s with a count)."""
        self.until = now + PAUSE
        self.count += 1
        if now - self.reported_at < REPORT_EVERY:
            return None
        what = ("out of file descriptors" if err.errno in (errno.EMFILE, errno.ENFILE)
                else "out of memory")
        times = "1 time" if self.count == 1 else f"{self.count} times"
        line = (f"accept: {what} ({err.strerror}; {times} in the last "
                f"{REPORT_EVERY:g} s); not accepting for {PAUSE:g} s at a time, open "
                "connections are still served")
        self.count = 0
        self.reported_at = now
        return line

    def paused(self, now: float) -> bool:
        """True while accept() should not be tried."""
        return now < self.until

    def resume_in(self, now: float) -> float:
        """s until accepting again (0 if not paused)."""
        return max(0.0, self.until - now)
