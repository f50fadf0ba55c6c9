"""Byte-level message framing shared by both parser backends.

The framer finds each request head (up to CRLF CRLF) in the byte stream, hands it to a
backend (httptools or h11) for header parsing, then frames the body itself: Content-Length
bytes, or chunked coding checked by `rules` (strict sizes, CRLFs, extensions). So both
backends see exactly the same bytes per message, pipelining is exact, nothing after a
`Connection: close` request or an upgrade is parsed, and `unprocessed()` is exact.
"""

from __future__ import annotations

from . import rules
from .events import Data, EndOfMessage, Event, Headers, Limits, ProtocolError, Request
from .headcache import (
    BOUNDS,
    LINES,
    MAX_CACHED_HEAD,
    MAX_CACHED_HEADS,
    MAX_CACHED_LINE,
    MAX_CACHED_LINES,
    bounds_for,
)
from .rules import Reject

# states
IDLE, BODY, CHUNK_SIZE, CHUNK_DATA, CHUNK_CRLF, TRAILERS, DONE = range(7)

MAX_CHUNK_LINE = 4096  # chunk-size + extensions


class Framer:
    """Incremental framing state machine; subclasses parse heads and trailers."""

    __slots__ = ("limits", "upgrades", "_state", "_pend", "_req", "_remaining", "_body_len",
                 "_rest", "_max_head", "_line_start", "_first", "_min_line", "_heads", "_is_head",
                 "partial_head")

    def __init__(self, limits: Limits, upgrades: frozenset[bytes] = frozenset()) -> None:
        self.limits = limits
        self.upgrades = upgrades   # protocols the driver switches to (rules.build_request)
        self._state = IDLE
        self._pend = bytearray()   # unconsumed bytes of an incomplete head/line/section
        self._line_start = 0       # start of the incomplete line in _pend
        self._first = True         # that line is the request line
        # Part of a request head is here, its end is not (the header deadline runs; read
        # by http.connection after every feed, so an attribute, not a method).
        self.partial_head = False
        self._req: Request | None = None
        self._remaining = 0
        self._body_len = 0
        self._rest = b""
        self._is_head = False      # the head being checked is a HEAD request's
        key = (type(self), limits.request_line, limits.fields, limits.field_size, limits.body,
               upgrades)
        bounds = BOUNDS.get(key)
        if bounds is None:
            bounds = BOUNDS[key] = bounds_for(limits)
        self._max_head, self._min_line, self._heads = bounds

    # -- backend hooks ---------------------------------------------------------------------

    def _parse_head(self, head: bytes, method: bytes, target: bytes, version: str) -> Headers:
        """Header fields (lower-case names) of a complete head; raise Reject if invalid."""
        raise NotImplementedError

    def _body_bytes(self, data: bytes) -> None:
        """Content-Length body bytes passed through the backend (keeps it in sync)."""

    def _parse_trailers(self, section: bytes) -> Headers:
        """Trailer fields of a chunked body's trailer section (ends with CRLF)."""
        raise NotImplementedError

    # -- public ----------------------------------------------------------------------------

    def unprocessed(self) -> bytes:
        """Bytes received after an upgrade request (the new protocol's first bytes)."""
        return self._rest

    def pending_head(self) -> bool:
        """The request whose head is arriving is a HEAD (its error answers have no body)."""
        return self._state == IDLE and self._pend.startswith(b"HEAD ")

    def feed(self, data: bytes) -> list[Event]:
        """Parse `data` from the peer (b"" = EOF); return the events it completes."""
        events: list[Event] = []
        state = self._state
        if state == DONE:
            req = self._req
            if req is not None and req.upgrade is not None:
                self._rest += data
            return events
        if not data:
            if state != IDLE or self._pend:
                self._fail(events, 400, "connection closed inside a request")
            return events
        try:
            self._run(data, events)
        except Reject as exc:
            self._fail(events, exc.status, exc.reason)
        return events

    def _fail(self, events: list[Event], status: int, reason: str) -> None:
        req = self._req
        head = req.method == b"HEAD" if req is not None else \
            self._is_head or self.pending_head()
        events.append(ProtocolError(status, reason, head))
        self._state = DONE
        self._req = None
        self._pend.clear()
        self.partial_head = False

    # -- the machine -----------------------------------------------------------------------

    def _run(self, data: bytes, events: list[Event]) -> None:
        pend = self._pend
        if pend:
            if not self._wait_more(data):
                return
            buf = bytes(pend)
            pend.clear()
            self.partial_head = False
        else:
            buf = data if data.__class__ is bytes else bytes(data)  # hashable for the memo
        pos = 0
        end = len(buf)
        while pos < end:
            state = self._state
            if state == IDLE:
                pos = self._head(buf, pos, events)
            elif state == BODY:
                n = self._remaining
                if end - pos >= n:
                    chunk = buf[pos:pos + n] if pos or n != end else buf
                    pos += n
                    self._body_bytes(chunk)
                    events.append(Data(chunk))
                    self._end_message(events, [])
                else:
                    chunk = buf[pos:] if pos else buf
                    self._remaining = n - len(chunk)
                    self._body_bytes(chunk)
                    events.append(Data(chunk))
                    return
            elif state == CHUNK_DATA:
                n = min(self._remaining, end - pos)
                events.append(Data(buf[pos:pos + n]))
                pos += n
                self._remaining -= n
                if not self._remaining:
                    self._state = CHUNK_CRLF
            elif state == CHUNK_CRLF:
                if end - pos < 2:
                    if buf[pos] != 0x0D:
                        raise Reject(400, "chunk data not followed by CRLF")
                    self._stash(buf, pos)
                    return
                if buf[pos:pos + 2] != b"\r\n":
                    raise Reject(400, "chunk data not followed by CRLF")
                pos += 2
                self._state = CHUNK_SIZE
            elif state == CHUNK_SIZE:
                pos = self._chunk_size(buf, pos)
            elif state == TRAILERS:
                pos = self._trailers(buf, pos, events)
            else:  # DONE
                req = self._req
                if req is not None and req.upgrade is not None:
                    self._rest = buf[pos:]
                return
            if pos < 0:
                return

    def _stash(self, buf: bytes, pos: int) -> None:
        """Keep an incomplete head/line for the next feed; check what is there so far."""
        self._pend += buf[pos:]
        self._line_start = 0
        self._first = self.partial_head = self._state == IDLE
        self._check_partial(0)

    def _wait_more(self, data: bytes) -> bool:
        """Append to the pending bytes; True once the awaited terminator is there."""
        pend = self._pend
        old = len(pend)
        pend += data
        state = self._state
        if state == CHUNK_CRLF:
            return len(pend) >= 2
        if state == CHUNK_SIZE:
            found = pend.find(b"\n", old) >= 0
        elif state == TRAILERS and pend[:2] == b"\r\n":
            return True
        else:
            found = pend.find(b"\r\n\r\n", max(old - 3, 0)) >= 0
        if not found:
            self._check_partial(old)
        return found

    def _check_partial(self, scan_from: int) -> None:
        """Line checks on an incomplete head/section, as `_check_lines` does on a whole one.

        Lines are checked in wire order and the incomplete last line by its length so far,
        so the answer never depends on where the reads split the bytes.
        """
        pend = self._pend
        state = self._state
        if state == CHUNK_SIZE:
            if len(pend) > MAX_CHUNK_LINE:
                raise Reject(400, "chunk size line too long")
            return
        if state == CHUNK_CRLF:
            return
        if state == IDLE and self._first:
            self._check_request_line(pend)
            if not pend:
                return
        self._line_start, self._first = self._scan_lines(
            pend, 0, max(scan_from, self._line_start), len(pend), self._line_start, self._first)
        tail = len(pend) - self._line_start - (1 if pend[-1] == 0x0D else 0)
        if not self._first:
            rules.check_field_start(bytes(pend[self._line_start:self._line_start + tail]))
        self._check_length(tail, self._first)
        if len(pend) > self._max_head:
            raise Reject(431, "request head too large")

    def _check_request_line(self, pend: bytearray) -> None:
        """The request line so far, checked as soon as its first bytes are here: bytes that
        cannot begin a request are answered at once, not at the header deadline."""
        skip = 0
        while pend.startswith(b"\r\n", skip):  # empty lines before a request (§2.2)
            skip += 2
        if skip:
            del pend[:skip]
        end = pend.find(b"\r\n")
        if end >= 0:
            rules.request_line(bytes(pend[:end]), self.limits)
            return
        end = len(pend) - (1 if pend and pend[-1] == 0x0D else 0)
        limit = self.limits.request_line
        rules.check_line_prefix(bytes(pend[:min(end, limit) if limit else end]))

    def _check_length(self, length: int, first: bool) -> None:
        lim = self.limits
        if first:
            if lim.request_line and length > lim.request_line:
                raise Reject(414, "request line too long")
        elif lim.field_size and length > lim.field_size:
            raise Reject(431, "header field too large")

    def _scan_lines(self, buf: bytes | bytearray, begin: int, scan_from: int, end: int,
                    line_start: int, first: bool) -> tuple[int, bool]:
        """Check each line ending in buf[scan_from:end]: length, CRLF ending, head bound."""
        i = buf.find(b"\n", scan_from, end)
        while i >= 0:
            cr = i > line_start and buf[i - 1] == 0x0D
            if not first:  # wire order: a bad name before a later line's length
                rules.check_field_start(bytes(buf[line_start:i - cr]))
            self._check_length(i - line_start - cr, first)
            if not cr:
                raise Reject(400, "bare LF in head")
            if i + 1 - begin > self._max_head:
                raise Reject(431, "request head too large")
            line_start = i + 1
            first = False
            i = buf.find(b"\n", line_start, end)
        return line_start, first

    def _check_lines(self, buf: bytes, begin: int, end: int, first: bool) -> None:
        """The partial-path checks on a complete head/section; skipped when clearly fine."""
        if end - begin <= self._min_line and \
                buf.count(b"\n", begin, end) == buf.count(b"\r\n", begin, end):
            return
        self._scan_lines(buf, begin, begin, end, begin, first)

    def _head(self, buf: bytes, pos: int, events: list[Event]) -> int:
        while buf.startswith(b"\r\n", pos):  # empty lines before a request (RFC 9112 §2.2)
            pos += 2
        end = buf.find(b"\r\n\r\n", pos)
        if end < 0:
            if pos < len(buf):
                self._stash(buf, pos)
            return -1
        stop = end + 4
        self._is_head = buf.startswith(b"HEAD ", pos)
        head = buf if pos == 0 and stop == len(buf) else buf[pos:stop]
        heads = self._heads
        known_head = heads.get(head) if stop - pos <= MAX_CACHED_HEAD else None
        if known_head is not None:  # accepted before under these limits, by this backend
            method, target, path, query, version, fields, keep_alive, expect, length = \
                known_head
            req = Request(method, target, path, query, version, list(fields), keep_alive,
                          expect, length, False, None)
        else:
            req = self._new_head(buf, pos, end, head)
        events.append(req)
        self._is_head = False
        if req.chunked:
            self._req = req
            self._state = CHUNK_SIZE
            self._body_len = 0
        elif req.content_length:
            self._req = req
            self._state = BODY
            self._remaining = req.content_length
        else:
            events.append(EndOfMessage([]))
            if not req.keep_alive or req.upgrade is not None:
                self._req = req
                self._state = DONE
                if req.upgrade is not None:
                    self._rest = buf[stop:]
        return stop

    def _new_head(self, buf: bytes, pos: int, end: int, head: bytes) -> Request:
        """A head not in the memo: check and parse it (the request line first, in wire
        order), then remember its line, or the whole head once its line is a repeat."""
        limits = self.limits
        line = buf[pos:buf.find(b"\r\n", pos)]
        known = LINES.get(line)
        if known is None:  # the request line first: checks go in wire order
            method, target, version = rules.request_line(line, limits)
            split = None
        else:  # a request line that passed every check before: only its length can fail
            if limits.request_line and len(line) > limits.request_line:
                raise Reject(414, "request line too long")
            method, target, version, path, query = known
            split = (path, query)
        if len(head) > self._min_line or \
                buf.count(b"\n", pos, end) != buf.count(b"\r\n", pos, end):
            self._scan_lines(buf, pos, pos, end + 4, pos, True)  # the partial-path checks
        req = rules.build_request(method, target, version,
                                  self._parse_head(head, method, target, version), limits,
                                  split, self.upgrades)
        if known is None:
            if len(line) <= MAX_CACHED_LINE:
                if len(LINES) >= MAX_CACHED_LINES:
                    LINES.clear()  # bounded: hostile unique targets only cost a refill
                LINES[line] = (method, target, version, req.path, req.query)
        elif not req.content_length and not req.chunked and req.upgrade is None and \
                len(head) <= MAX_CACHED_HEAD:
            # memoised once its request line is a repeat: one-off targets never get in
            heads = self._heads
            if len(heads) >= MAX_CACHED_HEADS:
                heads.clear()  # bounded: unique heads only cost a refill
            heads[head] = (method, target, req.path, req.query, version,
                           tuple(req.headers), req.keep_alive, req.expect_continue,
                           req.content_length)
        return req

    def _chunk_size(self, buf: bytes, pos: int) -> int:
        nl = buf.find(b"\n", pos)
        if nl < 0:
            self._stash(buf, pos)
            return -1
        if nl - pos > MAX_CHUNK_LINE:
            raise Reject(400, "chunk size line too long")
        size = rules.chunk_size(buf[pos:nl + 1])
        self._body_len += size
        lim = self.limits.body
        if lim and self._body_len > lim:
            raise Reject(413, "request body too large")
        self._remaining = size
        self._state = CHUNK_DATA if size else TRAILERS
        return nl + 1

    def _trailers(self, buf: bytes, pos: int, events: list[Event]) -> int:
        if buf.startswith(b"\r\n", pos):
            end = pos + 2
        else:
            i = buf.find(b"\r\n\r\n", pos)
            if i < 0:
                self._stash(buf, pos)
                return -1
            end = i + 4
            self._check_lines(buf, pos, end, False)
        trailers = self._parse_trailers(buf[pos:end])
        if trailers:
            rules.check_trailers(trailers, self.limits)
        self._end_message(events, trailers)
        if self._state == DONE:
            req = self._req
            if req is not None and req.upgrade is not None:
                self._rest = buf[end:]
        return end

    def _end_message(self, events: list[Event], trailers: Headers) -> None:
        events.append(EndOfMessage(trailers))
        req = self._req
        if req is not None and (not req.keep_alive or req.upgrade is not None):
            self._state = DONE
        else:
            self._state = IDLE
            self._req = None
