"""HTTP/2 on the asyncio worker: ALPN h2 over TLS and h2c prior knowledge, with real
clients (httpx, curl) and a raw h2 client for trailers, resets and the drain."""

from __future__ import annotations

import shutil
import signal
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import httpx
import pytest
import trustme
from hyperframe.frame import DataFrame, Frame, GoAwayFrame

from tests.support.process import Server, reclusterd, wait_for, wait_log

FASTAPI = "tests.apps.h2_fastapi:app"
RAW = "tests.apps.asgi_h2_raw:app"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(server pem with key, CA pem) from trustme."""
    ca = trustme.CA()
    d = tmp_path_factory.mktemp("h2")
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(d / "s.pem"))
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    yield str(d / "s.pem"), str(d / "ca.pem")


def asyncio_server(app: str, *opts: str) -> Server:
    return reclusterd(app, "-w", "1", "-k", "asyncio", *opts)


def test_httpx_gets_the_same_answers_over_h2_and_h1(tls: tuple[str, str]) -> None:
    pem, ca = tls
    with asyncio_server(FASTAPI, "--certfile", pem, "--keyfile", pem) as srv:
        srv.wait_ready()
        base = f"https://127.0.0.1:{srv.port}"
        answers = {}
        for h2_on in (True, False):
            with httpx.Client(http2=h2_on, verify=ssl.create_default_context(cafile=ca),
                              base_url=base, timeout=20) as c:
                hello = c.get("/")
                assert hello.http_version == ("HTTP/2" if h2_on else "HTTP/1.1")
                echo = c.post("/echo", content=bytes(range(256)) * 1200)
                big = c.get("/big", params={"n": 700_001})
                answers[h2_on] = (hello.status_code, hello.text.split()[0],
                                  hello.text.split()[2], echo.status_code, echo.content,
                                  big.status_code, len(big.content))
        assert answers[True] == answers[False]
        assert answers[True][4] == bytes(range(256)) * 1200


@pytest.mark.skipif(not shutil.which("curl"), reason="curl missing")
def test_curl_http2_negotiates_h2(tls: tuple[str, str]) -> None:
    pem, ca = tls
    with asyncio_server(FASTAPI, "--certfile", pem, "--keyfile", pem) as srv:
        srv.wait_ready()
        out = subprocess.run(["curl", "-sS", "--http2", "--cacert", ca, "-w",
                              " %{http_version}", f"https://127.0.0.1:{srv.port}/"],
                             capture_output=True, text=True, timeout=30, check=True)
        assert out.stdout == "hello 2 https 2"


def test_h2c_prior_knowledge_from_a_trusted_peer() -> None:
    with asyncio_server(FASTAPI, "--http2-cleartext", "prior-knowledge") as srv:
        srv.wait_ready()
        with httpx.Client(http1=False, http2=True, timeout=20) as c:
            r = c.get(f"http://127.0.0.1:{srv.port}/")
        assert (r.http_version, r.text) == ("HTTP/2", "hello 2 http")
        with httpx.Client(timeout=20) as c:     # HTTP/1 goes on working
            assert c.get(f"http://127.0.0.1:{srv.port}/").text == "hello 1.1 http"


def test_h2c_ignored_from_an_untrusted_peer() -> None:
    with asyncio_server(FASTAPI, "--http2-cleartext", "prior-knowledge",
                        "--forwarded-allow-ips", "10.9.9.9") as srv:
        srv.wait_ready()
        with httpx.Client(http1=False, http2=True, timeout=20) as c, \
                pytest.raises(httpx.HTTPError):
            c.get(f"http://127.0.0.1:{srv.port}/")
        with httpx.Client(timeout=20) as c:
            assert c.get(f"http://127.0.0.1:{srv.port}/").text == "hello 1.1 http"


class H2Client:
    """A raw h2 client over a plain socket (prior knowledge)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.events: list[h2.events.Event] = []
        self.frames: list[Frame] = []
        self.buf = bytearray()
        self.goaway = False
        self.flush()

    def flush(self) -> None:
        self.sock.sendall(self.conn.data_to_send())

    def get(self, path: str) -> int:
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, [(":method", "GET"), (":path", path),
                                     (":scheme", "http"), (":authority", "x")],
                               end_stream=True)
        self.flush()
        return sid

    def until(self, what: type[h2.events.Event], sid: int | None = None) -> h2.events.Event:
        """Read until an event of type `what` (on stream `sid`) arrives; it."""
        while True:
            for e in self.events:
                if isinstance(e, what) and (sid is None or getattr(e, "stream_id", 0) == sid):
                    return e
            self.read_frame()

    def read_frame(self) -> Frame:
        """One frame off the socket: to h2 until its GOAWAY (h2 reads nothing after a
        GOAWAY; the frames that follow are only kept in `frames`)."""
        while len(self.buf) < 9 or len(self.buf) < 9 + int.from_bytes(self.buf[:3], "big"):
            data = self.sock.recv(65536)
            assert data, "connection closed"
            self.buf += data
        size = 9 + int.from_bytes(self.buf[:3], "big")
        raw, self.buf = bytes(self.buf[:size]), self.buf[size:]
        frame, _ = Frame.parse_frame_header(memoryview(raw[:9]))
        frame.parse_body(memoryview(raw[9:]))
        self.frames.append(frame)
        if not self.goaway:
            self.goaway = isinstance(frame, GoAwayFrame)
            self.events.extend(self.conn.receive_data(raw))
            self.flush()
        return frame

    def close(self) -> None:
        self.sock.close()


@pytest.fixture()
def raw() -> Iterator[tuple[Server, H2Client]]:
    with asyncio_server(RAW, "--http2-cleartext", "prior-knowledge",
                        "--graceful-timeout", "20") as srv:
        srv.wait_ready()
        client = H2Client(srv.port)
        yield srv, client
        client.close()


def test_trailers_when_the_app_asks(raw: tuple[Server, H2Client]) -> None:
    _, client = raw
    sid = client.get("/trailers")
    trailers = client.until(h2.events.TrailersReceived, sid)
    assert (b"x-checksum", b"abc") in trailers.headers  # type: ignore[attr-defined]
    data = [e.data for e in client.events if isinstance(e, h2.events.DataReceived)]
    assert b"".join(data) == b"body"


def test_rst_stream_is_http_disconnect(raw: tuple[Server, H2Client]) -> None:
    srv, client = raw
    sid = client.get("/wait")
    client.conn.reset_stream(sid)
    client.flush()
    wait_log(srv, "disconnected 2")
    other = client.get("/")     # the connection goes on
    client.until(h2.events.StreamEnded, other)


def test_drain_sends_goaway_and_open_streams_finish(raw: tuple[Server, H2Client]) -> None:
    srv, client = raw
    sid = client.get("/slow")
    wait_log(srv, "slow started")
    srv.signal(signal.SIGTERM)
    goaway = client.until(h2.events.ConnectionTerminated)
    # RFC 9113 §6.8: first "shutting down" (2**31-1), then the final GOAWAY names sid
    assert goaway.last_stream_id == 2**31 - 1  # type: ignore[attr-defined]
    body, ended, final = b"", False, None
    while not ended or final is None:     # the stream ends after the first GOAWAY
        frame = client.read_frame()
        if isinstance(frame, GoAwayFrame):
            final = frame.last_stream_id
        elif isinstance(frame, DataFrame) and frame.stream_id == sid:
            body += frame.data
            ended = "END_STREAM" in frame.flags
    assert body == b"2" and final == sid
    assert wait_for(lambda: srv.proc.poll() is not None or None, 20) is True
    assert srv.proc.returncode == 0


def test_drain_gives_open_streams_the_graceful_timeout_not_keep_alive() -> None:
    """A stream longer than --keep-alive (which bounds idle connections on drain) still
    finishes within --graceful-timeout."""
    with asyncio_server(RAW, "--http2-cleartext", "prior-knowledge", "--keep-alive", "1",
                        "--graceful-timeout", "20") as srv:
        srv.wait_ready()
        client = H2Client(srv.port)
        try:
            sid = client.get("/slow?4")
            wait_log(srv, "slow started")
            srv.signal(signal.SIGTERM)
            body, ended = b"", False
            while not ended:            # frames: h2 stops reading at the first GOAWAY
                frame = client.read_frame()
                if isinstance(frame, DataFrame) and frame.stream_id == sid:
                    body += frame.data
                    ended = "END_STREAM" in frame.flags
            assert body == b"2"
        finally:
            client.close()
        assert wait_for(lambda: srv.proc.poll() is not None or None, 20) is True


def test_sync_worker_ignores_h2c(tmp_path: Path) -> None:
    with reclusterd("examples.hello:app", "-w", "1", "-k", "sync", "--http2-cleartext",
                    "prior-knowledge") as srv:
        srv.wait_ready()
        with httpx.Client(http1=False, http2=True, timeout=20) as c, \
                pytest.raises(httpx.HTTPError):
            c.get(f"http://127.0.0.1:{srv.port}/")
