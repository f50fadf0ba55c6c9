"""The plug-in contract: `Worker`, the base of every worker class (built in or a
`module:Class` plug-in). A subclass implements `run()`; the base gives it the
lifecycle (signals, drain state, wake-ups), heartbeats and a `Meter` (request
accounting, recycling, hooks) for the protocol layers. The helpers here are
written so that the thread and the asyncio workers use them from their hot
paths without measurable cost. Child start (before a worker class runs) is
`workers/boot.py`.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from reclusterd.http.response import configure_headers
from reclusterd.meter import Meter
from reclusterd.workers.boot import (
    EXIT_BOOT_ERROR,
    EXIT_OK,
    BootError,
    flush_logs,
    import_object,
    install_fault_handler,
    run_worker,
)

if TYPE_CHECKING:
    from reclusterd.config import Config
    from reclusterd.control import WorkerChannel
    from reclusterd.sockets import Listener

# BootError and the exit codes belong to the contract (a worker class may raise it);
# run_worker stays importable from here until arbiter.py imports it from workers.boot.
__all__ = ["EXIT_BOOT_ERROR", "EXIT_OK", "BootError", "Worker", "run_worker"]

log = logging.getLogger("reclusterd.error")


class Worker:
    """Base worker: lifecycle, signals, accounting. Subclasses implement run().

    Threading notes: counters are plain ints updated under the GIL (a lost
    increment under a race only skews stats); `draining`/`alive` are flags
    read by the serving loop; `wake()` interrupts a selector sleeping on
    `wake_fd` so signals act at once.
    """

    app_kinds: ClassVar[tuple[str, ...]] = ("wsgi", "asgi")

    def __init__(self, cfg: Config, listeners: Sequence[Listener], channel: WorkerChannel,
                 app: Any, kind: str) -> None:
        self.cfg = cfg
        self.listeners = list(listeners)
        self.channel = channel
        self.app = app
        self.kind = kind
        self.pid = os.getpid()
        self.generation = 0
        self.alive = True
        self.draining = False
        timeout = float(cfg.timeout or 0)
        self.timeout = timeout
        self.hb_interval = min(1.0, timeout / 4) if timeout > 0 else 1.0
        self._next_hb = 0.0
        max_requests = 0
        if cfg.max_requests > 0:
            max_requests = cfg.max_requests + random.randint(0, max(0, cfg.max_requests_jitter))
        self.meter = Meter(
            timeout, max_requests, int(cfg.max_worker_memory) * 1024,
            import_object(cfg.pre_request, "pre_request hook") if cfg.pre_request else None,
            import_object(cfg.post_request, "post_request hook") if cfg.post_request else None,
            owner=self)
        self.meter.on_recycle = channel.recycle
        # --server-header / --date-header: the response head builder's added headers
        configure_headers(bool(cfg.server_header), bool(cfg.date_header))
        self.meter.on_progress = self.maybe_heartbeat
        self.wake_fd, self._wake_w = os.pipe()
        os.set_blocking(self.wake_fd, False)
        os.set_blocking(self._wake_w, False)

    # -- lifecycle ---------------------------------------------------------
    def run(self) -> None:
        """Serve until stopped; subclasses call install_signals() and channel.ready()."""
        raise NotImplementedError

    def install_signals(self) -> None:
        """TERM drain, QUIT/INT exit now, ABRT stack dump + exit, USR1 reopen logs."""
        signal.signal(signal.SIGTERM, self.handle_term)
        signal.signal(signal.SIGQUIT, self.handle_quit)
        signal.signal(signal.SIGINT, self.handle_quit)
        signal.signal(signal.SIGUSR1, self.handle_usr1)
        for name in ("SIGHUP", "SIGTTIN", "SIGTTOU", "SIGWINCH", "SIGUSR2"):
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), signal.SIG_IGN)
        install_fault_handler(self.cfg.error_logfile, self.handle_abrt)

    def handle_term(self, signum: int, frame: object) -> None:
        self.begin_drain()

    def begin_drain(self) -> None:
        """Stop accepting, finish in-flight requests, then leave run()."""
        if not self.draining:
            self.draining = True
            log.info("worker %d draining", self.pid)
            self.on_drain()
        self.wake()

    def on_drain(self) -> None:
        """Hook for worker classes: responses from now on say Connection: close."""

    def handle_quit(self, signum: int, frame: object) -> None:
        self.alive = False
        flush_logs()
        os._exit(EXIT_OK)

    def handle_abrt(self, signum: int, frame: object) -> None:
        # The stacks were already written by faulthandler (C level) before we got here.
        log.error("worker %d aborted (SIGABRT), stacks dumped above", self.pid)
        self.alive = False
        flush_logs()
        os._exit(1)

    def handle_usr1(self, signum: int, frame: object) -> None:
        from reclusterd.logging import reopen_logs
        reopen_logs()
        install_fault_handler(self.cfg.error_logfile, self.handle_abrt)

    def wake(self) -> None:
        """Interrupt a selector that watches wake_fd (signal handlers, other threads)."""
        try:
            os.write(self._wake_w, b"\0")
        except OSError:
            pass

    def clear_wake(self) -> None:
        try:
            while os.read(self.wake_fd, 512):
                pass
        except OSError:
            pass

    # -- heartbeats ------------------------------------------------------------
    def maybe_heartbeat(self, now: float | None = None) -> None:
        """Call often from the serving loop; sends at most every hb_interval, never when stuck."""
        if now is None:
            now = time.monotonic()
        if now < self._next_hb:
            return
        self._next_hb = now + self.hb_interval
        if self.meter.stuck(now):
            return
        self.channel.heartbeat(self.meter.stats())

    def final_heartbeat(self) -> None:
        """One last beat when leaving run(), so counts since the previous one are not lost."""
        self.channel.heartbeat(self.meter.stats())
