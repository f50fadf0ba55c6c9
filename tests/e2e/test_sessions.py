"""Shared state across workers (issue 8): the Redis session example against a real redis-server.

Each test starts a reclusterd with 4 workers serving examples/sessions and drives it
over fresh connections, so requests land on different worker processes. A "probe"
sends rounds of concurrent GET /session with one cookie until the wanted worker
pids have answered; every round must get exactly the next hit numbers, so any
worker that cannot see the session, or sees a stale copy, shows up at once.
The naive dict app must fail that probe: that is what proves the probe works.

SESSIONS_E2E_PEER=gunicorn runs the same checks against Gunicorn (a reference point).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

from tests.support.process import Server, free_port, reclusterd, wait_for

redis = pytest.importorskip("redis", reason="the redis client package is not installed")
REDIS_SERVER = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(
    REDIS_SERVER is None,
    reason="redis-server not installed (apt-get install redis-server; .ci/run installs it)")

PEER = os.environ.get("SESSIONS_E2E_PEER", "reclusterd")
WSGI_APP = "examples.sessions.app:app"
ASGI_APP = "examples.sessions.asgi:app"
NAIVE_APP = "examples.sessions.naive:app"
WORKERS = 4


# ---------------------------------------------------------------- fixtures

def start_redis(port: int) -> subprocess.Popen[bytes] | None:
    """redis-server on `port`, once it answers PING; None if it exited (port taken)."""
    assert REDIS_SERVER is not None
    proc = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)

    def answered() -> bool:
        if proc.poll() is not None:
            return True
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    try:
        wait_for(answered, timeout=10, what=f"redis-server PING on port {port}")
    except AssertionError:
        proc.kill()
        proc.wait(5)
        raise
    finally:
        client.close()
    return proc if proc.poll() is None else None


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A private redis-server on a free loopback port, no persistence, stopped after."""
    for _attempt in range(3):  # the port may be taken between free_port() and bind
        port = free_port()
        proc = start_redis(port)
        if proc is not None:
            break
    else:
        pytest.fail("redis-server exited at start three times (ports taken?)")
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture()
def clean_redis(redis_url: str) -> str:
    """Each test starts from an empty database."""
    client = redis.Redis.from_url(redis_url)
    try:
        client.flushall()
    finally:
        client.close()
    return redis_url


def serve(app: str, redis_url: str, *opts: str, workers: int = WORKERS) -> Server:
    """Start the server under test with `workers` workers and wait until all are up."""
    env = {"REDIS_URL": redis_url}
    if PEER == "gunicorn":
        if "--post-fork" in opts:  # Gunicorn has the hook only in its config file
            i = opts.index("--post-fork")
            opts = opts[:i] + opts[i + 2:]
        args = [sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", "127.0.0.1:{port}",
                *opts]
        args += ["-k", "uvicorn.workers.UvicornWorker"] if app == ASGI_APP else ["--threads", "4"]
        srv = Server([*args, app], env=env)
    else:
        srv = reclusterd(app, "--workers", str(workers), *opts, env=env)
    try:
        srv.wait_ready(timeout=20)
        srv.wait_workers(workers, timeout=20)
    except BaseException:
        srv.stop()
        raise
    return srv


# ---------------------------------------------------------------- client side

def call(port: int, method: str, path: str, sid: str | None = None) -> tuple[int, dict, int]:
    """One request on a new connection: (status, JSON body, pid from X-Worker-Pid)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        headers = {"Connection": "close"}
        if sid is not None:
            headers["Cookie"] = f"sid={sid}"
        conn.request(method, path, headers=headers)
        resp = conn.getresponse()
        body = json.loads(resp.read() or b"{}")
        return resp.status, body, int(resp.getheader("X-Worker-Pid") or 0)
    finally:
        conn.close()


def login(port: int) -> str:
    status, body, _pid = call(port, "POST", "/session")
    assert status == 200, body
    return str(body["sid"])


@dataclass
class Probe:
    """Drives one session and checks that every answer is the next hit, whoever serves it."""

    port: int
    sid: str
    hits: int = 0                        # the last hit number the store handed out
    by_pid: dict[int, list[int]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def run(self, until: Callable[[set[int]], bool], timeout: float = 20.0,
            batch: int = 4) -> set[int]:
        """Rounds of `batch` concurrent GET /session until `until(pids seen)`; pids seen."""
        seen: set[int] = set()

        def one_round() -> bool:
            with ThreadPoolExecutor(batch) as pool:
                answers = list(pool.map(lambda _: call(self.port, "GET", "/session", self.sid),
                                        range(batch)))
            got = []
            # Within a round the requests run concurrently: order them by hit number.
            answers.sort(key=lambda a: int(a[1].get("hits", 0)))
            for status, body, pid in answers:
                seen.add(pid)
                if status != 200:
                    self.problems.append(f"pid {pid} answered {status} {body}: session unknown")
                    continue
                got.append(int(body["hits"]))
                self.by_pid.setdefault(pid, []).append(int(body["hits"]))
            want = list(range(self.hits + 1, self.hits + 1 + batch))
            if sorted(got) != want:
                self.problems.append(f"hits {sorted(got)} where {want} was due")
            self.hits = max([self.hits, *got])
            return until(seen)

        try:
            wait_for(one_round, timeout=timeout, interval=0, what="answers from wanted pids")
        except AssertionError as exc:
            self.problems.append(f"{exc} (seen {sorted(seen)})")
        return seen

    def run_sequential(self, count: int) -> None:
        """`count` GETs one after the other: hits must climb by exactly one each time."""
        for _ in range(count):
            status, body, pid = call(self.port, "GET", "/session", self.sid)
            if status != 200 or body.get("hits") != self.hits + 1:
                self.problems.append(
                    f"pid {pid} answered {status} {body}, want hit {self.hits + 1}")
            self.hits = max(self.hits, int(body.get("hits", 0)))


def all_of(pids: set[int]) -> Callable[[set[int]], bool]:
    return lambda seen: pids <= seen


def new_workers(srv: Server, old: set[int], count: int = WORKERS,
                timeout: float = 30.0) -> set[int]:
    """Wait until `count` workers run and none of them is in `old`."""
    return wait_for(lambda: w if len(w := srv.workers()) == count and not (w & old) else None,
                    timeout=timeout, what=f"{count} workers, all new")


def counter(port: int, method: str = "GET") -> int:
    status, body, _pid = call(port, method, "/counter")
    assert status == 200, body
    return int(body["value"])


def increments(port: int, n: int, threads: int = 32) -> tuple[list[int], set[int]]:
    """`n` concurrent POST /counter on new connections: (values returned, pids that served)."""
    with ThreadPoolExecutor(threads) as pool:
        answers = list(pool.map(lambda _: call(port, "POST", "/counter"), range(n)))
    bad = [(s, b) for s, b, _ in answers if s != 200]
    assert not bad, f"{len(bad)} failed increments, e.g. {bad[:3]}"
    return sorted(int(b["value"]) for _, b, _ in answers), {p for _, _, p in answers}


# ---------------------------------------------------------------- tests

@pytest.mark.parametrize("app", [WSGI_APP, ASGI_APP], ids=["wsgi", "asgi"])
def test_session_is_seen_by_every_worker(clean_redis: str, app: str) -> None:
    with serve(app, clean_redis) as srv:
        workers = srv.workers()
        probe = Probe(srv.port, login(srv.port))
        probe.run(all_of(workers))
        probe.run_sequential(10)
        assert not probe.problems, probe.problems
        assert set(probe.by_pid) == workers
        for pid, hits in probe.by_pid.items():
            assert hits == sorted(hits) and len(set(hits)) == len(hits), (pid, hits)
        status, body, _ = call(srv.port, "GET", "/session")
        assert status == 401 and "error" in body
        status, _, _ = call(srv.port, "GET", "/session", sid="0" * 32)
        assert status == 401


def test_naive_dict_app_fails_the_cross_worker_check(clean_redis: str) -> None:
    with serve(NAIVE_APP, clean_redis) as srv:
        workers = srv.workers()
        probe = Probe(srv.port, login(srv.port))
        probe.run(all_of(workers))
        assert probe.problems, "the naive app passed: the probe cannot detect per-worker state"
        assert any("session unknown" in p for p in probe.problems), probe.problems
        # Only the worker that created the session ever knew it.
        assert len(probe.by_pid) == 1, probe.by_pid


@pytest.mark.parametrize("app", [WSGI_APP, ASGI_APP], ids=["wsgi", "asgi"])
def test_concurrent_counter_loses_no_increment(clean_redis: str, app: str) -> None:
    with serve(app, clean_redis) as srv:
        values, pids = increments(srv.port, 1000)
        assert values == list(range(1, 1001)), "duplicate or missing counter values"
        assert counter(srv.port) == 1000
        assert len(pids) >= 2, f"all 1000 requests went to one worker: {pids}"


def test_state_survives_hup_reload(clean_redis: str) -> None:
    with serve(WSGI_APP, clean_redis) as srv:
        old = srv.workers()
        probe = Probe(srv.port, login(srv.port))
        probe.run(all_of(old))
        increments(srv.port, 50)

        stop = threading.Event()
        traffic: list[tuple[int, int]] = []  # (status, hits) seen while the reload runs
        errors: list[str] = []

        def keep_reading() -> None:
            while not stop.is_set():
                try:
                    status, body, _ = call(srv.port, "GET", "/session", probe.sid)
                except (OSError, http.client.HTTPException) as exc:
                    errors.append(f"request {len(traffic) + 1}: {exc!r}")
                    return
                traffic.append((status, int(body.get("hits", 0))))

        reader = threading.Thread(target=keep_reading)
        reader.start()
        try:
            srv.signal(signal.SIGHUP)
            fresh = new_workers(srv, old)
        finally:
            stop.set()
            reader.join(20)
        assert not errors, f"a request failed during the HUP reload: {errors}"
        assert traffic, "no request ran during the reload"
        assert [s for s, _ in traffic if s != 200] == [], traffic
        assert [h for _, h in traffic] == list(range(probe.hits + 1, probe.hits + 1 + len(traffic)))
        probe.hits += len(traffic)

        probe.run(all_of(fresh))
        assert not probe.problems, probe.problems
        assert counter(srv.port) == 50
        assert counter(srv.port, "POST") == 51


def test_state_survives_sigkilled_worker(clean_redis: str) -> None:
    # --preload imports the app in the arbiter; the clients must still be made per worker.
    hook = "examples.sessions.app:post_fork"
    with serve(WSGI_APP, clean_redis, "--preload", "--post-fork", hook) as srv:
        old = srv.workers()
        probe = Probe(srv.port, login(srv.port))
        probe.run(all_of(old))
        increments(srv.port, 20)
        victim = min(old)
        os.kill(victim, signal.SIGKILL)
        now = wait_for(lambda: w if len(w := srv.workers()) == WORKERS and victim not in w
                       else None, timeout=20, what="the killed worker to be replaced")
        probe.run(all_of(now - old))
        assert not probe.problems, probe.problems
        assert counter(srv.port, "POST") == 21


def test_state_survives_ttou_then_ttin(clean_redis: str) -> None:
    with serve(WSGI_APP, clean_redis) as srv:
        probe = Probe(srv.port, login(srv.port))
        probe.run(all_of(srv.workers()))
        increments(srv.port, 20)

        srv.signal(signal.SIGTTOU)
        three = srv.wait_workers(WORKERS - 1, timeout=20)
        probe.run(all_of(three))
        assert counter(srv.port, "POST") == 21

        srv.signal(signal.SIGTTIN)
        four = srv.wait_workers(WORKERS, timeout=20)
        probe.run(all_of(four - three))
        assert not probe.problems, probe.problems
        assert counter(srv.port, "POST") == 22


def test_state_survives_max_requests_recycling(clean_redis: str) -> None:
    with serve(WSGI_APP, clean_redis, "--max-requests", "10") as srv:
        first = srv.workers()
        probe = Probe(srv.port, login(srv.port))
        # 4 workers, 10 requests each: at least two generations of pids must answer.
        seen = probe.run(lambda pids: len(pids) >= WORKERS + 2, timeout=40)
        assert not probe.problems, probe.problems
        assert seen - first, "no recycled worker answered"
        values, _ = increments(srv.port, 100, threads=8)
        assert values == list(range(1, 101))


def test_redis_client_is_made_again_in_a_forked_child() -> None:
    """The pid tag: a client made before fork is never used by the child (no server needed)."""
    from examples.sessions import app as sessions_app

    parent = sessions_app.get_conn()
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        try:
            mine = sessions_app.get_conn()
            ok = mine is not parent and mine.pid == os.getpid()
            sessions_app.post_fork(None)
            again = sessions_app.get_conn()
            ok = ok and again is not mine and again.pid == os.getpid()
            os.write(write_end, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        answer = os.read(read_end, 1)
    finally:
        os.close(read_end)
        os.waitpid(child, 0)
    assert answer == b"1"
    assert sessions_app.get_conn() is parent
