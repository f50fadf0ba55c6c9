"""RFC 9113 conformance of the sans-IO HTTP/2 connection: the cases in
tests/data/h2_conformance.py, each against a fresh connection with raw frames."""

from __future__ import annotations

import pytest
from hyperframe.frame import HeadersFrame, PingFrame, SettingsFrame

from tests.data.h2_conformance import CASES, Build
from tests.support.h2_peer import DATA, END_STREAM, PREFACE, REQUEST, Peer, frame


def _last_headers_stream(frames: bytes) -> int:
    """The stream id of the last HEADERS frame in `frames` (the request to answer)."""
    sid, i = 0, 0
    while i + 9 <= len(frames):
        length = int.from_bytes(frames[i:i + 3], "big")
        if frames[i + 3] == 0x1:
            sid = int.from_bytes(frames[i + 5:i + 9], "big") & 0x7FFFFFFF
        i += 9 + length
    return sid


def _still_serves(peer: Peer) -> bool:
    sid = 101
    peer.send(peer.headers(sid))
    return peer.status(sid) == 200


@pytest.mark.parametrize(("build", "expect"), [(c[1], c[2]) for c in CASES],
                         ids=[c[0] for c in CASES])
def test_case(build: Build, expect: str) -> None:
    peer = Peer()
    before = len(peer.frames)
    data = build(peer)
    peer.send(data)
    new = peer.frames[before:]
    kind, _, arg = expect.partition(" ")
    if kind == "goaway":
        assert peer.goaway() == int(arg), new
        assert peer.conn.closed
    elif kind == "error":
        assert peer.goaway() == int(arg) or int(arg) in peer.resets(), new
    elif kind == "reset":
        assert peer.goaway() is None and peer.resets(1) == [int(arg)], new
        assert 1 not in peer.conn.streams and not peer.conn.closed
    elif kind == "status":
        assert peer.status(_last_headers_stream(data)) == int(arg), new
    elif kind == "ping-ack":
        assert any(isinstance(f, PingFrame) and "ACK" in f.flags for f in new), new
    elif kind == "settings-ack":
        assert any(isinstance(f, SettingsFrame) and "ACK" in f.flags for f in new), new
    else:
        assert kind == "ok"
        assert peer.goaway() is None and not peer.resets(), new
    if kind != "goaway" and peer.goaway() is None:
        assert _still_serves(peer)


def test_a_malformed_request_costs_its_stream_not_the_others() -> None:
    """RFC 9113 §8.1.1: on a proxy's shared connection, stream 1 (its body coming) goes
    on while streams 3 (`connection: keep-alive`) and 5 (depends on itself) are reset."""
    peer = Peer()
    post = [(b":method", b"POST"), *REQUEST[1:]]
    peer.send(peer.headers(1, post, end_stream=False))
    peer.send(peer.headers(3, [*REQUEST, (b"connection", b"keep-alive")])
              + frame(0x2, 0, 5, b"\0\0\0\x05\x0f"))
    peer.send(frame(DATA, END_STREAM, 1, b"body"))
    assert peer.resets() == [0x1, 0x1] and peer.goaway() is None
    assert peer.status(1) == 200 and peer.bodies[1] == b"ok"


def test_invalid_preface_is_a_connection_error() -> None:
    peer = Peer(handshake=False)
    peer.send(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n")
    assert peer.conn.closed
    assert peer.goaway() in (None, 1)


def test_server_preface_is_settings_first() -> None:
    peer = Peer(handshake=False)
    peer.read()
    assert isinstance(peer.frames[0], SettingsFrame) and "ACK" not in peer.frames[0].flags
    peer.send(PREFACE + frame(0x4, 0, 0))
    assert any(isinstance(f, SettingsFrame) and "ACK" in f.flags for f in peer.frames)


def test_response_fields_and_request_event() -> None:
    peer = Peer()
    peer.send(peer.headers(1, [(b":method", b"GET"), (b":scheme", b"http"),
                               (b":path", b"/a%20b?x=1"), (b":authority", b"h.example"),
                               (b"cookie", b"a=1"), (b"cookie", b"b=2"), (b"x-y", b"z")]))
    req = peer.requests[1]
    assert (req.method, req.path, req.query, req.http_version) == (b"GET", b"/a%20b",
                                                                    b"x=1", "2")
    assert req.headers[0] == (b"host", b"h.example")
    assert (b"cookie", b"a=1; b=2") in req.headers
    fields = dict(peer.responses[1])
    assert fields[b":status"] == b"200" and fields[b"server"] == b"reclusterd"
    assert b"date" in fields and peer.bodies[1] == b"ok"
    assert any(isinstance(f, HeadersFrame) for f in peer.frames)
