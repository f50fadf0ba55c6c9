"""Issue 14 item 5: waiting for a client is not being stuck. Only app time counts
against --timeout: a worker whose client sends nothing (or half a head) for longer
than --timeout is not aborted."""

from __future__ import annotations

import socket
import time

import pytest

from tests.support.http_client import read_responses
from tests.support.process import reclusterd, wait_log

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
