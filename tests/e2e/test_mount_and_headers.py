"""--root-path (WSGI SCRIPT_NAME/PATH_INFO, ASGI root_path/path, the SCRIPT_NAME
environment variable, Flask url_for, a mounted Starlette app) and
--no-server-header/--no-date-header on both worker families."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.http_client import raw_request
from tests.support.process import reclusterd


def get(port: int, path: str) -> tuple[bytes, bytes]:
    data = raw_request(port, f"GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
                       .encode())
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), data
    return head, body


def doc(port: int, path: str) -> dict[str, Any]:
    return dict(json.loads(get(port, path)[1]))


@pytest.mark.parametrize("kind", ["sync", "thread"])
def test_wsgi_script_name(kind: str) -> None:
    with reclusterd("tests.apps.proxied:wsgi", "-w", "1", "-k", kind,
                    "--root-path", "/api/") as srv:
        srv.wait_ready()
        got = doc(srv.port, "/api/items/1")
        assert (got["SCRIPT_NAME"], got["PATH_INFO"]) == ("/api", "/items/1")
        assert doc(srv.port, "/api")["PATH_INFO"] == ""
        # not under the prefix (/apiary is not /api/...): taken as already stripped
        assert (doc(srv.port, "/apiary")["SCRIPT_NAME"], doc(srv.port, "/apiary")["PATH_INFO"]
                ) == ("/api", "/apiary")


def test_script_name_environment_variable() -> None:
    with reclusterd("tests.apps.proxied:wsgi", "-w", "1", "-k", "thread",
                    env={"SCRIPT_NAME": "/env"}) as srv:
        srv.wait_ready()
        got = doc(srv.port, "/env/x")
        assert (got["SCRIPT_NAME"], got["PATH_INFO"]) == ("/env", "/x")


def test_asgi_root_path() -> None:
    with reclusterd("tests.apps.proxied:asgi", "-w", "1", "--root-path", "/api") as srv:
        srv.wait_ready()
        got = doc(srv.port, "/api/items")
        assert (got["root_path"], got["path"]) == ("/api", "/api/items")
        got = doc(srv.port, "/items")        # a proxy stripped it: the full path is rebuilt
        assert (got["root_path"], got["path"]) == ("/api", "/api/items")


def test_flask_url_for_and_mounted_starlette() -> None:
    with reclusterd("tests.apps.proxied:flask", "-w", "1", "--root-path", "/app") as srv:
        srv.wait_ready()
        assert get(srv.port, "/app/link")[1] == b"/app/target"
    with reclusterd("tests.apps.proxied:starlette", "-w", "1", "--root-path", "/app") as srv:
        srv.wait_ready()
        got = doc(srv.port, "/app/sub/where")
        assert got["url"] == "http://a/app/sub/where"


@pytest.mark.parametrize("app,kind", [("wsgi", "thread"), ("wsgi", "sync"),
                                      ("asgi", "asyncio")])
def test_server_and_date_headers_off(app: str, kind: str) -> None:
    with reclusterd(f"tests.apps.proxied:{app}", "-w", "1", "-k", kind,
                    "--no-server-header", "--no-date-header") as srv:
        srv.wait_ready()
        head = get(srv.port, "/x")[0].lower()
        assert b"\r\nserver:" not in head and b"\r\ndate:" not in head
        head = get(srv.port, "/own-headers")[0].lower()     # the app's own still go out
        assert b"\r\nserver: app-server" in head and b"\r\ndate: app-date" in head
    with reclusterd(f"tests.apps.proxied:{app}", "-w", "1", "-k", kind) as srv:
        srv.wait_ready()
        head = get(srv.port, "/own-headers")[0].lower()     # an app's own header wins
        assert head.count(b"\r\nserver:") == 1 and b"\r\nserver: app-server" in head
        assert head.count(b"\r\ndate:") == 1
        head = get(srv.port, "/x")[0].lower()
        assert b"\r\nserver: reclusterd" in head and b"\r\ndate: " in head
