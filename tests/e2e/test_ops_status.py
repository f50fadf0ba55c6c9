"""OPS e2e: /metrics across workers, /livez, /readyz, --shutdown-delay, sd_notify."""

from __future__ import annotations

import json
import re
import signal
import socket
import time
from pathlib import Path

from tests.support.apps import OPS_ECHO
from tests.support.http_client import http_get, ops_http_ok
from tests.support.process import free_port, reclusterd, wait_for


def metric(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert m, f"{name} missing from /metrics:\n{text}"
    return float(m.group(1))


def status(port: int, path: str) -> tuple[int, str]:
    """(code, body) from the status server; (0, "") while it is not listening yet."""
    try:
        code, _, body = http_get(port, path, timeout=3)
    except OSError:
        return 0, ""
    return code, body.decode()


def test_metrics_count_across_workers_and_probes(tmp_path: Path) -> None:
    app = OPS_ECHO
    sport = free_port()
    with reclusterd(app, "--workers", "2", "--status-bind", f"127.0.0.1:{sport}",
                    cwd=tmp_path) as srv:
        srv.wait_ready()
        assert wait_for(lambda: status(sport, "/livez")[0] == 200, 10, what="/livez")
        wait_for(lambda: status(sport, "/readyz")[0] == 200, 15, what="/readyz 200")
        pids = set()
        n = 40
        for _ in range(n):
            code, _, body = http_get(srv.port, "/x")
            assert code == 200
            pids.add(json.loads(body)["pid"])

        def counted() -> str | None:
            text = status(sport, "/metrics")[1]
            return text if metric(text, "reclusterd_requests_total") >= n else None
        text = wait_for(counted, 10, what="/metrics to count every request")
        assert metric(text, "reclusterd_requests_total") == n
        assert metric(text, 'reclusterd_responses_total{class="2xx"}') == n
        assert metric(text, 'reclusterd_workers{state="ready"}') == 2
        assert metric(text, "reclusterd_requests_in_flight") == 0
        assert "# TYPE reclusterd_request_duration_seconds histogram" in text
        assert metric(text, "reclusterd_request_duration_seconds_count") == n
        assert metric(text, 'reclusterd_request_duration_seconds_bucket{le="+Inf"}') == n
        assert metric(text, "reclusterd_request_duration_seconds_sum") > 0
        if len(pids) < 2:   # the kernel chose one worker for every connection: still summed
            print("note: all requests landed on one worker")
        code, _ = status(sport, "/nope")
        assert code == 404


def test_shutdown_delay_readyz_503_while_serving(tmp_path: Path) -> None:
    app = OPS_ECHO
    sport = free_port()
    delay = 3.0
    with reclusterd(app, "--workers", "1", "--status-bind", f"127.0.0.1:{sport}",
                    "--shutdown-delay", str(delay), cwd=tmp_path) as srv:
        srv.wait_ready()
        wait_for(lambda: status(sport, "/readyz")[0] == 200, 15, what="/readyz 200")
        t0 = time.monotonic()
        srv.signal(signal.SIGTERM)
        wait_for(lambda: status(sport, "/readyz")[0] == 503, 5, what="/readyz 503 after TERM")
        assert status(sport, "/livez")[0] == 200
        # still serving during the delay
        served_late = False
        while time.monotonic() - t0 < delay - 1.0:
            assert ops_http_ok(srv.port), "stopped serving during --shutdown-delay"
            served_late = True
            time.sleep(0.1)
        assert served_late
        assert srv.wait_exit(30) == 0
        assert time.monotonic() - t0 >= delay - 0.2


def test_sd_notify_ready_after_serving_and_stopping(tmp_path: Path) -> None:
    app = OPS_ECHO
    nsock_path = tmp_path / "notify.sock"
    nsock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    nsock.bind(str(nsock_path))
    nsock.settimeout(20)
    try:
        with reclusterd(app, "--workers", "2", cwd=tmp_path,
                        env={"NOTIFY_SOCKET": str(nsock_path)}) as srv:
            msgs: list[str] = []

            def until(state: str) -> None:
                deadline = time.monotonic() + 20
                while state not in msgs:
                    nsock.settimeout(max(0.1, deadline - time.monotonic()))
                    msgs.extend(nsock.recv(4096).decode().splitlines())
            until("READY=1")
            # READY=1 is only sent once workers serve: the port answers right now
            assert ops_http_ok(srv.port)
            srv.signal(signal.SIGTERM)
            until("STOPPING=1")
            assert srv.wait_exit(20) == 0
            assert msgs.index("READY=1") < msgs.index("STOPPING=1")
    finally:
        nsock.close()
