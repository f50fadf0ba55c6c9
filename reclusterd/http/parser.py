"""One sans-IO request parser interface over httptools (default, fast) and h11 (pure Python).

`feed(data)` takes bytes read from the socket (b"" = peer closed) and returns events:
Request, Data*, EndOfMessage, for each pipelined request in order, or one terminal
ProtocolError. Both implementations apply `rules` so they give the same answers.
"""

from __future__ import annotations

from typing import Protocol

import h11
import httptools

from . import rules
from .events import Data, EndOfMessage, Event, Headers, Limits, ProtocolError, Request
from .rules import Reject, check_field

__all__ = ["Parser", "make_parser", "HttptoolsParser", "H11Parser"]


class Parser(Protocol):
    """What workers use: feed bytes, get events; unprocessed() after an upgrade."""

    def feed(self, data: bytes) -> list[Event]: ...

    def unprocessed(self) -> bytes: ...


def make_parser(kind: str = "httptools", limits: Limits | None = None) -> Parser:
    """A parser for one connection: kind is "httptools" or "h11" (the --http setting)."""
    lim = limits if limits is not None else Limits()
    if kind == "httptools":
        return HttptoolsParser(lim)
    if kind == "h11":
        return H11Parser(lim)
    raise ValueError(f"unknown HTTP parser {kind!r} (httptools or h11)")


def _max_head(limits: Limits) -> int:
    """Upper bound on the bytes of one request head under `limits`."""
    line = limits.request_line or 65536
    size = limits.field_size or 65536
    count = limits.fields or 1000
    return line + 2 + count * (size + 2) + 2


class _Stop(Exception):
    """Raised from a callback to make httptools stop (parser finished)."""


# parser states
_IDLE, _HEAD, _BODY, _DONE = 0, 1, 2, 3


class HttptoolsParser:
    """llhttp (strict mode) via httptools callbacks; rules checked on what it reports."""

    __slots__ = ("_limits", "_p", "_events", "_state", "_url", "_headers", "_trailers",
                 "_req", "_body_len", "_rest", "_head_bytes", "_line_bytes", "_max_head",
                 "_max_line")

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._p = httptools.HttpRequestParser(self)
        self._events: list[Event] = []
        self._state = _IDLE
        self._url = b""
        self._headers: Headers = []
        self._trailers: Headers = []
        self._req: Request | None = None
        self._body_len = 0
        self._rest = b""
        self._head_bytes = 0
        self._line_bytes = 0
        self._max_head = _max_head(limits)
        self._max_line = max(limits.request_line or 65536, limits.field_size or 65536) + 2

    def unprocessed(self) -> bytes:
        """Bytes after an upgrade request's end (for the new protocol)."""
        return self._rest

    # -- feeding -------------------------------------------------------------------------

    def feed(self, data: bytes) -> list[Event]:
        """Parse `data`; return the events it completes (b"" = EOF)."""
        if self._state == _DONE:
            if self._req is not None and self._req.upgrade is not None:
                self._rest += data
            return []
        events: list[Event] = []
        self._events = events
        if not data:
            if self._state != _IDLE:
                self._fail(400, "connection closed inside a request")
            return events
        try:
            self._p.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._upgraded(data, int(exc.args[0]))
        except httptools.HttpParserCallbackError as exc:
            if self._state != _DONE:
                ctx = exc.__context__
                if isinstance(ctx, Reject):
                    self._fail(ctx.status, ctx.reason)
                else:
                    self._fail(400, "bad request")
        except httptools.HttpParserInvalidMethodError:
            if self._state != _DONE:
                self._fail(501, "method not implemented")
        except httptools.HttpParserError as exc:
            if self._state != _DONE:
                self._fail(_llhttp_status(str(exc)), "bad request")
        else:
            if self._state == _HEAD:
                self._bound_head(data)
        return events

    def _bound_head(self, data: bytes) -> None:
        """Bound a head still arriving (llhttp buffers partial lines for us)."""
        self._head_bytes += len(data)
        nl = data.rfind(b"\n")
        self._line_bytes = self._line_bytes + len(data) if nl < 0 else len(data) - nl - 1
        if self._line_bytes > self._max_line:
            if not self._headers and self._limits.request_line \
                    and len(self._url) + 16 > self._limits.request_line:
                self._fail(414, "request line too long")
            else:
                self._fail(431, "header field too large")
        elif self._head_bytes > self._max_head:
            self._fail(431, "request head too large")

    def _upgraded(self, data: bytes, offset: int) -> None:
        req = self._req
        if self._state == _DONE:
            if req is not None and req.upgrade is not None:
                self._rest = data[offset:]
            return
        # llhttp pauses on Upgrade/CONNECT we do not treat as one (e.g. HTTP/1.0): go on.
        rest = data[offset:]
        self._p = httptools.HttpRequestParser(self)
        if rest:
            self._events.extend(self.feed(rest))

    def _fail(self, status: int, reason: str) -> None:
        self._events.append(ProtocolError(status, reason))
        self._state = _DONE
        self._req = None

    # -- httptools callbacks -------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._state == _DONE:
            raise _Stop
        self._state = _HEAD
        self._url = b""
        self._headers = []
        self._head_bytes = self._line_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        lim = self._limits.request_line
        if lim and len(self._url) > lim:
            raise Reject(414, "request line too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        value = value.strip(b" \t")
        check_field(name, value, self._limits)
        if self._state == _HEAD:
            self._headers.append((name, value))
            if self._limits.fields and len(self._headers) > self._limits.fields:
                raise Reject(431, "too many header fields")
        else:
            self._trailers.append((name, value))

    def on_headers_complete(self) -> None:
        p = self._p
        req = rules.build_request(p.get_method(), self._url, p.get_http_version(),
                                  self._headers, self._limits)
        self._req = req
        self._state = _BODY
        self._body_len = 0
        self._events.append(req)

    def on_body(self, body: bytes) -> None:
        lim = self._limits.body
        if lim:
            self._body_len += len(body)
            if self._body_len > lim:
                raise Reject(413, "request body too large")
        self._events.append(Data(body))

    def on_chunk_header(self) -> None:
        pass

    def on_chunk_complete(self) -> None:
        pass

    def on_message_complete(self) -> None:
        trailers = self._trailers
        if trailers:
            rules.check_trailers(trailers, self._limits)
            self._trailers = []
            self._events.append(EndOfMessage(trailers))
        else:
            self._events.append(EndOfMessage([]))
        req = self._req
        if req is not None and (not req.keep_alive or req.upgrade is not None):
            self._state = _DONE
        else:
            self._state = _IDLE
            self._req = None


def _llhttp_status(message: str) -> int:
    msg = message.lower()
    if "version" in msg:
        return 505 if "invalid http version" in msg else 400
    if "transfer-encoding" in msg and "chunked" not in msg:
        return 501
    return 400


class H11Parser:
    """h11 driven as a server for parsing only; a synthetic response advances pipelining."""

    __slots__ = ("_limits", "_conn", "_state", "_req", "_rest", "_body_len", "_max_head",
                 "_checked")

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._max_head = _max_head(limits)
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self._max_head)
        self._state = _IDLE
        self._req: Request | None = None
        self._rest = b""
        self._body_len = 0
        self._checked = False

    def unprocessed(self) -> bytes:
        """Bytes after an upgrade request's end (for the new protocol)."""
        return self._rest

    def feed(self, data: bytes) -> list[Event]:
        """Parse `data`; return the events it completes (b"" = EOF)."""
        events: list[Event] = []
        if self._state == _DONE:
            if self._req is not None and self._req.upgrade is not None:
                self._rest += data
            return events
        conn = self._conn
        conn.receive_data(data)
        try:
            self._drain(conn, events, eof=not data)
        except Reject as exc:
            self._fail(events, exc.status, exc.reason)
        except h11.RemoteProtocolError as exc:
            self._fail(events, exc.error_status_hint, str(exc) or "bad request")
        return events

    def _fail(self, events: list[Event], status: int, reason: str) -> None:
        events.append(ProtocolError(status, reason))
        self._state = _DONE
        self._req = None

    def _check_raw_head(self, conn: h11.Connection) -> bool:
        """Raw rules on the buffered head; False while it is incomplete."""
        buf = conn.trailing_data[0]
        end = buf.find(b"\r\n\r\n")
        lf = buf.find(b"\n\n")
        if lf >= 0 and (end < 0 or lf < end):
            raise Reject(400, "bare LF in head")
        if end < 0:
            if len(buf) > self._max_head:
                raise Reject(431, "request head too large")
            return False
        rules.check_head_bytes(buf[:end + 4], self._limits)
        return True

    def _drain(self, conn: h11.Connection, events: list[Event], eof: bool) -> None:
        while True:
            if self._state == _IDLE and not self._checked:
                if conn.their_state is h11.IDLE and not self._check_raw_head(conn):
                    if eof and conn.trailing_data[0]:
                        raise Reject(400, "connection closed inside a request")
                    return
                self._checked = True
            ev = conn.next_event()
            if ev is h11.NEED_DATA:
                if eof and self._state != _IDLE:
                    raise Reject(400, "connection closed inside a request")
                return
            if isinstance(ev, h11.Request):
                self._on_request(ev, events)
            elif isinstance(ev, h11.Data):
                self._on_data(bytes(ev.data), events)
            elif isinstance(ev, h11.EndOfMessage):
                if not self._on_end(conn, ev, events):
                    return
            elif ev is h11.PAUSED:
                return
            elif isinstance(ev, h11.ConnectionClosed):
                return

    def _on_request(self, ev: h11.Request, events: list[Event]) -> None:
        headers: Headers = []
        lim = self._limits
        for name, value in ev.headers:
            check_field(name, value, lim)
            headers.append((name, value))
        req = rules.build_request(ev.method, ev.target, ev.http_version.decode("ascii"),
                                  headers, lim)
        self._req = req
        self._state = _BODY
        self._body_len = 0
        events.append(req)

    def _on_data(self, data: bytes, events: list[Event]) -> None:
        lim = self._limits.body
        if lim:
            self._body_len += len(data)
            if self._body_len > lim:
                raise Reject(413, "request body too large")
        events.append(Data(data))

    def _on_end(self, conn: h11.Connection, ev: h11.EndOfMessage,
                events: list[Event]) -> bool:
        trailers: Headers = [(n, v) for n, v in ev.headers]
        if trailers:
            rules.check_trailers(trailers, self._limits)
        events.append(EndOfMessage(trailers))
        req = self._req
        if req is None or not req.keep_alive or req.upgrade is not None:
            self._state = _DONE
            if req is not None and req.upgrade is not None:
                self._rest = conn.trailing_data[0]
            return False
        self._state = _IDLE
        self._checked = False
        self._req = None
        conn.send(h11.Response(status_code=200, headers=[(b"content-length", b"0")]))
        conn.send(h11.EndOfMessage())
        conn.start_next_cycle()
        return True
