"""Stopping workers: retire one gracefully, abort a stuck one, stop them all fast.

Each stop records why (`Worker.reason`) and when to escalate to SIGKILL
(`Worker.kill_at`); `escalate()` sends the SIGKILLs that are due. Time is
passed in (`now`), signals go through `Effects`, so this is pure policy.
"""

from __future__ import annotations

import logging
import signal

from reclusterd.arbiter.effects import Effects
from reclusterd.arbiter.table import State, Table, Worker

log = logging.getLogger("reclusterd.error")

FAST_KILL_AFTER = 1.0      # QUIT/INT: SIGKILL stragglers after this long
ABORT_KILL_AFTER = 2.0     # timeouts: SIGKILL this long after SIGABRT (stack dump)
ABORT_REASONS = ("timeout", "boot-timeout")


class Stopper:
    """The ways the arbiter stops workers of its table."""

    def __init__(self, table: Table, effects: Effects) -> None:
        self.table = table
        self.effects = effects

    def retire(self, w: Worker, reason: str, now: float) -> None:
        """Graceful stop of one worker (TERM, SIGKILL after its graceful timeout)."""
        w.reason = w.reason or reason
        w.replacing = False
        # TERM even while booting: a worker installs its TERM handler before it accepts, so
        # one that is still importing dies of the default action, and one that is already
        # serving (its "ready" not read yet) drains instead of dropping requests.
        self.effects.send(w.pid, signal.SIGTERM)
        w.state = State.DRAINING
        w.stop_signal_at = now
        w.kill_at = now + w.cfg.graceful_timeout
        log.info("%s retiring (%s)", w.label, reason)

    def retire_all(self, reason: str, now: float, generation: int | None = None) -> None:
        """Retire every worker (of `generation`, if given) not already draining."""
        for w in self.table:
            if w.state is not State.DRAINING and generation in (None, w.generation):
                self.retire(w, reason, now)

    def abort(self, w: Worker, reason: str, why: str, now: float) -> None:
        """Timeout: SIGABRT (the worker dumps its stacks), SIGKILL ~2 s later."""
        log.error("%s %s: sending SIGABRT (stack dump follows), SIGKILL in %gs", w.label, why,
                  ABORT_KILL_AFTER)
        w.reason = reason
        w.state = State.DRAINING
        w.replacing = False
        w.stop_signal_at = now
        w.kill_at = now + ABORT_KILL_AFTER
        self.effects.send(w.pid, signal.SIGABRT)

    def fast(self, now: float) -> None:
        """INT/QUIT: every worker exits at once, SIGKILL after FAST_KILL_AFTER."""
        for w in self.table:
            if w.reason in ABORT_REASONS and w.kill_at is not None:
                continue  # let it dump its stack first
            w.reason = w.reason or "shutdown"
            w.state = State.DRAINING
            # A worker that never was ready may not have its QUIT handler yet, and QUIT's
            # default action dumps core: kill it outright, nothing of it is serving.
            self.effects.send(w.pid, signal.SIGQUIT if w.ready_at is not None
                              else signal.SIGKILL)
            w.kill_at = min(w.kill_at or now + FAST_KILL_AFTER, now + FAST_KILL_AFTER)

    def escalate(self, now: float) -> None:
        """SIGKILL every worker still alive past its kill_at."""
        for w in self.table:
            if w.kill_at is not None and now >= w.kill_at:
                waited = now - w.stop_signal_at
                log.warning("%s still alive %s after %s: SIGKILL", w.label,
                            f"{waited:.1f}s" if waited >= 0.05 else "at once (graceful "
                            "timeout 0)", "SIGABRT" if w.reason in ABORT_REASONS
                            else "the stop signal")
                w.kill_at = None
                self.effects.send(w.pid, signal.SIGKILL)

    def kill_all(self) -> None:
        """The arbiter itself is failing: SIGKILL everything."""
        for w in self.table:
            self.effects.send(w.pid, signal.SIGKILL)
