"""README's "Writing a worker class": the plug-in shown there boots and serves.

tests/apps/tiny_worker.py must be the README's code block, byte for byte (so the README
cannot drift from what is tested); the server then runs it with --worker-class.
"""

from __future__ import annotations

import re
import signal
import socket
from pathlib import Path

from tests.support.http_client import server_closes
from tests.support.process import reclusterd

ROOT = Path(__file__).resolve().parents[2]


def readme_worker_block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Writing a worker class", 1)[1].split("\n## ", 1)[0]
    m = re.search(r"```python\n(.*?)```", section, re.S)
    assert m, "README's 'Writing a worker class' has a python block"
    return m.group(1)


def test_readme_block_is_the_tested_worker() -> None:
    tested = (ROOT / "tests" / "apps" / "tiny_worker.py").read_text(encoding="utf-8")
    assert tested.split('"""', 2)[2].lstrip("\n") == readme_worker_block(), (
        "README's worker class drifted from tests/apps/tiny_worker.py")


def test_readme_worker_class_boots_and_serves() -> None:
    with reclusterd("tests.apps.matrix:wsgi", "--workers", "1",
                    "--worker-class", "tests.apps.tiny_worker:TinyWorker") as srv:
        srv.wait_ready()
        for _ in range(2):
            with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                s.settimeout(10)
                data = b""
                while b"\r\n\r\n" not in data or not data.endswith(b"ok"):
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"\r\n\r\nok")
                assert server_closes(s)
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit(15) == 0
