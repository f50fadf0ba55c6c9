"""The known HTTP/2 attacks against the sans-IO connection: each ends in GOAWAY
ENHANCE_YOUR_CALM (or a reset stream) with memory bounded, never an exception."""

from __future__ import annotations

import struct

import hpack
import pytest

from reclusterd.http.events import Limits
from reclusterd.http.h2 import (
    DRAIN_PING,
    DRAIN_RTT,
    H2Settings,
    SendCredit,
    StreamEvent,
    StreamReset,
)
from reclusterd.http.h2guard import FLOOD_LIMITS, MAX_BLOCK_FRAMES, SMALL_FRAMES
from tests.support.h2_peer import (
    ACK,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    HEADERS,
    PING,
    PRIORITY,
    REQUEST,
    RST_STREAM,
    Peer,
    frame,
    settings,
    window_update,
)

CALM, REFUSED, CANCEL = 0xB, 0x7, 0x8
POST = [(b":method", b"POST"), *REQUEST[1:]]


def test_rapid_reset_cve_2023_44487() -> None:
    """Streams opened and reset at once, faster than any completes: GOAWAY calm."""
    peer = Peer(settings=H2Settings(max_concurrent_streams=10), app=False)
    sid = 1
    while not peer.conn.closed and sid < 2000:
        peer.send(peer.headers(sid, POST, end_stream=False)
                  + frame(RST_STREAM, 0, sid, struct.pack(">I", CANCEL)))
        sid += 2
    assert peer.goaway() == CALM
    assert sid <= 2 * (2 * 10 + 2)      # stopped within the limit: 2 x the stream limit


def test_resets_of_completed_streams_are_fine() -> None:
    """A client that reads its answers may reset as many as it completes."""
    peer = Peer(settings=H2Settings(max_concurrent_streams=10))
    for sid in range(1, 200, 2):
        peer.send(peer.headers(sid))
        peer.send(frame(RST_STREAM, 0, sid, struct.pack(">I", CANCEL)))
    assert peer.goaway() is None and peer.status(199) == 200


def test_streams_over_the_limit_are_refused_not_the_connection() -> None:
    """RFC 9113 §5.1.2: REFUSED_STREAM for a stream over the limit; streams still
    with the app (reset or not) count, so a reset does not free a thread."""
    peer = Peer(settings=H2Settings(max_concurrent_streams=2), app=False)
    peer.send(b"".join(peer.headers(s) for s in (1, 3, 5)))
    assert peer.resets(5) == [REFUSED]
    peer.send(frame(RST_STREAM, 0, 1, struct.pack(">I", CANCEL)))
    peer.send(peer.headers(7))
    assert peer.resets(7) == [REFUSED]      # stream 1 is still with the app
    peer.conn.stream_done(1)
    events = peer.send(peer.headers(9))
    assert any(isinstance(e, StreamEvent) and e.stream_id == 9 for e in events)
    assert not peer.conn.closed


def test_continuation_flood_cve_2024_27316() -> None:
    """Endless CONTINUATION frames of one header block: bounded in frames and octets."""
    peer = Peer()
    data = frame(HEADERS, 0, 1, peer.block(REQUEST))
    data += b"".join(frame(CONTINUATION, 0, 1, b"\x40\x01a\x01b")
                     for _ in range(MAX_BLOCK_FRAMES + 5))
    peer.send(data)
    assert peer.goaway() == CALM
    big = Peer(settings=H2Settings(max_header_list_size=4096))
    big.send(frame(HEADERS, 0, 1, big.block(REQUEST))
             + b"".join(frame(CONTINUATION, 0, 1, b"\0" * 16000) for _ in range(3)))
    assert big.goaway() == CALM and big.conn.closed


def test_hpack_bomb() -> None:
    """A small block that decodes to a huge header list (one big indexed field repeated)."""
    peer = Peer(settings=H2Settings(max_header_list_size=16384))
    enc = peer.enc
    first = enc.encode([(b"x-bomb", b"a" * 4000)])        # enters the dynamic table
    repeat = bytes([0x80 | 62])                          # its index, one octet each
    block = peer.block(REQUEST) + first + repeat * 100
    peer.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, block))
    assert peer.goaway() == CALM
    assert not peer.requests


def test_settings_flood() -> None:
    peer = Peer()
    peer.send(settings(s3=100) * (FLOOD_LIMITS["settings"] + 1))
    assert peer.goaway() == CALM


def test_ping_flood() -> None:
    peer = Peer()
    peer.send(frame(PING, 0, 0, b"12345678") * (FLOOD_LIMITS["ping"] + 1))
    assert peer.goaway() == CALM
    acks = [f for f in peer.frames if f.type == PING]
    assert len(acks) <= FLOOD_LIMITS["ping"]


def test_ping_acks_and_pings_spread_over_time_are_fine() -> None:
    peer = Peer()
    for _ in range(5):
        peer.send(frame(PING, 0, 0, b"12345678") * 50 + frame(PING, ACK, 0, b"12345678"))
        peer.now += 11.0
    assert peer.goaway() is None


def test_empty_data_flood() -> None:
    peer = Peer(app=False)
    peer.send(peer.headers(1, POST, end_stream=False))
    peer.send(frame(DATA, 0, 1) * (FLOOD_LIMITS["empty"] + 1))
    assert peer.goaway() == CALM


def test_priority_flood() -> None:
    peer = Peer()
    prio = struct.pack(">IB", 0, 15)
    peer.send(b"".join(frame(PRIORITY, 0, 2 * i + 1, prio)
                       for i in range(FLOOD_LIMITS["priority"] + 1)))
    assert peer.goaway() == CALM


def test_oversized_frame_refused_at_its_header() -> None:
    """A frame announcing 16 MiB is refused from its 9 header octets, not buffered."""
    peer = Peer(app=False)
    peer.send(peer.headers(1, POST, end_stream=False))
    peer.send(frame(DATA, 0, 1)[:3].replace(b"\0\0\0", b"\xff\xff\xff")
              + bytes((DATA, 0)) + struct.pack(">I", 1) + b"x" * 1000)
    assert peer.goaway() == 0x6 and peer.conn.closed


def test_request_body_held_to_one_window() -> None:
    """The app does not read: the client cannot send more than one window (it would
    be a FLOW_CONTROL_ERROR); reading reopens the window."""
    window = 16384
    peer = Peer(settings=H2Settings(initial_window_size=window), app=False)
    peer.send(peer.headers(1, POST, end_stream=False))
    peer.send(frame(DATA, 0, 1, b"x" * window))
    assert peer.conn.streams[1].buffered == window
    peer.send(frame(DATA, 0, 1, b"y"))
    assert peer.goaway() == 0x3          # FLOW_CONTROL_ERROR: over the window
    reader = Peer(settings=H2Settings(initial_window_size=window), app=False)
    reader.send(reader.headers(1, POST, end_stream=False) + frame(DATA, 0, 1, b"x" * window))
    reader.conn.ack_data(1, window)
    reader.read()
    ups = [f for f in reader.frames if f.type == 0x8 and f.stream_id == 1]
    assert ups and sum(f.window_increment for f in ups) == window


def test_stream_that_never_ends_is_reset_at_its_deadline() -> None:
    peer = Peer(app=False)
    peer.send(peer.headers(1, POST, end_stream=False) + frame(DATA, 0, 1, b"abc"))
    peer.conn.ack_data(1, 3)
    when = peer.conn.next_deadline()
    assert when == peer.now + peer.rules.io_timeout
    peer.now = when
    events = peer.conn.expire()
    peer.read()
    assert events == [StreamReset(1, CANCEL)] and peer.resets(1) == [CANCEL]
    assert not peer.conn.closed


def test_a_stream_whose_app_does_not_read_has_no_body_deadline() -> None:
    peer = Peer(settings=H2Settings(initial_window_size=16384), app=False)
    peer.send(peer.headers(1, POST, end_stream=False) + frame(DATA, 0, 1, b"x" * 16384))
    assert peer.conn.next_deadline() == float("inf")


def _blocked_response(peer: Peer, size: int) -> int:
    peer.send(peer.headers(1))
    peer.conn.send_headers(1, 200, [])
    return peer.conn.send_data(1, b"z" * size)


def test_zero_window_stall() -> None:
    """The client gives no credit: the response waits until the deadline, then the
    stream is reset (the app's next send raises StreamGone)."""
    peer = Peer(app=False)
    peer.send(settings(s4=0))
    assert _blocked_response(peer, 1000) == 0
    assert peer.conn.next_deadline() == peer.now + peer.rules.io_timeout
    peer.now += peer.rules.io_timeout
    assert peer.conn.expire() == [StreamReset(1, CANCEL)]


def test_credit_arrival_is_an_event_and_sending_resumes() -> None:
    peer = Peer(app=False)
    peer.send(settings(s4=0))
    assert _blocked_response(peer, 5000) == 0
    events = peer.send(window_update(1, 5000))
    assert SendCredit(1) in events
    assert peer.conn.send_data(1, b"z" * 5000, end=True) == 5000
    peer.read()
    assert len(peer.bodies[1]) == 5000


def test_data_dribble_gets_no_tiny_frames() -> None:
    """CVE-2019-9511: credit given one octet at a time does not make one-octet frames."""
    peer = Peer(app=False)
    peer.send(settings(s4=0))
    _blocked_response(peer, 100000)
    sent = 0
    for _ in range(150):        # (under the WINDOW_UPDATE flood limit: the frames count)
        peer.send(window_update(1, 1))
        sent += peer.conn.send_data(1, b"z" * 100000)
    assert sent <= SMALL_FRAMES["small"]
    peer.now += peer.rules.io_timeout
    assert peer.conn.expire() == [StreamReset(1, CANCEL)]


def test_window_update_flood() -> None:
    """+1 connection increments, nothing being sent: counted like the other control
    frames, GOAWAY calm (a core was burnt on 764k of them in 4.7 s)."""
    peer = Peer()
    peer.send(window_update(0, 1) * (FLOOD_LIMITS["window_update"] + 2))
    assert peer.goaway() == CALM


def test_a_download_acked_frame_by_frame_is_no_window_update_flood() -> None:
    """A client returning credit for every DATA frame, stream and connection (many more
    WINDOW_UPDATEs than the flood limit in one window) downloads to the end."""
    peer = Peer(app=False)
    peer.send(settings(s4=4096))
    peer.send(peer.headers(1))
    peer.conn.send_headers(1, 200, [])
    body, sent = b"z" * 2**20, 0
    while sent < len(body) and not peer.conn.closed:
        sent += peer.conn.send_data(1, body[sent:], end=True)
        peer.send(b"".join(window_update(0, len(f.data)) + window_update(1, len(f.data))
                           for f in peer.read() if f.type == DATA))
    assert peer.goaway() is None and len(peer.bodies[1]) == len(body)
    assert len(peer.of_type(DATA)) > FLOOD_LIMITS["window_update"]


@pytest.mark.parametrize("window", [1023, 511, 300])
def test_a_client_with_a_small_window_downloads_to_the_end(window: int) -> None:
    """RFC 9113 §6.9.2 allows any initial window: a client whose whole window is under
    MIN_CHUNK (nghttp -w 10 is 1023 octets) gets frames of its window, not a stall
    (QA: 64 KiB, then nothing until CANCEL at the deadline)."""
    peer = Peer(app=False)
    peer.send(settings(s4=window))
    peer.send(peer.headers(1))
    peer.conn.send_headers(1, 200, [])
    body, sent = b"z" * 200_000, 0
    for _ in range(2000):
        if sent >= len(body) or peer.conn.closed:
            break
        sent += peer.conn.send_data(1, body[sent:], end=True)
        peer.now += 0.05          # the whole download lasts far past the stall deadline
        assert peer.conn.expire() == []     # progress is not a stall (QA: CANCEL at 5 s)
        peer.send(b"".join(window_update(0, len(f.data)) + window_update(1, len(f.data))
                           for f in peer.read() if f.type == DATA))
    assert peer.goaway() is None and len(peer.bodies[1]) == len(body)


def test_memory_stays_bounded_over_many_streams() -> None:
    peer = Peer(settings=H2Settings(max_concurrent_streams=4))
    for sid in range(1, 4001, 2):
        peer.send(peer.headers(sid, POST, end_stream=False) + frame(DATA, END_STREAM, sid,
                                                                    b"body"))
    assert peer.status(3999) == 200 and not peer.conn.streams
    assert len(peer.conn._h2.streams) <= 4
    peer.frames.clear()


def test_idle_connection_closes() -> None:
    peer = Peer()
    assert peer.conn.next_deadline() == peer.rules.keep_alive
    peer.now = peer.rules.keep_alive
    assert peer.conn.expire()[-1].error_code == 0
    peer.read()
    assert peer.goaway() == 0 and peer.conn.closed


def test_slow_preface_and_open_header_block_close() -> None:
    slow = Peer(handshake=False)
    assert slow.conn.next_deadline() == slow.rules.header_timeout
    slow.now = slow.rules.header_timeout
    slow.conn.expire()
    assert slow.conn.closed
    peer = Peer()
    peer.send(frame(HEADERS, 0, 1, peer.block(REQUEST)))     # no END_HEADERS, ever
    assert peer.conn.next_deadline() == peer.now + peer.rules.header_timeout
    peer.now += peer.rules.header_timeout
    peer.conn.expire()
    assert peer.conn.closed


def test_drain_goaway_names_the_last_stream_and_refuses_later_ones() -> None:
    """RFC 9113 §6.8: GOAWAY 2**31-1 and a PING first; a stream the client sent before
    it saw that GOAWAY is still served; the final GOAWAY (after the PING's ACK) names
    the last stream, and later ones are refused."""
    peer = Peer(app=False)
    peer.send(peer.headers(1) + peer.headers(3))
    peer.conn.begin_drain(30.0)
    peer.read()
    assert [(g.last_stream_id, g.error_code) for g in peer.of_type(0x7)] == [(2**31 - 1, 0)]
    assert [f.opaque_data for f in peer.of_type(PING)] == [DRAIN_PING]
    peer.send(peer.headers(5) + frame(PING, ACK, 0, DRAIN_PING))     # 5 was in flight
    assert [g.last_stream_id for g in peer.of_type(0x7)] == [2**31 - 1, 5]
    assert not peer.resets(5) and 5 in peer.conn.streams
    peer.send(peer.headers(7))
    assert peer.resets(7) == [REFUSED]
    assert not peer.conn.finished
    for sid in (1, 3, 5):
        peer.conn.send_headers(sid, 204, [])
        peer.conn.end_stream(sid)
        peer.conn.stream_done(sid)
    peer.read()
    assert peer.status(1) == 204 and peer.status(5) == 204
    assert peer.conn.finished and not peer.conn.closed


def test_goaway_after_the_final_one_never_names_a_later_stream() -> None:
    """RFC 9113 §6.8: the last stream id MUST NOT increase. A stream refused after the
    final GOAWAY (9 > 7), then the graceful timeout's GOAWAY, or h2's own on a protocol
    error: each still says 7."""
    for ending in ("timeout", "protocol error"):
        peer = Peer(app=False)
        peer.send(b"".join(peer.headers(sid, POST, end_stream=False) for sid in (1, 3, 5, 7)))
        peer.conn.begin_drain(5.0)
        peer.send(frame(PING, ACK, 0, DRAIN_PING))
        peer.send(peer.headers(9))
        assert peer.resets(9) == [REFUSED]
        if ending == "timeout":
            peer.now += 5.0
            peer.conn.expire()
        else:
            peer.send(frame(PING, 0, 1, b"12345678"))       # PING on a stream: PROTOCOL_ERROR
        peer.read()
        assert peer.conn.closed
        ids = [g.last_stream_id for g in peer.of_type(0x7)]
        assert ids[1:] == [7, 7] and ids == sorted(ids, reverse=True), ending


def test_drain_without_the_ping_ack_sends_the_final_goaway_after_a_round_trip() -> None:
    peer = Peer()
    peer.conn.begin_drain(30.0)
    assert not peer.conn.finished          # streams may still be on their way
    assert peer.conn.next_deadline() == peer.now + DRAIN_RTT
    peer.now += DRAIN_RTT
    peer.conn.expire()          # (an idle connection's drain deadline is due too)
    peer.read()
    assert [g.last_stream_id for g in peer.of_type(0x7)][:2] == [2**31 - 1, 0]
    assert peer.conn.finished


def test_body_limit_resets_a_stream_without_content_length() -> None:
    peer = Peer(limits=Limits(body=10), app=False)
    peer.send(peer.headers(1, POST, end_stream=False) + frame(DATA, 0, 1, b"x" * 11))
    assert peer.resets(1) == [CANCEL]


def test_client_goaway_and_eof_end_the_streams() -> None:
    peer = Peer(app=False)
    peer.send(peer.headers(1, POST, end_stream=False))
    events = peer.send(frame(0x7, 0, 0, struct.pack(">II", 0, 0)))
    assert StreamReset(1, CANCEL) in events and peer.conn.closed
    eof = Peer(app=False)
    eof.send(eof.headers(1, POST, end_stream=False))
    assert StreamReset(1, CANCEL) in eof.conn.receive(b"")


def test_garbage_never_raises() -> None:
    """Random octets after the preface: a GOAWAY or nothing, never an exception."""
    import random

    rnd = random.Random(17)
    for _ in range(200):
        peer = Peer()
        peer.send(bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 200))))
    hpack.Decoder()  # (the import is the HPACK library the connection uses)
