"""RFC 9113 conformance and the known HTTP/2 attacks against a real server on a real
socket (h2c prior knowledge from 127.0.0.1, trusted), on each worker class that speaks
HTTP/2: every case of tests/data/h2_conformance.py (as the sans-IO unit test runs them),
then the attacks. After each attack the worker is the same process and a fresh
connection is served; its RSS stays bounded under the floods.

One server per worker class for the module. --header-timeout 2 makes the stall
deadlines (zero window, dribble, a stream that never ends) come in ~2 s."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import psutil
import pytest
from hyperframe.frame import PingFrame, SettingsFrame

from reclusterd.http.h2guard import FLOOD_LIMITS, MAX_BLOCK_FRAMES
from reclusterd.workers.asyncio import AsyncioWorker
from reclusterd.workers.thread import ThreadWorker
from tests.data.h2_conformance import CASES, Build
from tests.support.h2_peer import (
    CONTINUATION,
    DATA,
    END_STREAM,
    HEADERS,
    PING,
    PRIORITY,
    REQUEST,
    RST_STREAM,
    frame,
    settings,
    window_update,
)
from tests.support.h2_socket_peer import SocketPeer
from tests.support.process import Server, reclusterd
from tests.unit.test_h2_conformance import _last_headers_stream

CALM, CANCEL = 0xB, 0x8
POST = [(b":method", b"POST"), *REQUEST[1:]]
CLASSES = [pytest.param(k, marks=pytest.mark.skipif(not w.speaks_h2,
                                                    reason=f"{k} worker speaks HTTP/1 only"))
           for k, w in (("asyncio", AsyncioWorker), ("thread", ThreadWorker))]
APPS = {"asyncio": "tests.apps.h2_ok:asgi", "thread": "tests.apps.h2_ok:wsgi"}
RSS_BOUND = 64 * 2**20      # octets a worker may grow by over all the floods (generous)


@pytest.fixture(scope="module", params=CLASSES)
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    kind = request.param
    with reclusterd(APPS[kind], "-w", "1", "-k", kind, "--http2-cleartext",
                    "prior-knowledge", "--header-timeout", "2", "--keep-alive", "5") as srv:
        srv.wait_ready()
        srv.wait_workers(1)
        yield srv


def _worker(srv: Server) -> psutil.Process:
    (pid,) = srv.workers()
    return psutil.Process(pid)


def _serves(srv: Server) -> bool:
    """A fresh connection gets a 200 for a GET."""
    with SocketPeer(srv.port) as peer:
        peer.send(peer.headers(1))
        return peer.until(lambda: peer.status(1) is not None) and peer.status(1) == 200


# -- conformance -----------------------------------------------------------------------

@pytest.mark.parametrize(("build", "expect"), [(c[1], c[2]) for c in CASES],
                         ids=[c[0] for c in CASES])
def test_case(server: Server, build: Build, expect: str) -> None:
    with SocketPeer(server.port) as peer:
        peer.sync()                     # the handshake is done: the case's frames alone
        before = len(peer.frames)
        data = build(peer)
        peer.send(data)
        kind, _, arg = expect.partition(" ")
        if kind == "goaway":
            peer.closed()
            assert peer.goaway() == int(arg), peer.frames[before:]
            return
        if kind == "error":
            peer.until(lambda: peer.goaway() is not None or peer.resets())
            assert peer.goaway() == int(arg) or int(arg) in peer.resets(), \
                peer.frames[before:]
        elif kind == "reset":
            assert peer.until(lambda: peer.goaway() is not None or peer.resets(1))
            assert peer.goaway() is None and peer.resets(1) == [int(arg)], \
                peer.frames[before:]
        elif kind == "status":
            sid = _last_headers_stream(data)
            peer.until(lambda: peer.status(sid) is not None or peer.goaway() is not None)
            assert peer.status(sid) == int(arg), peer.frames[before:]
        elif kind in ("ping-ack", "settings-ack"):
            want = PingFrame if kind == "ping-ack" else SettingsFrame
            got = peer.until(lambda: any(isinstance(f, want) and "ACK" in f.flags
                                         for f in peer.frames[before:]))
            assert got, peer.frames[before:]
        else:
            assert kind == "ok"
            assert peer.sync(), peer.frames[before:]
            assert peer.goaway() is None and not peer.resets(), peer.frames[before:]
        if peer.goaway() is None:       # the connection still serves a request
            peer.send(peer.headers(101))
            assert peer.until(lambda: peer.status(101) == 200), peer.frames[before:]


def test_invalid_preface_is_closed(server: Server) -> None:
    with SocketPeer(server.port, handshake=False) as peer:
        peer.send(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n")
        assert peer.closed()
        assert peer.goaway() in (None, 1)


# -- attacks ---------------------------------------------------------------------------

def _calm(srv: Server, data_of: Build) -> None:
    """Send what `data_of` builds on a fresh connection: GOAWAY ENHANCE_YOUR_CALM."""
    with SocketPeer(srv.port) as peer:
        peer.sync()
        peer.send(data_of(peer))
        assert peer.closed() and peer.goaway() == CALM, peer.frames[-5:]


def _rapid_reset(p: SocketPeer) -> bytes:
    return b"".join(p.headers(sid, POST, end_stream=False)
                    + frame(RST_STREAM, 0, sid, struct.pack(">I", CANCEL))
                    for sid in range(1, 2001, 2))


def _continuation_flood(p: SocketPeer) -> bytes:
    return frame(HEADERS, 0, 1, p.block(REQUEST)) + b"".join(
        frame(CONTINUATION, 0, 1, b"\x40\x01a\x01b") for _ in range(MAX_BLOCK_FRAMES + 5))


def _hpack_bomb(p: SocketPeer) -> bytes:
    first = bytes(p.enc.encode([(b"x-bomb", b"a" * 4000)]))   # enters the dynamic table
    block = p.block(REQUEST) + first + bytes([0x80 | 62]) * 100    # then indexed 100 x
    return frame(HEADERS, 0x4 | END_STREAM, 1, block)


def _empty_data(p: SocketPeer) -> bytes:
    return p.headers(1, POST, end_stream=False) + frame(DATA, 0, 1) * (
        FLOOD_LIMITS["empty"] + 1)


FLOODS: dict[str, Build] = {
    "rapid reset (CVE-2023-44487)": _rapid_reset,
    "CONTINUATION flood (CVE-2024-27316)": _continuation_flood,
    "HPACK bomb": _hpack_bomb,
    "SETTINGS flood": lambda _p: settings(s3=100) * (FLOOD_LIMITS["settings"] + 1),
    "PING flood": lambda _p: frame(PING, 0, 0, b"12345678") * (FLOOD_LIMITS["ping"] + 1),
    "empty DATA flood": _empty_data,
    "PRIORITY flood": lambda _p: b"".join(
        frame(PRIORITY, 0, 2 * i + 1, struct.pack(">IB", 0, 15))
        for i in range(FLOOD_LIMITS["priority"] + 1)),
    "WINDOW_UPDATE flood": lambda _p: window_update(0, 1) * (FLOOD_LIMITS["window_update"] + 2),
}


def test_floods_get_goaway_calm_worker_survives_memory_bounded(server: Server) -> None:
    worker = _worker(server)
    rss = worker.memory_info().rss
    for name, build in FLOODS.items():
        for _ in range(3):      # repeated: what a flood leaves behind would add up
            _calm(server, build)
        assert server.workers() == {worker.pid}, name
        assert _serves(server), name
    assert worker.memory_info().rss - rss < RSS_BOUND


def _stalled_response(peer: SocketPeer, credit: int = 0) -> None:
    """A GET of /big on a connection whose client gives `credit` octets of window."""
    peer.send(settings(s4=credit))
    peer.sync()
    peer.send(peer.headers(1, [(b":method", b"GET"), (b":scheme", b"http"),
                               (b":path", b"/big?n=200000"), (b":authority", b"x")]))


def test_zero_window_stall_resets_the_stream(server: Server) -> None:
    """CVE-2019-9517 kin: no credit ever: the stream is reset at the io deadline, the
    connection and the worker go on."""
    pid = server.workers()
    with SocketPeer(server.port) as peer:
        _stalled_response(peer)
        assert peer.until(lambda: peer.resets(1), timeout=15), peer.frames
        assert peer.resets(1) == [CANCEL] and 1 not in peer.bodies
        peer.send(window_update(0, 2**20) + peer.headers(3))
        assert peer.until(lambda: peer.status(3) == 200)
    assert server.workers() == pid and _serves(server)


def test_data_dribble_gets_no_tiny_frames(server: Server) -> None:
    """CVE-2019-9511: one octet of credit at a time does not buy one-octet frames."""
    pid = server.workers()
    with SocketPeer(server.port) as peer:
        _stalled_response(peer)
        peer.until(lambda: peer.status(1) is not None)
        # 90 > the 64 small frames allowed, < the WINDOW_UPDATE flood limit (100 + credit)
        peer.send(window_update(1, 1) * 90)
        assert peer.until(lambda: peer.resets(1), timeout=15), peer.frames[-5:]
        small = [f for f in peer.frames if f.type == DATA and f.stream_id == 1]
        assert len(small) <= 64 + 1 and len(peer.bodies.get(1, b"")) <= 500
    assert server.workers() == pid and _serves(server)


def test_stream_that_never_ends_is_reset_at_the_idle_deadline(server: Server) -> None:
    pid = server.workers()
    with SocketPeer(server.port) as peer:
        peer.send(peer.headers(1, POST, end_stream=False) + frame(DATA, 0, 1, b"abc"))
        assert peer.until(lambda: peer.resets(1), timeout=15), peer.frames
        assert peer.resets(1) == [CANCEL] and peer.goaway() is None
        peer.send(peer.headers(3))
        assert peer.until(lambda: peer.status(3) == 200)
    assert server.workers() == pid and _serves(server)
