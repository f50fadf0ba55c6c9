"""Locust scenario for examples/sessions: log in once, then read the session and bump the counter.

    REDIS_URL=redis://127.0.0.1:6379/0 reclusterd examples.sessions.app:app -w 4 -b 127.0.0.1:8000
    locust -f loadtests/locust_sessions.py --headless -u 50 -r 10 -t 30s \
        --host http://127.0.0.1:8000 --csv /tmp/sessions

Each simulated user keeps its own cookie jar, so every user has its own session. A
GET /session that answers anything but the next hit number for that user counts as a
failure: with state kept per worker (examples.sessions.naive:app) this scenario
fails loudly, which is the point of the example.
"""

from __future__ import annotations

from locust import HttpUser, between, task


class SessionUser(HttpUser):
    """Login, then mostly reads of the session, some writes to the shared counter."""

    wait_time = between(0.0, 0.05)

    def on_start(self) -> None:
        self.hits = 0
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
