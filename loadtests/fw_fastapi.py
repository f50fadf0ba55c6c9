"""Bench app `fastapi`: a FastAPI endpoint doing 2 round trips to redis (GET, INCR) with
`redis.asyncio`, one connection pool per worker process (issue 15 goal 3).

The client is made on first use, inside the worker's own event loop (an asyncio pool
cannot cross loops or forks). $BENCH_REDIS_URL names the bench's redis-server.

    BENCH_REDIS_URL=redis://127.0.0.1:6399/0 reclusterd fw_fastapi:app   # cwd loadtests/
"""

from __future__ import annotations

import os

import redis.asyncio as aioredis
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

app = FastAPI()
URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
KEY = "bench:greeting"
_client: dict[int, aioredis.Redis] = {}  # pid -> client (a forked child makes its own)


def _redis() -> aioredis.Redis:
    client = _client.get(os.getpid())
    if client is None:
        client = _client[os.getpid()] = aioredis.Redis.from_url(URL)
    return client


@app.get("/fastapi")
async def fastapi_view() -> dict[str, object]:
    """GET /fastapi: read a key, bump a counter, answer both (2 redis round trips)."""
    client = _redis()
    greeting = await client.get(KEY)
    hits = await client.incr("bench:hits:fastapi")
    return {"greeting": (greeting or b"").decode(), "hits": hits}


@app.get("/hello", response_class=PlainTextResponse)
async def hello() -> str:
    return "Hello world!"
