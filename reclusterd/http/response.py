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

__all__ = ["Response", "InvalidResponse", "error_response", "CONTINUE_100", "http_date"]

CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"
SERVER = b"reclusterd"


class InvalidResponse(ValueError):
    """The app gave a status or header that must not reach the wire (worker sends 500)."""


_REASONS: dict[int, bytes] = {s.value: s.phrase.encode("latin-1") for s in HTTPStatus}
_STATUS_LINES: dict[int, bytes] = {
    code: b"HTTP/1.1 %d %s\r\n" % (code, reason) for code, reason in _REASONS.items()
}
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_BAD_VALUE = re.compile(rb"[\x00\r\n]")
_DIGITS = re.compile(rb"[0-9]{1,18}\Z")

_date_second = -1
_date_line = b""


def http_date() -> bytes:
    """The `date: ...\\r\\n` line, recomputed at most once per second."""
    global _date_second, _date_line
    now = int(time.time())
    if now != _date_second:
        _date_line = b"date: " + formatdate(now, usegmt=True).encode("ascii") + b"\r\n"
        _date_second = now
    return _date_line


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


_SERVER_LINE = b"server: " + SERVER + b"\r\n"
_CHUNKED_LINE = b"transfer-encoding: chunked\r\n"
_CLOSE_LINE = b"connection: close\r\n"
_KEEP_LINE = b"connection: keep-alive\r\n"

# framing modes
_NONE, _LENGTH, _CHUNKED, _CLOSE = 0, 1, 2, 3


class Response:
    """One response on one connection: head bytes plus framing of the body."""

    __slots__ = ("head", "keep_alive", "complete", "_mode", "_length", "_sent", "_ended")

    def __init__(self, request: Request, status: int = 200,
                 headers: list[tuple[bytes, bytes]] | None = None,
                 reason: str | None = None, keep_alive: bool = True) -> None:
        parts = [_status_line(status, reason)]
        length: int | None = None
        has_date = has_server = app_close = False
        for name, value in headers or ():
            lname = name.lower()
            if not _TOKEN.match(name):
                raise InvalidResponse(f"invalid header name {name!r}")
            if _BAD_VALUE.search(value):
                raise InvalidResponse(f"header {name!r} value contains CR, LF or NUL")
            if lname == b"content-length":
                value = value.strip(b" \t")
                if not _DIGITS.match(value) or (length is not None and int(value) != length):
                    raise InvalidResponse(f"invalid content-length {value!r}")
                if length is not None:
                    continue
                length = int(value)
            elif lname == b"transfer-encoding":
                continue  # framing is ours to decide
            elif lname == b"connection" and status != 101:
                if b"close" in value.lower():
                    app_close = True
                continue
            elif lname == b"date":
                has_date = True
            elif lname == b"server":
                has_server = True
            parts.append(b"%s: %s\r\n" % (name, value))
        if not has_date:
            parts.append(http_date())
        if not has_server:
            parts.append(_SERVER_LINE)

        http10 = request.http_version == "1.0"
        keep = keep_alive and request.keep_alive and not app_close and status != 101
        no_body = status < 200 or status == 204 or status == 304 or request.method == b"HEAD"
        if no_body:
            mode = _NONE
            if length is not None and (status < 200 or status == 204):
                parts = [p for p in parts if not p.lower().startswith(b"content-length:")]
            elif length is not None:
                parts.append(b"content-length: %d\r\n" % length)
        elif length is not None:
            mode = _LENGTH
            parts.append(b"content-length: %d\r\n" % length)
        elif http10:
            mode = _CLOSE
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

    def body(self, data: bytes) -> bytes:
        """Framed bytes to write for `data` (never more than Content-Length)."""
        if self._ended or not data:
            return b""
        mode = self._mode
        if mode == _LENGTH:
            room = self._length - self._sent
            if len(data) > room:
                self.keep_alive = False  # the app broke its own Content-Length
                data = data[:room]
            self._sent += len(data)
            return data
        if mode == _CHUNKED:
            self._sent += len(data)
            return b"%x\r\n%b\r\n" % (len(data), data)
        if mode == _CLOSE:
            self._sent += len(data)
            return data
        return b""

    def end(self) -> bytes:
        """Terminating bytes; sets `complete` (False: short body, the connection must close)."""
        if self._ended:
            return b""
        self._ended = True
        if self._mode == _LENGTH and self._sent < self._length:
            self.complete = False
            self.keep_alive = False
            return b""
        self.complete = True
        return b"0\r\n\r\n" if self._mode == _CHUNKED else b""


def error_response(status: int, message: str = "") -> bytes:
    """A complete plain-text error response that closes the connection."""
    reason = _REASONS.get(status, b"Error")
    body = (message or reason.decode("latin-1")).encode("utf-8", "replace") + b"\n"
    return b"".join((
        _status_line(status, None) if status in _STATUS_LINES
        else b"HTTP/1.1 %d Error\r\n" % status,
        b"content-type: text/plain; charset=utf-8\r\n",
        b"content-length: %d\r\n" % len(body),
        _CLOSE_LINE, http_date(), _SERVER_LINE, b"\r\n", body,
    ))
