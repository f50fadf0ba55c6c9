"""HTTP/2 on the thread worker (WSGI): ALPN h2 over TLS, h2c prior knowledge and
`Upgrade: h2c` from trusted peers, with real clients (httpx, curl) and a raw h2 client
for concurrency, resets and the drain."""

from __future__ import annotations

import shutil
import signal
import ssl
import subprocess
from collections.abc import Iterator

import h2.events
import httpx
import pytest
from hyperframe.frame import DataFrame, GoAwayFrame, PingFrame, RstStreamFrame

from tests.e2e.test_h2_asgi import H2Client, tls  # noqa: F401 - tls: its trustme fixture
from tests.support.h2_peer import ACK, END_HEADERS, END_STREAM, HEADERS, PING, frame
from tests.support.process import Server, reclusterd, wait_for, wait_log

APP = "tests.apps.h2_wsgi_flask:app"
CURL = shutil.which("curl")


def thread_server(*opts: str) -> Server:
    return reclusterd(APP, "-w", "1", "-k", "thread", *opts)


def test_httpx_gets_the_same_answers_over_h2_and_h1(tls: tuple[str, str]) -> None:  # noqa: F811
    pem, ca = tls
    upload = bytes(range(256)) * 1200       # > the 64 KiB stream window: streamed
    with thread_server("--certfile", pem, "--keyfile", pem, "--access-logfile", "-") as srv:
        srv.wait_ready()
        answers = {}
        for h2_on in (True, False):
            with httpx.Client(http2=h2_on, verify=ssl.create_default_context(cafile=ca),
                              base_url=f"https://127.0.0.1:{srv.port}", timeout=20) as c:
                hello = c.get("/")
                assert hello.http_version == ("HTTP/2" if h2_on else "HTTP/1.1")
                assert hello.text == ("hello HTTP/2 https" if h2_on else
                                      "hello HTTP/1.1 https")
                echo = c.post("/echo", content=iter([upload[:50000], upload[50000:]]))
                big = c.get("/big", params={"n": 700_001})
                write = c.get("/write")
                file = c.get("/file")
                head = c.head("/file")
                answers[h2_on] = (
                    echo.status_code, echo.content, big.status_code, len(big.content),
                    write.status_code, write.text, file.status_code, file.content,
                    file.headers["content-length"], head.status_code,
                    head.headers["content-length"], head.content)
        assert answers[True] == answers[False]
        assert answers[True][1] == upload
        assert answers[True][5] == "written then returned"
        assert answers[True][7] == bytes(range(256)) * 1000
        wait_for(lambda: '"GET /write HTTP/2" 200' in srv.stdout(), 10, what="access log")


@pytest.mark.skipif(not CURL, reason="curl missing")
def test_curl_http2_negotiates_h2(tls: tuple[str, str]) -> None:  # noqa: F811
    pem, ca = tls
    with thread_server("--certfile", pem, "--keyfile", pem) as srv:
        srv.wait_ready()
        out = subprocess.run([str(CURL), "-sS", "--http2", "--cacert", ca, "-w",
                              " %{http_version}", f"https://127.0.0.1:{srv.port}/"],
                             capture_output=True, text=True, timeout=30, check=True)
        assert out.stdout == "hello HTTP/2 https 2"


def test_h2c_prior_knowledge_trusted_and_environ() -> None:
    with thread_server("--http2-cleartext", "prior-knowledge") as srv:
        srv.wait_ready()
        url = f"http://127.0.0.1:{srv.port}"
        with httpx.Client(http1=False, http2=True, timeout=20) as c:
            r = c.get(f"{url}/env", headers={"x-ok": "1", "x-under_score": "1"})
        assert r.http_version == "HTTP/2"
        assert r.json() == {"SERVER_PROTOCOL": "HTTP/2", "wsgi.url_scheme": "http",
                            "REMOTE_ADDR": "127.0.0.1", "HTTP_X_OK": "1",
                            "HTTP_HOST": f"127.0.0.1:{srv.port}", "underscore": False}
        with httpx.Client(timeout=20) as c:     # HTTP/1 goes on working
            assert c.get(f"{url}/").text == "hello HTTP/1.1 http"


def test_h2c_ignored_from_an_untrusted_peer() -> None:
    with thread_server("--http2-cleartext", "both", "--forwarded-allow-ips",
                       "10.9.9.9") as srv:
        srv.wait_ready()
        url = f"http://127.0.0.1:{srv.port}/"
        with httpx.Client(http1=False, http2=True, timeout=20) as c, \
                pytest.raises(httpx.HTTPError):
            c.get(url)
        if CURL:        # Upgrade: h2c is ignored: answered over HTTP/1.1
            out = subprocess.run([CURL, "-sS", "--http2", "-w", " %{http_version}", url],
                                 capture_output=True, text=True, timeout=30, check=True)
            assert out.stdout == "hello HTTP/1.1 http 1.1"


@pytest.mark.skipif(not CURL, reason="curl missing")
def test_upgrade_h2c_with_a_post_body() -> None:
    with thread_server("--http2-cleartext", "upgrade") as srv:
        srv.wait_ready()
        url = f"http://127.0.0.1:{srv.port}"
        out = subprocess.run([str(CURL), "-sS", "--http2", "--data-binary", "upgraded body",
                              "-w", " %{http_version}", f"{url}/echo"],
                             capture_output=True, text=True, timeout=30, check=True)
        assert out.stdout == "upgraded body 2"      # answered on stream 1, over HTTP/2
        out = subprocess.run([str(CURL), "-sS", "--http2", "-w", " %{http_version}",
                              f"{url}/", f"{url}/"],   # the connection then goes on in h2
                             capture_output=True, text=True, timeout=30, check=True)
        assert out.stdout == "hello HTTP/2 http 2hello HTTP/2 http 2"


@pytest.fixture()
def raw() -> Iterator[tuple[Server, H2Client]]:
    with thread_server("--http2-cleartext", "prior-knowledge", "--graceful-timeout",
                       "20") as srv:
        srv.wait_ready()
        client = H2Client(srv.port)
        yield srv, client
        client.close()


def test_twenty_streams_on_one_connection_run_at_once(raw: tuple[Server, H2Client]) -> None:
    _, client = raw
    sids = [client.get("/together") for _ in range(20)]
    bodies = {}
    for sid in sids:
        client.until(h2.events.StreamEnded, sid)
        bodies[sid] = b"".join(e.data for e in client.events
                               if isinstance(e, h2.events.DataReceived) and e.stream_id == sid)
    assert set(bodies.values()) == {b"met"}


def test_rst_stream_fails_the_apps_write(raw: tuple[Server, H2Client]) -> None:
    srv, client = raw
    sid = client.get("/wait")
    client.until(h2.events.DataReceived, sid)
    client.conn.reset_stream(sid)
    client.flush()
    wait_log(srv, "write failed after reset HTTP/2")
    other = client.get("/")     # the connection goes on
    client.until(h2.events.StreamEnded, other)


def test_drain_goaway_open_stream_finishes_later_one_refused(
        raw: tuple[Server, H2Client]) -> None:
    srv, client = raw
    sid = client.get("/slow")
    wait_log(srv, "slow started")
    srv.signal(signal.SIGTERM)
    client.goaway = True        # from here on, raw frames (h2 stops at a GOAWAY)
    final = None                # the GOAWAY naming the last stream (RFC 9113 §6.8: a
    while final is None:        # "shutting down" one, 2**31-1 and a PING, may come first)
        got = client.read_frame()
        if isinstance(got, GoAwayFrame) and got.last_stream_id != 2**31 - 1:
            final = got.last_stream_id
        elif isinstance(got, PingFrame) and "ACK" not in got.flags:
            client.sock.sendall(frame(PING, ACK, 0, got.opaque_data))
    assert final == sid
    late = sid + 2              # opened after it: refused, to retry elsewhere
    block = client.conn.encoder.encode([(":method", "GET"), (":path", "/"),
                                        (":scheme", "http"), (":authority", "x")])
    client.sock.sendall(frame(HEADERS, END_HEADERS | END_STREAM, late, block))
    body, refused = b"", None
    while not body.endswith(b"2") or refused is None:
        got = client.read_frame()
        if isinstance(got, DataFrame) and got.stream_id == sid:
            body += got.data
        elif isinstance(got, RstStreamFrame) and got.stream_id == late:
            refused = got.error_code
    assert (body, refused) == (b"2", 7)        # REFUSED_STREAM
    assert wait_for(lambda: srv.proc.poll() is not None or None, 20) is True
    assert srv.proc.returncode == 0


def test_max_requests_counts_streams() -> None:
    with thread_server("--http2-cleartext", "prior-knowledge", "--max-requests",
                       "5") as srv:
        srv.wait_ready()
        first = srv.workers()
        with httpx.Client(http1=False, http2=True, timeout=20) as c:
            for _ in range(5):
                assert c.get(f"http://127.0.0.1:{srv.port}/").status_code == 200
        wait_log(srv, "asks to be recycled (max-requests)")
        wait_for(lambda: srv.workers() and srv.workers() != first or None, 15,
                 what="a new worker")


def test_slow_readers_hold_buffers_not_threads() -> None:
    """Six downloads whose client opens no window, on a worker with two threads: each
    response is parked, the threads serve others; once the client reads, all complete."""
    with thread_server("--http2-cleartext", "prior-knowledge", "--threads", "2",
                       "--header-timeout", "60") as srv:
        srv.wait_ready()
        client = H2Client(srv.port)
        sids = [client.get("/big?n=1000000") for _ in range(6)]
        for sid in sids:        # each started: its head went out (none waits for a thread)
            client.until(h2.events.ResponseReceived, sid)
        with httpx.Client(timeout=20) as c:
            assert c.get(f"http://127.0.0.1:{srv.port}/").text == "hello HTTP/1.1 http"
        got = dict.fromkeys(sids, 0)
        ended: set[int] = set()
        seen = 0
        while len(ended) < len(sids):       # now read, opening the windows as we go
            for e in client.events[seen:]:
                if isinstance(e, h2.events.DataReceived):
                    got[e.stream_id] += len(e.data)
                    client.conn.acknowledge_received_data(e.flow_controlled_length,
                                                          e.stream_id)
                elif isinstance(e, h2.events.StreamEnded):
                    ended.add(e.stream_id)
            seen = len(client.events)
            client.flush()
            if len(ended) < len(sids):
                client.read_frame()
        client.close()
        assert set(got.values()) == {1_000_000}


def test_timeout_sees_a_stuck_stream() -> None:
    """--timeout counts streams: a WSGI call stuck on one stream gets the worker replaced."""
    with thread_server("--http2-cleartext", "prior-knowledge", "--timeout", "2") as srv:
        srv.wait_ready()
        first = srv.workers()
        client = H2Client(srv.port)
        client.get("/together")         # waits 10 s for 19 calls that never come
        wait_log(srv, "aborted (SIGABRT)")
        wait_for(lambda: srv.workers() and srv.workers() != first or None, 15,
                 what="a new worker")
        client.close()
