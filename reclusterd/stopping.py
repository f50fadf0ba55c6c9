"""The arbiter's signal dispatch and the ways it stops things: TERM/INT/QUIT, retire, abort.

Split from arbiter.py so the loop file stays about the loop. `Stopping` sits between
`generations.Lifecycle` (policy) and `arbiter.Arbiter` (loop, spawn, reap); signals
arrive here already dequeued from the master loop, never in a signal handler.
"""

from __future__ import annotations

import logging
import os
import signal
import time

from reclusterd import sockets
from reclusterd.generations import Lifecycle
from reclusterd.signals import signame
from reclusterd.workerset import State, Worker

log = logging.getLogger("reclusterd.error")

FAST_KILL_AFTER = 1.0      # QUIT/INT: SIGKILL stragglers after this long
ABORT_KILL_AFTER = 2.0     # timeouts: SIGKILL this long after SIGABRT (stack dump)


class Stopping(Lifecycle):
    """Signals to the master, graceful/fast shutdown, and stopping single workers."""

    drain_at: float | None
    exit_code: int

    # ------------------------------------------------------------ signals

    def _on_signal(self, sig: int) -> None:
        if sig == signal.SIGCHLD:
            return  # reaped every tick
        if sig != signal.SIGUSR1:
            log.info("master %d got %s", self.pid, signame(sig))
        if sig == signal.SIGTERM:
            self.stop_graceful()
        elif sig in (signal.SIGINT, signal.SIGQUIT):
            self.stop_fast()
        elif self.stopping is not None:
            return
        elif sig == signal.SIGHUP:
            self.reload()
        elif sig == signal.SIGTTIN:
            self.num_workers += 1
            log.info("scaling up to %d workers", self.num_workers)
        elif sig == signal.SIGTTOU:
            if self.num_workers > 1:
                self.num_workers -= 1
            log.info("scaling down to %d workers", self.num_workers)
        elif sig == signal.SIGUSR1:
            from reclusterd import logging as rlogging

            rlogging.reopen_logs()
            log.info("master %d got SIGUSR1: log files reopened", self.pid)
            self.forward_usr1()
        elif sig == signal.SIGUSR2:
            self.reexec()

    def forward_usr1(self) -> None:
        """Reopen logs in the workers: now in ready ones, on ready in booting ones.

        A booting worker has not installed its USR1 handler yet (the default
        disposition terminates it), and it opened its logs after the fork anyway.
        A worker that has been ready installed its handlers before saying so.
        """
        for w in list(self.workers.values()):
            if w.ready_at is not None:
                self._signal(w, signal.SIGUSR1)
            elif w.state is State.BOOTING and w.reason is None:
                w.reopen_pending = True

    def stop_graceful(self) -> None:
        """TERM: report not ready, wait --shutdown-delay, then drain every worker."""
        if self.stopping is not None:
            return
        self.stopping = "graceful"
        self.cancel_reload("shutting down")
        self._notify("STOPPING=1\nSTATUS=shutting down")
        delay = max(0.0, float(getattr(self.cfg, "shutdown_delay", 0.0) or 0.0))
        log.info("graceful shutdown: draining in %.1fs, graceful timeout %.1fs",
                 delay, self.cfg.graceful_timeout)
        self.drain_at = time.monotonic() + delay
        if delay <= 0:
            self._begin_drain()

    def _begin_drain(self) -> None:
        self.drain_at = None
        self._close_listeners()
        for w in list(self.workers.values()):
            if w.state is not State.DRAINING:
                self.retire(w, "shutdown")

    def stop_fast(self, code: int | None = None) -> None:
        """INT/QUIT (or a failed first start): workers exit at once, SIGKILL after ~1 s."""
        if code is not None:
            self.exit_code = code
        if self.stopping == "fast":
            return
        if self.stopping is None:
            self._notify("STOPPING=1\nSTATUS=stopping")
        self.stopping = "fast"
        self.drain_at = None
        self.cancel_reload("stopping")
        self._close_listeners()
        now = time.monotonic()
        for w in list(self.workers.values()):
            if w.reason in ("timeout", "boot-timeout") and w.kill_at is not None:
                continue  # let it dump its stack first
            w.reason = w.reason or "shutdown"
            w.state = State.DRAINING
            # A worker that never was ready may not have its QUIT handler yet, and QUIT's
            # default action dumps core: kill it outright, nothing of it is serving.
            self._signal(w, signal.SIGQUIT if w.ready_at is not None else signal.SIGKILL)
            w.kill_at = min(w.kill_at or now + FAST_KILL_AFTER, now + FAST_KILL_AFTER)

    def _close_listeners(self) -> None:
        if self.listeners:
            sockets.close_listeners(self.listeners, unlink=self.reexec_pid is None)
            self.listeners = []

    # ------------------------------------------------------------ stopping workers

    def _signal(self, w: Worker, sig: int) -> None:
        try:
            os.kill(w.pid, sig)
        except ProcessLookupError:
            pass

    def retire(self, w: Worker, reason: str) -> None:
        """Graceful stop of one worker (TERM, SIGKILL after its graceful timeout)."""
        now = time.monotonic()
        w.reason = w.reason or reason
        w.replacing = False
        # TERM even while booting: a worker installs its TERM handler before it accepts, so
        # one that is still importing dies of the default action, and one that is already
        # serving (its "ready" not read yet) drains instead of dropping requests.
        self._signal(w, signal.SIGTERM)
        w.state = State.DRAINING
        w.stop_signal_at = now
        w.kill_at = now + w.cfg.graceful_timeout
        log.info("%s retiring (%s)", w.label, reason)

    def abort(self, w: Worker, reason: str, why: str) -> None:
        """Timeout: SIGABRT (the worker dumps its stacks), SIGKILL ~2 s later."""
        now = time.monotonic()
        log.error("%s %s: sending SIGABRT (stack dump follows), SIGKILL in 2s", w.label, why)
        w.reason = reason
        w.state = State.DRAINING
        w.replacing = False
        w.stop_signal_at = now
        w.kill_at = now + ABORT_KILL_AFTER
        self._signal(w, signal.SIGABRT)
