"""workers.fdlimit: accept failures for lack of descriptors are logged once per interval
with a count (a fake clock, no sockets)."""

from __future__ import annotations

import logging

import pytest

from reclusterd.workers.fdlimit import AcceptErrors


def test_first_failure_is_logged_at_once_then_once_per_interval_with_the_count(
        caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    errors = AcceptErrors(interval=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.ERROR, logger="reclusterd.error"):
        errors.hit()
        for _ in range(499):
            now[0] += 0.01
            errors.hit()
        now[0] = 110.0
        errors.hit()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["accept: out of file descriptors (1 times in the last 10 s)",
                     "accept: out of file descriptors (500 times in the last 10 s)"]
    assert errors.total == 501 and errors.count == 0
