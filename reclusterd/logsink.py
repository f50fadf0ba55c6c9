"""Log output that never blocks serving: a bounded buffer per fd, drained by a thread.

A log line goes into its fd's buffer (a lock and a deque append); a daemon
thread writes the buffer out with blocking writes. When the reader cannot keep
up (a stopped `| cat`, a stalled pipe to a log shipper, a hung NFS file), the
buffer fills and further lines are dropped and counted, instead of every
request thread (and the master loop) blocking in write(2). One warning line
goes into the stream where the gap starts and one where it ends, and the count
is `lines_dropped()` (the heartbeat carries it to /metrics as
reclusterd_log_lines_dropped_total).

Per process: after fork the child starts with empty buffers and no threads
(the parent's unwritten lines are the parent's to write).
"""

from __future__ import annotations

import atexit
import collections
import os
import threading
import time

MAX_PENDING = 1 << 20    # bytes buffered per fd before lines are dropped
FLUSH_WAIT = 1.0         # s an exiting process waits for its buffers to drain

_sinks: dict[int, Sink] = {}
_registry_lock = threading.Lock()
_dropped = 0             # lines dropped by this process, every fd


def lines_dropped() -> int:
    """Log lines this process dropped because a sink could not keep up."""
    return _dropped


class Sink:
    """The bounded buffer and writer thread of one fd (see the module docstring)."""

    def __init__(self, fd: int, limit: int = MAX_PENDING) -> None:
        self.fd = fd
        self.limit = limit
        self._reset()

    def _reset(self) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.pending: collections.deque[bytes] = collections.deque()
        self.size = 0
        self.idle = True           # the writer waits for lines (nothing being written)
        self.thread: threading.Thread | None = None
        self.dropping = 0          # lines dropped since the buffer was last full (0 = not)

    def write(self, data: bytes) -> None:
        """Queue one or more whole lines; never blocks on the fd, never raises."""
        global _dropped
        with self.cond:
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, daemon=True,
                                               name=f"reclusterd-log-{self.fd}")
                self.thread.start()
            if self.size + len(data) > self.limit:
                _dropped += 1
                if not self.dropping:
                    # The one line allowed over the limit: where the gap starts.
                    self._queue(_notice("log output is not keeping up: dropping lines "
                                        "until it does (reclusterd_log_lines_dropped_total)"))
                self.dropping += 1
                return
            self._queue(data)

    def _queue(self, data: bytes) -> None:
        self.pending.append(data)
        self.size += len(data)
        if self.idle:
            self.cond.notify()

    def _run(self) -> None:
        while True:
            with self.cond:
                while not self.pending:
                    if self.dropping:
                        self._queue(_notice(f"log output caught up; {self.dropping} "
                                            "line(s) were dropped"))
                        self.dropping = 0
                        break
                    self.idle = True
                    self.cond.notify_all()      # flush() waiters
                    self.cond.wait()
                self.idle = False
                chunk = b"".join(self.pending)
                self.pending.clear()
                self.size = 0
            self._write_all(chunk)

    def _write_all(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            try:
                n = os.write(self.fd, view)
            except InterruptedError:
                continue
            except OSError:
                return          # EPIPE, EBADF, ENOSPC...: nowhere to write these lines
            view = view[n:]

    def flush(self, timeout: float = FLUSH_WAIT) -> bool:
        """Wait (at most `timeout` s) until every queued line was written."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.pending or not self.idle:
                if self.thread is None:
                    return not self.pending
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
        return True


def _notice(text: str) -> bytes:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %z")
    return f"[{stamp}] [{os.getpid()}] [WARNING] {text}\n".encode()


def sink_for(fd: int) -> Sink:
    """The process's sink for `fd` (one per fd, so two writers share one buffer)."""
    with _registry_lock:
        sink = _sinks.get(fd)
        if sink is None:
            sink = _sinks[fd] = Sink(fd)
        return sink


def forget(fd: int) -> None:
    """Before closing `fd`: write what is queued (bounded wait), then drop its sink."""
    with _registry_lock:
        sink = _sinks.pop(fd, None)
    if sink is not None:
        sink.flush()


def flush_all(timeout: float = FLUSH_WAIT) -> None:
    """Before exiting: give every sink up to `timeout` s in all to drain."""
    deadline = time.monotonic() + timeout
    for sink in list(_sinks.values()):
        sink.flush(max(0.0, deadline - time.monotonic()))


def _after_fork_in_child() -> None:
    global _dropped, _registry_lock
    _registry_lock = threading.Lock()
    _dropped = 0
    for sink in _sinks.values():
        sink._reset()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(flush_all)
