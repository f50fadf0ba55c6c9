"""--max-worker-memory's gate (meter.MemoryLimit): when RSS is read, when a worker is over
(issue 14 item 10). What the WSGI handler answers then: tests/unit/test_wsgi.py."""

from __future__ import annotations

from reclusterd.meter import NEAR, NEAR_EVERY, READ_EVERY, MemoryLimit, Meter, read_rss_kb

LIMIT = 100_000     # kB


class FakeRSS:
    """RSS in kB that the test sets, counting the reads."""

    def __init__(self, kb: int) -> None:
        self.kb = kb
        self.reads = 0

    def __call__(self) -> int:
        self.reads += 1
        return self.kb


def gate(kb: int) -> tuple[MemoryLimit, FakeRSS, list[int]]:
    rss = FakeRSS(kb)
    over: list[int] = []
    return MemoryLimit(LIMIT, over.append, rss), rss, over


def test_well_below_the_limit_rss_is_read_at_most_every_read_every() -> None:
    g, rss, _ = gate(LIMIT // 4)
    assert g.admits(10.0) and rss.reads == 1
    assert g.admits(10.0 + READ_EVERY / 2) and rss.reads == 1
    assert g.admits(10.0 + READ_EVERY) and rss.reads == 2


def test_near_the_limit_every_check_reads() -> None:
    g, rss, _ = gate(int(LIMIT * NEAR) + 1)
    for i in range(3):
        assert g.admits(10.0 + i * NEAR_EVERY)
    assert rss.reads == 3
    assert g.admits(10.0 + 2.5 * NEAR_EVERY) and rss.reads == 3   # just read


def test_a_big_step_between_two_reads_brings_near_down() -> None:
    """An app that grows 30 % of the limit a request is read on every check from half
    the limit (not only from NEAR)."""
    g, rss, _ = gate(LIMIT // 4)
    g.admits(10.0)
    rss.kb += int(LIMIT * 0.3)
    g.admits(11.0)                  # 55 %: from now on, each check reads
    reads = rss.reads
    g.admits(11.0 + NEAR_EVERY)
    assert rss.reads == reads + 1


def test_over_the_limit_once_and_for_good() -> None:
    g, rss, over = gate(LIMIT - 1)
    assert g.admits(10.0)
    rss.kb = LIMIT + 1
    assert not g.admits(10.0 + NEAR_EVERY)
    assert over == [LIMIT + 1] and g.over
    rss.kb = LIMIT // 2             # pages given back: still no new request
    assert not g.admits(20.0) and not g.read(20.0)
    assert over == [LIMIT + 1]


def test_no_proc_means_nothing_to_enforce() -> None:
    g, _, over = gate(0)
    assert g.admits(10.0) and g.admits(11.0) and not over


def test_rss_of_this_process_is_read() -> None:
    assert read_rss_kb() > 1000


def test_the_meter_sheds_before_it_asks_for_a_replacement() -> None:
    meter = Meter(max_rss_kb=LIMIT)
    assert meter.memory is not None
    meter.memory.reader = FakeRSS(LIMIT + 5)
    calls: list[str] = []
    meter.on_memory = lambda: calls.append("shed")
    meter.on_recycle = calls.append
    meter.started()
    assert meter.memory.over and calls == ["shed", "memory"]
    assert meter.stats()["rss_kb"] == LIMIT + 5


def test_without_the_setting_there_is_no_gate() -> None:
    assert Meter().memory is None
