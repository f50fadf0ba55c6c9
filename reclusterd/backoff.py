"""Respawn delay policy (after recluster's `backoff`): pure, with an injected clock.

A worker that exits before it was ready, or within `stable` seconds of
becoming ready, is a *failure*. Each failure round doubles the delay before
the next spawn: 0.1 s, 0.2 s, 0.4 s ... capped at `cap` (`--backoff`).
Several workers failing in the same round (they were spawned together and
crash together) count once, so the delay grows per retry, not per worker.

The delay decays once workers stay up: after a worker becomes ready with no
failure since, the delay halves for every `stable` seconds that pass, and
drops to zero below the initial step. A worker that exits after serving for
a while is not a failure and is replaced at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable

INITIAL = 0.1
STABLE = 5.0


class Backoff:
    """Decides how long the arbiter waits before spawning replacement workers."""

    def __init__(self, cap: float, *, clock: Callable[[], float] = time.monotonic,
                 initial: float = INITIAL, stable: float = STABLE) -> None:
        self.clock = clock
        self.initial = initial
        self.stable = stable
        self.cap = max(cap, initial)
        self._delay = 0.0            # delay set by the last failure (before decay)
        self._next_at = 0.0          # no spawn before this time
        self._ok_since: float | None = None  # first ready after the last failure
        self.failures = 0            # consecutive failure rounds

    def set_cap(self, cap: float) -> None:
        """New ceiling (HUP may change --backoff)."""
        self.cap = max(cap, self.initial)
        self._delay = min(self._delay, self.cap)

    def is_failure(self, was_ready: bool, ready_for: float) -> bool:
        """Does an exit count as a failure? (not ready, or ready for less than `stable` s)"""
        return not was_ready or ready_for < self.stable

    def delay(self) -> float:
        """The current delay, with decay applied."""
        if self._delay <= 0.0:
            return 0.0
        if self._ok_since is None:
            return self._delay
        steps = int((self.clock() - self._ok_since) // self.stable)
        if steps <= 0:
            return self._delay
        decayed = self._delay / (2 ** min(steps, 60))
        return decayed if decayed >= self.initial else 0.0

    def failure(self) -> float:
        """Record a failed worker; return the delay before the next spawn."""
        now = self.clock()
        if self._delay > 0.0 and now < self._next_at:
            # Same round: a sibling of a worker that already failed.
            return self._next_at - now
        current = self.delay()
        self._delay = self.initial if current <= 0.0 else min(current * 2, self.cap)
        self._ok_since = None
        self._next_at = now + self._delay
        self.failures += 1
        return self._delay

    def exited(self, was_ready: bool, ready_for: float) -> float | None:
        """Record any worker exit; the delay (s) if it was a failure, else None."""
        if self.is_failure(was_ready, ready_for):
            return self.failure()
        return None

    def ready(self) -> None:
        """A worker became ready: the delay starts decaying from now (if not already)."""
        if self._ok_since is None:
            self._ok_since = self.clock()
        if self.delay() <= 0.0:
            self.failures = 0

    def wait(self) -> float:
        """Seconds until a spawn is allowed (0.0 = now)."""
        return max(0.0, self._next_at - self.clock())

    def reset(self) -> None:
        """Forget history (a fresh generation after a reload starts clean)."""
        self._delay = 0.0
        self._next_at = 0.0
        self._ok_since = None
        self.failures = 0
