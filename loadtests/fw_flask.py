"""Bench app `flask`: a Flask view doing 2 round trips to redis (GET, INCR) with the
`redis` client, through one connection pool per process (issue 15 goal 3).

$BENCH_REDIS_URL names the redis-server the bench started (loopback, ephemeral port).
redis-py's pool notices a fork (it checks the pid), so a pool made before fork is safe.

    BENCH_REDIS_URL=redis://127.0.0.1:6399/0 reclusterd fw_flask:app   # cwd loadtests/
"""

from __future__ import annotations

import os

import redis
from flask import Flask, jsonify
from flask.typing import ResponseReturnValue

app = Flask(__name__)
POOL = redis.ConnectionPool.from_url(os.environ.get("BENCH_REDIS_URL",
                                                    "redis://127.0.0.1:6379/0"))
KEY = "bench:greeting"


@app.get("/flask")
def flask_view() -> ResponseReturnValue:
    """GET /flask: read a key, bump a counter, answer both (2 redis round trips)."""
    client = redis.Redis(connection_pool=POOL)
    greeting = client.get(KEY)
    hits = client.incr("bench:hits:flask")
    return jsonify(greeting=(greeting or b"").decode(), hits=hits)


@app.get("/hello")
def hello() -> ResponseReturnValue:
    return "Hello world!", 200, {"Content-Type": "text/plain"}
