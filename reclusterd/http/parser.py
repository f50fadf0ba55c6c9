"""One sans-IO request parser interface over httptools (default, fast) and h11 (pure Python).

`feed(data)` takes bytes read from the socket (b"" = peer closed) and returns events:
Request, Data*, EndOfMessage for each pipelined request in order, or one terminal
ProtocolError. The shared `Framer` cuts the stream into heads and bodies and applies
`rules`; the backend parses each head (and trailer section), so both give the same answers.
"""

from __future__ import annotations

from typing import Protocol

import h11
import httptools

from . import rules
from .events import Event, Headers, Limits
from .framing import Framer
from .rules import Reject, check_field

__all__ = ["Parser", "make_parser", "HttptoolsParser", "H11Parser"]


class Parser(Protocol):
    """What workers use: feed bytes, get events; unprocessed() after an upgrade;
    partial_head for the header deadline (http.connection)."""

    def feed(self, data: bytes) -> list[Event]: ...

    def unprocessed(self) -> bytes: ...

    @property
    def partial_head(self) -> bool: ...

    def pending_head(self) -> bool: ...


def make_parser(kind: str = "httptools", limits: Limits | None = None,
                upgrades: frozenset[bytes] = frozenset()) -> Parser:
    """A parser for one connection: kind is "httptools" or "h11" (the --http setting);
    `upgrades`: the protocols the driver switches to (others' Upgrade is ignored)."""
    lim = limits if limits is not None else Limits()
    if kind == "httptools":
        return HttptoolsParser(lim, upgrades)
    if kind == "h11":
        return H11Parser(lim, upgrades)
    raise ValueError(f"unknown HTTP parser {kind!r} (httptools or h11)")


class _Fields:
    """The llhttp callback target: collects field lines. Separate from the parser so the
    parser <-> llhttp references form no cycle (connections are freed without the GC)."""

    __slots__ = ("fields",)

    # httptools looks these up when it builds its parser: present-but-None is much cheaper
    # than missing (no AttributeError per name) and installs no C-to-Python callback.
    on_message_begin = on_url = on_headers_complete = on_body = None
    on_message_complete = on_chunk_header = on_chunk_complete = on_status = None

    def __init__(self) -> None:
        self.fields: Headers = []

    def on_header(self, name: bytes, value: bytes) -> None:
        """llhttp callback: one field line; llhttp checked token name and value octets."""
        self.fields.append((name.lower(), value.rstrip(b" \t")))


class HttptoolsParser(Framer):
    """llhttp in strict mode parses header lines; only `on_header` calls back into Python.

    The llhttp parser is made on the first head the framer's memo does not know, so a
    connection whose heads are all known (and the close-per-request case) never builds one.
    """

    __slots__ = ("_p", "_sink")

    def __init__(self, limits: Limits, upgrades: frozenset[bytes] = frozenset()) -> None:
        super().__init__(limits, upgrades)
        self._sink: _Fields | None = None
        self._p: httptools.HttpRequestParser | None = None

    def _feed_llhttp(self, data: bytes, fields: Headers) -> None:
        """Feed llhttp (made on first use), its `on_header` collecting into `fields`."""
        sink = self._sink
        if sink is None:
            sink = self._sink = _Fields()
        sink.fields = fields
        p = self._p
        if p is None:
            p = self._p = httptools.HttpRequestParser(sink)
        try:
            p.feed_data(data)
        except Exception as exc:  # httptools errors; mapped below
            self._llhttp_error(exc)

    def _llhttp_error(self, exc: Exception) -> None:
        """Map an httptools exception: upgrade pause is fine, the rest are Rejects."""
        if isinstance(exc, httptools.HttpParserUpgrade):
            # llhttp stops after an Upgrade head, even one with a body; the framer decides
            # what follows (the body and trailers are then framed without llhttp).
            self._p = None  # a fresh one for the next head that needs it
            return
        if isinstance(exc, httptools.HttpParserCallbackError):
            self._p = None
            ctx = exc.__context__
            if isinstance(ctx, Reject):
                raise ctx from None
            raise Reject(400, "bad request") from None
        if isinstance(exc, httptools.HttpParserError):
            raise Reject(400, "invalid request head") from None  # llhttp's words: not ours
        raise exc

    def _parse_head(self, head: bytes, method: bytes, target: bytes, version: str) -> Headers:
        fields: Headers = []
        self._feed_llhttp(head, fields)
        return fields

    def _body_bytes(self, data: bytes) -> None:
        if self._p is not None:  # None: llhttp stopped at an Upgrade head (ignored)
            self._feed_llhttp(data, [])  # no field callbacks while in a body

    def _parse_trailers(self, section: bytes) -> Headers:
        if self._p is None:  # llhttp stopped at an Upgrade head (ignored): the shared rules
            return rules.parse_field_section(section)
        fields: Headers = []
        self._feed_llhttp(b"0\r\n" + section, fields)
        return fields


class H11Parser(Framer):
    """h11 as a server, one Connection per request, fed only its head (and trailers)."""

    __slots__ = ("_conn",)

    def __init__(self, limits: Limits, upgrades: frozenset[bytes] = frozenset()) -> None:
        super().__init__(limits, upgrades)
        self._conn: h11.Connection | None = None

    def _parse_head(self, head: bytes, method: bytes, target: bytes, version: str) -> Headers:
        rules.check_head_bytes(head)  # h11 tolerates bare LF and obs-fold; we do not
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=len(head) + 1)
        conn.receive_data(head)
        try:
            ev = conn.next_event()
        except h11.RemoteProtocolError as exc:
            # Let the shared rules pick the status when they object too.
            rules.build_request(method, target, version, rules.split_fields(head), self.limits)
            # h11's message quotes the client's bytes: the log gets a fixed text
            raise Reject(exc.error_status_hint, "invalid request head") from None
        if not isinstance(ev, h11.Request):
            raise Reject(400, "incomplete request head")
        self._conn = conn
        # h11 folds duplicate Content-Length lines; the rules must see every line as sent.
        return self._fields(rules.split_fields(head))

    def _fields(self, items: Headers) -> Headers:
        for name, value in items:
            check_field(name, value)
        return items

    def _parse_trailers(self, section: bytes) -> Headers:
        conn = self._conn
        self._conn = None
        if section == b"\r\n" or conn is None:
            return []
        rules.check_field_lines(section[:-4].split(b"\r\n"))
        conn.receive_data(b"0\r\n" + section)
        try:
            ev = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise Reject(exc.error_status_hint, "invalid trailers") from None
        if not isinstance(ev, h11.EndOfMessage):
            raise Reject(400, "bad trailers")
        return self._fields(rules.split_fields(b"X\r\n" + section))
