"""Real HTTP/2 clients (curl, nghttp, httpx) against a FastAPI app (asyncio worker) and a
Flask app (thread worker, skipped while it speaks HTTP/1 only), over TLS with ALPN h2
and over h2c by prior knowledge: the same answers as the same client over HTTP/1.1."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme

from reclusterd.workers.asyncio import AsyncioWorker
from reclusterd.workers.thread import ThreadWorker
from tests.support.process import Server, reclusterd

BODY = bytes(range(256)) * 800           # 200 KiB: several windows of request body
BIG = 300_001                            # response octets: several windows too
APPS = [pytest.param(("tests.apps.h2_fastapi:app", "asyncio"), id="fastapi"),
        pytest.param(("tests.apps.h2_flask:app", "thread"), id="flask", marks=pytest.mark.skipif(
            not ThreadWorker.speaks_h2, reason="the thread worker speaks HTTP/1 only"))]
assert AsyncioWorker.speaks_h2
Answer = tuple[int, str, bytes]


class Servers:
    """One app behind two servers: TLS (ALPN h2) and plain (h2c prior knowledge)."""

    def __init__(self, tls: Server, plain: Server, ca: str, data: Path) -> None:
        self.tls, self.plain, self.ca, self.data = tls, plain, ca, data

    def url(self, secure: bool, path: str) -> str:
        srv = self.tls if secure else self.plain
        return f"{'https' if secure else 'http'}://127.0.0.1:{srv.port}{path}"


@pytest.fixture(scope="module", params=APPS)
def servers(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Servers]:
    app, kind = request.param
    d = tmp_path_factory.mktemp("h2clients")
    ca = trustme.CA()
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(d / "s.pem"))
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    (d / "body").write_bytes(BODY)
    pem = str(d / "s.pem")
    with reclusterd(app, "-w", "1", "-k", kind, "--certfile", pem, "--keyfile", pem) as tls, \
            reclusterd(app, "-w", "1", "-k", kind, "--http2-cleartext", "both") as plain:
        tls.wait_ready()
        plain.wait_ready()
        yield Servers(tls, plain, str(d / "ca.pem"), d)


def _curl(s: Servers, secure: bool, flag: str, path: str, post: bool) -> Answer:
    out = s.data / "out"
    args = ["curl", "-sS", flag, "-o", str(out), "-w", "%{http_code}\\n%{content_type}\\n"
            "%{http_version}", "--cacert", s.ca, s.url(secure, path)]
    if post:
        args[2:2] = ["--data-binary", f"@{s.data / 'body'}"]
    res = subprocess.run(args, capture_output=True, text=True, timeout=30, check=True)
    code, ctype, version = res.stdout.split("\n")    # a content type may hold spaces
    assert version == ("2" if flag != "--http1.1" else "1.1"), (flag, version)
    return int(code), ctype, out.read_bytes()


def _httpx(s: Servers, secure: bool, h2: bool, path: str, post: bool) -> Answer:
    verify = ssl.create_default_context(cafile=s.ca)
    with httpx.Client(http1=not (h2 and not secure), http2=h2, verify=verify,
                      timeout=30) as c:
        r = c.post(s.url(secure, path), content=BODY) if post else c.get(s.url(secure, path))
    assert r.http_version == ("HTTP/2" if h2 else "HTTP/1.1")
    return r.status_code, r.headers["content-type"], r.content


REQUESTS = [("/echo", True), (f"/big?n={BIG}", False), ("/missing", False)]


@pytest.mark.skipif(not shutil.which("curl"), reason="curl missing")
@pytest.mark.parametrize("secure", [True, False], ids=["tls", "h2c"])
def test_curl_same_answers_over_h2(servers: Servers, secure: bool) -> None:
    h2_flag = "--http2" if secure else "--http2-prior-knowledge"
    for path, post in REQUESTS:
        assert _curl(servers, secure, h2_flag, path, post) == \
            _curl(servers, secure, "--http1.1", path, post), path


@pytest.mark.parametrize("secure", [True, False], ids=["tls", "h2c"])
def test_httpx_same_answers_over_h2(servers: Servers, secure: bool) -> None:
    for path, post in REQUESTS:
        assert _httpx(servers, secure, True, path, post) == \
            _httpx(servers, secure, False, path, post), path


@pytest.mark.skipif(not shutil.which("nghttp"), reason="nghttp (nghttp2-client) missing")
@pytest.mark.parametrize("how", ["tls", "h2c", "upgrade"])
def test_nghttp_same_bodies_over_h2(servers: Servers, how: str) -> None:
    secure = how == "tls"
    for path, post in REQUESTS[:2]:
        args = ["nghttp", servers.url(secure, path)]
        if post:
            args[1:1] = ["-d", str(servers.data / "body")]
        if how == "upgrade":
            args.insert(1, "-u")
        verbose = subprocess.run([*args[:-1], "-v", "-n", args[-1]], capture_output=True,
                                 timeout=30, check=True).stdout
        assert b":status: 200" in verbose
        assert (b"HTTP Upgrade success" in verbose) is (how == "upgrade")
        res = subprocess.run(args, capture_output=True, timeout=30, check=True)
        assert res.stdout == _httpx(servers, secure, False, path, post)[2], path
