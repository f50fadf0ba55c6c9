"""Out of file descriptors on accept (EMFILE/ENFILE and kin): one log line per interval
with a count, instead of one line per failed accept (which floods the log at 100% CPU
while the listener stays readable)."""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable

__all__ = ["OUT_OF_RESOURCES", "AcceptErrors"]

log = logging.getLogger("reclusterd.error")

# accept(2) errors that mean "no resources now": retrying at once fails again
OUT_OF_RESOURCES = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))


class AcceptErrors:
    """Counts accept failures for lack of resources; logs the count at most once per
    `interval` seconds (the first one at once, so the operator sees the onset)."""

    def __init__(self, interval: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self.count = 0          # failures not yet reported
        self.total = 0
        self.next_log = 0.0

    def hit(self) -> None:
        self.count += 1
        self.total += 1
        now = self.clock()
        if now >= self.next_log:
            log.error("accept: out of file descriptors (%d times in the last %.0f s)",
                      self.count, self.interval)
            self.count = 0
            self.next_log = now + self.interval
