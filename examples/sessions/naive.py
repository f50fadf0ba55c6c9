"""The same routes with state in a module-level dict: correct in one process, wrong in many.

Run it:  reclusterd examples.sessions.naive:app -w 4

Each worker process has its own copy of `_sessions` and `_counter`. A session
created by one worker is unknown to the others (401), and each worker counts on
its own. The lock makes it thread-safe; it cannot make it process-safe. The
e2e tests run this app to prove that they detect the problem.
"""

from __future__ import annotations

import threading

from examples.sessions.common import make_wsgi_app

__all__ = ["app", "DictStore"]


class DictStore:
    """Sessions and a counter in this process's memory only."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[str, int] = {}
        self._counter = 0

    def create_session(self, sid: str) -> None:
        with self._lock:
            self._sessions[sid] = 0

    def hit_session(self, sid: str) -> int | None:
        with self._lock:
            if sid not in self._sessions:
                return None
            self._sessions[sid] += 1
            return self._sessions[sid]

    def incr_counter(self) -> int:
        with self._lock:
            self._counter += 1
            return self._counter

    def get_counter(self) -> int:
        with self._lock:
            return self._counter


_store = DictStore()
app = make_wsgi_app(lambda: _store)
