"""What the protocol layers (wsgi/, asgi/) get instead of the Worker.

A `Meter` counts requests and their durations, keeps the in-flight table the
heartbeat's "stuck" check reads, decides when a worker should be recycled
(--max-requests, --max-worker-memory) and calls the pre/post-request hooks.
It knows nothing of sockets, signals or the arbiter: the worker wires
`on_recycle` (ask the arbiter for a replacement) and `on_progress` (send a
heartbeat if one is due) to it.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import os
import time
from collections.abc import Callable

log = logging.getLogger("reclusterd.error")

# Upper bounds (seconds) of the request-duration histogram; +Inf is implicit.
BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024 if hasattr(os, "sysconf") else 4

Hook = Callable[..., object]
INF = float("inf")


def heartbeat_interval(timeout: float) -> float:
    """Seconds between two heartbeats for --timeout `timeout` (0 = off): four a timeout,
    so one late beat is not a missed one, and at least one a second."""
    return min(1.0, timeout / 4) if timeout > 0 else 1.0


# Status classes of the response counters ("2xx"...), in heartbeat key order s1xx..s5xx.
CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")

# HTTP versions counted apart (Request.http_version / ASGI's `http_version`); a request
# of any other version counts only in `requests`.
PROTOCOLS = ("1.0", "1.1", "2")
# Heartbeat key of open HTTP/2 connections (a level: the arbiter never sums dead ones).
H2_OPEN = "h2_open"


def protocol_key(version: str) -> str:
    """Heartbeat key of the request counter of HTTP version `version` ("1.1" -> "p1.1")."""
    return "p" + version


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


def read_rss_kb() -> int:
    """Resident set size of this process in kB (0 if /proc is not there).

    One pread(2) on a kept-open /proc/PID/statm (a few µs), so it can run after every
    request: reopened when the pid changed (a fork must not read its parent's).
    """
    global _statm
    pid = os.getpid()
    try:
        if _statm[0] != pid:
            if _statm[1] >= 0:
                os.close(_statm[1])
            _statm = (pid, -1)
            _statm = (pid, os.open(f"/proc/{pid}/statm", os.O_RDONLY | os.O_CLOEXEC))
        return int(os.pread(_statm[1], 128, 0).split()[1]) * _PAGE_KB
    except (OSError, ValueError, IndexError):
        return 0


_statm: tuple[int, int] = (0, -1)     # (pid, fd of /proc/pid/statm)

NEAR = 0.8              # share of --max-worker-memory above which every check reads RSS
READ_EVERY = 0.005      # s between two RSS reads while below that
NEAR_EVERY = 0.0002     # s between two reads near it (a request that grows RSS takes longer)


class MemoryLimit:
    """--max-worker-memory as a gate: may this worker still start an app call?

    A read costs about 1 µs (read_rss_kb), a hello-world request some 30 µs: well below
    the limit RSS is read at most every READ_EVERY s; near it on every check at least
    NEAR_EVERY s after the last read (allocating a MB takes longer), so the request
    that crosses it is seen as it ends. Near: over NEAR of the limit, or, from
    half of it, closer than twice the biggest growth seen between two reads (an app
    leaking 30 MB a request under a 100 MB limit). Once over, it stays over (the worker
    is on its way out: pages the allocator gave back would be taken again).
    `on_over(rss_kb)` runs once, on the thread that saw it; `reader` gives RSS in kB.
    """

    __slots__ = ("limit_kb", "near_kb", "rss_kb", "next_read", "over", "on_over", "reader")

    def __init__(self, limit_kb: int, on_over: Callable[[int], None],
                 reader: Callable[[], int] = read_rss_kb) -> None:
        self.reader = reader
        self.limit_kb = limit_kb
        self.near_kb = int(limit_kb * NEAR)
        self.rss_kb = 0
        self.next_read = 0.0        # monotonic s
        self.over = False
        self.on_over = on_over

    @staticmethod
    def refused(method: bytes, target: bytes) -> None:
        """The log line of a request answered 503 because the worker is over the limit."""
        log.info("503 to %s %s: worker %d is over --max-worker-memory (the app was not "
                 "called)", method.decode("latin-1"), target.decode("latin-1"), os.getpid())

    def admits(self, now: float) -> bool:
        """True while under the limit (`now`: monotonic s); reads RSS if one is due."""
        if self.over:
            return False
        if now < self.next_read:
            return True
        return self.read(now)

    def read(self, now: float) -> bool:
        """Read RSS now (the heartbeat: an idle worker that grew is caught too)."""
        rss = self.reader()
        if not rss:                 # no /proc: nothing to enforce
            self.next_read = now + READ_EVERY
            return not self.over
        step, self.rss_kb = rss - self.rss_kb, rss
        if rss > self.limit_kb and not self.over:
            self.over = True
            self.on_over(rss)
        if self.over:
            return False
        if 0 < step < rss:          # not the first read (that step is the whole RSS)
            self.near_kb = max(self.limit_kb // 2, min(self.near_kb, self.limit_kb - 2 * step))
        self.next_read = now + (NEAR_EVERY if rss >= self.near_kb else READ_EVERY)
        return True


def _ignore(*_: object) -> None:
    return None


def _zero() -> int:
    return 0


class Meter:
    """Per-worker request accounting, shared by every thread/task of the worker.

    Counters are plain ints updated under the GIL (a lost increment under a race
    only skews stats). `timeout` is --timeout in s (0 = off); `max_requests` is
    already jittered; `max_rss_kb` 0 = off (else `memory` is its gate). Hooks are called as
    `hook(owner, environ_or_scope[, status])` (Gunicorn's signature: `owner` is the
    worker); a failing hook is logged, never fatal.
    """

    def __init__(self, timeout: float = 0.0, max_requests: int = 0, max_rss_kb: int = 0,
                 pre_request: Hook | None = None, post_request: Hook | None = None,
                 owner: object = None) -> None:
        self.timeout = timeout
        self.max_requests = max_requests
        self.max_rss_kb = max_rss_kb
        self.memory = MemoryLimit(max_rss_kb, self._over_memory) if max_rss_kb else None
        self.pre_request = pre_request
        self.post_request = post_request
        self.owner = owner
        self.requests = 0
        self.status_counts = [0] * 6
        self.by_protocol = dict.fromkeys(PROTOCOLS, 0)     # http_version -> requests
        self.h2_open = 0        # HTTP/2 connections open now (the drivers count them)
        self.in_flight: dict[int, float] = {}     # token -> last progress (monotonic)
        self.durations = DurationHistogram()
        self.rss_kb = 0
        self.recycle_requested = False
        self.on_recycle: Callable[[str], None] = _ignore
        self.on_memory: Callable[[], None] = _ignore    # over --max-worker-memory: shed
        self.on_progress: Callable[[float], None] = _ignore
        self.log_drops: Callable[[], int] = _zero   # log lines the process dropped so far
        self._tokens = itertools.count(1)
        self.beat = heartbeat_interval(timeout)     # s: longest a waiting thread stays silent

    # -- hot path ---------------------------------------------------------------
    def started(self, now: float | None = None) -> int:
        """Mark a request in flight (at `now`, monotonic s: the caller's request start);
        the token goes to progress() and finished()."""
        token = next(self._tokens)
        self.in_flight[token] = now = time.monotonic() if now is None else now
        if self.memory is not None:
            # Before the app runs: the requests in flight may have grown us past the
            # limit; the driver then answers 503 instead of calling the app (memory.over).
            self.memory.admits(now)
        return token

    def progress(self, token: int) -> None:
        """Client I/O happened for this request: it is not stuck (and a heartbeat may go
        out from the serving thread, which is what a long upload on sync needs)."""
        now = time.monotonic()
        if token in self.in_flight:
            self.in_flight[token] = now
        self.on_progress(now)

    def waiting(self, token: int) -> None:
        """The request waits for its client (body bytes, room to write, 100-continue):
        client time, not app time, so it is not "stuck" while it lasts (the client
        deadlines bound it); the next progress() restarts its --timeout clock. A blocking
        wait calls this at least every `beat` s: on sync the waiting thread is the one
        that sends the heartbeats."""
        if token in self.in_flight:
            self.in_flight[token] = INF
        self.on_progress(time.monotonic())

    def finished(self, token: int, status: int, duration: float = 0.0,
                 http_version: str = "1.1") -> None:
        """Count a finished request (`duration` in s; `http_version` "1.0", "1.1" or "2",
        as in Request.http_version); may ask for a recycle."""
        self.in_flight.pop(token, None)
        self.durations.observe(duration)
        self.requests += 1
        try:
            self.by_protocol[http_version] += 1
        except KeyError:        # another version: counted in `requests` only
            pass
        self.status_counts[min(status // 100, 5)] += 1
        if self.max_requests and self.requests >= self.max_requests:
            self.ask_recycle("max-requests")
        if self.memory is not None:
            self.memory.admits(time.monotonic())

    def before(self, info: object) -> None:
        """pre_request(owner, environ_or_scope)."""
        if self.pre_request is not None:
            try:
                self.pre_request(self.owner, info)
            except Exception:
                log.exception("pre_request hook failed")

    def after(self, info: object, status: int) -> None:
        """post_request(owner, environ_or_scope, status)."""
        if self.post_request is not None:
            try:
                self.post_request(self.owner, info, status)
            except Exception:
                log.exception("post_request hook failed")

    # -- policy -----------------------------------------------------------------
    def ask_recycle(self, reason: str) -> None:
        """Once: ask for a replacement (the worker keeps serving until it is told to stop)."""
        if not self.recycle_requested:
            self.recycle_requested = True
            log.info("worker %d asks to be recycled (%s) after %d requests, rss %d kB",
                     os.getpid(), reason, self.requests, self.rss_kb)
            self.on_recycle(reason)

    def _over_memory(self, rss_kb: int) -> None:
        """MemoryLimit.on_over: the worker stops taking requests (first: every moment the
        listeners stay open another connection may come in, to be refused), then asks
        for its replacement."""
        self.rss_kb = rss_kb
        self.on_memory()
        self.ask_recycle("memory")

    def read_rss_kb(self) -> int:
        """RSS now, in kB (and the memory gate's reading: the heartbeat's check)."""
        if self.memory is not None:
            self.memory.read(time.monotonic())
            rss = self.memory.rss_kb
        else:
            rss = read_rss_kb()
        if rss:
            self.rss_kb = rss
        return self.rss_kb

    def stuck(self, now: float) -> bool:
        """True while some request has made no progress for longer than --timeout."""
        if self.timeout <= 0 or not self.in_flight:
            return False
        limit = now - self.timeout
        return any(t < limit for t in list(self.in_flight.values()))

    def stats(self) -> dict[str, int | float]:
        """The heartbeat's counters (the arbiter sums them across workers)."""
        c = self.status_counts
        self.read_rss_kb()
        return {"requests": self.requests, "in_flight": len(self.in_flight),
                "s1xx": c[1], "s2xx": c[2], "s3xx": c[3], "s4xx": c[4], "s5xx": c[5],
                "rss_kb": self.rss_kb, "log_dropped": self.log_drops(), H2_OPEN: self.h2_open,
                **{protocol_key(v): n for v, n in self.by_protocol.items()},
                **self.durations.stats()}
