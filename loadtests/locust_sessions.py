"""Locust scenario for examples/sessions: log in once, then read the session and bump the counter.

From the repository root, with the `bench` extra installed (it brings locust) and a
Redis at REDIS_URL:

    .venv/bin/pip install -e '.[bench]'
    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/reclusterd examples.sessions.app:app \
        -w 4 -b 127.0.0.1:8000 &
    .venv/bin/locust -f loadtests/locust_sessions.py --headless -u 50 -r 10 -t 30s \
        --host http://127.0.0.1:8000 --csv /tmp/sessions
    kill %1

Each simulated user keeps its own cookie jar, so every user has its own session. A
GET /session that answers anything but the next hit number for that user counts as a
failure.

By default each user keeps one keep-alive connection, which pins it to one worker:
the naive per-worker dict app (examples.sessions.naive:app) then looks correct, as it
does in production until a connection is closed (keep-alive timeout, reload, recycle,
a browser's second connection). `--new-connections` sends `Connection: close` on
every request, so each request may land on any worker; the naive app then fails on
most reads, the Redis app on none.
"""

from __future__ import annotations

from typing import Any

from locust import HttpUser, between, events, task


def _options(parser: Any) -> None:
    parser.add_argument("--new-connections", action="store_true", default=False,
                        help="send Connection: close on every request (no worker affinity)")


events.init_command_line_parser.add_listener(_options)  # type: ignore[no-untyped-call]


class SessionUser(HttpUser):
    """Login, then mostly reads of the session, some writes to the shared counter."""

    wait_time = between(0.0, 0.05)

    def on_start(self) -> None:
        self.hits = 0
        if getattr(self.environment.parsed_options, "new_connections", False):
            self.client.headers["Connection"] = "close"
        with self.client.post("/session", name="POST /session (login)",
                              catch_response=True) as resp:
            if resp.status_code != 200 or "sid" not in self.client.cookies:
                resp.failure(f"login failed: {resp.status_code} {resp.text[:100]}")

    @task(4)
    def read_session(self) -> None:
        with self.client.get("/session", name="GET /session", catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"{resp.status_code}: session not seen by this worker")
                return
            hits = int(resp.json()["hits"])
            if hits != self.hits + 1:
                resp.failure(f"hits {hits}, expected {self.hits + 1}: stale session state")
            self.hits = hits

    @task(2)
    def bump_counter(self) -> None:
        with self.client.post("/counter", name="POST /counter", catch_response=True) as resp:
            if resp.status_code != 200 or "value" not in resp.json():
                resp.failure(f"{resp.status_code}: counter not incremented")

    @task(1)
    def read_counter(self) -> None:
        self.client.get("/counter", name="GET /counter")
