"""Issue 14 item 5: waiting for a client is not being stuck. Only app time counts
against --timeout: a worker whose client sends nothing (or half a head) for longer
than --timeout is not aborted."""

from __future__ import annotations

import socket
import time

import pytest

from tests.support.http_client import read_responses, server_closes
from tests.support.process import Server, reclusterd, wait_for, wait_log

APP = "tests.e2e.test_wsgi_apps:app"


@pytest.mark.parametrize("klass", ["sync", "thread"])
def test_a_silent_client_does_not_get_its_worker_aborted(klass: str) -> None:
    with reclusterd(APP, "-k", klass, "--workers", "1", "--timeout", "2") as srv:
        srv.wait_ready()
        wait_log(srv, ") ready in")
        (before,) = srv.workers()
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as c:
            # Past --timeout with the worker waiting on its client, first for any byte,
            # then for the rest of a head: time must pass here, there is no event to
            # wait for (the fault was an abort at --timeout).
            time.sleep(2.5)
            c.sendall(b"GET /pid HTTP/1.1\r\n")
            time.sleep(2.5)
            assert srv.workers() == {before}
            assert "aborted" not in srv.stderr()
            c.sendall(b"Host: h\r\n\r\n")
            (resp,), _ = read_responses(c, ["GET"])
            assert resp.status == 200
            assert resp.body.split()[0] == str(before).encode()
        assert srv.workers() == {before}
        assert "aborted" not in srv.stderr()


# Issue 14 QA (a): waiting on the client inside a request (a body that stalls, a reader
# that does not read) is client time too: bounded by the client deadlines, never by
# --timeout. With --timeout 2 < --header-timeout 4 (the body-stall limit), the old code
# aborted the worker at 2 s while the app sat in wsgi.input.read().
STALL = ("--timeout", "2", "--header-timeout", "4")
STALLED_HEAD = (b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n"
                b"Expect: 100-continue\r\n\r\n")


def _stall_body(port: int) -> tuple[int, bool]:
    """Send a head asking for 100 Continue, wait for it (the app is then inside its first
    wsgi.input read), send 10 of 1000 bytes and stop: (final status, closed after it)."""
    cont = b"HTTP/1.1 100 Continue\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=15) as c:
        c.sendall(STALLED_HEAD)
        buf = c.recv(65536)
        assert buf.startswith(cont), buf
        c.sendall(b"x" * 10)
        buf = buf[len(cont):]
        while b"\r\n\r\n" not in buf:
            more = c.recv(65536)
            if not more:
                break
            buf += more
        status = int(buf.split(b" ", 2)[1]) if buf.startswith(b"HTTP/1.1 ") else 0
        return status, server_closes(c)


def _stalled_body_keeps_the_worker(srv: Server) -> int:
    """The body stops for the body-stall limit (4 s, twice --timeout): the request ends
    by that rule (408, close) and the worker is the same; its pid."""
    srv.wait_ready()
    wait_log(srv, ") ready in")
    (before,) = srv.workers()
    assert _stall_body(srv.port) == (408, True)
    assert srv.workers() == {before}
    assert "silent for" not in srv.stderr()
    return before


@pytest.mark.parametrize("http", ["httptools", "h11"])
@pytest.mark.parametrize("klass", ["sync", "thread"])
def test_a_stalled_body_is_client_time_but_a_stuck_app_is_still_killed(
        klass: str, http: str) -> None:
    with reclusterd(APP, "-k", klass, "--http", http, "--workers", "1", *STALL) as srv:
        before = _stalled_body_keeps_the_worker(srv)
        # An app that really is stuck is still killed at --timeout.
        with socket.create_connection(("127.0.0.1", srv.port), timeout=15) as c:
            c.sendall(b"GET /sleep?30 HTTP/1.1\r\nHost: h\r\n\r\n")
            wait_log(srv, f"worker {before} (gen 1) silent for")
            wait_log(srv, f"worker {before} (gen 1) exited")
            assert server_closes(c, 10)
        wait_for(lambda: srv.workers() - {before}, what="a replacement worker")


def _read_to_close(c: socket.socket) -> tuple[bytes, int]:
    """(response head, body bytes) of a Connection: close response, read to EOF."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        more = c.recv(65536)
        assert more, buf
        buf += more
    head, _, rest = buf.partition(b"\r\n\r\n")
    size = len(rest)
    while more := c.recv(1 << 20):
        size += len(more)
    return head, size


@pytest.mark.parametrize("klass", ["sync", "thread"])
def test_a_reader_that_does_not_read_is_client_time(klass: str) -> None:
    """A blocking response write to a client that reads nothing for longer than
    --timeout (under the write deadline) is client time: the body arrives whole."""
    with reclusterd(APP, "-k", klass, "--workers", "1", *STALL) as srv:
        srv.wait_ready()
        wait_log(srv, ") ready in")
        (before,) = srv.workers()
        with socket.create_connection(("127.0.0.1", srv.port), timeout=15) as c:
            # 64 MiB: far more than the socket buffers hold, so the app blocks in write
            c.sendall(b"GET /big?64 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
            # Not reading for longer than --timeout (under the 4 s write deadline):
            # time must pass here, there is no event to wait for.
            time.sleep(3)
            head, size = _read_to_close(c)
            assert head.startswith(b"HTTP/1.1 200 ")
            assert size == 64 << 20
        assert srv.workers() == {before}
        assert "silent for" not in srv.stderr()


def test_a_stalled_body_does_not_stop_the_asyncio_worker() -> None:
    """asyncio: the loop keeps beating while a request waits for its body."""
    with reclusterd("tests.apps.asgi_echo:app", "-k", "asyncio", "--workers", "1",
                    *STALL) as srv:
        _stalled_body_keeps_the_worker(srv)
