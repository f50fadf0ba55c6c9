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
import ssl
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

from reclusterd import hooks, tls
from reclusterd.http.response import configure_headers
from reclusterd.logging import lines_dropped
from reclusterd.meter import Meter, heartbeat_interval
from reclusterd.workers.boot import (
    EXIT_BOOT_ERROR,
    EXIT_OK,
    BootError,
    flush_logs,
    install_fault_handler,
    process_hooks,
)
from reclusterd.workers.share import Share

if TYPE_CHECKING:
    from reclusterd.config import Config
    from reclusterd.control import WorkerChannel
    from reclusterd.sockets import Listener

# BootError and the exit codes belong to the contract (a worker class may raise it).
__all__ = ["EXIT_BOOT_ERROR", "EXIT_OK", "BootError", "Worker"]

log = logging.getLogger("reclusterd.error")
ORPHAN_POLL = 0.2   # s between two looks at the parent pid (the watchdog's cost: ~5 syscalls/s)


def _server_context(cfg: Config, speaks_h2: bool) -> ssl.SSLContext | None:
    """The TLS context, once per worker process: the arbiter's, inherited through fork
    (tls caches it), unless a HUP brought renewed certificate files or this worker class
    offers other ALPN protocols (h2) than the arbiter's check used."""
    try:
        return tls.ssl_context(tls.TLSOptions.of(cfg, tls.worker_alpn(cfg.http_protocols,
                                                                      speaks_h2)))
    except tls.TLSError as e:
        raise BootError(str(e)) from None


class Worker:
    """Base worker: lifecycle, signals, accounting. Subclasses implement run().

    Threading notes: counters are plain ints updated under the GIL (a lost
    increment under a race only skews stats); `draining`/`alive` are flags
    read by the serving loop; `wake()` interrupts a selector sleeping on
    `wake_fd` so signals act at once.
    """

    app_kinds: ClassVar[tuple[str, ...]] = ("wsgi", "asgi")
    # Gunicorn's worker.log, for hooks (worker_int(worker): worker.log.info(...)).
    log: ClassVar[logging.Logger] = log
    # Has an HTTP/2 driver: offers h2 by ALPN (and h2c) when --http-protocols says so.
    speaks_h2: ClassVar[bool] = False

    def __init__(self, cfg: Config, listeners: Sequence[Listener], channel: WorkerChannel,
                 app: Any, kind: str) -> None:
        self.cfg = cfg
        self.listeners = list(listeners)
        self.channel = channel
        self.app = app
        self.kind = kind
        self.pid = os.getpid()
        self.ppid = os.getppid()
        self.generation = 0
        self.hooks = process_hooks(cfg)
        self._exited = False
        self.ssl = _server_context(cfg, self.speaks_h2)
        self.alive = True
        self.draining = False
        # Least-connections accepting (workers/share.py): classes that balance join it.
        self.share: Share | None = None
        timeout = float(cfg.timeout or 0)
        self.timeout = timeout
        self.hb_interval = heartbeat_interval(timeout)
        self._next_hb = 0.0
        max_requests = 0
        if cfg.max_requests > 0:
            max_requests = cfg.max_requests + random.randint(0, max(0, cfg.max_requests_jitter))
        self.meter = Meter(
            timeout, max_requests, int(cfg.max_worker_memory) * 1024,
            self.hooks.get("pre_request"), self.hooks.get("post_request"), owner=self)
        self.meter.on_recycle = self.ask_recycle
        self.meter.on_memory = self.over_memory
        # --server-header / --date-header: the response head builder's added headers
        configure_headers(bool(cfg.server_header), bool(cfg.date_header))
        self.meter.on_progress = self.maybe_heartbeat
        self.meter.log_drops = lines_dropped
        self.wake_fd, self._wake_w = os.pipe()
        os.set_blocking(self.wake_fd, False)
        os.set_blocking(self._wake_w, False)
        # Forked by the arbiter: our parent is the master. Orphans must not keep the port.
        self.master_pid = os.getppid()
        threading.Thread(target=self._watch_master, name="reclusterd-orphan-watchdog",
                         daemon=True).start()

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
            if self.share is not None:
                self.share.leave()
            log.info("worker %d draining", self.pid)
            self.on_drain()
        self.wake()

    def on_drain(self) -> None:
        """Hook for worker classes: responses from now on say Connection: close."""

    def handle_quit(self, signum: int, frame: object) -> None:
        self.alive = False
        hooks.call(self.hooks, "worker_int", self)
        self.exit_now(EXIT_OK)

    def handle_abrt(self, signum: int, frame: object) -> None:
        # The stacks were already written by faulthandler (C level) before we got here.
        log.error("worker %d aborted (SIGABRT), stacks dumped above", self.pid)
        self.alive = False
        hooks.call(self.hooks, "worker_abort", self)
        self.exit_now(1)

    @property
    def age(self) -> int:
        """Gunicorn's worker.age (its spawn counter); here, as in the arbiter's hook
        views, the generation."""
        return self.generation

    def exiting(self) -> None:
        """The worker_exit(server, worker) hook, once, as the process leaves: in the
        worker, as Gunicorn calls it; `server` is a hooks.ServerView of the arbiter."""
        if not self._exited:
            self._exited = True
            hooks.call(self.hooks, "worker_exit",
                       hooks.ServerView(self.cfg, log, self.ppid), self)

    def exit_now(self, code: int) -> NoReturn:
        """Leave the process at once (from a signal handler): worker_exit, flush, _exit."""
        self.exiting()
        flush_logs()
        os._exit(code)

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

    def ask_recycle(self, reason: str) -> None:
        """The meter wants a replacement (the arbiter boots it, then retires us)."""
        self.channel.recycle(reason)

    def over_memory(self) -> None:
        """Memory hook (Meter.on_memory): RSS passed --max-worker-memory, seen on the
        serving thread/loop (a pool thread, maybe), before the replacement is asked for:
        every further request would grow it further (issue 14: a 5 MB-a-request leak
        reached 7-9x the limit). Drain as on TERM, now: in-flight requests finish,
        responses say Connection: close, the listeners go; the drivers answer 503 to
        requests that have not reached the app (Meter.memory.over). A class whose drain
        closes the listeners later (on another thread) closes them here too. Not a
        self-sent TERM: that would wait for the main thread to get the GIL while the pool
        keeps serving."""
        self.begin_drain()

    # -- the master is gone ------------------------------------------------------
    def _watch_master(self) -> None:
        """Daemon thread: notice the master's death (we are reparented) and leave.

        Without it a worker whose master was SIGKILLed keeps the listening socket (new
        clients hang in its backlog, a restart fails with EADDRINUSE) for as long as its
        app runs. Whatever the app does (even a blocking call inside `async def`), the
        listeners are released at once and the process exits within --graceful-timeout.
        """
        while os.getppid() == self.master_pid:
            time.sleep(ORPHAN_POLL)
        grace = max(0.0, float(self.cfg.graceful_timeout))
        deadline = time.monotonic() + grace
        log.warning("worker %d: master %d is gone; closing the listeners, draining, "
                    "exiting within %gs (--graceful-timeout)", self.pid, self.master_pid,
                    grace)
        try:
            os.kill(self.pid, signal.SIGTERM)   # the usual drain, on the thread that serves
        except OSError:
            pass
        self.release_listeners()
        time.sleep(max(0.0, deadline - time.monotonic()))
        log.warning("worker %d: orphaned and still running after %gs; exiting now",
                    self.pid, grace)
        flush_logs()
        os._exit(EXIT_OK)

    def release_listeners(self) -> None:
        """Drop this process's hold on the listening sockets now, from any thread.

        Each fd is replaced by /dev/null with dup2 instead of closed: the fd number stays
        taken (no other thread can get it back from open/accept while an event loop or
        epoll set still knows it) and accept() on it fails instead of blocking.
        """
        try:
            null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return
        try:
            for lst in self.listeners:
                try:
                    fd = lst.sock.fileno()
                    if fd >= 0:
                        os.dup2(null, fd, inheritable=False)
                except OSError:
                    pass
        finally:
            os.close(null)

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
