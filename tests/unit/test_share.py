"""workers/share.py: the least-connections board (pure: a real shared page, a fake clock)."""

from __future__ import annotations

import os

from reclusterd.workers.share import BUSY, DEFER, FORCED, SHARE, SLACK, STALE, Board, Share

NOW = 100.0


def _workers(board: Board, *conns: int) -> list[Share]:
    shares = []
    for pid, n in enumerate(conns, start=1000):
        index = board.claim(pid, NOW)
        assert index is not None
        share = Share(board, index)
        share.publish(n)
        shares.append(share)
    return shares


def test_a_worker_within_the_mean_plus_slack_accepts() -> None:
    a, _ = _workers(Board(), 0, 6)
    assert a.may_accept(6 + 2 * SLACK, NOW)     # two workers: the mean moves with ours
    assert not a.more(6 + 2 * SLACK + 1, NOW)


def test_a_worker_over_its_share_defers_then_takes_a_few() -> None:
    """A slow or stuck peer delays a connection by DEFER, never refuses it."""
    a, _ = _workers(Board(), 0, 0)
    over = 2 * SLACK + 1
    assert not a.may_accept(over, NOW)
    assert not a.may_accept(over, NOW + DEFER / 2)
    assert a.may_accept(over, NOW + 1.01 * DEFER)
    taken = 1 + sum(a.more(over + k, NOW) for k in range(1, 10))
    assert taken == FORCED, "the wake-up that waited DEFER takes FORCED, then stops"
    assert not a.may_accept(over, NOW + 1), "a new deferral starts at the next wake-up"


def test_the_deferral_ends_once_the_others_caught_up() -> None:
    a, b = _workers(Board(), 0, 0)
    assert not a.may_accept(10, NOW)
    b.publish(10)
    assert a.may_accept(10, NOW)
    assert a.deferred_since == 0.0


def test_a_lone_worker_always_accepts() -> None:
    (a,) = _workers(Board(), 0)
    assert a.may_accept(1000, NOW)


def test_a_peer_with_a_stale_stamp_is_not_waited_for() -> None:
    """Its loop or main thread is blocked: it cannot take the connection."""
    a, b = _workers(Board(), 0, 0)
    later = NOW + 2 * STALE
    a.stamp(later)
    assert a.may_accept(10, later)
    b.stamp(later)
    assert not a.may_accept(10, later)


def test_draining_and_reaped_workers_leave_the_mean() -> None:
    board = Board()
    a, b, _ = _workers(board, 0, 0, 0)
    b_pid_cell = b.i
    assert not a.may_accept(10, NOW)
    b.leave()                           # draining: stopped accepting
    board.forget(1002)                  # reaped by the master
    assert a.may_accept(10, NOW), "alone again: no one to leave it to"
    b.publish(5)                        # a left slot is not written any more
    assert board.cells[b_pid_cell] == board.cells[b_pid_cell + 1] == 0


def test_freed_slots_are_reused_and_the_scan_stays_short() -> None:
    board = Board()
    first = board.claim(1, NOW)
    board.claim(2, NOW)
    board.forget(1)
    assert board.claim(3, NOW) == first
    assert board.cells[0] == 2          # slots ever used: what a reader scans


def test_the_page_is_shared_across_fork() -> None:
    board = Board()
    (a,) = _workers(board, 0)
    pid = os.fork()
    if pid == 0:
        a.publish(42)
        os._exit(0)
    os.waitpid(pid, 0)
    assert board.cells[a.i + 1] == 42


def test_no_deferral_to_peers_that_cannot_accept_soon() -> None:
    """Every worker busy (no poller waiting in epoll for a while): waiting for one only
    slows accepting down."""
    a, b = _workers(Board(), 0, 0)
    b.busy(NOW - 2 * BUSY)
    assert a.may_accept(10, NOW)
    b.busy(NOW - BUSY / 2)              # just now: its poller is back in a moment
    assert not a.may_accept(10, NOW)
    b.busy(0.0)
    assert not a.may_accept(10, NOW)


def test_the_slack_grows_with_the_mean() -> None:
    """At 128 each, a burst is not held up for +-2: the slack is then the mean / SHARE."""
    a, _ = _workers(Board(), 0, 120)
    slack = 120 // SHARE                # about the mean / SHARE, once a is near it too
    assert a.may_accept(120 + slack, NOW)
    assert not a.may_accept(120 + 3 * slack, NOW)
