"""--env-file and -e reach the app's os.environ in every worker (real processes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.http_client import get_body
from tests.support.process import reclusterd

pytest.importorskip("dotenv")


def test_env_file_and_pairs_reach_the_app(tmp_path: Path) -> None:
    (tmp_path / "app.env").write_text("GREETING=hello\nTARGET=file\n")
    with reclusterd("tests.apps.env_echo:app",
                    "-w", "2", "--env-file", "app.env", "-e", "TARGET=cli",
                    cwd=tmp_path, env={"FROM_PARENT": "yes", "GREETING": "parent"}) as srv:
        srv.wait_ready()
        assert get_body(srv.port) == "GREETING=hello TARGET=cli FROM_PARENT=yes"
