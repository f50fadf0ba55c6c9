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


@pytest.fixture(scope="module", params=["httptools", "h11"])
def srv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
        ) -> Iterator[Server]:
    d: Path = tmp_path_factory.mktemp("asgiconf")
    s = reclusterd("tests.apps.asgi_echo:app",
                   "--workers", "1", "--http", request.param, "--chdir", str(d))
    try:
        yield s.wait_ready()
    finally:
        s.stop()


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_case(srv: Server, case: dict[str, Any]) -> None:
    drive_case(srv.port, case)
