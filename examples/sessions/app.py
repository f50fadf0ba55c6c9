"""Sessions and a counter kept in Redis, as a plain WSGI app: state every worker shares.

Run it:  REDIS_URL=redis://127.0.0.1:6379/0 reclusterd examples.sessions.app:app -w 4
  (optionally with --post-fork examples.sessions.app:post_fork)

The Redis client belongs to one process. It is made lazily on the first request
in each worker, tagged with the pid that made it, and made again if the pid ever
differs (a fork happened after it was created, e.g. with --preload). A client's
sockets must never be shared by two processes: replies would interleave and one
worker would read another's answer.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import redis
from redis.commands.core import Script

from examples.sessions.common import (
    COUNTER_KEY,
    HIT_SCRIPT,
    SESSION_TTL,
    make_wsgi_app,
    redis_url,
    session_key,
)

__all__ = ["app", "post_fork", "get_conn", "RedisStore"]


@dataclass(frozen=True, slots=True)
class _Conn:
    pid: int
    client: redis.Redis
    hit: Script


_conn: _Conn | None = None
_lock = threading.Lock()


def get_conn() -> _Conn:
    """This process's Redis client, created on first use after fork (thread-safe)."""
    global _conn
    conn = _conn
    pid = os.getpid()
    if conn is not None and conn.pid == pid:
        return conn
    with _lock:
        if _conn is None or _conn.pid != pid:
            # Do not close an inherited client: its sockets are the parent's too, and
            # shutting them down here would cut the parent's connections.
            client = redis.Redis.from_url(
                redis_url(), socket_timeout=5, socket_connect_timeout=2,
                health_check_interval=30, decode_responses=True)
            _conn = _Conn(pid, client, client.register_script(HIT_SCRIPT))
        return _conn


def post_fork(*_args: object) -> None:
    """`--post-fork examples.sessions.app:post_fork`: forget any client made before fork.

    Accepts whatever the server passes (worker object, config, ...). The lock is
    replaced too, in case the parent held it at the moment of fork.
    """
    global _conn, _lock
    _conn = None
    _lock = threading.Lock()


class RedisStore:
    """Sessions as Redis hashes with a TTL; the counter as one INCR'd key."""

    def __init__(self, conn: _Conn) -> None:
        self._r = conn.client
        self._hit = conn.hit

    def create_session(self, sid: str) -> None:
        key = session_key(sid)
        pipe = self._r.pipeline(transaction=True)
        pipe.hset(key, mapping={"hits": 0, "created_by": os.getpid()})
        pipe.expire(key, SESSION_TTL)
        pipe.execute()

    def hit_session(self, sid: str) -> int | None:
        hits = self._hit(keys=[session_key(sid)], args=[SESSION_TTL])
        return None if hits is None else int(hits)

    def incr_counter(self) -> int:
        return int(self._r.incr(COUNTER_KEY))

    def get_counter(self) -> int:
        value = self._r.get(COUNTER_KEY)
        return int(value) if value is not None else 0


def _store() -> RedisStore:
    return RedisStore(get_conn())


app = make_wsgi_app(_store, backend_errors=(redis.RedisError,))
