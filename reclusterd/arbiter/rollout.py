"""HUP reload: a new generation boots beside the old one, health-gated, else rolled back.

A generation is every worker forked from one config load. The old generation is
retired only once every worker of the new one is ready; a new worker that exits
before ready, or misses --boot-timeout, rolls the reload back (the new generation
is stopped, the old keeps serving). `load_config` is the part that reads files;
`Rollout` is pure (time passed in, effects through `Effects`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from reclusterd import config
from reclusterd.arbiter.effects import Effects
from reclusterd.arbiter.process import log_file_problem
from reclusterd.arbiter.stop import Stopper
from reclusterd.arbiter.table import State, Table, Worker, plural

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


def keep_restart_only_settings(old: Config, new: Config) -> Config:
    """`new` with the running values of settings a HUP cannot apply (bind, pid, user, TLS...).

    Logged once, naming every such setting that changed, so an operator who edited
    the config file learns that part of it waits for a restart (or USR2).
    """
    ignored = config.reload_ignored(old, new)
    if not ignored:
        return new
    log.warning("reload: changed settings that need a restart (or USR2) keep their running "
                "values: %s", ", ".join(ignored))
    return replace(new, **{name: getattr(old, name) for name in ignored})


def load_config(argv: Sequence[str], environ: Mapping[str, str], old: Config,
                generation: int) -> Config | None:
    """Re-read the configuration for a HUP; None (error logged) aborts the reload."""
    try:
        new_cfg = config.load(argv, environ)
    except config.ConfigError as e:
        log.error("reload aborted: configuration error: %s; generation %d keeps serving",
                  e, generation)
        return None
    problem = log_file_problem(new_cfg)
    if problem:
        log.error("reload aborted: %s; generation %d keeps serving", problem, generation)
        return None
    if new_cfg.preload:
        log.warning("reload with --preload: workers reuse the app the master loaded at "
                    "start; code changes need a restart (or USR2)")
    return keep_restart_only_settings(old, new_cfg)


class Rollout:
    """At most one reload in flight: boot it, promote it when all ready, or roll it back."""

    def __init__(self, table: Table, stopper: Stopper, effects: Effects) -> None:
        self.table = table
        self.stopper = stopper
        self.effects = effects
        self.pending: Pending | None = None

    def owns(self, w: Worker) -> bool:
        """Is `w` a worker of the generation being rolled out?"""
        return self.pending is not None and w.generation == self.pending.generation

    def begin(self, p: Pending, spawn: Callable[[int, Config, float], Worker | None],
               serving: int, now: float) -> None:
        """Boot every worker of `p` (cancelling an older pending reload first)."""
        self.cancel("superseded by a newer reload", now)
        self.pending = p
        self.effects.notify(f"RELOADING=1\nSTATUS=reloading: booting generation {p.generation}")
        log.info("reload started: booting generation %d (%s); generation %d keeps "
                 "serving", p.generation, plural(p.target, "worker"), serving)
        for _ in range(p.target):
            if spawn(p.generation, p.cfg, now) is None:
                self.rollback("fork failed", None, serving, now)
                return

    def ready(self) -> Pending | None:
        """The pending generation, taken out, once every one of its workers is ready."""
        p = self.pending
        if p is None:
            return None
        new = [w for w in self.table.of_generation(p.generation) if w.active()]
        if len(new) < p.target or any(w.state is not State.READY for w in new):
            return None
        self.pending = None
        return p

    def rollback(self, why: str, traceback: str | None, serving: int, now: float) -> None:
        """The new generation failed: stop it, the old one keeps serving."""
        p = self.pending
        if p is None:
            return
        self.pending = None
        log.error("reload rolled back: generation %d failed: %s; generation %d keeps serving",
                  p.generation, why, serving)
        if traceback:
            log.error("generation %d boot error:\n%s", p.generation, traceback.rstrip())
        self.stopper.retire_all("rollback", now, p.generation)
        self.effects.notify(f"READY=1\nSTATUS=reload failed ({why}); generation "
                            f"{serving} serving")

    def cancel(self, why: str, now: float) -> None:
        """Drop the pending reload without calling it a failure (newer HUP, shutdown)."""
        p = self.pending
        if p is None:
            return
        self.pending = None
        log.info("reload to generation %d cancelled: %s", p.generation, why)
        self.stopper.retire_all("superseded", now, p.generation)
