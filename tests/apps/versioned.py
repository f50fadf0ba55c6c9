"""A WSGI app answering "VERSION PID"; the template `tests.support.apps.write_app` copies
into a test's directory (with another VERSION, or extra import-time code) for the reload,
recycle and signal tests.

GET /slow?S   creates `slow-started` in the cwd, sleeps S seconds (default 1)
GET /hang     creates `hang-started` in the cwd, never returns
GET /hog?MB   keeps MB more megabytes alive (memory recycling)
"""

import os
import time
from collections.abc import Callable, Iterable
from typing import Any

VERSION = "v1"
# EXTRA: write_app puts import-time code here (e.g. a raise)

_hog: list[bytes] = []


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    qs = environ.get("QUERY_STRING", "")
    if path == "/slow":
        open("slow-started", "w").close()  # noqa: SIM115
        time.sleep(float(qs or 1))
    elif path == "/hang":
        open("hang-started", "w").close()  # noqa: SIM115
        while True:
            time.sleep(1)
    elif path == "/hog":
        _hog.append(b"x" * (int(qs or 1) * 1024 * 1024))
    body = f"{VERSION} {os.getpid()}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
