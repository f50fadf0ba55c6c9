"""Peer-corpus conformance (issue 5): every case of tests/data/conformance/requests.json, sent
to a running server (default worker class) with the echo app, for both parsers."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from tests.data import conformance_cases
from tests.support.http_client import read_responses, server_closes
from tests.support.process import Server, reclusterd

CASES = conformance_cases()  # a missing corpus fails collection, never skips
REJECT = {400, 413, 414, 431, 501, 505}


@pytest.fixture(scope="module", params=["httptools", "h11"])
def srv(request: pytest.FixtureRequest) -> Iterator[Server]:
    s = reclusterd("tests.e2e.test_wsgi_apps:echo", "--workers", "1", "--http", request.param)
    try:
        yield s.wait_ready()
    finally:
        s.stop()


def _values(v: str) -> list[str]:
    return [p.strip() for p in v.split(",") if p.strip()]


def _check_echo(got: dict[str, Any], want: dict[str, Any], cid: str) -> None:
    assert got["method"] == want["method"], cid
    assert got["path"] == want["path"], cid
    assert got["query"] == want["query"], cid
    assert got["body"] == want["body"], cid
    for name, value in want["headers"].items():
        if name == "content-type":
            assert _values(got["content_type"] or "") == _values(value), (cid, name)
        elif name == "content-length":
            assert int(got["content_length"]) == int(value), (cid, name)
        else:
            key = name.upper().replace("-", "_")
            assert key in got["headers"], (cid, name, got["headers"])
            assert _values(got["headers"][key]) == _values(value), (cid, name)
    for name in want.get("absent", []):
        key = name.upper().replace("-", "_")
        if name == "content-type":
            assert got["content_type"] is None, (cid, name)
        else:
            assert key not in got["headers"], (cid, name)


def drive_case(port: int, case: dict[str, Any]) -> None:
    """Send one corpus case on a fresh connection and check the answer (README of the corpus)."""
    raw = base64.b64decode(case["raw_b64"])
    cid = case["id"]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(raw)
        if case["expect"] == "accept":
            want = case["requests"]
            rs, _ = read_responses(s, [r["method"] for r in want])
            assert [r.status for r in rs] == [200] * len(want), (cid, rs)
            for r, w in zip(rs, want, strict=True):
                _check_echo(json.loads(r.body), w, cid)
            s.settimeout(0.3)
            try:
                extra = s.recv(65536)
            except TimeoutError:
                extra = b""
            assert extra == b"", (cid, extra)
        else:
            rs, closed = read_responses(s, ["GET"])
            assert rs and rs[0].status in REJECT, (cid, rs)
            assert rs[0].headers.get("connection") == "close", cid
            assert closed or server_closes(s), cid


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_case(srv: Server, case: dict[str, Any]) -> None:
    drive_case(srv.port, case)


def test_server_still_answers(srv: Server) -> None:
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"GET /still HTTP/1.1\r\nHost: h\r\n\r\n")
        rs, _ = read_responses(s, ["GET"])
    assert rs[0].status == 200 and json.loads(rs[0].body)["path"] == "/still"
