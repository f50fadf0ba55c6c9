"""h2c: the prior-knowledge preface and the `Upgrade: h2c` switch (RFC 7540 §3.2)."""

from __future__ import annotations

import base64

import pytest

from reclusterd.http.connection import ConnectionRules
from reclusterd.http.events import Data, EndOfMessage, Limits, Request
from reclusterd.http.h2 import H2Connection, H2Settings, StreamEvent
from reclusterd.http.h2rules import PREFACE, SWITCHING_H2C, h2c_settings, preface_state
from reclusterd.http.parser import make_parser
from tests.support.h2_peer import SETTINGS, Peer, frame, settings

SETTINGS_B64 = base64.urlsafe_b64encode(settings(s3=100)[9:]).rstrip(b"=")


@pytest.mark.parametrize(("data", "state"), [
    (b"", None), (b"PRI * HTTP/2", None), (PREFACE, True), (PREFACE + b"\0\0", True),
    (b"GET / HTTP/1.1\r\n", False), (b"PRI * HTTP/1.1\r\n", False), (b"\x16\x03\x01", False),
])
def test_preface_state(data: bytes, state: bool | None) -> None:
    assert preface_state(data) is state


def _request(head: bytes) -> Request:
    events = make_parser("h11", Limits()).feed(head)
    req = events[0]
    assert isinstance(req, Request)
    return req


UPGRADE = (b"POST /up HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade, HTTP2-Settings\r\n"
           b"Upgrade: h2c\r\nHTTP2-Settings: " + SETTINGS_B64 + b"\r\nContent-Length: 5\r\n"
           b"\r\n")


@pytest.mark.parametrize(("head", "ok"), [
    (UPGRADE, True),
    (UPGRADE.replace(b"Upgrade: h2c", b"Upgrade: websocket"), False),
    (UPGRADE.replace(b"Upgrade, HTTP2-Settings", b"Upgrade"), False),
    (UPGRADE.replace(b"HTTP2-Settings: ", b"X-Other: "), False),
    (UPGRADE.replace(SETTINGS_B64, b"!!!"), False),
    (UPGRADE.replace(SETTINGS_B64, SETTINGS_B64 + b"AA"), False),
    (UPGRADE.replace(b"Content-Length: 5", b"Content-Length: 99999"), False),
    # decodable but out of bounds (RFC 9113 §6.5.2): MAX_FRAME_SIZE=0, ENABLE_PUSH=2,
    # INITIAL_WINDOW_SIZE=2**31, MAX_FRAME_SIZE=2**24
    (UPGRADE.replace(SETTINGS_B64, b"AAUAAAAA"), False),
    (UPGRADE.replace(SETTINGS_B64, b"AAIAAAAC"), False),
    (UPGRADE.replace(SETTINGS_B64, b"AASAAAAA"), False),
    (UPGRADE.replace(SETTINGS_B64, b"AAUBAAAA"), False),
    (UPGRADE.replace(SETTINGS_B64, b"AAUAAEAA"), True),     # MAX_FRAME_SIZE=16384
    (UPGRADE.replace(SETTINGS_B64, b"AAIAAAAB"), True),     # ENABLE_PUSH=1
    (UPGRADE.replace(SETTINGS_B64, b""), True),             # no parameters
    (UPGRADE.replace(b"Content-Length: 5", b"Transfer-Encoding: chunked"), False),
])
def test_h2c_settings(head: bytes, ok: bool) -> None:
    assert (h2c_settings(_request(head), 65535) is not None) is ok


def test_upgrade_answers_the_first_request_on_stream_1() -> None:
    req = _request(UPGRADE)
    value = h2c_settings(req, 65535)
    assert value is not None
    clock = [0.0]
    conn = H2Connection(H2Settings(), ConnectionRules(5.0, 10.0), Limits(), lambda: clock[0])
    events = conn.upgrade(req, value, b"hello")
    first = events[0]
    assert isinstance(first, StreamEvent) and first.stream_id == 1
    assert isinstance(first.event, Request) and first.event.http_version == "2"
    names = {n for n, _ in first.event.headers}
    assert b"upgrade" not in names and b"http2-settings" not in names
    assert [type(e.event) for e in events[1:] if isinstance(e, StreamEvent)] == [
        Data, EndOfMessage]
    out = conn.data_to_send()
    assert out.startswith(SWITCHING_H2C)
    conn.ack_data(1, 5)                  # not flow-controlled: nothing to credit
    conn.send_headers(1, 200, [(b"content-length", b"2")])
    conn.send_data(1, b"ok", end=True)
    conn.stream_done(1)
    # the client's preface and SETTINGS follow the 101; then a second stream works
    peer = Peer(handshake=False)
    peer.conn = conn
    peer.buffer.add_data(out[len(SWITCHING_H2C):])
    peer.read()
    assert peer.status(1) == 200 and peer.bodies[1] == b"ok"
    peer.send(PREFACE + settings() + frame(SETTINGS, 0x1, 0))
    peer.send(peer.headers(3))
    assert peer.status(3) == 200 and not conn.closed
