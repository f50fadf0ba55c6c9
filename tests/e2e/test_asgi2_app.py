"""An ASGI 2 application (a class taking the scope) is served as Uvicorn serves it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.support.http_client import http_get
from tests.support.process import ROOT, reclusterd, wait_log

# The legacy ASGI 2 shape, lifespan included: App(scope) then await instance(receive, send).
ASGI2_APP = textwrap.dedent('''
    class App:
        def __init__(self, scope):
            self.scope = scope

        async def __call__(self, receive, send):
            if self.scope["type"] == "lifespan":
                for _ in ("startup", "shutdown"):  # each answered with its ".complete"
                    event = await receive()
                    await send({"type": event["type"] + ".complete"})
                return
            body = ("asgi2 " + self.scope["path"]).encode()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": body})
''')


def test_asgi2_class_app_is_served(tmp_path: Path) -> None:
    (tmp_path / "legacy.py").write_text(ASGI2_APP)
    with reclusterd("legacy:App", "--workers", "1", "--chdir", str(tmp_path),
                    "--lifespan", "on") as srv:
        srv.wait_ready()
        wait_log(srv, "legacy:App is an ASGI 2 application")
        status, _, body = http_get(srv.port, "/hello")
        assert (status, body) == (200, b"asgi2 /hello")
        status, _, body = http_get(srv.port, "/again")
        assert (status, body) == (200, b"asgi2 /again")


def test_asgi2_check_config_says_wrapped(tmp_path: Path) -> None:
    (tmp_path / "legacy.py").write_text(ASGI2_APP)
    r = subprocess.run([sys.executable, "-m", "reclusterd", "legacy:App", "--check-config"],
                       cwd=tmp_path, env={"PYTHONPATH": str(ROOT)}, capture_output=True,
                       text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert "legacy:App (ASGI 2, wrapped as ASGI 3)" in r.stdout
    assert "x asyncio" in r.stdout
