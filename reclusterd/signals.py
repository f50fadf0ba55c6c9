"""Signal queue for the arbiter: handlers only enqueue, the master loop does the work.

Signal handlers run between two bytecodes of whatever the arbiter is doing, so
doing real work in them (forking, killing, reading config) invites re-entrancy
bugs. Here the handler appends the signal number to a bounded queue; the C
level handler also writes a byte to a non-blocking pipe registered with
`signal.set_wakeup_fd`, so a `select()` on `fileno()` returns at once even if
the signal arrives just before the arbiter goes to sleep (no lost wakeups).
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
from collections.abc import Iterable, Iterator
from types import FrameType

# Signals the arbiter acts on (DESIGN.md, "Signals").
HANDLED: tuple[signal.Signals, ...] = (
    signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM,
    signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR1, signal.SIGUSR2, signal.SIGCHLD,
)
# Bound on queued signals: a burst of the same signal carries no more meaning
# than a few of them, and an unbounded queue could grow under a signal flood.
MAX_QUEUED = 32

NAMES: dict[int, str] = {int(s): s.name for s in signal.Signals}


def signame(signum: int) -> str:
    """'SIGTERM' for 15; 'signal 99' when unknown."""
    return NAMES.get(signum, f"signal {signum}")


class SignalQueue:
    """Collects signals for the master loop; `fileno()` becomes readable when one arrives."""

    def __init__(self, signals: Iterable[int] = HANDLED) -> None:
        self.signals = tuple(int(s) for s in signals)
        self._queue: collections.deque[int] = collections.deque()
        self._rfd = -1
        self._wfd = -1
        self._old_wakeup = -1
        self.installed = False

    def fileno(self) -> int:
        """Read end of the wakeup pipe (select on it)."""
        return self._rfd

    def install(self) -> None:
        """Create the wakeup pipe and install the handlers (main thread only)."""
        if self.installed:
            return
        self._rfd, self._wfd = os.pipe()
        for fd in (self._rfd, self._wfd):
            os.set_blocking(fd, False)
            os.set_inheritable(fd, False)
        self._old_wakeup = signal.set_wakeup_fd(self._wfd, warn_on_full_buffer=False)
        for sig in self.signals:
            signal.signal(sig, self._handler)
        # Interrupted system calls are retried by Python (PEP 475); we only need
        # the wakeup byte, so ask the kernel to restart calls too.
        for sig in self.signals:
            signal.siginterrupt(sig, False)
        self.installed = True

    def uninstall(self) -> None:
        """Restore default dispositions and close the pipe (used on exit / in children)."""
        if not self.installed:
            return
        for sig in self.signals:
            try:
                signal.signal(sig, signal.SIG_DFL)
            except (OSError, ValueError):
                pass
        try:
            signal.set_wakeup_fd(self._old_wakeup if self._old_wakeup != self._wfd else -1)
        except (ValueError, OSError):
            pass
        for fd in (self._rfd, self._wfd):
            try:
                os.close(fd)
            except OSError:
                pass
        self._rfd = self._wfd = -1
        self._queue.clear()
        self.installed = False

    @contextlib.contextmanager
    def defaults(self, signals: Iterable[int]) -> Iterator[None]:
        """Default dispositions for `signals` inside the block, ours again after it.

        For work that blocks the loop (--preload importing the app): a TERM then stops
        the master as before handlers existed, instead of waiting in the queue.
        """
        sigs = [int(s) for s in signals if int(s) in self.signals]
        for sig in sigs:
            signal.signal(sig, signal.SIG_DFL)
        try:
            yield
        finally:
            if self.installed:
                for sig in sigs:
                    signal.signal(sig, self._handler)
                    signal.siginterrupt(sig, False)

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if len(self._queue) < MAX_QUEUED:
            self._queue.append(signum)

    def drain(self) -> list[int]:
        """Empty the wakeup pipe and return the queued signals, oldest first."""
        if self._rfd >= 0:
            try:
                while os.read(self._rfd, 4096):
                    pass
            except (BlockingIOError, InterruptedError, OSError):
                pass
        out: list[int] = []
        while self._queue:
            out.append(self._queue.popleft())
        return out

    def __len__(self) -> int:
        return len(self._queue)

    def close_in_child(self) -> None:
        """After fork, in the child: defaults back, wakeup fd off, pipe closed."""
        self.uninstall()
        reset_in_child()


# What a forked child resets: every signal the arbiter handles, plus those whose handlers
# a child must not inherit (ABRT: the worker's stack dump; ALRM, WINCH: default).
CHILD_RESET: tuple[int, ...] = tuple(
    getattr(signal, n) for n in ("SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1",
                                 "SIGUSR2", "SIGTTIN", "SIGTTOU", "SIGCHLD", "SIGWINCH",
                                 "SIGABRT", "SIGALRM") if hasattr(signal, n))
# Signals that only mean something to a running worker (or master): ignored until it
# installs its own handlers, since their default action would kill a child that is still
# importing the app (a stray `kill -USR1` to the process group).
IGNORED_UNTIL_READY = frozenset(
    getattr(signal, n) for n in ("SIGUSR1", "SIGUSR2", "SIGHUP", "SIGTTIN", "SIGTTOU", "SIGWINCH")
    if hasattr(signal, n))


def reset_in_child() -> None:
    """The one child signal reset (the arbiter's fork and re-exec paths, workers/boot): a
    forked child must not run the arbiter's handlers. CHILD_RESET back to default (SIGCHLD
    too: a worker that spawns a subprocess must be able to wait for it), except
    IGNORED_UNTIL_READY; wakeup fd off; nothing blocked."""
    try:
        signal.set_wakeup_fd(-1)
    except (ValueError, OSError):
        pass
    for sig in CHILD_RESET:
        try:
            signal.signal(sig, signal.SIG_IGN if sig in IGNORED_UNTIL_READY else signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
