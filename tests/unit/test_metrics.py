"""Unit tests for reclusterd.meter: the worker-side duration histogram."""

from __future__ import annotations

import pytest

from reclusterd.meter import BUCKETS, DurationHistogram


def test_histogram_buckets() -> None:
    h = DurationHistogram()
    for d in (0.001, 0.005, 0.3, 99.0):
        h.observe(d)
    st = h.stats()
    assert st["d0"] == 2 and st["d6"] == 1 and st[f"d{len(BUCKETS)}"] == 1
    assert st["dsum"] == pytest.approx(99.306)
