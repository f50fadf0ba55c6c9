"""The thread worker's pool policy (workers/pool.py): size bounds and promotion delays,
driven by a fake clock."""

from __future__ import annotations

import pytest

from reclusterd.settings import AUTO
from reclusterd.workers.pool import (
    AUTO_CEILING,
    AUTO_FLOOR,
    PROMOTE_AFTER,
    PROMOTE_MIN,
    RETIRE_AFTER,
    PoolSize,
    Promoter,
)


def test_explicit_threads_mean_a_fixed_pool() -> None:
    size = PoolSize.from_setting(8, 1000)
    assert (size.floor, size.ceiling, size.fixed) == (8, 8, True)
    assert size.retire_after < 0                      # spares wait for the watch forever
    assert not size.may_spawn(8, 0) and not size.may_retire(8)


def test_auto_pool_is_bounded_by_its_ceiling_and_worker_connections() -> None:
    size = PoolSize.from_setting(AUTO, 1000)
    assert (size.floor, size.ceiling, size.fixed) == (AUTO_FLOOR, AUTO_CEILING, False)
    assert PoolSize.from_setting(AUTO, 10).ceiling == 10
    assert PoolSize.from_setting(AUTO, 1).ceiling == AUTO_FLOOR
    assert size.retire_after == RETIRE_AFTER


def test_auto_pool_grows_only_when_no_spare_is_left() -> None:
    size = PoolSize.from_setting(AUTO, 1000)
    assert size.may_spawn(2, 0)
    assert not size.may_spawn(3, 1)                   # a spare still watches
    assert not size.may_spawn(AUTO_CEILING, 0)        # at the ceiling


def test_auto_pool_shrinks_to_its_floor() -> None:
    size = PoolSize.from_setting(AUTO, 1000)
    assert size.may_retire(AUTO_FLOOR + 1)
    assert not size.may_retire(AUTO_FLOOR)


def test_first_promotion_waits_the_full_delay() -> None:
    p = Promoter()
    assert p.wait(since=10.0, now=10.0) == pytest.approx(PROMOTE_AFTER)
    assert p.wait(since=10.0, now=10.0 + PROMOTE_AFTER) <= 0


def test_promotions_in_a_row_ramp_up_faster() -> None:
    p, now = Promoter(), 10.0
    delays = []
    for _ in range(8):
        now += p.delay
        p.promoted(now)
        delays.append(p.delay)
    assert delays[0] == PROMOTE_AFTER                 # the first of a burst: full delay
    assert delays[1] < delays[0] and delays[2] < delays[1]
    assert delays[-1] == PROMOTE_MIN                  # never below the floor


def test_delay_resets_once_the_pool_keeps_up() -> None:
    p = Promoter()
    p.promoted(10.0)
    p.promoted(10.001)
    assert p.delay < PROMOTE_AFTER
    p.relieved()
    assert p.delay == PROMOTE_AFTER
    p.promoted(10.002)
    p.promoted(11.0)                                  # a second apart: not in a row
    assert p.delay == PROMOTE_AFTER
