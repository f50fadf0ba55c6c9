"""Least-connections accepting across the workers of one master (issue 15 item 2).

Every worker watches the same listeners, so the kernel wakes all of them for a new
connection and the first one running takes it; on 2 busy cores the one that happens to
run takes most of a burst (wrk -c64 on 2 workers: 55 and 9 keep-alive connections, one
core idle while the other queues). Here each worker publishes how many connections it
holds in one page of memory the master maps before it forks (shared across fork, no
syscall to read or write). A worker holding more than the mean plus a slack (SLACK, or
mean / SHARE) leaves a new connection for DEFER seconds to a peer that holds fewer and
can accept soon (an asyncio worker; a thread worker with a poller waiting in epoll, or
without one for less than BUSY s), then takes up to FORCED anyway: a slow peer delays a
connection, never refuses it, and when every worker is busy none waits. A peer whose
stamp is older than STALE (its event loop or main thread is blocked) is left out.

The page: cell 0 = slots ever used; then per slot (pid, open connections, stamp in ms
of CLOCK_MONOTONIC, which every process of the machine shares; busy since, ms, 0: no). A
worker claims a free slot as it starts, clears it when it stops accepting (drain); the
master clears a reaped worker's (it may have been killed). Each slot has one writer, so
plain int64 stores suffice; a race between two workers claiming one slot only skews
the counts, which are advice.
"""

from __future__ import annotations

import mmap
import os
import time

__all__ = ["DEFER", "SLACK", "Board", "Share", "forget", "join", "open_board"]

SLOT = 4                # cells per slot: pid, connections, stamp, busy since
SLOTS = 127             # workers per master that can take part (one 4 KiB page)
SLACK = 2               # connections above the mean a worker may hold and still accept,
SHARE = 8               # or a SHAREth of the mean if more: a burst is not held up for ±1
DEFER = 0.003           # s a worker above its share leaves a connection to the others
FORCED = 4              # connections a wake-up that waited DEFER takes, at most
STALE = 1.0             # s without a stamp: the peer cannot accept (blocked), not counted
BUSY = 0.25             # s a peer with no idle poller has been so: it will not accept soon


class Board:
    """The shared page (see the module docstring)."""

    def __init__(self) -> None:
        self.mem = mmap.mmap(-1, mmap.PAGESIZE)     # anonymous, MAP_SHARED: survives fork
        self.cells = memoryview(self.mem).cast("q")

    def claim(self, pid: int, now: float) -> int | None:
        """The index of the pid cell of a free slot, now `pid`'s; None if all are taken."""
        cells = self.cells
        for slot in range(SLOTS):
            i = 1 + SLOT * slot
            if cells[i] == 0:
                cells[i], cells[i + 1], cells[i + 2], cells[i + 3] = pid, 0, int(now * 1000), 0
                if cells[0] <= slot:
                    cells[0] = slot + 1
                return i
        return None

    def forget(self, pid: int) -> None:
        """Clear `pid`'s slot (the master, for a reaped worker)."""
        cells = self.cells
        for i in range(1, 1 + SLOT * cells[0], SLOT):
            if cells[i] == pid:
                cells[i] = cells[i + 1] = 0


class Share:
    """One worker's slot: publish its connection count, ask whether to accept now."""

    def __init__(self, board: Board, index: int) -> None:
        self.cells = board.cells
        self.i = index
        self.deferred_since = 0.0
        self.forced = 0         # connections this wake-up may still take past its share

    def publish(self, conns: int) -> None:
        if self.i:
            self.cells[self.i + 1] = conns

    def stamp(self, now: float) -> None:
        """"Able to accept": call at least every STALE / 2 s from the serving loop."""
        if self.i:
            self.cells[self.i + 2] = int(now * 1000)

    def busy(self, since: float) -> None:
        """No poller of this worker waits in epoll since `since` (0: one does again)."""
        if self.i:
            self.cells[self.i + 3] = int(since * 1000)

    def leave(self) -> None:
        """Stopped accepting (draining): no longer counted in the mean."""
        if self.i:
            self.cells[self.i] = self.cells[self.i + 1] = 0
            self.i = 0

    def over(self, conns: int, now: float) -> bool:
        """Does this worker hold more than the mean of the live workers plus a slack,
        while one that can accept soon holds fewer than it by more than that slack?
        The slack is SLACK connections, or the mean / SHARE when larger."""
        cells = self.cells
        total = conns
        n = 1
        least = conns               # the fewest held by a peer that can accept soon
        ms = int(now * 1000)
        fresh = ms - int(STALE * 1000)
        soon = ms - int(BUSY * 1000)
        for i in range(1, 1 + SLOT * cells[0], SLOT):
            if cells[i] and i != self.i and cells[i + 2] >= fresh:
                peer = cells[i + 1]
                total += peer
                n += 1
                if peer < least and (not cells[i + 3] or cells[i + 3] >= soon):
                    least = peer
        slack = max(SLACK * n, total // SHARE)      # times n, as the mean is total / n
        return conns * n > total + slack and least * n < conns * n - slack

    def may_accept(self, conns: int, now: float) -> bool:
        """At a wake-up for a pending connection, before accepting any: False leaves it
        to a less loaded worker for now (call again after DEFER); True once this worker
        is within its share, or has waited DEFER (then `more` lets FORCED in)."""
        self.forced = 0
        self.publish(conns)
        self.stamp(now)
        if not self.i or not self.over(conns, now):
            self.deferred_since = 0.0
            return True
        if not self.deferred_since:
            self.deferred_since = now
            return False
        if now - self.deferred_since < DEFER:
            return False
        self.deferred_since = 0.0
        self.forced = FORCED
        return True

    def more(self, conns: int, now: float) -> bool:
        """May the same wake-up accept one more connection (`conns` held now)?"""
        self.publish(conns)
        if self.forced > 1:
            self.forced -= 1
            return True
        return not self.over(conns, now)


_board: Board | None = None


def open_board() -> None:
    """In the master, before the first fork: map the page its workers will share."""
    global _board
    if _board is None:
        _board = Board()


def forget(pid: int) -> None:
    """In the master: a worker was reaped; free its slot."""
    if _board is not None:
        _board.forget(pid)


def join() -> Share | None:
    """In a worker: claim a slot on the master's page (None without one: no balancing)."""
    if _board is None:
        return None
    index = _board.claim(os.getpid(), time.monotonic())
    return None if index is None else Share(_board, index)
