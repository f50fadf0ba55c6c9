"""How many workers, and which one goes: scale to a target, recycle one at a time.

Pure decisions over the table (no os calls, `now` passed in); retiring goes
through the `Stopper`, spawning through the callable the policy passes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from reclusterd.arbiter.stop import Stopper
from reclusterd.arbiter.table import State, Table, Worker

log = logging.getLogger("reclusterd.error")

MEMORY = "memory"     # the recycle reason (and stop reason) of --max-worker-memory


SPAWN_PER_TURN = 8         # forks per loop turn at most
MAX_WORKERS = 1024         # what TTIN and `ctl workers N` may reach (a typo's zeros)

def fit(table: Table, stopper: Stopper, spawn: Callable[[], bool], gen: int, target: int,
        now: float) -> None:
    """Spawn or retire workers of `gen` until `target` of them are active; `spawn()`
    False (a failed fork) stops spawning for this turn."""
    serving = table.serving(gen)
    missing = target - len(serving)
    # A bounded number per turn: the loop comes back at once (policy.next_deadline) but
    # reads signals and the control socket in between, so TERM still works while a large
    # target is being reached (QA-14: `ctl workers 100000` made the master deaf).
    for _ in range(min(missing, SPAWN_PER_TURN)):
        if not spawn():
            break
    if missing < 0:
        # the youngest booting ones first: they serve nobody yet
        extra = sorted(serving, key=lambda w: (w.state is State.READY, -w.spawned_at))
        for w in extra[:-missing]:
            stopper.retire(w, "scale-down", now)


def recycle_one(table: Table, stopper: Stopper, generation: int, target: int,
                now: float) -> None:
    """One worker at a time: its replacement boots first, then it is retired."""
    replacing = [w for w in table if w.replacing]
    if replacing:
        ready = [w for w in table.serving(generation) if w.state is State.READY]
        if len(ready) >= target:
            for w in replacing:
                stopper.retire(w, "recycle", now)
        return
    asked = [w for w in table.serving(generation)
             if w.recycle_reason is not None and w.state is State.READY]
    if asked:
        start_replacing(min(asked, key=lambda w: w.spawned_at))


def start_replacing(w: Worker) -> None:
    """Mark `w` to be retired once a replacement is ready (the one-at-a-time rule)."""
    w.replacing = True
    log.info("%s recycling (%s): starting its replacement first", w.label, w.recycle_reason)


def judge_memory(w: Worker, stopper: Stopper, now: float) -> None:
    """Over twice --max-worker-memory (its RSS on the heartbeat): TERM it now, without
    waiting for its replacement; up to twice, the worker itself stops taking requests."""
    limit_kb = w.cfg.max_worker_memory * 1024
    rss_kb = w.stats.get("rss_kb", 0)
    if limit_kb > 0 and w.reason is None and rss_kb > 2 * limit_kb:
        log.warning("%s uses %d MB, over twice --max-worker-memory %d MB: replacing it "
                    "now", w.label, rss_kb // 1024, w.cfg.max_worker_memory)
        stopper.retire(w, MEMORY, now)
