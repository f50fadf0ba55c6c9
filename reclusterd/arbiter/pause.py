"""Telling a paused master (SIGSTOP, a frozen container, CPU starvation) from a sleeping
one, and for how long it did not run: the workers are not to blame for that time."""

from __future__ import annotations

PAUSE_GAP = 1.0     # s: a loop turn this much longer than its sleep was paused


def paused_for(last_tick: float, asked: float, now: float) -> float:
    """Seconds the master did not run during a loop turn that began (its last tick) at
    `last_tick`, asked to sleep at most `asked` s and ended at `now` (monotonic s); 0.0
    when the turn was not paused.

    CLOCK_MONOTONIC runs on while the process is stopped, so a turn longer than its
    sleep by PAUSE_GAP or more was paused. Its length is the time since the last tick:
    the master cannot know when within its sleep it was stopped, but its sleeps are
    short (every worker's heartbeat ends one, at least once a second), so this is the
    pause plus at most one such sleep. Subtracting the whole sleep asked for
    under-reported it: that sleep is mostly cut short by a heartbeat, and an 8 s stop
    was logged as 5.4 s (issue 14 QA)."""
    elapsed = now - last_tick
    if elapsed - asked < PAUSE_GAP:
        return 0.0
    return elapsed
