"""A raw-frame HTTP/2 client against the sans-IO server connection (http/h2.py).

`Peer` holds one server H2Connection on a fake clock, plays a small app (every complete
request is answered 200 with "ok", its body read as it arrives) and reads back what the
server wrote as frames (hyperframe) with response headers decoded (hpack). Frames to send
are built raw with `frame()`, so malformed ones are as easy as good ones.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import hpack
from h2.frame_buffer import FrameBuffer
from hyperframe.frame import Frame, GoAwayFrame, HeadersFrame, RstStreamFrame

from reclusterd.http.connection import ConnectionRules
from reclusterd.http.events import Data, EndOfMessage, Limits, Request
from reclusterd.http.h2 import (
    H2Connection,
    H2Event,
    H2Settings,
    StreamEvent,
    StreamGone,
    StreamReset,
)
from reclusterd.http.h2rules import PREFACE

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS = 0x0, 0x1, 0x2, 0x3, 0x4
PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0x5, 0x6, 0x7, 0x8, 0x9
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20

REQUEST = [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/"),
           (b":authority", b"example.com")]


def frame(ftype: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """One frame's octets (RFC 9113 §4.1), whatever its contents."""
    return (len(payload).to_bytes(3, "big") + bytes((ftype, flags))
            + struct.pack(">I", stream_id) + payload)


def settings(**values: int) -> bytes:
    """A SETTINGS frame; keys are setting ids as `s1`, `s4`... (RFC 9113 §6.5.2)."""
    body = b"".join(struct.pack(">HI", int(k[1:]), v) for k, v in values.items())
    return frame(SETTINGS, 0, 0, body)


def window_update(stream_id: int, increment: int) -> bytes:
    return frame(WINDOW_UPDATE, 0, stream_id, struct.pack(">I", increment))


@dataclass
class Peer:
    """A client connection: `send` octets, then look at `frames`/`responses`/`events`."""

    settings: H2Settings = field(default_factory=H2Settings)
    limits: Limits = field(default_factory=Limits)
    rules: ConnectionRules = field(default_factory=lambda: ConnectionRules(5.0, 10.0))
    app: bool = True        # answer complete requests (False: the test answers)
    handshake: bool = True

    def __post_init__(self) -> None:
        self.now = 0.0
        self.conn = H2Connection(self.settings, self.rules, self.limits, lambda: self.now)
        self.conn.start()
        self.events: list[H2Event] = []
        self.requests: dict[int, Request] = {}
        self.client_state()
        if self.handshake:
            self.send(PREFACE + settings() + frame(SETTINGS, ACK, 0))

    def client_state(self) -> None:
        """The client's side: HPACK coders, the frame reader, what was received."""
        self.enc = hpack.Encoder()
        self.dec = hpack.Decoder()
        self.dec.max_header_list_size = 2**24
        self.buffer = FrameBuffer(server=False)
        self.buffer.max_frame_size = 2**24 - 1
        self.frames: list[Frame] = []
        self.responses: dict[int, list[tuple[bytes, bytes]]] = {}
        self.bodies: dict[int, bytes] = {}

    def block(self, headers: list[tuple[bytes, bytes]]) -> bytes:
        return bytes(self.enc.encode(headers))

    def headers(self, stream_id: int, headers: list[tuple[bytes, bytes]] | None = None,
                end_stream: bool = True) -> bytes:
        flags = END_HEADERS | (END_STREAM if end_stream else 0)
        return frame(HEADERS, flags, stream_id, self.block(REQUEST if headers is None
                                                          else headers))

    def send(self, data: bytes) -> list[H2Event]:
        events = self.conn.receive(data)
        self.events += events
        if self.app:
            self._serve(events)
        self.read()
        return events

    def _serve(self, events: list[H2Event]) -> None:
        conn = self.conn
        for e in events:
            if isinstance(e, StreamEvent):
                if isinstance(e.event, Request):
                    self.requests[e.stream_id] = e.event
                elif isinstance(e.event, Data):
                    conn.ack_data(e.stream_id, len(e.event.data))
                elif isinstance(e.event, EndOfMessage):
                    self._answer(e.stream_id)
            elif isinstance(e, StreamReset):
                conn.stream_done(e.stream_id)

    def _answer(self, sid: int) -> None:
        conn = self.conn
        try:
            conn.send_headers(sid, 200, [(b"content-length", b"2")])
            conn.send_data(sid, b"ok", end=True)
        except StreamGone:
            pass        # reset later in the same batch: its StreamReset follows
        else:
            conn.stream_done(sid)

    def read(self) -> list[Frame]:
        """The frames the server wrote since the last read."""
        return self.take(self.conn.data_to_send())

    def take(self, data: bytes) -> list[Frame]:
        """Record the frames `data` (octets from the server) completes."""
        self.buffer.add_data(data)
        new = list(self.buffer)
        for f in new:
            if isinstance(f, HeadersFrame):
                self.responses.setdefault(f.stream_id, []).extend(
                    (bytes(n), bytes(v)) for n, v in self.dec.decode(f.data, raw=True))
            elif f.type == DATA:
                self.bodies[f.stream_id] = self.bodies.get(f.stream_id, b"") + f.data
        self.frames += new
        return new

    def status(self, stream_id: int) -> int | None:
        for name, value in self.responses.get(stream_id, ()):
            if name == b":status" and value[:1] != b"1":
                return int(value)
        return None

    def goaway(self) -> int | None:
        """The error code of the GOAWAY the server sent, if any."""
        codes = [f.error_code for f in self.frames if isinstance(f, GoAwayFrame)]
        return codes[-1] if codes else None

    def resets(self, stream_id: int | None = None) -> list[int]:
        return [f.error_code for f in self.frames if isinstance(f, RstStreamFrame)
                and (stream_id is None or f.stream_id == stream_id)]

    def of_type(self, ftype: int) -> list[Frame]:
        return [f for f in self.frames if f.type == ftype]
