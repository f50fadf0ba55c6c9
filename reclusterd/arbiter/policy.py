"""What the arbiter does about its workers: ready, exit, timeout, scale, recycle, reload.

Pure decisions: no os calls, no clock reads. Every entry point takes `now`
(monotonic seconds), side effects go through `Effects` (the loop forks and
signals; unit tests fake it), and the respawn delay comes from an injected
`Backoff`. The loop feeds events in (`on_message`, `exited`, signals) and calls
`check_timers` + `manage` once per turn; `next_deadline` says when to wake up.
"""

from __future__ import annotations

import logging
import signal
from typing import TYPE_CHECKING

from reclusterd.arbiter import scaling
from reclusterd.arbiter.effects import Effects
from reclusterd.arbiter.rollout import Pending, Rollout
from reclusterd.arbiter.stop import Stopper
from reclusterd.arbiter.table import State, Stats, Table, Worker, clean_stats, plural, snapshot
from reclusterd.backoff import Backoff

if TYPE_CHECKING:
    from reclusterd.config import Config

log = logging.getLogger("reclusterd.error")

# Reasons for which a worker's exit is expected and is no restart.
EXPECTED_EXITS = frozenset({"shutdown", "scale-down", "rollback", "superseded"})
# Signals that come from outside (the OOM killer, an operator, a container runtime): a
# worker killed by one before it was ready says nothing about the app's ability to boot.
# A crash (SIGSEGV, SIGABRT...) does.
EXTERNAL_SIGNALS = frozenset({signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT,
                              signal.SIGHUP})
# ...unless it keeps happening: this many such deaths in a row with no worker ever
# ready is a failed first start after all (a memory limit below what the app needs).
MAX_KILLED_BEFORE_READY = 3


class Policy:
    """The arbiter's state and decisions; `effects` carries them out."""

    def __init__(self, cfg: Config, effects: Effects, backoff: Backoff, now: float) -> None:
        self.cfg = cfg
        self.effects = effects
        self.backoff = backoff
        self.table = Table()
        self.stats = Stats()
        self.stopper = Stopper(self.table, effects)
        self.rollout = Rollout(self.table, self.stopper, effects)
        self.generation = 1
        self.last_generation = 1
        self.target = cfg.workers
        self.stopping: str | None = None          # None | "graceful" | "fast"
        self.drain_at: float | None = None        # graceful: when to start draining
        self.exit_code = 0
        self.ever_ready = False
        self.notified_ready = False
        self.status_line = ""                     # the last STATUS= sent while serving
        self.unready_since: float | None = now    # no worker ready since then (/livez)
        self.live_reported = True                  # what the log last said of /livez
        self.logged_errors: set[str] = set()
        self.killed_before_ready = 0              # in a row, by EXTERNAL_SIGNALS

    # ------------------------------------------------------------ workers come and go

    def spawn(self, generation: int, cfg: Config, now: float) -> Worker | None:
        """Ask for one worker of `generation`; a failed fork counts as a boot failure."""
        pid = self.effects.spawn(generation, cfg)
        if pid is None:
            self.backoff.failure()
            return None
        w = Worker(pid=pid, generation=generation, cfg=cfg, spawned_at=now, last_hb=now)
        self.table.add(w)
        log.info("%s booting", w.label)
        return w

    def on_message(self, w: Worker, kind: str, payload: object, now: float) -> None:
        """A control message from a worker (control.py: hb, ready, boot_error, recycle)."""
        if kind == "hb":
            w.last_hb = now
            w.stats = clean_stats(payload)
            if w.stats.get("requests", 0) > 0:
                self._ready(w, now)   # it answered a request: it was ready (message lost)
            scaling.judge_memory(w, self.stopper, now)
        elif kind == "ready":
            self._ready(w, now, str(payload or ""))
        elif kind == "boot_error":
            w.boot_error = str(payload)
        elif kind == "recycle" and w.recycle_reason is None:
            w.recycle_reason = str(payload) or "requested"
            log.info("%s asks to be recycled (%s)", w.label, w.recycle_reason)
            if w.recycle_reason == scaling.MEMORY and w.reason is None:
                scaling.start_replacing(w)   # it stopped taking requests: replace it now

    def _ready(self, w: Worker, now: float, note: str = "") -> None:
        if w.state is not State.BOOTING or w.reason is not None:
            return
        w.state = State.READY
        w.ready_at = w.last_hb = now
        log.info("%s ready in %.2fs%s", w.label, now - w.spawned_at,
                 f" ({note})" if note else "")
        if w.reopen_pending:
            w.reopen_pending = False
            log.info("%s: forwarding the SIGUSR1 that arrived while it booted", w.label)
            self.effects.send(w.pid, signal.SIGUSR1)
        self.ever_ready = True
        self.unready_since = None
        if w.generation == self.generation:
            self.backoff.ready()

    def exited(self, pid: int, what: str, now: float,
               signum: int | None = None) -> Worker | None:
        """A child was reaped (`what`: "exited with code 3"; `signum`: the signal that
        killed it, if one did); None if it was no worker."""
        w = self.table.pop(pid)
        if w is None:
            return None
        was_ready = w.ready_at is not None
        killed = (not was_ready and w.reason is None and not w.boot_error
                  and signum in EXTERNAL_SIGNALS)
        if killed:
            self.killed_before_ready += 1
        elif was_ready:
            self.killed_before_ready = 0
        if w.reason is None and w.recycle_reason == scaling.MEMORY and signum is None:
            w.reason = "recycle"    # it drained itself (over the limit): expected
        extra = f" ({w.reason})" if w.reason else ("" if was_ready else " before ready")
        log.info("%s %s%s after %.1fs", w.label, what, extra, w.age(now))
        w.state = State.EXITED
        self.stats.worker_gone(w)
        if w.reason not in EXPECTED_EXITS:
            self.stats.restarts[w.reason or ("crash" if was_ready else "boot-failure")] += 1
        if self.stopping is not None:
            return w
        if self.rollout.owns(w):
            if killed and self.killed_before_ready < MAX_KILLED_BEFORE_READY:
                log.warning("%s %s before it was ready (not a boot failure); replacing it",
                            w.label, what)
                return w    # manage() spawns its replacement for the pending generation
            if not was_ready and w.reason is None:
                self.rollout.rollback(f"{w.label} {what} before it was ready", w.boot_error,
                                      self.generation, now)
            return w
        if w.reason is not None and w.reason != "timeout":
            return w  # expected (retired) or already accounted for (boot-timeout)
        if killed and self.killed_before_ready < MAX_KILLED_BEFORE_READY:
            log.warning("%s %s before it was ready: killed from outside, not a boot "
                        "failure; respawning", w.label, what)
            self.backoff.failure()
            return w
        if not was_ready and not self.ever_ready and w.generation == self.generation:
            self._fail_first_start(w, f"{what} before it was ready", now)
            return w
        if not was_ready:
            self._log_boot_error(w, what)
        ready_for = 0.0 if w.ready_at is None else now - w.ready_at
        if self.backoff.exited(was_ready, ready_for) is not None and w.reason is None:
            log.info("%s failed %s; respawning in %.1fs (backoff cap %gs)", w.label,
                     "before ready" if not was_ready else "soon after ready",
                     self.backoff.wait(), self.backoff.cap)
        return w

    def _fail_first_start(self, w: Worker, what: str, now: float) -> None:
        if w.boot_error:
            log.error("%s failed to boot (%s); cannot start:\n%s", w.label, what,
                      w.boot_error.rstrip())
        else:
            log.error("%s %s; cannot start", w.label, what)
        self.stop_fast(now, 1)

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

    # ------------------------------------------------------------ timers

    def check_timers(self, now: float) -> None:
        """SIGKILLs due, boot timeouts, silent workers, the delayed drain of a TERM."""
        if self.drain_at is not None and now >= self.drain_at:
            self.begin_drain(now)
        self.stopper.escalate(now)
        for w in self.table:
            if w.reason is not None:
                continue
            if w.state is State.BOOTING and now - w.spawned_at >= w.cfg.boot_timeout:
                self._boot_timed_out(w, now)
            elif w.state is State.READY and w.cfg.timeout > 0:
                silent = now - w.last_hb
                if silent >= w.cfg.timeout:
                    self.stopper.abort(w, "timeout", f"silent for {silent:.1f}s "
                                       f"(timeout {w.cfg.timeout:g}s)", now)

    def resumed(self, gap: float, now: float) -> None:
        """The master was not running for about `gap` s (SIGSTOP, a frozen container, CPU
        starvation): what it could not watch is not the workers' fault. Ready workers get
        a fresh --timeout from now, booting ones their --boot-timeout shifted by the gap."""
        log.warning("master was not running for %.1fs (stopped, frozen or starved of CPU); "
                    "worker timeouts restart from now", gap)
        for w in self.table:
            if w.reason is not None:
                continue
            if w.state is State.READY:
                w.last_hb = max(w.last_hb, now)
            elif w.state is State.BOOTING:
                w.spawned_at += gap

    def _boot_timed_out(self, w: Worker, now: float) -> None:
        limit = f"{w.cfg.boot_timeout:g}s"
        self.stopper.abort(w, "boot-timeout", f"not ready after {now - w.spawned_at:.1f}s "
                           f"(boot timeout {limit})", now)
        if self.rollout.owns(w):
            self.rollout.rollback(f"{w.label} not ready within --boot-timeout {limit}", None,
                                  self.generation, now)
        elif not self.ever_ready and w.generation == self.generation:
            self._fail_first_start(w, f"was not ready within --boot-timeout {limit}", now)
        elif w.generation == self.generation:
            delay = self.backoff.failure()
            log.info("respawning in %.1fs (backoff cap %gs)", delay, self.backoff.cap)

    def next_deadline(self, now: float) -> float | None:
        """The earliest time `check_timers`/`manage` have something to do, if any."""
        deadlines: list[float] = []
        for w in self.table:
            if w.kill_at is not None:
                deadlines.append(w.kill_at)
            elif w.reason is None and w.state is State.BOOTING:
                deadlines.append(w.spawned_at + w.cfg.boot_timeout)
            elif w.reason is None and w.state is State.READY and w.cfg.timeout > 0:
                deadlines.append(w.last_hb + w.cfg.timeout)
        if self.drain_at is not None:
            deadlines.append(self.drain_at)
        if self.stopping is None and self.missing() > 0:
            deadlines.append(now + self.backoff.wait())
        return min(deadlines, default=None)

    # ------------------------------------------------------------ manage

    def missing(self) -> int:
        """Workers to spawn (negative: to retire) for the serving generation."""
        return self.target - len(self.table.serving(self.generation))

    def manage(self, now: float) -> None:
        """Once per loop turn: promote a ready reload, recycle, spawn/retire to the target."""
        if self.stopping is not None:
            return
        promoted = self.rollout.ready()
        if promoted is not None:
            self._promote(promoted, now)
        p = self.rollout.pending
        if p is None:
            scaling.recycle_one(self.table, self.stopper, self.generation, self.target, now)
        else:
            self._fit(p.generation, p.cfg, p.target, now)   # TTIN/TTOU during a reload
        if self.backoff.wait() <= 0 or self.missing() < 0:
            self._fit(self.generation, self.cfg, self.target, now)
        if self.table.ready_count() > 0:
            self.unready_since = None
        elif self.unready_since is None:
            self.unready_since = now
        self._report_live(now)
        self._report()

    def _report_live(self, now: float) -> None:
        """One line when /livez turns failing or healthy (an orchestrator restarts on it)."""
        live = self.live(now)
        if live == self.live_reported:
            return
        self.live_reported = live
        if live:
            log.info("/livez healthy again: a worker is ready")
        else:
            log.warning("/livez failing: no worker ready for over %gs (--boot-timeout)",
                        self.cfg.boot_timeout)

    def _fit(self, gen: int, cfg: Config, target: int, now: float) -> None:
        scaling.fit(self.table, self.stopper, lambda: self.spawn(gen, cfg, now) is not None,
                    gen, target, now)

    def _report(self) -> None:
        """READY=1 once the first generation is all ready; STATUS= on every count change."""
        if self.rollout.pending is not None:
            return
        serving = self.table.serving(self.generation)
        ready = sum(1 for w in serving if w.state is State.READY)
        status = self._status_text(ready)
        if not self.notified_ready:
            if ready < self.target or len(serving) != ready:
                return
            self.notified_ready = True
            log.info("generation %d ready: %s serving", self.generation,
                     plural(ready, "worker"))
            self.effects.notify(f"READY=1\nSTATUS={status}")
        elif status != self.status_line:
            self.effects.notify(f"STATUS={status}")
        self.status_line = status

    def _status_text(self, ready: int) -> str:
        return (f"serving, generation {self.generation}, {ready} of "
                f"{plural(self.target, 'worker')} ready")

    # ------------------------------------------------------------ signals

    def scale(self, delta: int) -> int:
        """TTIN (+1) / TTOU (-1); never below one worker. Returns the previous target."""
        old = self.set_workers(self.target + delta)
        if self.target == old:   # at a bound: say so, nothing changes
            if delta < 0:
                log.info("TTOU ignored: already at the minimum of 1 worker")
            else:
                log.warning("TTIN ignored: already at the maximum of %d workers",
                            scaling.MAX_WORKERS)
        return old

    def set_workers(self, n: int) -> int:
        """`ctl workers N`: the target, exactly (at least one); a reload in flight follows
        by the same difference. Returns the previous target."""
        old = self.target
        self.target = min(max(1, n), scaling.MAX_WORKERS)
        p = self.rollout.pending
        if p is not None:
            p.target = max(1, p.target + self.target - old)
        if self.target != old:
            log.info("scaling %s to %s", "up" if self.target > old else "down",
                     plural(self.target, "worker"))
        return old

    def reload(self, new_cfg: Config, now: float) -> None:
        """HUP with a config that loaded: boot a new generation beside the serving one."""
        self.last_generation += 1
        p = Pending(self.last_generation, new_cfg, new_cfg.workers, now)
        self.rollout.begin(p, self.spawn, self.generation, now)

    def _promote(self, p: Pending, now: float) -> None:
        previous = self.generation
        self.generation = p.generation
        self.cfg = p.cfg
        self.target = p.target
        self.backoff.reset()
        self.backoff.set_cap(p.cfg.backoff)
        self.effects.apply_logging(p.cfg)
        for w in self.table:
            if w.generation != p.generation and w.state is not State.DRAINING:
                self.stopper.retire(w, "reload", now)
        log.info("reload completed: generation %d serving with %s in %.1fs; "
                 "retiring generation %d", p.generation, plural(p.target, "worker"),
                 now - p.started, previous)
        self.status_line = self._status_text(p.target)
        self.effects.notify(f"READY=1\nSTATUS={self.status_line}")

    def forward_usr1(self) -> None:
        """Reopen logs in the workers: now in ready ones, on ready in booting ones.

        A booting worker has not installed its USR1 handler yet (the default
        disposition terminates it), and it opened its logs after the fork anyway.
        A worker that has been ready installed its handlers before saying so.
        """
        for w in self.table:
            if w.ready_at is not None:
                self.effects.send(w.pid, signal.SIGUSR1)
            elif w.state is State.BOOTING and w.reason is None:
                w.reopen_pending = True

    # ------------------------------------------------------------ stopping

    def stop_graceful(self, now: float) -> None:
        """TERM: report not ready, wait --shutdown-delay, then drain every worker."""
        if self.stopping is not None:
            return
        self.stopping = "graceful"
        self.rollout.cancel("shutting down", now)
        self.effects.notify("STOPPING=1\nSTATUS=shutting down")
        delay = max(0.0, self.cfg.shutdown_delay)
        grace = self.cfg.graceful_timeout
        if delay > 0:
            log.info("graceful shutdown: reporting not ready for %gs (--shutdown-delay), "
                     "then draining; requests in flight get %gs to finish", delay, grace)
        else:
            log.info("graceful shutdown: draining now; requests in flight get %gs to "
                     "finish (--graceful-timeout)", grace)
        self.drain_at = now + delay
        if delay <= 0:
            self.begin_drain(now)

    def begin_drain(self, now: float) -> None:
        """Close the listeners and retire every worker."""
        self.drain_at = None
        self.effects.close_listeners()
        self.stopper.retire_all("shutdown", now)

    def stop_fast(self, now: float, code: int | None = None) -> None:
        """INT/QUIT (or a failed first start): workers exit at once, SIGKILL after ~1 s."""
        if code is not None:
            self.exit_code = code
        if self.stopping == "fast":
            return
        if self.stopping is None:
            self.effects.notify("STOPPING=1\nSTATUS=stopping")
        self.stopping = "fast"
        self.drain_at = None
        self.rollout.cancel("stopping", now)
        self.effects.close_listeners()
        self.stopper.fast(now)

    def finished(self) -> bool:
        """Stopping, drained, and every worker reaped: the loop may exit."""
        return self.stopping is not None and self.drain_at is None and not len(self.table)

    # ------------------------------------------------------------ status

    def live(self, now: float) -> bool:
        """/livez: some worker was ready within the last --boot-timeout (or shutting down)."""
        if self.stopping is not None or self.unready_since is None:
            return True
        return now - self.unready_since <= self.cfg.boot_timeout

    def snapshot(self, now: float, pid: int) -> dict[str, object]:
        """Cluster state for the status server (see table.snapshot)."""
        p = self.rollout.pending
        return snapshot(list(self.table), self.stats, now, pid=pid, generation=self.generation,
                        pending=p.generation if p else None, target=self.target,
                        stopping=self.stopping is not None or self.drain_at is not None,
                        live=self.live(now))
