"""The one worker-class registry: built-in names, their classes, and the "auto" rule.

Imports nothing of reclusterd, so the config side (settings, cli, gunicorn_map) and the
worker side (workers/boot, which imports the class) share it without cycles.
"""

from __future__ import annotations

__all__ = ["AUTO", "BUILTIN_CLASSES", "NAMES", "for_app", "resolve", "spec"]

AUTO = "auto"
# name -> "module:Class" (imported by workers/boot only when chosen)
BUILTIN_CLASSES: dict[str, str] = {
    "sync": "reclusterd.workers.sync:SyncWorker",
    "thread": "reclusterd.workers.thread:ThreadWorker",
    "asyncio": "reclusterd.workers.asyncio:AsyncioWorker",
}
NAMES: tuple[str, ...] = (AUTO, *BUILTIN_CLASSES)   # what --worker-class takes besides module:Class


def for_app(kind: str) -> str:
    """The class "auto" picks, and the one to suggest: thread for WSGI, asyncio for ASGI."""
    return "thread" if kind == "wsgi" else "asyncio"


def resolve(name: str, kind: str) -> str:
    """--worker-class for an app of `kind` ("wsgi"/"asgi"): "auto" decided, others unchanged."""
    return for_app(kind) if name == AUTO else name


def spec(name: str) -> str:
    """The "module:Class" to import for a (resolved) name: built-in or the plug-in spec."""
    return BUILTIN_CLASSES.get(name, name)
