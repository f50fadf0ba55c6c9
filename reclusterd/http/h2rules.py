"""HTTP/2 field rules: a request's fields -> the HTTP/1 `Request` event, an app's
response head -> HTTP/2 fields, and the h2c pieces (preface, `Upgrade: h2c`).

The h2 library already refuses what RFC 9113 §8 calls malformed at the frame level
(pseudo-header rules §8.3, connection-specific fields §8.2.2, `TE` other than
`trailers`, upper-case names, CR/LF/NUL in values, :authority vs Host, Content-Length vs
DATA), reset as a stream error by h2server.py. What is left are the HTTP semantics HTTP/1
checks too (rules.build_request: methods, target, Host, Content-Length, limits), so the
two versions refuse the same requests with the same statuses.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import replace

from .events import Headers, Limits, Request
from .response import SERVER, InvalidResponse, check_header, content_length, http_date
from .rules import KNOWN_METHODS, Reject, build_request, check_field, check_trailers

__all__ = ["CONNECTION_SPECIFIC", "PREFACE", "SWITCHING_H2C", "h2_request", "h2c_settings",
           "preface_state", "response_fields", "trailer_fields", "upgraded_request"]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SWITCHING_H2C = (b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                 b"Upgrade: h2c\r\n\r\n")
# Fields that describe an HTTP/1 connection, never sent in HTTP/2 (RFC 9113 §8.2.2); an
# app's are dropped as HTTP/1 drops its framing fields. `http2-settings` is h2c's.
CONNECTION_SPECIFIC = frozenset((b"connection", b"keep-alive", b"proxy-connection",
                                 b"transfer-encoding", b"upgrade", b"http2-settings", b"te"))
_SERVER = (b"server", SERVER)
# SETTINGS parameters whose values have bounds (RFC 9113 §6.5.2; 0x8 RFC 8441 §3):
# id -> (lowest, highest). Outside them a SETTINGS frame is a connection error.
_SETTING_BOUNDS = {0x2: (0, 1), 0x4: (0, 2**31 - 1), 0x5: (2**14, 2**24 - 1),
                   0x8: (0, 1)}


def preface_state(data: bytes) -> bool | None:
    """Does a connection open with the HTTP/2 client preface (h2c prior knowledge)?
    True: it does; False: it cannot; None: too few octets yet to tell."""
    if data[:len(PREFACE)] == PREFACE[:len(data)]:
        return None if len(data) < len(PREFACE) else True
    return False


def h2_request(fields: Headers, limits: Limits) -> Request:
    """The Request of one stream's header fields (pseudo-headers first, as h2 checked).

    `:authority` becomes `host` (RFC 9113 §8.3.1: it replaces Host). Raises Reject with
    the status HTTP/1 would answer: 501 for CONNECT and unknown methods, 400 for a bad
    target or authority, 413 for a Content-Length over the limit, 431 for too many or
    too long fields."""
    method = path = authority = b""
    plain: Headers = []
    for name, value in fields:
        if name[:1] == b":":
            if name == b":method":
                method = value
            elif name == b":path":
                path = value
            elif name == b":authority":
                authority = value
            continue
        check_field(name, value)
        if limits.field_size and len(name) + len(value) + 2 > limits.field_size:
            raise Reject(431, "header field too long")
        if name != b"host" or not authority:
            plain.append((name, value))
    if method not in KNOWN_METHODS:
        raise Reject(501, "method not implemented")
    if not path or (path[0] != 0x2F and path != b"*"):
        raise Reject(400, "invalid :path")      # origin-form or "*" only (§8.3.1)
    if limits.request_line and len(path) > limits.request_line:
        raise Reject(414, "request target too long")
    if authority:
        plain.insert(0, (b"host", authority))
    req = build_request(method, path, "2", plain, limits)
    req.keep_alive = True
    req.expect_continue = any(n == b"expect" and v.lower() == b"100-continue"
                              for n, v in plain)
    return req


def trailer_fields(fields: Headers, limits: Limits) -> Headers:
    """Request trailers: no pseudo-headers (h2 checked), the HTTP/1 trailer rules."""
    for name, value in fields:
        check_field(name, value)
    check_trailers(fields, limits)
    return list(fields)


def response_fields(status: int, headers: Headers, head: bool
                    ) -> tuple[Headers, int | None, bool]:
    """(fields, Content-Length or None, bodiless) of an app's response head.

    Names are checked and lower-cased, connection-specific fields dropped; `date` and
    `server` are added when the app gave none, as on HTTP/1. `bodiless`: no DATA may
    follow (1xx, 204, 304); HEAD's body is dropped by the caller (`head`). 101 does not
    exist in HTTP/2 (RFC 9113 §8.6)."""
    if not 100 <= status <= 999 or status == 101:
        raise InvalidResponse(f"invalid status code {status!r} for HTTP/2")
    out: Headers = [(b":status", b"%d" % status)]
    length: int | None = None
    has_date = has_server = False
    for name, value in headers:
        lname = check_header(name, value)
        if lname in CONNECTION_SPECIFIC:
            continue
        if lname == b"content-length":
            n = content_length(value)
            if length is not None and n != length:
                raise InvalidResponse(f"conflicting content-length {value!r}")
            if length is None:
                length = n
                if 200 <= status != 204:
                    out.append((b"content-length", b"%d" % n))
            continue
        has_date = has_date or lname == b"date"
        has_server = has_server or lname == b"server"
        out.append((lname, value.strip(b" \t")))
    if not has_date:
        out.append((b"date", http_date()[6:-2]))
    if not has_server:
        out.append(_SERVER)
    bodiless = status < 200 or status in (204, 304)
    if head or status == 304:
        length = None       # the length a GET would have; no DATA to check it against
    return out, length, bodiless


def h2c_settings(req: Request, max_body: int) -> bytes | None:
    """The HTTP2-Settings value of an HTTP/1.1 request asking to switch to h2c (RFC 7540
    §3.2), or None: then the request is served as HTTP/1 and its Upgrade ignored.

    Switching needs `Upgrade: h2c`, `Connection: Upgrade, HTTP2-Settings`, exactly one
    well-formed HTTP2-Settings (base64url of SETTINGS parameters), and a body known to
    fit `max_body` (it is read in full before the switch; a chunked body of unknown
    size is not). Settings that decode but break RFC 9113 §6.5.2 (ENABLE_PUSH=2,
    MAX_FRAME_SIZE=0, ...) are no switch either (§3.1: the server may ignore the
    Upgrade), not a connection that fails after its 101."""
    if req.http_version != "1.1" or req.chunked or (req.content_length or 0) > max_body:
        return None
    upgrade = connection = False
    settings: list[bytes] = []
    for name, value in req.headers:
        if name == b"upgrade":
            upgrade = upgrade or b"h2c" in _tokens(value)
        elif name == b"connection":
            toks = _tokens(value)
            connection = connection or (b"upgrade" in toks and b"http2-settings" in toks)
        elif name == b"http2-settings":
            settings.append(value)
    if not (upgrade and connection and len(settings) == 1):
        return None
    value = settings[0].strip(b" \t")
    try:
        raw = base64.b64decode(value + b"=" * (-len(value) % 4), altchars=b"-_",
                               validate=True)
    except (binascii.Error, ValueError):
        return None
    return value if _valid_settings(raw) else None


def _valid_settings(raw: bytes) -> bool:
    """Is `raw` a SETTINGS payload of whole parameters with values in their bounds?"""
    if len(raw) % 6:
        return False
    for i in range(0, len(raw), 6):
        low, high = _SETTING_BOUNDS.get(int.from_bytes(raw[i:i + 2], "big"), (0, 2**32))
        if not low <= int.from_bytes(raw[i + 2:i + 6], "big") <= high:
            return False
    return True


def upgraded_request(req: Request) -> Request:
    """The HTTP/1.1 request that asked for h2c, as stream 1 of the new connection sees
    it: HTTP/2, its connection-specific fields gone (RFC 9113 §3.1 leaves the rest)."""
    fields = [(n, v) for n, v in req.headers if n not in CONNECTION_SPECIFIC]
    return replace(req, http_version="2", headers=fields, keep_alive=True, chunked=False,
                   upgrade=None, expect_continue=False)


def _tokens(value: bytes) -> list[bytes]:
    return [t.strip(b" \t") for t in value.lower().split(b",")]
