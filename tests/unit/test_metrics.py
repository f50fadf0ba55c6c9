"""Unit tests for reclusterd.meter: the worker-side duration histogram and counters."""

from __future__ import annotations

from typing import cast

import pytest

from reclusterd.arbiter.table import Stats, Worker
from reclusterd.config import Config
from reclusterd.meter import BUCKETS, H2_OPEN, PROTOCOLS, DurationHistogram, Meter, protocol_key


def test_histogram_buckets() -> None:
    h = DurationHistogram()
    for d in (0.001, 0.005, 0.3, 99.0):
        h.observe(d)
    st = h.stats()
    assert st["d0"] == 2 and st["d6"] == 1 and st[f"d{len(BUCKETS)}"] == 1
    assert st["dsum"] == pytest.approx(99.306)


def test_requests_counted_by_protocol() -> None:
    m = Meter()
    for version in ("1.1", "1.1", "1.0", "2", "0.9"):
        m.finished(m.started(), 200, 0.001, version)
    m.finished(m.started(), 204)            # the plugin API's call: HTTP/1.1
    st = m.stats()
    assert st["requests"] == 6
    assert [st[protocol_key(v)] for v in PROTOCOLS] == [1, 3, 1]   # "0.9": requests only


def test_open_http2_connections_are_a_gauge() -> None:
    m = Meter()
    m.h2_open += 2
    m.h2_open -= 1
    assert m.stats()[H2_OPEN] == 1
    stats = Stats()
    w = Worker(1, 1, cast(Config, None), 0.0)
    w.stats = {"requests": 3.0, protocol_key("2"): 3.0, H2_OPEN: 1.0}
    stats.worker_gone(w)       # a dead worker's connections are closed; its counts stay
    assert stats.summed([]) == {"requests": 3.0, protocol_key("2"): 3.0}
