"""Issue 14 for the asyncio worker: a draining worker refuses new connections at once
(item 1), out of file descriptors is logged with a count and serving goes on (item 2),
an orphaned worker leaves (item 3), a client that pipelines without reading cannot grow
the worker without bound (item 7), and draining lets request tasks finish their cleanup
(item 13)."""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from tests.support.http_client import http_get, read_responses
from tests.support.process import Server, reclusterd, wait_for, wait_log

APP = r'''
import asyncio, os, time

def mark(text):
    with open("marks.txt", "a") as f:
        f.write(text + "\n")

async def lifespan(receive, send):
    while True:
        m = await receive()
        await send({"type": m["type"] + ".complete"})
        if m["type"] == "lifespan.shutdown":
            return

async def respond(send, body):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})

async def chunks(pause):
    try:
        while True:
            yield b"tick\n"
            await asyncio.sleep(pause)
    finally:
        mark("agen cleanup")

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await lifespan(receive, send)
    path, qs = scope["path"], scope["query_string"].decode()
    if path == "/slow":
        mark("slow start")
        await asyncio.sleep(float(qs))
        await respond(send, b"slow done")
    elif path == "/block":
        mark("block start")
        time.sleep(float(qs))
        await respond(send, b"block done")
    elif path == "/stream":         # streams every `qs` seconds until the client leaves
        await send({"type": "http.response.start", "status": 200, "headers": []})
        mark("stream start")
        try:
            while True:
                await send({"type": "http.response.body", "body": b"tick\n",
                            "more_body": True})
                await asyncio.sleep(float(qs))
        finally:
            mark("stream cleanup")
    elif path == "/agen":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        mark("agen start")
        async for piece in chunks(float(qs)):
            await send({"type": "http.response.body", "body": piece, "more_body": True})
    elif path == "/upload":         # reads its body, as most POST handlers do
        size, more = 0, True
        while more:
            message = await receive()
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        await respond(send, b"got %d" % size)
    else:
        await respond(send, b"ok")
'''


def serve(tmp_path: Path, *opts: str, nofile: int = 0) -> Server:
    """The test app on one asyncio worker, cwd = tmp_path; `nofile` sets RLIMIT_NOFILE
    for the arbiter and its workers before reclusterd starts (as a preexec would)."""
    (tmp_path / "rapp.py").write_text(APP)
    args = ["rapp:app", "-k", "asyncio", "--workers", "1", *opts]
    if not nofile:
        return reclusterd(*args, cwd=tmp_path)
    launch = ("import resource, runpy, sys; n = int(sys.argv.pop(1));"
              "resource.setrlimit(resource.RLIMIT_NOFILE, (n, n));"
              "runpy.run_module('reclusterd', run_name='__main__', alter_sys=True)")
    return Server([sys.executable, "-c", launch, str(nofile), args[0], "--bind",
                   "127.0.0.1:{port}", *args[1:]], cwd=tmp_path)


def marks(tmp_path: Path) -> list[str]:
    try:
        return (tmp_path / "marks.txt").read_text().splitlines()
    except FileNotFoundError:
        return []


def wait_mark(tmp_path: Path, text: str, timeout: float = 10.0) -> None:
    wait_for(lambda: text in marks(tmp_path), timeout, what=f"mark {text!r}")


def test_draining_worker_refuses_new_connections_at_once(tmp_path: Path) -> None:
    """Item 1: A's 4 s request is running, TERM; B's connection is refused at once
    (not accepted and reset when the worker exits); A completes."""
    with serve(tmp_path, "--graceful-timeout", "10") as srv:
        srv.wait_ready()
        (pid,) = srv.wait_workers(1)
        result: list[tuple[int, bytes]] = []
        a = threading.Thread(target=lambda: result.append(
            http_get(srv.port, "/slow?4", timeout=15)[::2]))
        a.start()
        wait_mark(tmp_path, "slow start")
        srv.signal(signal.SIGTERM)
        wait_log(srv, f"worker {pid} draining")

        def refused() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", srv.port), timeout=2) as b:
                    # accepted before the listener closed: it must be answered, not reset
                    b.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
                    (r,), _ = read_responses(b, ["POST"])
                    assert r.status == 200 and r.complete, r
                return False
            except ConnectionRefusedError:
                return True
        t0 = time.monotonic()
        wait_for(refused, 2, what="B refused")
        refused_after = time.monotonic() - t0
        a.join(15)
        assert result == [(200, b"slow done")], result
        assert srv.wait_exit(15) == 0
        assert refused_after < 1.0, refused_after     # not held until the worker exits


def _leave_streams_then_drain(tmp_path: Path, pause: str, graceful: str) -> None:
    """Start /stream and /agen (a piece every `pause` s), leave both, TERM: every
    cleanup ran, and nothing (no "aclose(): asynchronous generator is already running",
    no traceback) reached stderr."""
    with serve(tmp_path, "--graceful-timeout", graceful) as srv:
        srv.wait_ready()
        for path in (f"/stream?{pause}", f"/agen?{pause}"):
            with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as c:
                c.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                assert c.recv(100).startswith(b"HTTP/1.1 200")
        wait_mark(tmp_path, "agen start")
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit(15) == 0
        assert {"stream cleanup", "agen cleanup"} <= set(marks(tmp_path)), marks(tmp_path)
        assert "already running" not in srv.stderr(), srv.stderr()
        assert "Traceback" not in srv.stderr(), srv.stderr()


def test_disconnected_stream_cleanup_runs_on_drain(tmp_path: Path) -> None:
    """Item 13: the clients leave streaming responses, TERM at once: the drain waits for
    their tasks, so the app's `finally` runs (its next send fails) and an async
    generator's cleanup too."""
    _leave_streams_then_drain(tmp_path, pause="1.5", graceful="8")


def test_requests_left_at_graceful_timeout_are_cancelled_so_finally_runs(
        tmp_path: Path) -> None:
    """Item 13: a task still waiting when the graceful timeout ends is cancelled, not
    dropped with the loop: its `finally` runs before the worker exits."""
    _leave_streams_then_drain(tmp_path, pause="60", graceful="3")


def test_orphaned_worker_blocked_in_the_app_exits_within_graceful_timeout(
        tmp_path: Path) -> None:
    """Item 3: an `async def` app blocked in time.sleep(20), kill -9 master: the worker
    (its loop blocked, so it never runs its TERM handler) still leaves within
    --graceful-timeout and frees the port."""
    with serve(tmp_path, "--graceful-timeout", "3") as srv:
        srv.wait_ready()
        (pid,) = srv.wait_workers(1)
        worker = psutil.Process(pid)
        client = threading.Thread(target=lambda: _get_ignoring_errors(srv.port, "/block?20"),
                                  daemon=True)
        client.start()
        wait_mark(tmp_path, "block start")
        srv.signal(signal.SIGKILL)
        srv.wait_exit(5)
        try:
            worker.wait(3 + 3)      # --graceful-timeout, plus margin for a loaded machine
        except psutil.TimeoutExpired:
            os.kill(pid, signal.SIGKILL)
            raise AssertionError("the orphaned worker outlived --graceful-timeout") from None
        wait_for(lambda: not _accepts(srv.port), 2, what="the port to be free")


def _get_ignoring_errors(port: int, path: str) -> None:
    try:
        http_get(port, path, timeout=30)
    except Exception:  # noqa: BLE001 - the server is killed under it; any ending will do
        pass


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


PIPELINED = 150_000


REQUESTS = {"GET": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            "POST": b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"}


def _pipeline_without_reading(port: int, stop: threading.Event, method: str = "GET") -> int:
    """Send PIPELINED requests on one connection, never reading; the bytes sent."""
    request = REQUESTS[method]
    data = memoryview(request * PIPELINED)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.connect(("127.0.0.1", port))
    s.settimeout(0.2)
    sent = 0
    with s:
        while sent < len(data) and not stop.is_set():
            try:
                sent += s.send(data[sent:sent + (1 << 20)])
            except TimeoutError:
                continue
            except OSError:
                break
        stop.wait(30)           # hold the connection open, unread, until told
    return sent


@pytest.mark.parametrize(("loop", "method"), [("asyncio", "GET"), ("uvloop", "GET"),
                                              ("uvloop", "POST")])
def test_unread_pipelining_keeps_memory_bounded(tmp_path: Path, loop: str,
                                                method: str) -> None:
    """Item 7: one client pipelines 150k requests (GETs, or POSTs whose body the app
    reads: reading a body must not lift the pause) and never reads. The worker stops
    reading requests while its write buffer is full, so its RSS stays bounded; other
    clients are served meanwhile; the reader that never reads is closed at
    --header-timeout."""
    with serve(tmp_path, "--loop", loop, "--header-timeout", "3") as srv:
        srv.wait_ready()
        (pid,) = srv.wait_workers(1)
        worker = psutil.Process(pid)
        assert http_get(srv.port)[0] == 200
        start = worker.memory_info().rss
        stop = threading.Event()
        flood = threading.Thread(target=_pipeline_without_reading,
                                 args=(srv.port, stop, method))
        flood.start()
        peak = start
        try:
            served = 0
            deadline = time.monotonic() + 4      # the length of the fault, not a wait
            while time.monotonic() < deadline:
                assert http_get(srv.port, timeout=5)[0] == 200
                served += 1
                peak = max(peak, worker.memory_info().rss)
            mb = 1024 * 1024
            print(f"RSS {start / mb:.0f} MB -> peak {peak / mb:.0f} MB, {served} served")
            wait_log(srv, "writing the response", timeout=10)   # the idle deadline
            peak = max(peak, worker.memory_info().rss)
        finally:
            stop.set()
            flood.join(10)
        assert peak < 2 * start + 30 * mb, (start // mb, peak // mb)
        assert http_get(srv.port)[0] == 200


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_out_of_file_descriptors_is_logged_with_a_count_and_serving_goes_on(
        tmp_path: Path, loop: str) -> None:
    """Item 2: RLIMIT_NOFILE 64 and 100 idle connections: accept fails with EMFILE.
    The worker logs it once per interval with a count (not once per accept, not a reset
    without a word), keeps serving the connections it has, and accepts again (the
    waiting ones included) once descriptors are free."""
    with serve(tmp_path, "--loop", loop, nofile=64) as srv:
        srv.wait_ready()
        idle: list[socket.socket] = []
        try:
            for _ in range(100):
                idle.append(socket.create_connection(("127.0.0.1", srv.port), timeout=10))
            wait_log(srv, "accept: out of file descriptors (")
            first = idle[0]         # accepted before the limit: still served
            first.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            (r,), _ = read_responses(first, ["GET"])
            assert (r.status, r.body) == (200, b"ok")
            late = idle[-1]         # waiting in the backlog, not reset
            late.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            for s in idle[:-1]:
                s.close()
            (r,), _ = read_responses(late, ["GET"])
            assert (r.status, r.body) == (200, b"ok")
        finally:
            for s in idle:
                s.close()
        assert http_get(srv.port)[0] == 200
        err = srv.stderr()
        assert err.count("out of file descriptors") <= 3, err[-3000:]
        assert "Traceback" not in err, err[-3000:]
