"""The arbiter's server hooks (Gunicorn's names): what they get, and how a failure ends.

Gunicorn passes its Arbiter as `server`; hooks in the wild read `.cfg`, `.log`,
`.pid`, `.num_workers`, `.app`, `.WORKERS`, `.LISTENERS` and `.proc_name` of it.
`ServerView` gives those, read live from the arbiter (`.cfg` is our Config, whose
names are Gunicorn's where both have the setting; `.app` is the preloaded WSGI/ASGI
app or None, not a Gunicorn Application). `WorkerView` is the `worker` of
`pre_fork` and `child_exit`: `.pid` (None before fork), `.generation`, `.cfg`,
`.log`, `.age` (Gunicorn's spawn counter: here the generation) and, in
`child_exit`, `.exit_status` ("killed by SIGKILL"...).

A hook that raises is logged with its traceback and the server goes on, except
`on_starting`, which fails the start (as in Gunicorn).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from reclusterd import apploader, hooks

if TYPE_CHECKING:
    from reclusterd.arbiter.policy import Policy
    from reclusterd.config import Config
    from reclusterd.sockets import Listener

log = logging.getLogger("reclusterd.error")

# The hooks the arbiter calls; the others run in the workers, which import them there.
ARBITER_HOOKS = frozenset({"on_starting", "when_ready", "on_reload", "pre_fork", "pre_exec",
                           "child_exit", "nworkers_changed", "on_exit"})


def load_hooks(cfg: Config) -> dict[str, Callable[..., object]]:
    """Import the arbiter's hooks (AppLoadError, one line, if one is bad), from the app's
    directory as the workers would; worker-side hooks are left to the workers."""
    apploader.put_on_path(cfg.chdir or os.getcwd())
    others: dict[str, Any] = {h.name: None for h in hooks.HOOKS
                              if h.name not in ARBITER_HOOKS}
    return apploader.load_hooks(dataclasses.replace(cfg, **others))


@dataclass
class WorkerView:
    """`worker` for the arbiter's hooks (pre_fork, child_exit)."""

    pid: int | None
    generation: int
    cfg: Config
    exit_status: str | None = None
    log: logging.Logger = field(default=log, repr=False)

    @property
    def age(self) -> int:
        return self.generation


class _Arbiter(Protocol):
    """What the view reads of the arbiter (a Protocol: loop.py imports this module)."""

    @property
    def policy(self) -> Policy: ...
    @property
    def pid(self) -> int: ...
    @property
    def app(self) -> object: ...
    @property
    def listeners(self) -> list[Listener]: ...


class ServerView:
    """`server` for the arbiter's hooks: a live view of the arbiter (see module doc)."""

    def __init__(self, source: _Arbiter) -> None:
        self._source = source
        self.log = log

    @property
    def cfg(self) -> Config:
        return self._source.policy.cfg

    @property
    def pid(self) -> int:
        return self._source.pid

    @property
    def app(self) -> object:
        return self._source.app

    @property
    def num_workers(self) -> int:
        return self._source.policy.target

    @property
    def proc_name(self) -> str:
        cfg = self.cfg
        return cfg.name or cfg.app

    @property
    def WORKERS(self) -> dict[int, WorkerView]:  # noqa: N802 (Gunicorn's name)
        return {w.pid: WorkerView(w.pid, w.generation, w.cfg)
                for w in self._source.policy.table}

    @property
    def LISTENERS(self) -> list[object]:  # noqa: N802 (Gunicorn's name)
        return [lis.sock for lis in self._source.listeners]


class ServerHooks:
    """The loaded hooks and the `server` they get; `call` never raises."""

    def __init__(self, loaded: Mapping[str, Callable[..., object]], server: ServerView) -> None:
        self.loaded = dict(loaded)
        self.server = server

    def __contains__(self, name: str) -> bool:
        return name in self.loaded

    def call(self, name: str, *args: object) -> bool:
        """`name(server, *args)`; False if it raised (logged with the traceback)."""
        return hooks.call(self.loaded, name, self.server, *args)
