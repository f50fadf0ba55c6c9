"""What the bench reads from the OS about a server's processes: which are its workers,
their memory (RSS, USS), their CPU time (total and per worker), and the machine's
busy time (the "other work" figure). psutil is imported lazily (bench extra)."""

from __future__ import annotations

import os
import resource
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HELPERS = ("resource_tracker", "semaphore_tracker")


def workers(pid: int) -> list[Any]:
    """The worker processes under `pid` (psutil.Process); helpers (multiprocessing's
    trackers) are not workers; a server that forks nothing is its own worker."""
    import psutil

    try:
        root = psutil.Process(pid)
        kids = root.children(recursive=True)
    except psutil.Error:
        return []
    out = []
    for k in kids:
        try:
            cmd = " ".join(k.cmdline())
        except psutil.Error:
            continue
        if not any(h in cmd for h in HELPERS):
            out.append(k)
    return out or [root]


def total_rss_mb(pid: int) -> float:
    """RSS of the whole tree under `pid` (MB): what the server costs in all."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue
    return total / 2**20


def wait_stable(pid: int, want: int, settle: float = 5.0) -> None:
    """Wait (up to `settle` s) until `want` workers exist and the count held for 0.5 s."""
    deadline = time.monotonic() + settle
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        n = len(workers(pid))
        if n != last:
            last, since = n, time.monotonic()
        elif n >= want and time.monotonic() - since > 0.5:
            return
        time.sleep(0.05)


@dataclass
class Memory:
    """Per-worker memory (MB): mean, min and max over the workers, RSS and USS
    (USS = pages only this process maps: what a worker really adds)."""

    workers: int = 0
    rss: float = 0.0
    uss: float = 0.0
    uss_min: float = 0.0
    uss_max: float = 0.0
    total_rss: float = 0.0


def memory(pid: int) -> Memory:
    """RSS and USS per worker now (psutil memory_full_info)."""
    import psutil

    rss, uss = [], []
    for w in workers(pid):
        try:
            info = w.memory_full_info()
        except psutil.Error:
            continue
        rss.append(info.rss / 2**20)
        uss.append(info.uss / 2**20)
    if not rss:
        return Memory()
    return Memory(len(rss), statistics.mean(rss), statistics.mean(uss), min(uss), max(uss),
                  total_rss_mb(pid))


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds used so far by the live processes of the tree."""
    import psutil

    user = system = 0.0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0, 0.0
    for p in procs:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        user += t.user
        system += t.system
    return user, system


def worker_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user+system) of each worker, by pid: the per-worker share of the work
    (request counts are not available from every server; CPU per request is about equal
    within one server, so CPU share ~ request share)."""
    import psutil

    out = {}
    for w in workers(pid):
        try:
            t = w.cpu_times()
        except psutil.Error:
            continue
        out[w.pid] = t.user + t.system
    return out


def shares(before: dict[int, float], after: dict[int, float]) -> list[float]:
    """Each worker's fraction of the CPU its server's workers used between two reads
    (workers present in both; [] when nothing was used)."""
    used = {p: after[p] - before[p] for p in after if p in before}
    total = sum(used.values())
    return sorted(u / total for u in used.values()) if total > 0 else []


def machine_busy() -> tuple[float, float, float]:
    """(busy CPU seconds of the whole machine, CPU seconds of our finished children, wall)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        busy = (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):  # not Linux: no machine-wide figure
        busy = float("nan")
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return busy, ru.ru_utime + ru.ru_stime, time.monotonic()
