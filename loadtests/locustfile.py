"""A realistic user of the bench apps (loadtests/apps.py): browse, post a form, stream.

From the repository root, with the `bench` extra installed (it brings locust), start any
server on the bench apps, then run locust headless against it:

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/reclusterd --chdir loadtests apps:wsgi_app -w 2 -b 127.0.0.1:8000 &  # or asgi_app
    .venv/bin/locust -f loadtests/locustfile.py --headless -u 50 -r 10 -t 30s \
        --host http://127.0.0.1:8000
    kill %1

Each user mostly browses (small pages, JSON, a 64 KiB page), sometimes posts a JSON form
and reads a chunked streamed answer, with think time between actions. Answers are
checked, so a wrong body counts as a failure, not only a wrong status.
"""

from __future__ import annotations

import json
import random

from locust import HttpUser, between, task


class Visitor(HttpUser):
    """One visitor: a session of page views with think time."""

    wait_time = between(0.05, 0.5)

    @task(10)
    def browse(self) -> None:
        with self.client.get("/hello", catch_response=True) as r:
            if r.content != b"Hello world!":
                r.failure(f"unexpected body {r.content[:40]!r}")

    @task(5)
    def api(self) -> None:
        with self.client.get("/json", catch_response=True) as r:
            try:
                ok = r.json().get("id") == 42
            except ValueError:
                ok = False
            if not ok:
                r.failure("bad JSON answer")

    @task(2)
    def big_page(self) -> None:
        with self.client.get("/big", catch_response=True) as r:
            if len(r.content) != 65536:
                r.failure(f"expected 65536 bytes, got {len(r.content)}")

    @task(2)
    def slow_page(self) -> None:
        self.client.get("/sleep")

    @task(2)
    def post_form(self) -> None:
        form = {"name": f"user{random.randint(1, 10**6)}", "email": "u@example.test",
                "items": [random.randint(1, 100) for _ in range(5)], "note": "x" * 200}
        with self.client.post("/form", data=json.dumps(form), catch_response=True,
                              headers={"Content-Type": "application/json"}) as r:
            try:
                answer = r.json()
            except ValueError:
                answer = {}
            if answer.get("received") is not True or answer.get("name") != form["name"]:
                r.failure("form not echoed back")

    @task(1)
    def upload(self) -> None:
        body = b"z" * 16384
        with self.client.post("/post", data=body, catch_response=True) as r:
            if r.text != "16384":
                r.failure(f"server counted {r.text!r} bytes")

    @task(1)
    def stream(self) -> None:
        total = 0
        with self.client.get("/stream", stream=True, catch_response=True) as r:
            for chunk in r.iter_content(chunk_size=None):
                total += len(chunk)
            if total != 8 * 1024:
                r.failure(f"streamed {total} bytes, expected 8192")
