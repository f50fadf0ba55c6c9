"""/metrics by protocol (issue 17): HTTP/1.0, HTTP/1.1 and HTTP/2 requests counted apart,
and open HTTP/2 connections as a gauge, on the thread (WSGI) and asyncio (ASGI) workers."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.test_ops_status import metric, status
from tests.support.http_client import http_get, raw_request
from tests.support.process import free_port, reclusterd, wait_for

APPS = {"thread": "tests.apps.h2_wsgi_flask:app", "asyncio": "tests.apps.h2_fastapi:app"}
BY = "reclusterd_requests_by_protocol_total"


def counts(text: str) -> tuple[float, ...]:
    """(HTTP/1.0, HTTP/1.1, HTTP/2, all requests, open HTTP/2 connections)."""
    return (metric(text, f'{BY}{{protocol="HTTP/1.0"}}'),
            metric(text, f'{BY}{{protocol="HTTP/1.1"}}'),
            metric(text, f'{BY}{{protocol="HTTP/2"}}'),
            metric(text, "reclusterd_requests_total"),
            metric(text, "reclusterd_http2_connections_open"))


def shows(sport: int, want: tuple[float, ...]) -> bool:
    """Has a heartbeat carried `want` to the master yet?"""
    code, text = status(sport, "/metrics")
    return code == 200 and counts(text) == want


@pytest.mark.parametrize("kind", sorted(APPS))
def test_metrics_count_h1_and_h2_requests_and_open_h2_connections(kind: str) -> None:
    sport = free_port()
    with reclusterd(APPS[kind], "-w", "1", "-k", kind, "--http2-cleartext",
                    "prior-knowledge", "--status-bind", f"127.0.0.1:{sport}") as srv:
        srv.wait_ready()
        wait_for(lambda: shows(sport, (0, 0, 0, 0, 0)), 10, what="/metrics at zero")
        base = f"http://127.0.0.1:{srv.port}/"
        with httpx.Client(http1=False, http2=True, timeout=20) as h2c:
            for _ in range(3):      # three streams on one connection
                r = h2c.get(base)
                assert (r.http_version, r.status_code) == ("HTTP/2", 200)
            for _ in range(2):
                assert http_get(srv.port, "/")[0] == 200
            head = raw_request(srv.port, b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 "), head[:80]   # RFC 9110 §2.5
            # the h2 connection is still open: the gauge says 1
            wait_for(lambda: shows(sport, (1, 2, 3, 6, 1)), 10,
                     what="/metrics to count 1 HTTP/1.0, 2 HTTP/1.1, 3 HTTP/2 requests")
        wait_for(lambda: shows(sport, (1, 2, 3, 6, 0)), 10,
                 what="the closed HTTP/2 connection to leave the gauge")
