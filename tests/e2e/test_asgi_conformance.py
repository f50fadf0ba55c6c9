"""Peer-corpus conformance (issue 5) against the asyncio worker, both parsers: every case of
tests/data/conformance/requests.json sent to an ASGI echo app (WSGI-style echo keys, so the
corpus expectations and checks of test_conformance.py apply unchanged)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_conformance import CASES, drive_case
from tests.support.process import Server, reclusterd

ECHO = '''
import json
from urllib.parse import unquote_to_bytes

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        m = await receive()
        body += m.get("body", b"")
        if not m.get("more_body"):
            break
    headers, ctype, clen = {}, None, None
    for name, value in scope["headers"]:
        n, v = name.decode("latin-1"), value.decode("latin-1")
        if n == "content-type":
            ctype = v
        elif n == "content-length":
            clen = v
        elif "_" not in n:     # the WSGI rule the corpus expects (CGI names)
            key = n.upper().replace("-", "_")
            headers[key] = headers[key] + "," + v if key in headers else v
    data = {"method": scope["method"],
            "path": unquote_to_bytes(scope["raw_path"]).decode("latin-1"),
            "query": scope["query_string"].decode("latin-1"), "headers": headers,
            "content_type": ctype, "content_length": clen, "body": body.decode("latin-1")}
    out = json.dumps(data).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(out)).encode())]})
    await send({"type": "http.response.body", "body": out})
'''


@pytest.fixture(scope="module", params=["httptools", "h11"])
def srv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
        ) -> Iterator[Server]:
    d: Path = tmp_path_factory.mktemp("asgiconf")
    (d / "aecho.py").write_text(ECHO)
    s = reclusterd("aecho:app", "--workers", "1", "--http", request.param, "--chdir", str(d))
    try:
        yield s.wait_ready()
    finally:
        s.stop()


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_case(srv: Server, case: dict[str, Any]) -> None:
    drive_case(srv.port, case)
