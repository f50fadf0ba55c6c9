"""One HTTP/2 server connection over the h2 library, sans-IO: bytes in -> per-stream
request events (the HTTP/1 ones: Request, Data, EndOfMessage), responses in -> bytes out.

A driver (thread or asyncio worker) moves bytes and runs apps:

- `receive(data)` gives `StreamEvent`s (a stream's Request / Data / EndOfMessage),
  `StreamReset` (the client reset a stream, or it stalled: the app sees a disconnect),
  `SendCredit` (a blocked stream may send again) and `Terminated` (the connection is
  over: write `data_to_send()`, then close). Bytes to write are in `data_to_send()`.
- request bodies are flow-controlled: a stream's window opens again only as the driver
  calls `ack_data` for what the app consumed, so a stream holds at most one window.
- `send_headers`, `send_data` (takes what the send window allows now; the rest waits for
  SendCredit), `end_stream` (with trailers), `reset`; `stream_done` when the app is
  finished with a stream (it counts against the stream limit until then).
- deadlines as values: `next_deadline()` and `expire()`, like http/connection.py.
- `begin_drain()`: GOAWAY naming the last stream; open streams finish, later ones are
  refused; `finished` tells when the connection may close.

Not thread-safe: a driver whose apps run on threads makes every call under one lock
per connection.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import h2.config
import h2.connection
import h2.events as ev
import h2.exceptions
from h2.errors import ErrorCodes
from h2.settings import SettingCodes, Settings
from hpack.exceptions import HPACKError
from hyperframe.frame import GoAwayFrame

from .connection import DRAIN_IDLE, FOREVER, ConnectionRules
from .events import Data, EndOfMessage, Headers, Limits, Request
from .h2guard import MIN_CHUNK, MIN_CRUMB, SMALL_FRAMES, Calm, Counts, FrameScanner, ResetWatch
from .h2rules import SWITCHING_H2C, h2_request, response_fields, trailer_fields, upgraded_request
from .h2server import ServerConnection
from .h2stream import StreamGone, StreamState
from .response import FramingError, error_body
from .rules import Reject

__all__ = ["H2Connection", "H2Event", "H2Settings", "SendCredit", "StreamEvent",
           "StreamGone", "StreamReset", "Terminated"]

log = logging.getLogger("reclusterd.error")
DRAIN_PING = b"drain\0\0\0"   # the PING sent after the first GOAWAY of a drain
DRAIN_RTT = 1.0     # s to wait for its ACK before the final GOAWAY anyway


@dataclass(frozen=True, slots=True)
class H2Settings:
    """The --http2-* settings (octets; streams)."""

    max_concurrent_streams: int = 100
    initial_window_size: int = 65535
    max_frame_size: int = 16384
    max_header_list_size: int = 65536


@dataclass(slots=True)
class StreamEvent:
    """A request event on one stream."""

    stream_id: int
    event: Request | Data | EndOfMessage


@dataclass(slots=True)
class StreamReset:
    """The stream is gone (client RST_STREAM, a stall, the connection ending): its app
    should stop; sending on it raises StreamGone. `stream_done` is still owed."""

    stream_id: int
    error_code: int


@dataclass(slots=True)
class SendCredit:
    """Send credit arrived for `stream_id` (0: the connection's, or every stream's)."""

    stream_id: int


@dataclass(slots=True)
class Terminated:
    """The connection is over (GOAWAY sent or received, EOF): flush, then close."""

    error_code: int
    reason: str


H2Event = StreamEvent | StreamReset | SendCredit | Terminated


class H2Connection:
    """State of one HTTP/2 connection (see the module docstring)."""

    def __init__(self, settings: H2Settings, rules: ConnectionRules, limits: Limits,
                 clock: Callable[[], float]) -> None:
        self.settings = settings
        self.rules = rules
        self.limits = limits
        self.clock = clock
        conn = self._h2 = ServerConnection(h2.config.H2Configuration(
            client_side=False, header_encoding=None))
        conn.local_settings = Settings(client=False, initial_values={
            SettingCodes.MAX_CONCURRENT_STREAMS: settings.max_concurrent_streams,
            SettingCodes.INITIAL_WINDOW_SIZE: settings.initial_window_size,
            SettingCodes.MAX_FRAME_SIZE: settings.max_frame_size,
            SettingCodes.MAX_HEADER_LIST_SIZE: settings.max_header_list_size,
            SettingCodes.ENABLE_PUSH: 0})
        conn.max_inbound_frame_size = settings.max_frame_size
        conn.decoder.max_header_list_size = settings.max_header_list_size
        self._scan = FrameScanner(settings.max_header_list_size + settings.max_frame_size)
        self._resets = ResetWatch(2 * settings.max_concurrent_streams)
        self._small = Counts(SMALL_FRAMES)
        self.streams: dict[int, StreamState] = {}   # handed to the driver, not done yet
        self._out = bytearray()
        now = self.opened = self.idle_since = clock()
        self.started = False        # our SETTINGS are queued
        self.preface_seen = False   # the client's preface and first frame arrived
        self.closed = False         # terminal: nothing more is read or sent
        self.draining = False
        self.drain_until = FOREVER
        self.last_stream = 0        # GOAWAY's last stream id once draining (2**31-1 before)
        self.final_goaway_at = FOREVER  # draining: when the final GOAWAY is due (no ACK)
        self.served = 0             # responses completed
        self.idle_since = now

    # -- starting ----------------------------------------------------------------------
    def start(self) -> None:
        """Queue the server preface: our SETTINGS and the connection window (one window
        per stream the limit allows: streams, not the connection, bound what is held)."""
        self._h2.initiate_connection()
        self._open_connection_window()

    def upgrade(self, request: Request, settings_header: bytes, body: bytes
                ) -> list[H2Event]:
        """Switch an HTTP/1.1 `Upgrade: h2c` request (h2rules.h2c_settings said yes; its
        whole body read) to HTTP/2: 101, our SETTINGS, and the request as stream 1
        (RFC 7540 §3.2). The client's preface and frames follow in `receive`."""
        self._out += SWITCHING_H2C
        self._h2.initiate_upgrade_connection(settings_header)
        self._open_connection_window()
        self.streams[1] = StreamState(request, self.clock(), ended=True)
        events: list[H2Event] = [StreamEvent(1, upgraded_request(request))]
        if body:
            events.append(StreamEvent(1, Data(body)))
        events.append(StreamEvent(1, EndOfMessage()))
        return events

    def _open_connection_window(self) -> None:
        self.started = True
        s = self.settings
        extra = min(s.max_concurrent_streams * s.initial_window_size, 2**31 - 1) - 65535
        if extra > 0:
            self._h2.increment_flow_control_window(extra)

    # -- bytes in ----------------------------------------------------------------------
    def receive(self, data: bytes) -> list[H2Event]:
        """Feed bytes from the client (b"" = EOF); the events they complete."""
        if self.closed:
            return []
        if not data:
            return self._terminate(0, "client closed the connection", goaway=False)
        now = self.clock()
        try:
            self._scan.feed(data, self._h2.max_inbound_frame_size, now)
            h2_events = self._h2.receive_data(data)
            self.preface_seen = True
            out = self._handle(h2_events, now)
            self._stream_errors(now, out)
            return out
        except Calm as e:
            return self._terminate(e.code, e.reason)
        except h2.exceptions.ProtocolError as e:
            code = int(getattr(e, "error_code", ErrorCodes.PROTOCOL_ERROR))
            if isinstance(e.__cause__, HPACKError) and code == ErrorCodes.PROTOCOL_ERROR:
                code = self._compression_error()
            return self._terminate(code, f"HTTP/2 protocol error: {type(e).__name__}",
                                   goaway=not self._h2_closed())

    def _stream_errors(self, now: float, out: list[H2Event]) -> None:
        """Streams h2 reset as malformed (RFC 9113 §8.1.1, §5.3.1): gone for the
        driver, and counted with the other premature resets."""
        for sid in self._h2.stream_errors:
            log.debug("malformed HTTP/2 request on stream %d: reset", sid)
            st = self.streams.get(sid)
            if st is not None and not st.gone:
                st.gone = True
                out.append(StreamReset(sid, int(ErrorCodes.PROTOCOL_ERROR)))
            self._resets.reset(now)
        self._h2.stream_errors.clear()

    def _compression_error(self) -> int:
        """A header block HPACK cannot decode is a COMPRESSION_ERROR (RFC 9113 §4.3); h2
        says PROTOCOL_ERROR in the GOAWAY it just queued last, so that frame is redone."""
        frame = GoAwayFrame(0)
        frame.last_stream_id = self._h2.goaway_cap     # what close_connection just sent
        frame.error_code = ErrorCodes.PROTOCOL_ERROR
        sent = frame.serialize()
        out = self._h2.data_to_send()
        if out.endswith(sent):
            frame.error_code = ErrorCodes.COMPRESSION_ERROR
            out = out[:-len(sent)] + frame.serialize()
        self._out += out
        return int(ErrorCodes.COMPRESSION_ERROR)

    def _h2_closed(self) -> bool:
        return self._h2.state_machine.state == h2.connection.ConnectionState.CLOSED

    def _handle(self, h2_events: list[ev.Event], now: float) -> list[H2Event]:
        out: list[H2Event] = []
        for e in h2_events:
            if isinstance(e, ev.DataReceived):
                self._on_data(e, now, out)
            elif isinstance(e, ev.RequestReceived):
                self._on_request(e, now, out)
            elif isinstance(e, ev.TrailersReceived):
                self._on_trailers(e)
            elif isinstance(e, ev.StreamEnded):
                self._on_end(e.stream_id, out)
            elif isinstance(e, ev.StreamReset):
                self._on_reset(e.stream_id, int(e.error_code), now, out)
            elif isinstance(e, ev.WindowUpdated):
                out.append(SendCredit(e.stream_id or 0))
            elif isinstance(e, ev.RemoteSettingsChanged):
                if SettingCodes.INITIAL_WINDOW_SIZE in e.changed_settings:
                    out.append(SendCredit(0))
            elif isinstance(e, ev.PingAckReceived):
                if e.ping_data == DRAIN_PING and self.final_goaway_at < FOREVER:
                    self._final_goaway()
            elif isinstance(e, ev.ConnectionTerminated):
                out.extend(self._terminate(int(e.error_code or 0),
                                           "client sent GOAWAY", goaway=False))
        return out

    def _on_request(self, e: ev.RequestReceived, now: float, out: list[H2Event]) -> None:
        sid = e.stream_id
        if self.draining and sid > self.last_stream:
            self._h2_reset(sid, ErrorCodes.REFUSED_STREAM)   # after our GOAWAY
            log.debug("HTTP/2 stream %d refused: opened after the final GOAWAY", sid)
            return
        if len(self.streams) >= self.settings.max_concurrent_streams:
            self._h2_reset(sid, ErrorCodes.REFUSED_STREAM)   # RFC 9113 §5.1.2
            self._resets.reset(now)
            return
        try:
            req = h2_request(list(e.headers or ()), self.limits)
        except Reject as err:
            try:
                self._refuse(sid, err, list(e.headers or ()))
            except h2.exceptions.StreamClosedError:
                pass        # the client reset it in the same read
            self._resets.reset(now)
            return
        self.streams[sid] = StreamState(req, now)   # StreamEnded follows if it ended
        self._scan.window_credit += 1           # a client may raise its window at once
        out.append(StreamEvent(sid, req))

    def _h2_reset(self, sid: int, code: int) -> None:
        """RST_STREAM, unless a frame later in the same read closed the stream already."""
        try:
            self._h2.reset_stream(sid, code)
        except h2.exceptions.StreamClosedError:
            pass

    def _refuse(self, sid: int, err: Reject, fields: Headers) -> None:
        """Answer a request the rules refuse, as HTTP/1 does (fixed texts), on its stream."""
        log.debug("bad HTTP/2 request (%d): %s", err.status, err.reason)
        body = b"" if (b":method", b"HEAD") in fields else error_body(err.status)
        self._h2.send_headers(sid, [(b":status", b"%d" % err.status),
                                    (b"content-type", b"text/plain; charset=utf-8")])
        if body and self._h2.local_flow_control_window(sid) >= len(body):
            self._h2.send_data(sid, body, end_stream=True)
        else:
            self._h2.end_stream(sid)
        if self._h2.streams.get(sid) is not None and self._h2.streams[sid].open:
            self._h2.reset_stream(sid, ErrorCodes.NO_ERROR)  # its body is not wanted

    def _on_data(self, e: ev.DataReceived, now: float, out: list[H2Event]) -> None:
        sid = e.stream_id
        size = e.flow_controlled_length or 0
        st = self.streams.get(sid)
        if st is None or st.gone:
            if size:
                self._h2.acknowledge_received_data(size, sid)   # nobody will read it
            return
        st.buffered += size
        st.received += len(e.data or b"")
        st.last_in = now
        body_limit = self.limits.body
        if body_limit and st.received > body_limit:
            self._reset(sid, st, ErrorCodes.CANCEL, out)
            return
        if e.data:
            out.append(StreamEvent(sid, Data(bytes(e.data))))

    def _on_trailers(self, e: ev.TrailersReceived) -> None:
        st = self.streams.get(e.stream_id)
        if st is not None:
            try:
                st.trailers = trailer_fields(list(e.headers or ()), self.limits)
            except Reject:
                st.trailers = []    # as HTTP/1 after the body: dropped, not answered

    def _on_end(self, sid: int, out: list[H2Event]) -> None:
        st = self.streams.get(sid)
        if st is not None and not st.gone and not st.ended:
            st.ended = True
            out.append(StreamEvent(sid, EndOfMessage(st.trailers)))

    def _on_reset(self, sid: int, code: int, now: float, out: list[H2Event]) -> None:
        st = self.streams.get(sid)
        if st is None or st.gone:
            return
        st.gone = True
        out.append(StreamReset(sid, code))
        if not st.complete:
            self._resets.reset(now)

    def _reset(self, sid: int, st: StreamState, code: int, out: list[H2Event]) -> None:
        """End a stream the driver has, from our side, and tell the driver."""
        st.gone = True
        self._h2_reset(sid, code)
        out.append(StreamReset(sid, code))

    def _terminate(self, code: int, reason: str, goaway: bool = True) -> list[H2Event]:
        """The connection ends: GOAWAY (unless h2 sent one or it cannot be sent), every
        stream the driver has is reset for it."""
        if self.closed:
            return []
        if goaway and code:
            log.info("closing HTTP/2 connection: %s", reason)
        self.closed = True
        if goaway and not self._h2_closed():
            self._h2.close_connection(code)
        out: list[H2Event] = []
        for sid, st in self.streams.items():
            if not st.gone:
                st.gone = True
                out.append(StreamReset(sid, int(ErrorCodes.CANCEL)))
        out.append(Terminated(code, reason))
        return out

    # -- the driver's side -------------------------------------------------------------
    def ack_data(self, stream_id: int, size: int) -> None:
        """The app consumed `size` body octets of the stream: open its window again."""
        st = self.streams.get(stream_id)
        if st is None or self.closed:
            return
        size = min(size, st.buffered)
        if size > 0:
            st.buffered -= size
            st.last_in = self.clock()    # the wait for the client starts again
            self._h2.acknowledge_received_data(size, stream_id)

    def send_continue(self, stream_id: int) -> None:
        """`100 Continue` for a request that expects it (RFC 9110 §10.1.1)."""
        with self._sending(stream_id) as st:
            if st.status == 0:
                self._h2.send_headers(stream_id, [(b":status", b"100")])

    def send_headers(self, stream_id: int, status: int, headers: Headers) -> None:
        """The response head (InvalidResponse for what must not reach the wire).
        1xx heads may come first; a final one only once."""
        with self._sending(stream_id) as st:
            fields, length, bodiless = response_fields(status, headers,
                                                       st.request.method == b"HEAD")
            self._h2.send_headers(stream_id, fields)
            if status >= 200:
                st.status, st.length, st.bodiless = status, length, bodiless

    def sendable(self, stream_id: int) -> int:
        """Octets of body the stream may send now (its and the connection's window)."""
        if self.closed or stream_id not in self.streams:
            return 0
        return max(0, self._h2.local_flow_control_window(stream_id))

    def send_data(self, stream_id: int, data: bytes, end: bool = False) -> int:
        """Queue as much of `data` as the send windows allow now; the octets taken. Less
        than len(data): wait for SendCredit (or the deadline) and send the rest. `end`:
        this is the last piece (the response ends with it once it is all sent, saving
        `end_stream`). HEAD's body is dropped (all taken); FramingError for a body the
        head contradicts."""
        with self._sending(stream_id) as st:
            return self._send(stream_id, st, data, end)

    def _send(self, stream_id: int, st: StreamState, data: bytes, end: bool) -> int:
        n = st.check_body(len(data))
        take = min(n, self.sendable(stream_id))
        if 0 < take < n and take < self._crumb() and self._small.over("small", self.clock()):
            take = 0        # credit in crumbs: no stream of tiny frames (CVE-2019-9511)
        if end and take == n:
            if st.length is not None and st.sent + n < st.length:
                raise FramingError(f"response body shorter than its Content-Length "
                                   f"({st.sent + n} < {st.length} bytes)")
        frame = self._h2.max_outbound_frame_size
        for i in range(0, take, frame):
            last = end and i + frame >= take == n
            self._h2.send_data(stream_id, data[i:min(i + frame, take)], end_stream=last)
        self._scan.window_credit += 2 * -(-take // frame)  # the updates they earn
        st.sent += take
        # The stall deadline runs from the last send that made progress: a client that
        # keeps granting credit (a small window acked frame by frame) is not stalled.
        if take == n:
            st.blocked_since = None
        elif take or st.blocked_since is None:
            st.blocked_since = self.clock()
        if end and take == n:
            if n == 0:
                self._h2.end_stream(stream_id)
            self._completed(st)
            return len(data)
        return take if n else len(data)

    def _crumb(self) -> int:
        """Octets under which a DATA frame is a crumb. A client whose whole stream window
        (SETTINGS_INITIAL_WINDOW_SIZE, any value is legal: RFC 9113 §6.9.2) is under
        MIN_CHUNK can only ever grant small credit: half of its window counts as a full
        chunk for it, down to MIN_CRUMB, below which it is a dribble whatever it says."""
        window = self._h2.remote_settings.initial_window_size
        return min(MIN_CHUNK, max(MIN_CRUMB, window // 2))

    def end_stream(self, stream_id: int, trailers: Headers | None = None) -> None:
        """The response is complete (trailers: a last HEADERS). FramingError when the
        body fell short of its Content-Length (then `reset` the stream)."""
        with self._sending(stream_id) as st:
            self._end(stream_id, st, trailers)

    def _end(self, stream_id: int, st: StreamState, trailers: Headers | None) -> None:
        if st.length is not None and st.sent < st.length:
            raise FramingError(f"response body shorter than its Content-Length "
                               f"({st.sent} < {st.length} bytes)")
        if trailers:
            fields = response_fields(200, trailers, False)[0][1:]
            self._h2.send_headers(stream_id, [f for f in fields if f[0] not in
                                              (b"date", b"server")], end_stream=True)
        else:
            self._h2.end_stream(stream_id)
        self._completed(st)

    def _completed(self, st: StreamState) -> None:
        st.complete = True
        self.served += 1
        self._resets.complete(self.clock())

    def reset(self, stream_id: int, code: int = ErrorCodes.INTERNAL_ERROR) -> None:
        """Abandon a response under way (the app failed, its framing was wrong)."""
        st = self.streams.get(stream_id)
        if st is not None and not st.gone and not self.closed:
            st.gone = True
            self._h2.reset_stream(stream_id, code)

    def stream_done(self, stream_id: int) -> None:
        """The driver is finished with the stream: its slot is free; a request body still
        coming is declined (RST_STREAM NO_ERROR after a complete response, RFC 9113 §8.1)
        and what it had buffered is credited back."""
        st = self.streams.pop(stream_id, None)
        if st is None or self.closed:
            return
        if st.buffered:
            self._h2.acknowledge_received_data(st.buffered, stream_id)
        if not st.gone and not st.complete:
            self._h2.reset_stream(stream_id, ErrorCodes.INTERNAL_ERROR)
        elif not st.gone and not st.ended:
            self._h2.reset_stream(stream_id, ErrorCodes.NO_ERROR)
        if not self.streams:
            self.idle_since = self.clock()

    def _live(self, stream_id: int) -> StreamState:
        st = self.streams.get(stream_id)
        if st is None or st.gone or self.closed:
            raise StreamGone(f"HTTP/2 stream {stream_id} is gone")
        return st

    @contextmanager
    def _sending(self, stream_id: int) -> Iterator[StreamState]:
        """The live stream to send on; h2 finding it closed is the stream gone."""
        st = self._live(stream_id)
        try:
            yield st
        except h2.exceptions.StreamClosedError:
            st.gone = True
            raise StreamGone(f"HTTP/2 stream {stream_id} is gone") from None

    def data_to_send(self) -> bytes:
        """Bytes to write, in order (h2's frames and ours)."""
        if self._out:
            out = bytes(self._out + self._h2.data_to_send())
            self._out.clear()
            return out
        return self._h2.data_to_send()

    # -- draining and deadlines --------------------------------------------------------
    def begin_drain(self, grace: float) -> None:
        """TERM/HUP/recycle: streams up to the last one the client opens before it sees
        our GOAWAY finish (for `grace` s at most), later ones are refused.

        RFC 9113 §6.8's graceful shutdown: a first GOAWAY NO_ERROR with 2**31-1 and a
        PING; the final GOAWAY names the last stream once the PING's ACK shows that the
        streams the client sent before it saw the first have arrived (or after
        DRAIN_RTT s). A single GOAWAY would refuse those streams, and clients that do
        not retry REFUSED_STREAM (h2load) would lose them."""
        if self.draining or self.closed:
            return
        self.draining = True
        now = self.clock()
        self.drain_until = now + max(grace, 0.0)
        if not self.started:
            self._final_goaway()
            return
        self.last_stream = 2**31 - 1
        self._goaway(self.last_stream)
        self._h2.ping(DRAIN_PING)
        self.final_goaway_at = min(now + DRAIN_RTT, self.drain_until)

    def _final_goaway(self) -> None:
        self.final_goaway_at = FOREVER
        self.last_stream = self._h2.goaway_last()
        if self.started:
            self._goaway(self.last_stream)

    def _goaway(self, last_stream: int) -> None:
        """GOAWAY NO_ERROR, written by us: h2's own would stop it reading the streams
        that go on."""
        frame = GoAwayFrame(0)
        frame.last_stream_id = self._h2.goaway_last(last_stream)
        frame.error_code = 0
        self._out += self._h2.data_to_send()
        self._out += frame.serialize()

    @property
    def finished(self) -> bool:
        """Nothing more will happen here: closed, or drained (the final GOAWAY sent) with
        no stream left."""
        return self.closed or (self.draining and not self.streams
                               and self.final_goaway_at == FOREVER)

    def next_deadline(self) -> float:
        """When `expire()` has something to do if nothing arrives before."""
        return min(self._deadline(), self.final_goaway_at)

    def _deadline(self) -> float:
        if self.closed:
            return FOREVER
        if not self.preface_seen or self._scan.block_since is not None:
            since = self.opened if not self.preface_seen else self._scan.block_since
            return min(float(since or 0.0) + self._head_timeout(), self.drain_until)
        if not self.streams:
            return min(self.idle_since + self._idle_timeout(), self.drain_until)
        io = self.rules.io_timeout
        when = self.drain_until
        for sid, st in self.streams.items():
            when = min(when, st.deadline(io, self._client_may_send(sid, st)))
        return when

    def _client_may_send(self, sid: int, st: StreamState) -> bool:
        """Has the client credit for more request body (else waiting is the app's doing)?"""
        return not st.ended and not st.gone and self._h2.remote_flow_control_window(sid) > 0

    def expire(self) -> list[H2Event]:
        """Apply what is due now: end an idle, stalled or slow connection (GOAWAY), or
        reset the streams that stalled (a request body that stopped coming, a response
        the client gives no credit for: CVE-2019-9517 and kin)."""
        now = self.clock()
        if self.closed or now < self.next_deadline():
            return []
        if now >= self.final_goaway_at:
            self._final_goaway()        # the drain PING's ACK did not come in time
            if now < self._deadline():
                return []
        if not self.preface_seen or self._scan.block_since is not None or not self.streams:
            return self._terminate(0, "HTTP/2 connection idle or too slow")
        if now >= self.drain_until:
            return self._terminate(0, "graceful timeout")
        out: list[H2Event] = []
        io = self.rules.io_timeout
        for sid, st in self.streams.items():
            if st.deadline(io, self._client_may_send(sid, st)) <= now:
                self._reset(sid, st, ErrorCodes.CANCEL, out)
        return out

    def _head_timeout(self) -> float:
        header = self.rules.header_timeout
        return header if header > 0 else self.rules.io_timeout

    def _idle_timeout(self) -> float:
        keep = self.rules.keep_alive
        if self.draining:
            return min(keep, DRAIN_IDLE) if keep > 0 else DRAIN_IDLE
        return keep if keep > 0 else DRAIN_IDLE

