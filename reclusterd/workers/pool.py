"""How many threads a thread worker runs, and when a parked one joins the pollers.

Pure policy (the clock is passed in), so unit tests drive it with a fake clock; the
thread worker (workers/thread.py) owns the threads and the locks.

`--threads auto` (the default): a WSGI app that waits (a database, an HTTP call) holds
its thread for the whole wait, so the pool grows while every poller is busy, up to a
ceiling, and shrinks again when idle. A thread blocked in a request costs a stack
(touched pages only, some KB) and nothing while it waits; a fast request never wakes a
second thread, so hello-world keeps running on one thread without GIL hand-offs.
`--threads N`: exactly N threads, all started at boot, as before.
"""

from __future__ import annotations

from dataclasses import dataclass

from reclusterd.settings import AUTO

AUTO_FLOOR = 2          # one poller and the spare that watches it
AUTO_CEILING = 256      # threads per worker, at most (and at most --worker-connections)
RETIRE_AFTER = 2.0      # s a spare of an auto pool stays parked before it exits
PROMOTE_AFTER = 0.004   # s every poller must have been busy before a spare joins them
PROMOTE_MIN = 0.0005    # the delay once a burst keeps starving the pool (see Promoter)


@dataclass(frozen=True)
class PoolSize:
    """Bounds of one worker's pool: `floor` threads at boot, never more than `ceiling`."""

    floor: int
    ceiling: int
    fixed: bool

    @classmethod
    def from_setting(cls, threads: int, worker_connections: int) -> PoolSize:
        """`threads` is the --threads value (settings.AUTO for auto)."""
        if threads != AUTO:
            return cls(threads, threads, True)
        ceiling = max(AUTO_FLOOR, min(worker_connections, AUTO_CEILING))
        return cls(AUTO_FLOOR, ceiling, False)

    @property
    def retire_after(self) -> float:
        """How long a spare waits for the watch before it may exit (-1: forever)."""
        return -1 if self.fixed else RETIRE_AFTER

    def may_spawn(self, nthreads: int, spares: int) -> bool:
        """A spare was just promoted: start a new one when none is left to watch."""
        return spares <= 0 and nthreads < self.ceiling

    def may_retire(self, nthreads: int) -> bool:
        """A spare parked RETIRE_AFTER: it exits unless the pool is at its floor."""
        return not self.fixed and nthreads > self.floor


class Promoter:
    """When a starved pool (no idle poller) gets one more poller.

    A spare joins after every poller has been busy PROMOTE_AFTER: fast requests finish
    sooner, so they never pay for a second thread. When promotions follow each other
    (a burst of blocking requests keeps the pool starved), each next delay is halved
    down to PROMOTE_MIN, so 64 blocked requests get 64 threads in tens of ms, not
    64 x PROMOTE_AFTER; once the pool keeps up the delay is back to PROMOTE_AFTER.
    """

    def __init__(self) -> None:
        self.delay = PROMOTE_AFTER
        self.last = 0.0

    def wait(self, since: float, now: float) -> float:
        """Seconds still to wait before promoting, for a pool starved since `since`."""
        return since + self.delay - now

    def promoted(self, now: float) -> None:
        in_a_row = self.last and now - self.last < 2 * PROMOTE_AFTER
        self.delay = max(PROMOTE_MIN, self.delay / 2) if in_a_row else PROMOTE_AFTER
        self.last = now

    def relieved(self) -> None:
        """The pool has an idle poller again."""
        self.delay = PROMOTE_AFTER
