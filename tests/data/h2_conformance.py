"""HTTP/2 conformance cases after the RFC 9113 sections h2spec covers, as data.

Each case: (id, frames, expect). `frames` builds the octets sent after a complete
handshake (preface, SETTINGS both ways) from a tests.support.h2_peer.Peer (whose HPACK
encoder keeps its state). `expect`:

- "error CODE": a stream error (RST_STREAM) or a connection error (GOAWAY) with CODE,
  as h2spec accepts either for a stream error; "goaway CODE": a connection error only;
  "reset CODE": a stream error only (RST_STREAM CODE on that stream, no GOAWAY, the
  connection serves on: a malformed request, RFC 9113 §8.1.1, costs one stream);
- "status N": the stream of the last HEADERS sent is answered N;
- "ping-ack", "settings-ack": that frame comes back; "ok": no error, and the
  connection still serves a request afterwards.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from tests.support.h2_peer import (
    ACK,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    GOAWAY,
    HEADERS,
    PADDED,
    PING,
    PRIORITY,
    PRIORITY_FLAG,
    PUSH_PROMISE,
    REQUEST,
    RST_STREAM,
    SETTINGS,
    WINDOW_UPDATE,
    Peer,
    frame,
    settings,
    window_update,
)

PROTOCOL, INTERNAL, FLOW, STREAM_CLOSED, FRAME_SIZE = 0x1, 0x2, 0x3, 0x5, 0x6
REFUSED, COMPRESSION = 0x7, 0x9
Build = Callable[[Peer], bytes]
H = list[tuple[bytes, bytes]]


def req(*extra: tuple[bytes, bytes], drop: tuple[bytes, ...] = (), method: bytes = b"GET",
        path: bytes = b"/") -> H:
    """REQUEST with :method/:path set, fields named in `drop` left out, `extra` added."""
    base: H = [(n, method if n == b":method" else path if n == b":path" else v)
               for n, v in REQUEST if n not in drop]
    return base + list(extra)


def hdrs(fields: H, sid: int = 1, end: bool = True) -> Build:
    return lambda p: p.headers(sid, fields, end_stream=end)


def raw(ftype: int, flags: int, sid: int, payload: bytes = b"") -> Build:
    return lambda _p: frame(ftype, flags, sid, payload)


def seq(*parts: Build) -> Build:
    return lambda p: b"".join(part(p) for part in parts)


def octets(data: bytes) -> Build:
    return lambda _p: data


OPEN1 = hdrs(req(method=b"POST"), end=False)            # stream 1 open, body coming
PRIO = struct.pack(">IB", 0, 15)                         # depends on 0, weight 16

CASES: list[tuple[str, Build, str]] = [
    # 3.4 / 4.1 frame format
    ("4.1 unknown frame type is ignored", raw(0x20, 0, 0, b"x"), "ok"),
    ("4.1 unknown PING flags are ignored", raw(PING, 0x16, 0, b"12345678"), "ping-ack"),
    ("4.1 reserved stream-id bit is ignored", seq(lambda p: frame(
        HEADERS, END_HEADERS | END_STREAM, 0x80000001, p.block(REQUEST))), "status 200"),
    # 4.2 frame size
    ("4.2 DATA over SETTINGS_MAX_FRAME_SIZE", seq(OPEN1, raw(DATA, 0, 1, b"x" * 16385)),
     "error 6"),
    ("4.2 HEADERS over SETTINGS_MAX_FRAME_SIZE",
     hdrs(req((b"x-big", b"~" * 17000))), "goaway 6"),     # HPACK cannot shrink "~"
    # 4.3 header compression
    ("4.3 invalid header block fragment", raw(HEADERS, END_HEADERS | END_STREAM, 1,
                                              b"\x3f\xff\xff\xff\xff\xff"), "goaway 9"),
    ("4.3 PRIORITY between HEADERS and CONTINUATION",
     seq(raw(HEADERS, 0, 1, b""), raw(PRIORITY, 0, 1, PRIO)), "goaway 1"),
    # 5.1 stream states
    ("5.1 idle: DATA", raw(DATA, 0, 1, b"x"), "goaway 1"),
    ("5.1 idle: RST_STREAM", raw(RST_STREAM, 0, 1, b"\0\0\0\x08"), "goaway 1"),
    ("5.1 idle: WINDOW_UPDATE", octets(window_update(1, 100)), "goaway 1"),
    ("5.1 idle: CONTINUATION", raw(CONTINUATION, END_HEADERS, 1, b""), "goaway 1"),
    ("5.1 half-closed (remote): DATA", seq(hdrs(req(), end=True), raw(DATA, 0, 1, b"x")),
     "error 5"),
    ("5.1 half-closed (remote): HEADERS", seq(hdrs(req()), hdrs(req())), "error 5"),
    ("5.1 closed: DATA after RST_STREAM", seq(OPEN1, raw(RST_STREAM, 0, 1, b"\0\0\0\x08"),
                                               raw(DATA, 0, 1, b"x")), "error 5"),
    ("5.1.1 even stream id", hdrs(req(), sid=2), "goaway 1"),
    ("5.1.1 stream id lower than one used", seq(hdrs(req(), sid=5), hdrs(req(), sid=3)),
     "goaway 1"),
    # 5.3 priority
    ("5.3.1 stream depends on itself (HEADERS)", lambda p: frame(
        HEADERS, END_HEADERS | END_STREAM | PRIORITY_FLAG, 1,
        struct.pack(">IB", 1, 15) + p.block(REQUEST)), "reset 1"),
    ("5.3.1 stream depends on itself (PRIORITY)",
     raw(PRIORITY, 0, 1, struct.pack(">IB", 1, 15)), "reset 1"),
    # 5.5 extensions
    ("5.5 unknown frame inside a header block", seq(raw(HEADERS, 0, 1, b""),
                                                    raw(0x20, 0, 1, b"")), "goaway 1"),
    # 6.1 DATA
    ("6.1 DATA on stream 0", raw(DATA, 0, 0, b"x"), "goaway 1"),
    ("6.1 DATA padding longer than the payload", seq(OPEN1, raw(DATA, PADDED, 1, b"\x09ab")),
     "goaway 1"),
    # 6.2 HEADERS
    ("6.2 HEADERS on stream 0", lambda p: frame(HEADERS, END_HEADERS, 0, p.block(REQUEST)),
     "goaway 1"),
    ("6.2 HEADERS padding longer than the payload", raw(HEADERS, END_HEADERS | PADDED, 1,
                                                        b"\xff\x82"), "goaway 1"),
    ("6.2 HEADERS then DATA before END_HEADERS", seq(raw(HEADERS, 0, 1, b""),
                                                     raw(DATA, 0, 1, b"x")), "goaway 1"),
    # 6.3 PRIORITY
    ("6.3 PRIORITY on stream 0", raw(PRIORITY, 0, 0, PRIO), "goaway 1"),
    ("6.3 PRIORITY of length 4", raw(PRIORITY, 0, 1, PRIO[:4]), "error 6"),
    ("6.3 PRIORITY on an idle stream is fine", raw(PRIORITY, 0, 9, PRIO), "ok"),
    # 6.4 RST_STREAM
    ("6.4 RST_STREAM on stream 0", raw(RST_STREAM, 0, 0, b"\0\0\0\x08"), "goaway 1"),
    ("6.4 RST_STREAM of length 3", seq(OPEN1, raw(RST_STREAM, 0, 1, b"\0\0\x08")),
     "goaway 6"),
    # 6.5 SETTINGS
    ("6.5 SETTINGS ACK with a payload", raw(SETTINGS, ACK, 0, b"\0\x01\0\0\0\x01"),
     "goaway 6"),
    ("6.5 SETTINGS on a stream", raw(SETTINGS, 0, 1, b""), "goaway 1"),
    ("6.5 SETTINGS of length 3", raw(SETTINGS, 0, 0, b"\0\x01\0"), "goaway 6"),
    ("6.5.2 ENABLE_PUSH 2", octets(settings(s2=2)), "goaway 1"),
    ("6.5.2 INITIAL_WINDOW_SIZE over 2**31-1", octets(settings(s4=2**31)), "goaway 3"),
    ("6.5.2 MAX_FRAME_SIZE below 16384", octets(settings(s5=16383)), "goaway 1"),
    ("6.5.2 MAX_FRAME_SIZE over 2**24-1", octets(settings(s5=2**24)), "goaway 1"),
    ("6.5.2 unknown setting is ignored", octets(settings(s255=1)), "settings-ack"),
    ("6.5.3 SETTINGS is acknowledged", octets(settings(s3=10)), "settings-ack"),
    # 6.7 PING
    ("6.7 PING is answered", raw(PING, 0, 0, b"12345678"), "ping-ack"),
    ("6.7 PING on a stream", raw(PING, 0, 1, b"12345678"), "goaway 1"),
    ("6.7 PING of length 6", raw(PING, 0, 0, b"123456"), "goaway 6"),
    ("6.7 PING ACK is not answered", raw(PING, ACK, 0, b"12345678"), "ok"),
    # 6.8 GOAWAY
    ("6.8 GOAWAY on a stream", raw(GOAWAY, 0, 1, b"\0\0\0\0\0\0\0\0"), "goaway 1"),
    # 6.9 WINDOW_UPDATE
    ("6.9 WINDOW_UPDATE of 0 on the connection", octets(window_update(0, 0)), "goaway 1"),
    ("6.9 WINDOW_UPDATE of 0 on a stream", seq(OPEN1, octets(window_update(1, 0))),
     "error 1"),
    ("6.9 WINDOW_UPDATE of length 3", raw(WINDOW_UPDATE, 0, 0, b"\0\0\x01"), "goaway 6"),
    ("6.9.1 connection window over 2**31-1", octets(window_update(0, 2**31 - 1)),
     "goaway 3"),
    ("6.9.1 stream window over 2**31-1", seq(OPEN1, octets(window_update(1, 2**31 - 1))),
     "error 3"),
    ("6.9.2 INITIAL_WINDOW_SIZE change overflowing an open window",
     seq(OPEN1, octets(window_update(1, 2**31 - 65536)), octets(settings(s4=65536))),
     "goaway 3"),
    # 6.10 CONTINUATION
    ("6.10 CONTINUATION completes a header block", lambda p: (
        lambda b: frame(HEADERS, END_STREAM, 1, b[:5]) + frame(CONTINUATION, END_HEADERS,
                                                               1, b[5:]))(p.block(REQUEST)),
     "status 200"),
    ("6.10 CONTINUATION after END_HEADERS", seq(hdrs(req()), raw(CONTINUATION, END_HEADERS,
                                                                1, b"")), "goaway 1"),
    ("6.10 CONTINUATION on another stream", seq(raw(HEADERS, 0, 1, b""),
                                                 raw(CONTINUATION, END_HEADERS, 3, b"")),
     "goaway 1"),
    ("8.4 PUSH_PROMISE from a client", raw(PUSH_PROMISE, END_HEADERS, 1, b"\0\0\0\x02"),
     "goaway 1"),
    # 8.1 messages
    ("8.1.1 content-length larger than the DATA",
     seq(hdrs(req((b"content-length", b"5"), method=b"POST"), end=False),
         raw(DATA, END_STREAM, 1, b"abc")), "reset 1"),
    ("8.1.1 content-length smaller than the DATA",
     seq(hdrs(req((b"content-length", b"1"), method=b"POST"), end=False),
         raw(DATA, END_STREAM, 1, b"abc")), "reset 1"),
    ("8.1 trailers with a pseudo-header", seq(OPEN1, hdrs([(b":method", b"GET")])),
     "reset 1"),
    ("8.1 trailers without END_STREAM", seq(OPEN1, hdrs([(b"x-t", b"1")], end=False)),
     "error 1"),
    ("8.1 trailers end the request", seq(OPEN1, raw(DATA, 0, 1, b"hi"),
                                         hdrs([(b"x-t", b"1")])), "status 200"),
    # 8.2 fields
    ("8.2 upper-case field name", hdrs(req((b"X-Upper", b"1"))), "reset 1"),
    ("8.2.1 CR in a field value", hdrs(req((b"x-a", b"1\r\n2"))), "reset 1"),
    ("8.2.2 connection", hdrs(req((b"connection", b"keep-alive"))), "reset 1"),
    ("8.2.2 keep-alive", hdrs(req((b"keep-alive", b"5"))), "reset 1"),
    ("8.2.2 proxy-connection", hdrs(req((b"proxy-connection", b"x"))), "reset 1"),
    ("8.2.2 transfer-encoding", hdrs(req((b"transfer-encoding", b"chunked"))), "reset 1"),
    ("8.2.2 upgrade", hdrs(req((b"upgrade", b"websocket"))), "reset 1"),
    ("8.2.2 TE other than trailers", hdrs(req((b"te", b"gzip"))), "reset 1"),
    ("8.2.2 TE: trailers is allowed", hdrs(req((b"te", b"trailers"))), "status 200"),
    # 8.3 pseudo-headers
    ("8.3 unknown pseudo-header", hdrs(req((b":foo", b"x"))), "reset 1"),
    ("8.3 response pseudo-header in a request", hdrs(req((b":status", b"200"))), "reset 1"),
    ("8.3 pseudo-header after a regular field",
     hdrs([(b"x-a", b"1"), *req()]), "reset 1"),
    ("8.3 duplicated :path", hdrs(req((b":path", b"/"))), "reset 1"),
    ("8.3 duplicated :method", hdrs(req((b":method", b"GET"))), "reset 1"),
    ("8.3.1 no :method", hdrs(req(drop=(b":method",))), "reset 1"),
    ("8.3.1 no :scheme", hdrs(req(drop=(b":scheme",))), "reset 1"),
    ("8.3.1 no :path", hdrs(req(drop=(b":path",))), "reset 1"),
    ("8.3.1 empty :path", hdrs(req(path=b"")), "reset 1"),
    ("8.3.1 :authority and Host differ", hdrs(req((b"host", b"other.example"))), "reset 1"),
    ("8.3.1 Host without :authority", hdrs(req((b"host", b"example.com"),
                                               drop=(b":authority",))), "status 200"),
    # the HTTP semantics both versions check (rules.py)
    ("HTTP CONNECT is not served", hdrs([(b":method", b"CONNECT"),
                                         (b":authority", b"example.com:443")]), "status 501"),
    ("HTTP unknown method", hdrs(req(method=b"BREW")), "status 501"),
    ("HTTP :path not origin-form", hdrs(req(path=b"x/y")), "status 400"),
    ("HTTP asterisk-form only with OPTIONS", hdrs(req(path=b"*")), "status 400"),
    ("HTTP OPTIONS *", hdrs(req(method=b"OPTIONS", path=b"*")), "status 200"),
    ("HTTP invalid :authority", hdrs(req(drop=(b":authority",)) + [(b":authority", b"a b")]),
     "status 400"),
    ("8.1.1 invalid content-length", hdrs(req((b"content-length", b"x"))), "reset 1"),
]
