"""What a worker imported after fork, and whether the master's objects are frozen in it
(issue 15 item 4: a worker shares the server's modules with the master, not copies).

`post_fork` (--post-fork tests.apps.forkshare:post_fork) notes the modules present at
fork; GET on either app answers JSON: {"late": server modules imported since,
"frozen": gc.get_freeze_count(), "classes": the worker-class modules present}.
"""

from __future__ import annotations

import gc
import json
import sys
from collections.abc import Callable, Iterable
from typing import Any

# The server's own code and the libraries it imports as a worker boots.
SERVER = ("reclusterd", "httptools", "h11", "h2", "hpack", "wsproto", "uvloop", "asyncio")
_at_fork: set[str] = set()


def post_fork(worker: object) -> None:
    _at_fork.update(sys.modules)


def _report() -> bytes:
    late = sorted(m for m in set(sys.modules) - _at_fork if m.split(".")[0] in SERVER)
    classes = sorted(m for m in sys.modules if m.startswith("reclusterd.workers.")
                     and m.rpartition(".")[2] in ("sync", "thread", "asyncio"))
    return json.dumps({"late": late, "frozen": gc.get_freeze_count(),
                       "classes": classes}).encode()


def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "application/json")])
    return [_report()]


async def asgi(scope: dict[str, Any], receive: Callable[..., Any],
               send: Callable[..., Any]) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": _report()})
