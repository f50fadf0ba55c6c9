"""Arbiter policy: what happens on ready/exit/recycle, reloads (generations), USR2.

`Lifecycle` is the half of the arbiter that decides; `stopping.Stopping` adds the
signal dispatch and the stop primitives (retire, abort, stop_fast), `arbiter.Arbiter`
the loop, spawn and reap. A generation is
every worker forked from one config load; a HUP starts a new generation and the
old one is retired only once every new worker is ready, else it is rolled back.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from reclusterd import masterutil, sockets
from reclusterd.backoff import Backoff
from reclusterd.workerset import State, Stats, Worker, clean_stats

if TYPE_CHECKING:
    from reclusterd.config import Config

log = logging.getLogger("reclusterd.error")


@dataclass
class Pending:
    """A generation being booted by a reload."""

    generation: int
    cfg: Config
    target: int
    started: float


def exit_description(status: int) -> tuple[str, int]:
    """('exited with code 3', 3) or ('killed by SIGKILL', -9)."""
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}", code
    return f"exited with code {code}", code


def keep_restart_only_settings(old: Config, new: Config) -> Config:
    """`new` with the running values of settings a HUP cannot apply (bind, pid, user, TLS...).

    Logged once, naming every such setting that changed, so an operator who edited
    the config file learns that part of it waits for a restart (or USR2).
    """
    from reclusterd import config

    ignored = config.reload_ignored(old, new)
    if not ignored:
        return new
    log.warning("reload: changed settings that need a restart (or USR2) keep their running "
                "values: %s", ", ".join(ignored))
    return replace(new, **{name: getattr(old, name) for name in ignored})


class Lifecycle:
    """Reactions to worker events, the manage step, reload and re-exec."""

    cfg: Config
    argv: list[str]
    environ: dict[str, str]
    pid: int
    workers: dict[int, Worker]
    generation: int
    last_generation: int
    num_workers: int
    backoff: Backoff
    stats: Stats
    stopping: str | None
    ever_ready: bool
    notified_ready: bool
    pidfile: str | None
    reexec_pid: int | None
    listeners: list[sockets.Listener]
    logged_errors: set[str]

    def __init__(self) -> None:
        self.pending: Pending | None = None

    # primitives provided by stopping.Stopping / arbiter.Arbiter
    def spawn(self, generation: int, cfg: Config) -> Worker | None:
        raise NotImplementedError

    def retire(self, w: Worker, reason: str) -> None:
        raise NotImplementedError

    def abort(self, w: Worker, reason: str, why: str) -> None:
        raise NotImplementedError

    def stop_fast(self, code: int | None = None) -> None:
        raise NotImplementedError

    def _signal(self, w: Worker, sig: int) -> None:
        raise NotImplementedError

    def _notify(self, state: str) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------ events

    def _on_message(self, w: Worker, kind: str, payload: object) -> None:
        now = time.monotonic()
        if kind == "hb":
            w.last_hb = now
            w.stats = clean_stats(payload)
        elif kind == "ready":
            if w.state is not State.BOOTING or w.reason is not None:
                return
            w.state = State.READY
            w.ready_at = w.last_hb = now
            log.info("%s ready in %.2fs", w.label, now - w.spawned_at)
            if w.reopen_pending:
                w.reopen_pending = False
                log.info("%s: forwarding the SIGUSR1 that arrived while it booted", w.label)
                self._signal(w, signal.SIGUSR1)
            self.ever_ready = True
            if w.generation == self.generation:
                self.backoff.ready()
        elif kind == "boot_error":
            w.boot_error = str(payload)
        elif kind == "recycle":
            if w.recycle_reason is None:
                w.recycle_reason = str(payload) or "requested"
                log.info("%s asks to be recycled (%s)", w.label, w.recycle_reason)

    def _on_exit(self, w: Worker, status: int) -> None:
        now = time.monotonic()
        what, _code = exit_description(status)
        was_ready = w.ready_at is not None
        extra = f" ({w.reason})" if w.reason else ("" if was_ready else " before ready")
        log.info("%s %s%s after %.1fs", w.label, what, extra, w.age(now))
        w.state = State.EXITED
        self.stats.worker_gone(w)
        if w.reason not in ("shutdown", "scale-down", "rollback", "superseded"):
            reason = w.reason or ("crash" if was_ready else "boot-failure")
            self.stats.restarts[reason] += 1
        if self.stopping is not None:
            return
        if self.pending is not None and w.generation == self.pending.generation:
            if not was_ready and w.reason is None:
                self.rollback(f"{w.label} {what} before it was ready", w.boot_error)
            return
        if w.reason is not None and w.reason not in ("timeout",):
            return  # expected (retired) or already accounted for (boot-timeout)
        if not was_ready and not self.ever_ready and w.generation == self.generation:
            self._fail_first_start(w, f"{what} before it was ready")
            return
        if not was_ready:
            self._log_boot_error(w, what)
        delay = self.backoff.exited(was_ready, 0.0 if w.ready_at is None else now - w.ready_at)
        if delay is not None and w.reason is None:
            log.info("%s failed %s; respawning in %.1fs (backoff cap %gs)", w.label,
                     "before ready" if not was_ready else "soon after ready",
                     self.backoff.wait(), self.backoff.cap)

    def boot_timed_out(self, w: Worker, after: float) -> None:
        """A booting worker missed --boot-timeout."""
        self.abort(w, "boot-timeout", f"not ready after {after:.1f}s "
                   f"(boot timeout {w.cfg.boot_timeout:g}s)")
        if self.pending is not None and w.generation == self.pending.generation:
            self.rollback(f"{w.label} not ready within --boot-timeout {w.cfg.boot_timeout:g}s",
                          None)
        elif not self.ever_ready and w.generation == self.generation:
            self._fail_first_start(w, f"was not ready within --boot-timeout "
                                      f"{w.cfg.boot_timeout:g}s")
        elif w.generation == self.generation:
            delay = self.backoff.failure()
            log.info("respawning in %.1fs (backoff cap %gs)", delay, self.backoff.cap)

    def _fail_first_start(self, w: Worker, what: str) -> None:
        text = w.boot_error
        if text:
            log.error("%s failed to boot (%s); cannot start:\n%s", w.label, what, text.rstrip())
        else:
            log.error("%s %s; cannot start", w.label, what)
        self.stop_fast(1)

    def _log_boot_error(self, w: Worker, what: str) -> None:
        text = w.boot_error
        if not text:
            log.error("%s %s before it was ready", w.label, what)
        elif text in self.logged_errors:
            log.error("%s failed to boot (same error as before: %s)", w.label,
                      text.strip().splitlines()[-1][:200])
        else:
            self.logged_errors.add(text)
            log.error("%s failed to boot:\n%s", w.label, text.rstrip())

    # ------------------------------------------------------------ manage

    def _serving(self) -> list[Worker]:
        """Active workers of the serving generation, not counting one being recycled."""
        return [w for w in self.workers.values()
                if w.generation == self.generation and w.active() and not w.replacing]

    def _missing(self) -> int:
        return self.num_workers - len(self._serving())

    def _manage(self) -> None:
        if self.stopping is not None:
            return
        if self.pending is not None:
            self._check_pending()
        if self.pending is None:
            self._manage_recycle()
        missing = self._missing()
        if missing > 0 and self.backoff.wait() <= 0:
            for _ in range(missing):
                if self.spawn(self.generation, self.cfg) is None:
                    break
        elif missing < 0:
            extra = sorted(self._serving(),
                           key=lambda w: (w.state is State.READY, -w.spawned_at))
            for w in extra[:-missing]:
                self.retire(w, "scale-down")
        self._maybe_notify_ready()

    def _maybe_notify_ready(self) -> None:
        if self.notified_ready or self.pending is not None:
            return
        serving = self._serving()
        if len(serving) >= self.num_workers and all(w.state is State.READY for w in serving):
            self.notified_ready = True
            log.info("all %d workers of generation %d ready", len(serving), self.generation)
            self._notify(f"READY=1\nSTATUS=serving, generation {self.generation}, "
                         f"{len(serving)} workers")

    def _manage_recycle(self) -> None:
        replacing = [w for w in self.workers.values() if w.replacing]
        if replacing:
            ready = [w for w in self._serving() if w.state is State.READY]
            if len(ready) >= self.num_workers:
                for w in replacing:
                    self.retire(w, "recycle")
            return
        asked = [w for w in self._serving()
                 if w.recycle_reason is not None and w.state is State.READY]
        if asked:
            w = min(asked, key=lambda w: w.spawned_at)
            w.replacing = True
            log.info("%s recycling (%s): starting its replacement first", w.label,
                     w.recycle_reason)

    # ------------------------------------------------------------ reload

    def reload(self) -> None:
        """HUP: re-read config, boot a new generation, retire the old once it is all ready."""
        from reclusterd import config

        try:
            new_cfg = config.load(self.argv, self.environ)
        except config.ConfigError as e:
            log.error("reload aborted: configuration error: %s; generation %d keeps serving",
                      e, self.generation)
            return
        problem = masterutil.log_file_problem(new_cfg)
        if problem:
            log.error("reload aborted: %s; generation %d keeps serving", problem,
                      self.generation)
            return
        if getattr(new_cfg, "preload", False):
            log.warning("reload with --preload: workers reuse the app the master loaded at "
                        "start; code changes need a restart (or USR2)")
        new_cfg = keep_restart_only_settings(self.cfg, new_cfg)
        if self.pending is not None:
            self.cancel_reload("superseded by a newer reload")
        self.last_generation += 1
        gen = self.last_generation
        self.pending = Pending(gen, new_cfg, new_cfg.workers, time.monotonic())
        self._notify(f"RELOADING=1\nSTATUS=reloading: booting generation {gen}")
        log.info("reload started: booting generation %d (%d workers); generation %d keeps "
                 "serving", gen, new_cfg.workers, self.generation)
        for _ in range(new_cfg.workers):
            if self.spawn(gen, new_cfg) is None:
                self.rollback("fork failed", None)
                return

    def _pending_workers(self) -> list[Worker]:
        p = self.pending
        return [] if p is None else [w for w in self.workers.values()
                                     if w.generation == p.generation]

    def _check_pending(self) -> None:
        p = self.pending
        assert p is not None
        new = [w for w in self._pending_workers() if w.active()]
        if len(new) < p.target or any(w.state is not State.READY for w in new):
            return
        old = [w for w in self.workers.values() if w.generation != p.generation]
        previous = self.generation
        self.generation = p.generation
        self.cfg = p.cfg
        self.num_workers = p.target
        self.pending = None
        self.backoff.reset()
        self.backoff.set_cap(p.cfg.backoff)
        try:
            from reclusterd import logging as rlogging

            rlogging.setup_logging(p.cfg)
        except Exception:
            log.exception("reload: could not apply log settings")
        for w in old:
            if w.state is not State.DRAINING:
                self.retire(w, "reload")
        log.info("reload completed: generation %d serving with %d workers in %.1fs; "
                 "retiring generation %d", p.generation, p.target,
                 time.monotonic() - p.started, previous)
        self._notify(f"READY=1\nSTATUS=serving, generation {p.generation}, {p.target} workers")

    def rollback(self, why: str, traceback: str | None) -> None:
        """The new generation failed: stop it, the old one keeps serving."""
        p = self.pending
        if p is None:
            return
        self.pending = None
        log.error("reload rolled back: generation %d failed: %s; generation %d keeps serving",
                  p.generation, why, self.generation)
        if traceback:
            log.error("generation %d boot error:\n%s", p.generation, traceback.rstrip())
        self._stop_generation(p.generation, "rollback")
        self._notify(f"READY=1\nSTATUS=reload failed ({why}); generation "
                     f"{self.generation} serving")

    def cancel_reload(self, why: str) -> None:
        p = self.pending
        if p is None:
            return
        self.pending = None
        log.info("reload to generation %d cancelled: %s", p.generation, why)
        self._stop_generation(p.generation, "superseded")

    def _stop_generation(self, gen: int, reason: str) -> None:
        for w in list(self.workers.values()):
            if w.generation == gen and w.state is not State.DRAINING:
                self.retire(w, reason)

    # ------------------------------------------------------------ USR2

    def reexec(self) -> None:
        """USR2: exec a new arbiter on the same listeners; this one runs until TERM."""
        if self.reexec_pid is not None:
            log.warning("USR2 ignored: new master %d is already running", self.reexec_pid)
            return
        env = {k: v for k, v in self.environ.items()
               if k not in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")}
        env.update(sockets.inherit_environ(self.listeners))
        if self.pidfile:
            old = self.pidfile + ".oldbin"
            try:
                os.replace(self.pidfile, old)
                self.pidfile = old
            except OSError as e:
                log.warning("cannot rename pidfile %s: %s", self.pidfile, e)
        args = [sys.executable, "-m", "reclusterd", *self.argv]
        pid = os.fork()
        if pid == 0:
            try:
                self._prepare_exec()
                os.execve(sys.executable, args, env)
            finally:
                os._exit(127)
        self.reexec_pid = pid
        log.info("re-exec: new master %d started (%s); this master keeps running until TERM",
                 pid, " ".join(args[1:]))

    def _prepare_exec(self) -> None:
        """In the forked child before exec: default signal handlers."""
        from reclusterd.signals import reset_in_child

        reset_in_child()

    def _reexec_exited(self, status: int) -> None:
        what, _ = exit_description(status)
        log.error("new master %d %s; this master %d keeps serving", self.reexec_pid, what,
                  self.pid)
        self.reexec_pid = None
        if self.pidfile and self.pidfile.endswith(".oldbin"):
            orig = self.pidfile[: -len(".oldbin")]
            try:
                os.replace(self.pidfile, orig)
                self.pidfile = orig
            except OSError:
                pass
