"""workers/boot.py: the one worker-class registry and "auto" rule, the hook resolver."""

from __future__ import annotations

import pytest

from reclusterd import config, settings, workerclasses
from reclusterd.workers.base import Worker
from reclusterd.workers.boot import (
    BootError,
    process_hooks,
    resolve_worker_class,
)
from reclusterd.workers.sync import SyncWorker
from reclusterd.workers.thread import ThreadWorker


class NotAWorker:
    app_kinds = ("wsgi",)

    def run(self) -> None:
        pass


class Plugin(ThreadWorker):
    pass


@pytest.mark.parametrize(("name", "kind", "want"), [
    ("auto", "wsgi", "thread"), ("auto", "asgi", "asyncio"), ("sync", "wsgi", "sync"),
    ("m:C", "asgi", "m:C")])
def test_auto_rule(name: str, kind: str, want: str) -> None:
    assert workerclasses.resolve(name, kind) == want


def test_every_registered_name_is_a_valid_setting_and_resolves() -> None:
    """One registry: the setting accepts exactly its names (plus module:Class), and each
    built-in name boots a Worker subclass for the app kinds it serves."""
    for name in workerclasses.NAMES:
        assert settings.check_worker_class(name) == name
    for name in workerclasses.BUILTIN_CLASSES:
        kind = "asgi" if name == "asyncio" else "wsgi"
        assert issubclass(resolve_worker_class(name, kind), Worker)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="auto, sync, thread, asyncio or module:Class"):
        settings.check_worker_class("gevent")


def test_registry() -> None:
    assert resolve_worker_class("auto", "wsgi") is ThreadWorker
    assert resolve_worker_class("sync", "wsgi") is SyncWorker
    assert resolve_worker_class(f"{__name__}:Plugin", "wsgi") is Plugin
    assert issubclass(resolve_worker_class("auto", "asgi"), Worker)  # type: ignore[arg-type]


def test_registry_refuses_what_cannot_serve() -> None:
    with pytest.raises(BootError, match="is not a reclusterd.workers.base.Worker"):
        resolve_worker_class(f"{__name__}:NotAWorker", "wsgi")
    with pytest.raises(BootError, match="serves WSGI apps only, but the app is ASGI"):
        resolve_worker_class("thread", "asgi")
    with pytest.raises(BootError, match="worker class: could not import module 'nosuch'"):
        resolve_worker_class("nosuch:W", "wsgi")


def test_hooks_load_once_per_process_through_the_app_resolver() -> None:
    cfg = config.make(app="x:app", worker_int="os.path:join")
    first = process_hooks(cfg)
    assert first == {"worker_int": __import__("os").path.join}
    assert process_hooks(cfg) is first          # once per process (and Config)
    with pytest.raises(BootError, match="^--worker-abort: module 'os' has no attribute 'nope'$"):
        process_hooks(config.make(app="x:app", worker_abort="os:nope"))
    with pytest.raises(BootError, match="--worker-exit: os:getpid: worker_exit must take 2"):
        process_hooks(config.make(app="x:app", worker_exit="os:getpid"))


def test_fork_shared_freezes_in_the_child_only() -> None:
    """arbiter.process.fork_shared: the child keeps the master's objects frozen (its GC
    leaves their pages shared); the master unfreezes at once (its garbage is collected)."""
    import gc
    import os

    from reclusterd.arbiter.process import fork_shared

    before = gc.get_freeze_count()
    pid = fork_shared()
    if pid == 0:
        os._exit(0 if gc.get_freeze_count() > 0 else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert gc.get_freeze_count() == before == 0
