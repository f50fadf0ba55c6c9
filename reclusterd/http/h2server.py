"""The h2 library's server connection with the RFC 9113 choices h2 makes otherwise.

- The stream limit is ours: h2 ends the whole connection for a stream over
  SETTINGS_MAX_CONCURRENT_STREAMS; §5.1.2 lets the server refuse just that stream
  (REFUSED_STREAM), which http/h2.py does.
- A malformed request is a stream error (§8.1.1: connection-specific or upper-case
  fields, pseudo-header rules, Content-Length vs DATA) and so is a stream depending on
  itself (§5.3.1): RST_STREAM PROTOCOL_ERROR for that stream, the connection and its
  other streams go on (h2 raises them as connection errors: a proxy's shared
  connection would lose every stream). The streams reset so are in `stream_errors`.
- A GOAWAY never names a later stream than one sent before (§6.8), h2's own included.

h2 has no hooks for these, so its frame handlers are wrapped (h2 4.x).
"""

from __future__ import annotations

from types import TracebackType

import h2.config
import h2.connection
import h2.exceptions
from h2.errors import ErrorCodes
from h2.events import Event
from hyperframe.frame import DataFrame, Frame, HeadersFrame, PriorityFrame, RstStreamFrame

__all__ = ["ServerConnection"]

Handled = tuple[list[Frame], list[Event]]
# h2's header checks (RFC 9113 §8.2, §8.3) and its Content-Length parsing: a
# ProtocolError raised from these is about one request, not the connection.
_REQUEST_CHECKS = frozenset(("_process_received_headers", "_initialize_content_length"))


def _malformed(e: h2.exceptions.ProtocolError) -> bool:
    """Was `e` raised by h2's checks of a request's fields (not by HPACK, a stream
    state or a limit: those stay connection errors)?"""
    if type(e) is not h2.exceptions.ProtocolError:
        return False
    tb: TracebackType | None = e.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name in _REQUEST_CHECKS:
            return True
        tb = tb.tb_next
    return False


class ServerConnection(h2.connection.H2Connection):
    """h2's connection with the rules of the module docstring."""

    goaway_cap = 2**31 - 1      # the last stream id of the GOAWAY sent last

    def __init__(self, config: h2.config.H2Configuration) -> None:
        super().__init__(config)
        self.stream_errors: list[int] = []   # streams reset as malformed: take and clear

    @property
    def open_inbound_streams(self) -> int:
        super().open_inbound_streams      # noqa: B018 (it prunes closed streams)
        return 0

    # -- GOAWAY ------------------------------------------------------------------------
    def goaway_last(self, last_stream_id: int | None = None) -> int:
        """The last stream id for a GOAWAY now: never more than one already sent (RFC
        9113 §6.8: it MUST NOT increase), which it becomes."""
        if last_stream_id is None:
            last_stream_id = self.highest_inbound_stream_id
        self.goaway_cap = min(self.goaway_cap, last_stream_id)
        return self.goaway_cap

    def close_connection(self, error_code: ErrorCodes | int = 0,
                         additional_data: bytes | None = None,
                         last_stream_id: int | None = None) -> None:
        """h2's GOAWAY (ours, or its own on a protocol error), with the capped id."""
        super().close_connection(error_code, additional_data,
                                 self.goaway_last(last_stream_id))

    def _terminate_connection(self, error_code: ErrorCodes | int) -> None:
        """h2's GOAWAY on a protocol error, which would name its highest stream."""
        self.close_connection(error_code)

    # -- stream errors -----------------------------------------------------------------
    def _receive_headers_frame(self, frame: HeadersFrame) -> Handled:
        self_dependent = "PRIORITY" in frame.flags and frame.depends_on == frame.stream_id
        if self_dependent:
            frame.flags.discard("PRIORITY")     # h2 would end the connection for it
        try:
            handled = super()._receive_headers_frame(frame)
        except h2.exceptions.ProtocolError as e:
            if not _malformed(e):
                raise
            return self._stream_error(frame.stream_id)
        return self._stream_error(frame.stream_id) if self_dependent else handled

    def _receive_priority_frame(self, frame: HeadersFrame | PriorityFrame) -> Handled:
        if frame.depends_on != frame.stream_id:
            return super()._receive_priority_frame(frame)
        if frame.stream_id in self.streams:
            return self._stream_error(frame.stream_id)
        if frame.stream_id > self.highest_inbound_stream_id:    # idle: as nghttp2 does
            rst = RstStreamFrame(frame.stream_id)
            rst.error_code = ErrorCodes.PROTOCOL_ERROR
            self._prepare_for_sending([rst])
        return [], []           # (a closed stream's priority does not matter)

    def _receive_data_frame(self, frame: DataFrame) -> Handled:
        try:
            return super()._receive_data_frame(frame)
        except h2.exceptions.InvalidBodyLengthError:
            sid = frame.stream_id
            handled = self._stream_error(sid)
            self.acknowledge_received_data(frame.flow_controlled_length, sid)  # its credit
            return handled

    def _stream_error(self, stream_id: int) -> Handled:
        """RST_STREAM PROTOCOL_ERROR for a stream h2 knows; its events are dropped."""
        try:
            self.reset_stream(stream_id, ErrorCodes.PROTOCOL_ERROR)
        except h2.exceptions.StreamClosedError:
            return [], []
        self.stream_errors.append(stream_id)
        return [], []
