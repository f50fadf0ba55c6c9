"""The thread worker's threads: pollers serve connections, spares park, one spare watches.

workers/pool.py decides (sizes, when to promote, when to retire); this owns the threads
and the counts those decisions read. The counts are guarded by the worker's lock (the
one that also guards its connections), so a poller takes work and updates them in one
critical section; the fields are read and written by the worker's poll loop directly
(the hot path pays for no extra call).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from reclusterd.workers.pool import PoolSize, Promoter


class ThreadPool:
    """`spawn(n)` starts parked threads; one that becomes a poller runs `serve()` until
    that returns (redundant), then parks again; it exits when `alive()` turns false."""

    def __init__(self, size: PoolSize, lock: threading.Lock, serve: Callable[[], None],
                 alive: Callable[[], bool]) -> None:
        self.size = size
        self.lock = lock
        self.serve = serve
        self.alive = alive
        self.nthreads = 0       # pool threads alive (under self.lock)
        # Pollers wait in epoll and serve what they get; spares are parked (_spare_duty).
        # Start "starved" so the first spare is promoted at once.
        self.pollers = 0
        self.idle_pollers = 0
        self.starved_since = 1.0
        self.starved_at = 0.0       # when the current starvation began (thread.py)
        self.relieved_at = 0.0      # when a poller last came back idle
        self.hungry = threading.Event()     # set when the last idle poller got work
        self.promoter = Promoter()
        self.duty = threading.Lock()

    def spawn(self, count: int = 1) -> None:
        with self.lock:         # counted before they start: a promotion sees them
            self.nthreads += count
            n = self.nthreads
        for i in range(n - count, n):
            threading.Thread(target=self._thread, name=f"reclusterd-{i}",
                             daemon=True).start()

    def all_idle(self) -> bool:
        """No poller is between epoll and the end of its work (a drain may end)."""
        return self.idle_pollers == self.pollers

    def step_down_idle(self) -> bool:
        """A poller idle for a whole poll: True if it leaves (one idle poller is enough)."""
        with self.lock:
            redundant = self.idle_pollers > 1 and self.pollers > 1
            if redundant:
                self.pollers -= 1
                self.idle_pollers -= 1
        return redundant

    def _thread(self) -> None:
        while self.alive() and self._spare_duty():
            self.serve()

    def _spare_duty(self) -> bool:
        """Parked thread: True once it is a poller; False if it retires (an auto pool's
        spare that waited RETIRE_AFTER for the watch, above the pool's floor).

        One spare at a time watches (_watch); the others wait on `duty`, costing nothing.
        """
        while self.alive():
            if self.duty.acquire(timeout=self.size.retire_after):
                try:
                    return self._watch()
                finally:
                    self.duty.release()
            with self.lock:
                if self.size.may_retire(self.nthreads):
                    self.nthreads -= 1
                    return False
        return False

    def _watch(self) -> bool:
        """The watching spare: sleeps on `hungry` (set by the poller that leaves none idle),
        then waits out the promoter's delay once, and joins the pollers if they are all
        still busy. No wake-up while idle, at most one per delay under fast requests."""
        hungry, promoter = self.hungry, self.promoter
        while self.alive():
            hungry.clear()
            since = self.starved_since
            if not since:
                promoter.relieved()
                hungry.wait()
                continue
            now = time.monotonic()
            wait = promoter.wait(since, now)
            if wait > 0:
                time.sleep(wait)
                continue
            with self.lock:
                since = self.starved_since
                if not since or promoter.wait(since, now) > 0:
                    continue
                self.pollers += 1
                self.idle_pollers += 1
                self.starved_since = 0.0
                promoter.promoted(now)
                spawn = self.size.may_spawn(self.nthreads, self.nthreads - self.pollers)
            if spawn:
                self.spawn()        # the next spare, to watch in turn
            return True
        return False
