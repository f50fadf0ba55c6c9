"""Worker-side request metrics: the duration histogram carried in the heartbeat.

Workers count (`DurationHistogram` + the counters in their heartbeat); the arbiter
sums heartbeats and serves them (reclusterd/arbiter/status.py). Stdlib only.
"""

from __future__ import annotations

import bisect

# Upper bounds (seconds) of the request-duration histogram; +Inf is implicit.
BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")


def bucket_key(i: int) -> str:
    """Heartbeat key of histogram bucket i (non-cumulative count); i == len(BUCKETS) is +Inf."""
    return f"d{i}"


class DurationHistogram:
    """Worker side: observe request durations; `stats()` merges into the heartbeat dict."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds

    def stats(self) -> dict[str, int | float]:
        out: dict[str, int | float] = {bucket_key(i): c for i, c in enumerate(self.counts)}
        out["dsum"] = self.total
        return out
