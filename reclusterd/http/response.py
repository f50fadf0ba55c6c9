"""Response serialisation: status line, validated headers, Date/Server, framing, body bytes.

Workers build `Response(request, status, headers)` and write `r.head`, then `r.body(chunk)`
for each piece of the app's body and `r.end()`; `r.keep_alive` says whether the connection
may serve another request afterwards.
"""

from __future__ import annotations

import re
import time
from email.utils import formatdate
from http import HTTPStatus

from .events import Request

__all__ = ["Response", "FramingError", "InvalidResponse", "error_response", "error_for",
           "CONTINUE_100", "check_header", "configure_headers", "content_length",
           "error_body", "http_date"]

CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"
SERVER = b"reclusterd"


class InvalidResponse(ValueError):
    """The app gave a status or header that must not reach the wire (worker sends 500)."""


class FramingError(InvalidResponse):
    """The app's body contradicts the framing of its own head: more or less than its
    Content-Length, or content on a status that has none (1xx, 204, 304; RFC 9110 §6.4.1).
    Nothing of the offending piece is framed; the connection must close (a client that
    trusted the head would otherwise read the surplus as the next response)."""


_REASONS: dict[int, bytes] = {s.value: s.phrase.encode("latin-1") for s in HTTPStatus}
_STATUS_LINES: dict[int, bytes] = {
    code: b"HTTP/1.1 %d %s\r\n" % (code, reason) for code, reason in _REASONS.items()
}
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_BAD_VALUE = re.compile(rb"[\x00\r\n]")

_date_second = -1
_date_line = b""
_date_server = b""  # _date_line + the server line: what nearly every response carries
# --date-header / --server-header (configure_headers): what the server adds when the app
# did not; b"" = nothing. Module state: each worker process sets it once at boot.
_date_on = True


def http_date() -> bytes:
    """The `Date: ...\\r\\n` line, recomputed at most once per second."""
    global _date_second, _date_line, _date_server
    now = int(time.time())
    if now != _date_second:
        _date_line = b"Date: " + formatdate(now, usegmt=True).encode("ascii") + b"\r\n"
        _date_server = (_date_line if _date_on else b"") + _server_line
        _date_second = now
    return _date_line


def _date_and_server() -> bytes:
    """The date line and the server line in one piece (one check of the clock)."""
    if int(time.time()) != _date_second:
        http_date()
    return _date_server


def _date_only() -> bytes:
    """The date line when the app sent a Server header but no Date ("" if turned off)."""
    return http_date() if _date_on else b""


def configure_headers(server: bool = True, date: bool = True) -> None:
    """--server-header / --date-header: add `Server: reclusterd` and `Date` to responses
    that lack them (an app's own header always wins). Called once per worker process."""
    global _date_on, _server_line, _date_second
    _date_on = date
    _server_line = _SERVER_LINE if server else b""
    _date_second = -1       # rebuild the cached piece


def _status_line(status: int, reason: str | None) -> bytes:
    if reason is None:
        line = _STATUS_LINES.get(status)
        if line is not None:
            return line
        reason_b = b""
    else:
        reason_b = reason.encode("latin-1", "replace")
        if _BAD_VALUE.search(reason_b):
            raise InvalidResponse("status reason contains CR, LF or NUL")
    if not 100 <= status <= 999:
        raise InvalidResponse(f"invalid status code {status!r}")
    return b"HTTP/1.1 %d %s\r\n" % (status, reason_b)


# Header lines the server adds are spelled as browsers show them (Gunicorn, Uvicorn do
# the same); header names are case-insensitive (RFC 9110 §5.1), so this is for people.
_SERVER_LINE = b"Server: " + SERVER + b"\r\n"
_server_line = _SERVER_LINE
_CHUNKED_LINE = b"Transfer-Encoding: chunked\r\n"
_CLOSE_LINE = b"Connection: close\r\n"
_KEEP_LINE = b"Connection: keep-alive\r\n"

_SPECIAL = frozenset((b"content-length", b"transfer-encoding", b"connection", b"date",
                      b"server"))
# validated header name -> lower-case name; bounded so odd apps cannot grow it forever
_NAMES: dict[bytes, bytes] = {}
_NAMES_MAX = 512
# (name, value) -> wire line, for ordinary (non-framing) headers apps repeat, e.g. content-type
_LINES: dict[tuple[bytes, bytes], bytes] = {}
_LINES_MAX = 1024
# the app's exact Content-Length pair -> its validated value (checked once, then a lookup)
_LENGTHS: dict[tuple[bytes, bytes], int] = {}
_LENGTHS_MAX = 1024


def _content_length(pair: tuple[bytes, bytes], value: bytes, cacheable: bool) -> int:
    """Validate an app's Content-Length value (1-18 ASCII digits, spaces around allowed)."""
    value = value.strip(b" \t")
    # bytes.isdigit() is ASCII-only (bytearray's too); other types are refused.
    if not isinstance(value, (bytes, bytearray)) or not value.isdigit() or len(value) > 18:
        raise InvalidResponse(f"invalid content-length {value!r}")
    n = int(value)
    if cacheable and len(_LENGTHS) < _LENGTHS_MAX:
        _LENGTHS[pair] = n
    return n


def _check_name(name: bytes) -> bytes:
    if not isinstance(name, bytes) or not _TOKEN.match(name):
        raise InvalidResponse(f"invalid header name {name!r}")
    lname = name.lower()
    if len(_NAMES) < _NAMES_MAX:
        _NAMES[name] = lname
    return lname


def check_header(name: bytes, value: bytes) -> bytes:
    """One app header, for a version that frames fields itself (HTTP/2): its lower-case
    name; InvalidResponse for a name that is not a token or a value with CR, LF or NUL."""
    try:
        lname = _NAMES.get(name) or _check_name(name)
        bad = _BAD_VALUE.search(value)
    except TypeError:
        raise InvalidResponse("header names and values must be bytes") from None
    if bad is not None:
        raise InvalidResponse(f"header {name!r} value contains CR, LF or NUL")
    return lname


def content_length(value: bytes) -> int:
    """An app's Content-Length value as a number (InvalidResponse if it is not one)."""
    return _content_length((b"", value), value, False)


# framing modes
_NONE, _LENGTH, _CHUNKED, _CLOSE = 0, 1, 2, 3


class Response:
    """One response on one connection: head bytes plus framing of the body."""

    __slots__ = ("head", "keep_alive", "complete", "_mode", "_length", "_sent", "_ended",
                 "_bodiless")

    def __init__(self, request: Request, status: int = 200,
                 headers: list[tuple[bytes, bytes]] | None = None,
                 reason: str | None = None, keep_alive: bool = True) -> None:
        parts = [(reason is None and _STATUS_LINES.get(status)) or _status_line(status, reason)]
        length: int | None = None
        has_date = has_server = app_close = False
        names = _NAMES
        lines = _LINES
        lengths = _LENGTHS
        try:
            for pair in headers or ():
                try:
                    line = lines.get(pair)
                    cacheable = True
                except TypeError:  # a list pair, or bytearray inside: fine, just not cached
                    line = None
                    cacheable = False
                if line is not None:  # an ordinary header line seen (and checked) before
                    parts.append(line)
                    continue
                if cacheable:
                    n = lengths.get(pair)
                    if n is not None:  # a Content-Length pair validated before
                        if length is not None and length != n:
                            raise InvalidResponse(f"conflicting content-length {pair[1]!r}")
                        length = n
                        continue
                name, value = pair
                lname = names.get(name)
                if lname is None:
                    lname = _check_name(name)
                if _BAD_VALUE.search(value) is not None:
                    raise InvalidResponse(f"header {name!r} value contains CR, LF or NUL")
                if lname in _SPECIAL:
                    if lname == b"content-length":
                        n = _content_length(pair, value, cacheable)
                        if length is not None and length != n:
                            raise InvalidResponse(f"conflicting content-length {value!r}")
                        length = n
                        continue  # written below, once, if the status allows a length
                    if lname == b"transfer-encoding":
                        continue  # framing is ours to decide (chunked on 1.1 when no length)
                    if lname == b"connection":
                        if status != 101:
                            app_close = app_close or b"close" in value.lower()
                            continue
                    elif lname == b"date":
                        has_date = True
                    else:
                        has_server = True
                    parts.append(name + b": " + value + b"\r\n")
                    continue
                line = name + b": " + value + b"\r\n"
                if cacheable and len(lines) < _LINES_MAX and len(line) < 256:
                    lines[(name, value)] = line
                parts.append(line)
        except TypeError:
            raise InvalidResponse("header names and values must be bytes") from None
        if not has_date:
            parts.append(_date_and_server() if not has_server else _date_only())
        elif not has_server:
            parts.append(_server_line)

        http10 = request.http_version == "1.0"
        keep = keep_alive and request.keep_alive and not app_close and status != 101
        if status < 200 or status == 204:
            mode = _NONE  # never a body, never a length (RFC 9110 §8.6)
        elif status == 304 or request.method == b"HEAD":
            mode = _NONE  # no body, but the length a GET would have is allowed
            if length is not None:
                parts.append(b"Content-Length: %d\r\n" % length)
        elif length is not None:
            mode = _LENGTH
            parts.append(b"Content-Length: %d\r\n" % length)
        elif http10:
            mode = _CLOSE  # body delimited by closing the connection
            keep = False
        else:
            mode = _CHUNKED
            parts.append(_CHUNKED_LINE)
        if status != 101:
            if not keep:
                parts.append(_CLOSE_LINE)
            elif http10:
                parts.append(_KEEP_LINE)
        parts.append(b"\r\n")
        self.head = b"".join(parts)
        self.keep_alive = keep
        self.complete = False
        self._mode = mode
        self._length = length or 0
        self._sent = 0
        self._ended = False
        # a status without content; HEAD is not one: its body is the GET's, dropped here
        self._bodiless = (status < 200 or status in (204, 304)) and request.method != b"HEAD"

    def body(self, data: bytes) -> bytes:
        """Framed bytes to write for `data`; FramingError past Content-Length or for
        content on a status without any (HEAD's body is dropped: RFC 9110 §9.3.2)."""
        if self._ended or not data:
            return b""
        mode = self._mode
        if mode == _LENGTH:
            if len(data) > self._length - self._sent:
                self.keep_alive = False
                self._ended = True      # nothing more goes out: the connection closes
                raise FramingError(f"response body longer than its Content-Length "
                                   f"({self._sent + len(data)} > {self._length} bytes)")
            self._sent += len(data)
            return data
        if mode == _CHUNKED:
            self._sent += len(data)
            return b"%x\r\n%b\r\n" % (len(data), data)
        if mode == _CLOSE:
            self._sent += len(data)
            return data
        if self._bodiless:
            self.keep_alive = False
            self._ended = True
            raise FramingError("content on a response whose status has none")
        return b""

    def end(self) -> bytes:
        """Terminating bytes; sets `complete`. FramingError when the body fell short of
        its Content-Length (`complete` stays False: the connection must close)."""
        if self._ended:
            return b""
        self._ended = True
        if self._mode == _LENGTH and self._sent < self._length:
            self.complete = False
            self.keep_alive = False
            raise FramingError(f"response body shorter than its Content-Length "
                               f"({self._sent} < {self._length} bytes)")
        self.complete = True
        return b"0\r\n\r\n" if self._mode == _CHUNKED else b""


def error_response(status: int, *, head: bool = False) -> bytes:
    """A complete plain-text error response that closes the connection.

    The body is the status's fixed reason phrase, never anything the client sent (why a
    request was refused goes to the log); `head`: the request was HEAD, so the same head
    goes out without the body (RFC 9110 §9.3.2)."""
    body = error_body(status)
    return b"".join((
        _status_line(status, None) if status in _STATUS_LINES
        else b"HTTP/1.1 %d Error\r\n" % status,
        b"Content-Type: text/plain; charset=utf-8\r\n",
        b"Content-Length: %d\r\n" % len(body),
        _CLOSE_LINE, _date_only(), _server_line, b"\r\n", b"" if head else body,
    ))


def error_body(status: int) -> bytes:
    """The body of an error the server answers itself: the fixed reason phrase."""
    return _REASONS.get(status, b"Error") + b"\n"


def error_for(request: Request, status: int) -> bytes:
    """`error_response` for a refused or failed request (no body if it was HEAD)."""
    return error_response(status, head=request.method == b"HEAD")
