"""workers/boot.py: the one worker-class registry and "auto" rule, the hook resolver."""

from __future__ import annotations

import pytest

from reclusterd.workers.base import Worker
from reclusterd.workers.boot import (
    BootError,
    import_object,
    resolve_worker_class,
    worker_class_name,
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
    assert worker_class_name(name, kind) == want


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


def test_hooks_use_the_app_resolver() -> None:
    assert import_object("os.path:join", "hook") is __import__("os").path.join
    with pytest.raises(BootError, match="not of the form module:attr"):
        import_object("os.path", "post_fork hook")
    with pytest.raises(BootError, match="post_fork hook: module 'os' has no attribute 'nope'"):
        import_object("os:nope", "post_fork hook")
