"""The arbiter's record of its workers: per-worker state, the table, and the snapshot.

Bookkeeping only (who is where, what they reported); what to do about it is
policy.py. No sockets here: the loop keeps each worker's control channel by pid.
"""

from __future__ import annotations

import enum
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from reclusterd.meter import H2_OPEN

if TYPE_CHECKING:
    from reclusterd.config import Config

# Heartbeat stats that are levels, not running totals: never summed across dead workers.
GAUGES = frozenset({"in_flight", "rss_kb", H2_OPEN})


class State(str, enum.Enum):
    """DESIGN.md "Worker states": booting -> ready -> draining -> exited."""

    BOOTING = "booting"
    READY = "ready"
    DRAINING = "draining"
    EXITED = "exited"


@dataclass(eq=False)
class Worker:
    """One forked worker, as seen from the arbiter."""

    pid: int
    generation: int
    cfg: Config
    spawned_at: float
    state: State = State.BOOTING
    ready_at: float | None = None
    last_hb: float = 0.0
    stats: dict[str, float] = field(default_factory=dict)
    boot_error: str | None = None
    recycle_reason: str | None = None   # the worker asked to be replaced
    replacing: bool = False             # a replacement is on its way; TERM once it is ready
    reason: str | None = None           # why the arbiter is stopping it (None = not stopping)
    stop_signal_at: float = 0.0         # when TERM/ABRT/QUIT was sent
    kill_at: float | None = None        # SIGKILL if still alive at this time
    reopen_pending: bool = False        # USR1 arrived while booting: forward it once ready

    @property
    def label(self) -> str:
        return f"worker {self.pid} (gen {self.generation})"

    def age(self, now: float) -> float:
        return now - self.spawned_at

    def active(self) -> bool:
        """Booting or ready and not being stopped: counts towards the target."""
        return self.reason is None and self.state in (State.BOOTING, State.READY)


class Table:
    """Every live worker by pid (exited ones are removed when reaped)."""

    def __init__(self) -> None:
        self.by_pid: dict[int, Worker] = {}

    def add(self, w: Worker) -> None:
        self.by_pid[w.pid] = w

    def pop(self, pid: int) -> Worker | None:
        return self.by_pid.pop(pid, None)

    def get(self, pid: int) -> Worker | None:
        return self.by_pid.get(pid)

    def __iter__(self) -> Iterator[Worker]:
        return iter(list(self.by_pid.values()))

    def __len__(self) -> int:
        return len(self.by_pid)

    def of_generation(self, gen: int) -> list[Worker]:
        return [w for w in self if w.generation == gen]

    def serving(self, gen: int) -> list[Worker]:
        """Active workers of `gen`, not counting one whose replacement is on its way."""
        return [w for w in self if w.generation == gen and w.active() and not w.replacing]

    def ready_count(self) -> int:
        """Workers ready and not being stopped (what /readyz and /livez look at)."""
        return sum(1 for w in self if w.state is State.READY and w.reason is None)


class Stats:
    """Running totals that survive worker exits (Prometheus counters must not go down)."""

    def __init__(self) -> None:
        self.dead_totals: dict[str, float] = {}
        self.restarts: Counter[str] = Counter()

    def worker_gone(self, w: Worker) -> None:
        for k, v in w.stats.items():
            if k not in GAUGES:
                self.dead_totals[k] = self.dead_totals.get(k, 0.0) + v

    def summed(self, workers: list[Worker]) -> dict[str, float]:
        out: dict[str, float] = {k: float(v) for k, v in self.dead_totals.items()}
        for w in workers:
            for k, v in w.stats.items():
                out[k] = out.get(k, 0) + v
        return out


def clean_stats(payload: object) -> dict[str, float]:
    """Keep only finite numeric values from a heartbeat payload."""
    out: dict[str, float] = {}
    if isinstance(payload, dict):
        for k, v in payload.items():
            if isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool):
                if math.isfinite(v):
                    out[k] = v
    return out


def plural(n: int, noun: str) -> str:
    """'1 worker', '3 workers': log lines that read right."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def ready_threshold(target: int) -> int:
    """/readyz needs at least half the target (and at least one) worker ready."""
    return max(1, (target + 1) // 2)


def describe_worker(w: Worker, now: float) -> dict[str, object]:
    return {
        "pid": w.pid,
        "generation": w.generation,
        "state": w.state.value,
        "age": round(w.age(now), 3),
        "ready_for": None if w.ready_at is None else round(now - w.ready_at, 3),
        "heartbeat_age": None if w.ready_at is None else round(now - w.last_hb, 3),
        "stopping_reason": w.reason,
        "recycle_requested": w.recycle_reason,
        "stats": dict(w.stats),
    }


def snapshot(workers: list[Worker], stats: Stats, now: float, *, pid: int, generation: int,
             pending: int | None, target: int, stopping: bool,
             live: bool) -> dict[str, object]:
    """A JSON-able picture of the cluster (the status server's data source)."""
    states = Counter(w.state.value for w in workers)
    ready = sum(1 for w in workers if w.state is State.READY and w.reason is None)
    return {
        "pid": pid,
        "generation": generation,
        "pending_generation": pending,
        "reloading": pending is not None,
        "target_workers": target,
        "workers": {s.value: states.get(s.value, 0) for s in State if s is not State.EXITED},
        "worker_list": [describe_worker(w, now) for w in sorted(workers, key=lambda w: w.pid)],
        "ready_workers": ready,
        "min_ready": ready_threshold(target),
        "restarts": dict(stats.restarts),
        "totals": stats.summed(workers),
        "shutting_down": stopping,
        "live": live,
        "ready": (not stopping) and ready >= ready_threshold(target),
    }
