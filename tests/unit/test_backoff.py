"""Respawn backoff policy, driven by a fake clock."""

from __future__ import annotations

import pytest

from reclusterd.backoff import Backoff


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


def crash_round(b: Backoff, clock: Clock) -> float:
    """Wait out the current delay (as the arbiter would), then fail once more."""
    clock.advance(b.wait())
    return b.failure()


def test_no_delay_without_failures() -> None:
    b = Backoff(10, clock=Clock())
    assert b.delay() == 0.0
    assert b.wait() == 0.0


def test_doubles_from_point_one_and_caps() -> None:
    clock = Clock()
    b = Backoff(2.0, clock=clock)
    delays = [crash_round(b, clock) for _ in range(8)]
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0])


def test_wait_counts_down_with_the_clock() -> None:
    clock = Clock()
    b = Backoff(10, clock=clock)
    crash_round(b, clock)
    crash_round(b, clock)
    assert b.wait() == pytest.approx(0.2)
    clock.advance(0.15)
    assert b.wait() == pytest.approx(0.05)
    clock.advance(1)
    assert b.wait() == 0.0


def test_siblings_failing_in_the_same_round_count_once() -> None:
    clock = Clock()
    b = Backoff(10, clock=clock)
    assert b.failure() == pytest.approx(0.1)
    clock.advance(0.01)
    assert b.failure() == pytest.approx(0.09)  # a sibling: just the time left
    assert b.failure() == pytest.approx(0.09)
    assert crash_round(b, clock) == pytest.approx(0.2)
    assert b.failures == 2


def test_early_exit_after_ready_is_a_failure_late_exit_is_not() -> None:
    clock = Clock()
    b = Backoff(10, clock=clock, stable=5.0)
    assert b.exited(was_ready=False, ready_for=0.0) == pytest.approx(0.1)
    clock.advance(1)
    assert b.exited(was_ready=True, ready_for=1.0) == pytest.approx(0.2)
    clock.advance(1)
    assert b.exited(was_ready=True, ready_for=60.0) is None


def test_decays_once_workers_stay_up() -> None:
    clock = Clock()
    b = Backoff(10, clock=clock, stable=5.0)
    for _ in range(6):
        crash_round(b, clock)
    assert b.delay() == pytest.approx(3.2)
    clock.advance(b.wait())
    b.ready()
    assert b.delay() == pytest.approx(3.2)   # not yet: must stay up a while
    clock.advance(5)
    assert b.delay() == pytest.approx(1.6)
    clock.advance(10)
    assert b.delay() == pytest.approx(0.4)
    clock.advance(100)
    assert b.delay() == 0.0
    assert b.failures == 6
    b.ready()
    assert b.failures == 0
    # and a new failure starts again from the bottom
    assert b.failure() == pytest.approx(0.1)


def test_failure_after_partial_decay_doubles_the_decayed_value() -> None:
    clock = Clock()
    b = Backoff(10, clock=clock, stable=5.0)
    for _ in range(5):
        crash_round(b, clock)             # 1.6
    clock.advance(b.wait())
    b.ready()
    clock.advance(10.5)                   # two halvings: 0.4
    assert b.failure() == pytest.approx(0.8)


def test_no_decay_while_still_crashing() -> None:
    """Time passing between failures (waiting out the cap) must not shrink the delay."""
    clock = Clock()
    b = Backoff(10, clock=clock, stable=1.0)
    for _ in range(10):
        crash_round(b, clock)
    assert b.delay() == pytest.approx(10)
    for _ in range(5):
        clock.advance(0.5)                # worker boots and dies before ready
        assert crash_round(b, clock) == pytest.approx(10)


def test_cap_below_initial_still_waits_a_little() -> None:
    clock = Clock()
    b = Backoff(0, clock=clock)
    assert [crash_round(b, clock) for _ in range(3)] == pytest.approx([0.1] * 3)


def test_set_cap_lowers_current_delay() -> None:
    clock = Clock()
    b = Backoff(10, clock=clock)
    for _ in range(8):
        crash_round(b, clock)
    b.set_cap(1.0)
    assert b.delay() == pytest.approx(1.0)
    assert crash_round(b, clock) == pytest.approx(1.0)


def test_reset() -> None:
    clock = Clock()
    b = Backoff(10, clock=clock)
    crash_round(b, clock)
    crash_round(b, clock)
    b.reset()
    assert b.delay() == 0.0 and b.wait() == 0.0 and b.failures == 0
