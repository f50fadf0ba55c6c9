"""Unit tests for reclusterd.arbiter.status: Prometheus text, /livez, /readyz, the server."""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from reclusterd import config
from reclusterd.arbiter.status import StatusServer, is_ready, render
from reclusterd.meter import DurationHistogram


def status_cfg(address: str) -> config.Config:
    return config.load(["app:app", "--status-bind", address], {})


def snap(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"workers": {"booting": 0, "ready": 2, "draining": 0},
                            "totals": {}, "restarts": {}, "ready": True,
                            "shutting_down": False}
    base.update(kw)
    return base


def test_render_prometheus() -> None:
    h = DurationHistogram()
    h.observe(0.002)
    h.observe(0.2)
    stats = {"requests": 2, "s2xx": 1, "s4xx": 1, "in_flight": 1, "rss_kb": 2, **h.stats()}
    text = render(snap(workers={"ready": 2, "booting": 1}, totals=stats, generation=3,
                       restarts={"max-requests": 1}))
    assert 'reclusterd_workers{state="ready"} 2' in text
    assert 'reclusterd_workers{state="draining"} 0' in text
    assert "reclusterd_generation 3\n" in text
    assert "reclusterd_requests_total 2\n" in text
    assert 'reclusterd_responses_total{class="2xx"} 1' in text
    assert 'reclusterd_responses_total{class="4xx"} 1' in text
    assert 'reclusterd_worker_restarts_total{reason="max-requests"} 1' in text
    assert "reclusterd_requests_in_flight 1\n" in text
    assert 'reclusterd_request_duration_seconds_bucket{le="0.005"} 1' in text
    assert 'reclusterd_request_duration_seconds_bucket{le="0.1"} 1' in text
    assert 'reclusterd_request_duration_seconds_bucket{le="0.25"} 2' in text
    assert 'reclusterd_request_duration_seconds_bucket{le="+Inf"} 2' in text
    assert "reclusterd_request_duration_seconds_count 2\n" in text
    assert "reclusterd_workers_rss_bytes 2048\n" in text
    assert "reclusterd_ready 1\n" in text
    for line in text.splitlines():     # every sample line is "name{labels} number"
        if not line.startswith("#"):
            float(line.rsplit(" ", 1)[1])


def test_render_requests_by_protocol_and_open_http2_connections() -> None:
    totals = {"requests": 7, "p1.0": 1, "p1.1": 4, "p2": 2, "h2_open": 3}
    text = render(snap(totals=totals))
    assert "reclusterd_requests_total 7\n" in text          # the unlabelled total stays
    assert "# TYPE reclusterd_requests_by_protocol_total counter" in text
    assert 'reclusterd_requests_by_protocol_total{protocol="HTTP/1.0"} 1\n' in text
    assert 'reclusterd_requests_by_protocol_total{protocol="HTTP/1.1"} 4\n' in text
    assert 'reclusterd_requests_by_protocol_total{protocol="HTTP/2"} 2\n' in text
    assert "# TYPE reclusterd_http2_connections_open gauge" in text
    assert "reclusterd_http2_connections_open 3\n" in text
    empty = render({})     # before the first heartbeat: every series at 0, none missing
    assert 'reclusterd_requests_by_protocol_total{protocol="HTTP/2"} 0\n' in empty
    assert "reclusterd_http2_connections_open 0\n" in empty


def test_render_empty_snapshot() -> None:
    text = render({})
    assert "reclusterd_requests_total 0\n" in text and "reclusterd_ready 0\n" in text


def test_older_key_names() -> None:
    text = render({"states": {"ready": 3}, "stats": {"requests": 7}})
    assert 'reclusterd_workers{state="ready"} 3' in text
    assert "reclusterd_requests_total 7\n" in text


def test_is_ready() -> None:
    assert is_ready({"workers": {"ready": 1}})
    assert not is_ready({"workers": {"ready": 0, "booting": 2}})
    assert not is_ready({"workers": {"ready": 4}, "shutting_down": True})
    assert not is_ready({"workers": {"ready": 1}, "min_ready": 2})
    assert is_ready({"states": {"ready": 1}})
    assert is_ready({"ready": True}) and not is_ready({"ready": False, "workers": {"ready": 3}})


class Loop:
    """Drive a StatusServer the way the arbiter does: select on fileno(), then handle_io()."""

    def __init__(self, server: StatusServer) -> None:
        self.server = server
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop:
            r, _, _ = select.select([self.server.fileno()], [], [], 0.05)
            self.server.handle_io()


@pytest.fixture
def status() -> Iterator[tuple[StatusServer, dict[str, Any]]]:
    state: dict[str, Any] = snap()
    srv = StatusServer(status_cfg("127.0.0.1:0"), lambda: state)
    loop = Loop(srv)
    yield srv, state
    loop.stop = True
    loop.thread.join(5)
    srv.close()


def get(srv: StatusServer, req: bytes) -> bytes:
    port = srv.listener.sock.getsockname()[1]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(req)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def test_status_endpoints(status: tuple[StatusServer, Mapping[str, Any]]) -> None:
    srv, state = status
    assert get(srv, b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 200 ")
    assert get(srv, b"GET /readyz HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 200 ")
    state["ready"] = False  # type: ignore[index]
    assert get(srv, b"GET /readyz HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 503 ")
    m = get(srv, b"GET /metrics HTTP/1.0\r\n\r\n")
    assert b"text/plain; version=0.0.4" in m and b'reclusterd_workers{state="ready"} 2' in m
    assert b"reclusterd_ready 0" in m
    state["live"] = False  # type: ignore[index]
    assert get(srv, b"GET /livez HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 503 ")
    state["live"] = True  # type: ignore[index]
    assert get(srv, b"HEAD /livez HTTP/1.1\r\n\r\n").endswith(b"\r\n\r\n")
    assert get(srv, b"GET /nope HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 404 ")
    assert get(srv, b"POST /livez HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 405 ")
    try:    # the server closes with unread input: the client may see a reset instead
        big = get(srv, b"GET /livez HTTP/1.1\r\n" + b"X: " + b"a" * 9000)
        assert big.startswith(b"HTTP/1.1 431 ") or big == b""
    except ConnectionResetError:
        pass
    assert get(srv, b"GET /livez HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 200 ")


def test_status_server_survives_idle_and_many_clients(
        status: tuple[StatusServer, Mapping[str, Any]]) -> None:
    srv, _ = status
    port = srv.listener.sock.getsockname()[1]
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(80)]
    try:
        assert get(srv, b"GET /livez HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 200 ")
    finally:
        for s in idle:
            s.close()


def test_close_in_child_keeps_unix_file(tmp_path: Any) -> None:
    path = tmp_path / "status.sock"
    srv = StatusServer(status_cfg(f"unix:{path}"), lambda: {})
    srv.close_in_child()
    assert path.exists()
    assert srv.listener.sock.fileno() == -1


def test_snapshot_failure_is_500() -> None:
    def boom() -> dict[str, Any]:
        raise RuntimeError("x")
    srv = StatusServer(status_cfg("127.0.0.1:0"), boom)
    try:
        assert srv.respond(b"GET /metrics HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 500 ")
        # the master alive alone is not "live": no snapshot, no verdict
        assert srv.respond(b"GET /livez HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 500 ")
    finally:
        srv.close()
