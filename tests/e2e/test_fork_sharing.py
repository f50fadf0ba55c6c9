"""Issue 15 item 4: a worker's memory is mostly the master's, shared by fork.

The master imports the server modules a worker needs before it forks (workers/boot.py
preimport), so a worker builds no private copy of them; and it forks with its objects
frozen (arbiter/process.py fork_shared), so the worker's GC does not write to their pages.
"""

from __future__ import annotations

import json

import pytest

from tests.support.http_client import get_body
from tests.support.process import reclusterd

HOOK = "tests.apps.forkshare:post_fork"


@pytest.mark.parametrize(("app", "klass"), [("wsgi", "auto"), ("asgi", "auto"),
                                            ("wsgi", "sync"), ("asgi", "asyncio")])
def test_worker_imports_no_server_module_after_fork(app: str, klass: str) -> None:
    with reclusterd(f"tests.apps.forkshare:{app}", "-w", "1", "-k", klass,
                    "--post-fork", HOOK) as srv:
        srv.wait_ready()
        got = json.loads(get_body(srv.port, "/"))
    assert got["late"] == [], f"imported in the worker, after fork: {got['late']}"
    assert got["frozen"] > 0


def test_preloaded_app_imports_only_its_worker_class() -> None:
    """With --preload the master knows the app's kind: "auto" imports one class, not both."""
    with reclusterd("tests.apps.forkshare:wsgi", "-w", "1", "--preload",
                    "--post-fork", HOOK) as srv:
        srv.wait_ready()
        got = json.loads(get_body(srv.port, "/"))
    assert got["late"] == []
    assert got["classes"] == ["reclusterd.workers.thread"]

