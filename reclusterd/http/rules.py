"""The strict HTTP/1.x request rules (RFC 9112 / RFC 9110), in one place for both parsers.

Each parser adapter hands over what it parsed (method, target, version, header lines) and
these functions either build the `Request` or raise `Reject(status, reason)`. Raw-byte checks
for things a parser normalises away (bare LF, obs-fold, spaces) live in `check_head_bytes`.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from .events import Headers, Limits, Request

__all__ = ["Reject", "build_request", "check_field", "check_field_lines", "check_head_bytes",
           "check_field_start", "check_line_prefix", "check_trailers", "chunk_size",
           "decode_path", "request_line",
           "split_fields", "parse_field_section", "KNOWN_METHODS", "TLS_ON_PLAIN", "is_token"]


class Reject(Exception):
    """A request that must be refused with `status` (and the connection closed)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason


def _byteset(ranges: str) -> bytes:
    return bytes(sorted({b for b in ranges.encode("latin-1")}))


_TCHAR = _byteset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
                  "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
# field-value octets: VCHAR, obs-text, SP, HTAB (no CTLs, no DEL)
_VALUE_OK = bytes([9, *range(0x20, 0x7F), *range(0x80, 0x100)])
# request-target octets (RFC 9112 §3.2, RFC 3986 §2): visible ASCII (raw UTF-8 must be
# percent-encoded) except "#" (a fragment is never sent, RFC 9110 §4.2.4) and '"' "<" ">",
# which no URI contains and browsers always encode. "[]{}|^\`" stay: RFC 3986 has no room
# for them outside an IP literal, but browsers send them raw in queries (WHATWG URL).
_TARGET_OK = bytes(sorted(set(range(0x21, 0x7F)) - set(b'#"<>')))
_DIGITS = b"0123456789"
_HEX = b"0123456789abcdefABCDEF"
# uri-host [":" port]: unreserved / pct-encoded / sub-delims / IP-literal brackets / ":"
_HOST_OK = _byteset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                    "-._~%!$&'()*+,;=:[]")

# Methods served (llhttp's request methods but CONNECT: no tunnels); other tokens: 501.
KNOWN_METHODS = frozenset(
    b"DELETE GET HEAD POST PUT OPTIONS TRACE COPY LOCK MKCOL MOVE PROPFIND "
    b"PROPPATCH SEARCH UNLOCK BIND REBIND UNBIND ACL REPORT MKACTIVITY CHECKOUT MERGE "
    b"M-SEARCH NOTIFY SUBSCRIBE UNSUBSCRIBE PATCH PURGE MKCALENDAR LINK UNLINK SOURCE QUERY"
    .split()
)

MAX_METHOD = max(len(m) for m in KNOWN_METHODS)
TLS_ON_PLAIN = "TLS handshake on a plain HTTP port"  # a ClientHello's first byte is 0x16

_HOST, _CONNECTION, _CL, _TE, _EXPECT, _UPGRADE = range(6)
_FIELD_KINDS = {b"host": _HOST, b"connection": _CONNECTION, b"content-length": _CL,
                b"transfer-encoding": _TE, b"expect": _EXPECT, b"upgrade": _UPGRADE}

MAX_CONTENT_LENGTH_DIGITS = 18  # < 2**63: no overflow anywhere downstream


def is_token(value: bytes) -> bool:
    """RFC 9110 token: one or more tchar."""
    return bool(value) and not value.translate(None, _TCHAR)


def check_field(name: bytes, value: bytes) -> None:
    """One header/trailer field: token name, no CTL/DEL/NUL/CR/LF in the value.

    (Line length limits are checked on the raw lines by the framer.)
    """
    if not name or name.translate(None, _TCHAR):
        raise Reject(400, "invalid header name")
    if value.translate(None, _VALUE_OK):
        raise Reject(400, "invalid character in header value")


def check_trailers(trailers: Headers, limits: Limits) -> None:
    """Trailer lines follow the header rules; framing fields are not allowed there."""
    if limits.fields and len(trailers) > limits.fields:
        raise Reject(431, "too many trailer fields")
    for name, _ in trailers:
        if name in (b"content-length", b"transfer-encoding", b"host"):
            raise Reject(400, "framing field in trailers")


def _content_length(values: list[bytes]) -> int:
    first = values[0]
    if len(values) > 1:
        raise Reject(400, "duplicate Content-Length")
    if not first or first.translate(None, _DIGITS) or len(first) > MAX_CONTENT_LENGTH_DIGITS:
        raise Reject(400, "invalid Content-Length")
    return int(first)


def _transfer_encoding(values: list[bytes], version: str) -> None:
    """Only `chunked` is understood, and it must be final and appear once."""
    if version == "1.0":
        raise Reject(400, "Transfer-Encoding on HTTP/1.0")
    codings = [c.strip(b" \t").lower() for c in b",".join(values).split(b",")]
    if not codings or codings[-1] != b"chunked":
        raise Reject(400, "chunked is not the final transfer coding")
    if codings.count(b"chunked") > 1:
        raise Reject(400, "chunked applied twice")
    for coding in codings[:-1]:
        if not is_token(coding.partition(b";")[0].rstrip(b" \t")):
            raise Reject(400, "invalid transfer coding")
        raise Reject(501, "transfer coding not implemented")


def _split_target(method: bytes, target: bytes) -> tuple[bytes, bytes]:
    """(path, query) from the request-target, checking its form (RFC 9112 §3.2)."""
    if not target or target.translate(None, _TARGET_OK):
        raise Reject(400, "invalid request target")
    if target[0] == 0x2F:  # "/": origin-form, the common case
        rest = target
    elif target == b"*":
        if method != b"OPTIONS":
            raise Reject(400, "asterisk-form only with OPTIONS")
        return b"*", b""
    else:  # absolute-form; an authority-form target (CONNECT's) is refused here too
        rest = _absolute_form(target)
    path, _, query = rest.partition(b"?")
    return path, query


def _absolute_form(target: bytes) -> bytes:
    """The path-and-query part of an absolute-form target (RFC 9112 §3.2.2)."""
    scheme, sep, rest = target.partition(b"://")
    if not sep or scheme.lower() not in (b"http", b"https"):
        raise Reject(400, "invalid request target")
    slash = rest.find(b"/")
    qmark = rest.find(b"?")
    if slash < 0 or (0 <= qmark < slash):
        authority, rest = (rest[:qmark], b"/" + rest[qmark:]) if qmark >= 0 else (rest, b"/")
    else:
        authority, rest = rest[:slash], rest[slash:]
    if not authority or authority.translate(None, _HOST_OK):
        raise Reject(400, "invalid authority in absolute-form target")
    return rest


def check_line_prefix(line: bytes) -> None:
    """Refuse a request line, complete or not, as soon as its first bytes rule it out.

    Left to right: method (token, 400; CONNECT or a method nobody serves, 501, as soon as
    it is complete or longer than any served method), one SP, target octets, one SP, a
    prefix of `HTTP/d.d`. What fails on a prefix fails the same way on every extension of
    it, so the answer does not depend on how the bytes were split into reads.
    """
    if not line:
        return
    sp = line.find(b" ", 0, MAX_METHOD + 1)
    method = line[:MAX_METHOD + 1] if sp < 0 else line[:sp]  # only what decides the answer
    if method.translate(None, _TCHAR) or sp == 0:
        if line[0] == 0x16:
            raise Reject(400, TLS_ON_PLAIN)
        raise Reject(400, "invalid method")
    if sp < 0:
        if len(method) > MAX_METHOD:  # a token longer than any served method
            raise Reject(501, "method not implemented")
        return
    if method not in KNOWN_METHODS:
        raise Reject(501, "method not implemented")
    sp2 = line.find(b" ", sp + 1)
    target = line[sp + 1:] if sp2 < 0 else line[sp + 1:sp2]
    if target.translate(None, _TARGET_OK) or sp2 == sp + 1:
        raise Reject(400, "invalid request target")
    if sp2 < 0:
        return
    version = line[sp2 + 1:]
    proto = b"HTTP/d.d"
    if len(version) > len(proto):
        raise Reject(400, "malformed HTTP version")
    for got, want in zip(version, proto, strict=False):
        if got != want and not (want == 0x64 and 0x30 <= got <= 0x39):
            raise Reject(400, "malformed HTTP version")


def check_field_start(line: bytes) -> None:
    """A field line, complete or not, refused at its first impossible byte: obs-fold or
    leading whitespace, or a name that is not a token (RFC 9112 §5)."""
    if not line:
        return
    if line[0] in (0x20, 0x09):
        raise Reject(400, "obsolete line folding or empty field line")
    colon = line.find(b":")
    name = line if colon < 0 else line[:colon]
    if colon == 0 or name.translate(None, _TCHAR):
        raise Reject(400, "invalid header name")


def request_line(line: bytes, limits: Limits) -> tuple[bytes, bytes, str]:
    """Split `METHOD SP target SP HTTP/x.y` exactly (RFC 9112 §3); version "1.0" or "1.1".

    Checked in wire order: the bytes within the length limit, then the limit (414), then
    what only a complete line shows (a version, 505 unless 1.0/1.1)."""
    limit = limits.request_line
    check_line_prefix(line[:limit] if limit else line)
    if limit and len(line) > limit:
        raise Reject(414, "request line too long")
    parts = line.split(b" ")
    if len(parts) != 3 or len(parts[2]) != 8:
        raise Reject(400, "malformed request line")
    method, target, version = parts
    if version == b"HTTP/1.1":
        ver = "1.1"
    elif version == b"HTTP/1.0":
        ver = "1.0"
    else:
        raise Reject(505, "HTTP version not supported")
    return method, target, ver


def build_request(method: bytes, target: bytes, version: str, headers: Headers,
                  limits: Limits, split: tuple[bytes, bytes] | None = None,
                  upgrades: frozenset[bytes] = frozenset()) -> Request:
    """Apply the head rules to a parsed head and build the Request event.

    `method`/`version` come from `request_line`; header fields are already syntax-checked.
    `split` is the (path, query) `_split_target` gave for this very target before, if known.
    `upgrades`: the protocols (lower-case) the driver switches to; `Request.upgrade` is set
    only for a request it will take up (see `_upgrade`), every other Upgrade is ignored.
    """
    if limits.fields and len(headers) > limits.fields:
        raise Reject(431, "too many header fields")
    path, query = _split_target(method, target) if split is None else split

    cl_values: list[bytes] | None = None
    te_values: list[bytes] | None = None
    hosts = 0
    conn_close = conn_keep = conn_upgrade = expect = False
    upgrade: bytes | None = None
    kinds = _FIELD_KINDS
    for name, value in headers:
        kind = kinds.get(name)
        if kind is None:
            continue
        if kind == _HOST:
            hosts += 1
            if value and value.translate(None, _HOST_OK):
                raise Reject(400, "invalid Host")
        elif kind == _CONNECTION:
            low = value.lower()
            if low == b"keep-alive":
                conn_keep = True
            elif low == b"close":
                conn_close = True
            else:
                toks = [t.strip(b" \t") for t in low.split(b",")]
                conn_close = conn_close or b"close" in toks
                conn_keep = conn_keep or b"keep-alive" in toks
                conn_upgrade = conn_upgrade or b"upgrade" in toks
        elif kind == _CL:
            cl_values = [value] if cl_values is None else [*cl_values, value]
        elif kind == _TE:
            te_values = [value] if te_values is None else [*te_values, value]
        elif kind == _EXPECT:
            expect = expect or value.lower() == b"100-continue"
        else:
            upgrade = value
    if hosts > 1 or (hosts == 0 and version == "1.1"):
        raise Reject(400, "exactly one Host header required")

    content_length: int | None = None
    chunked = False
    if te_values is not None or cl_values is not None:   # a bodiless request skips the call
        content_length, chunked = _body_framing(te_values, cl_values, version, limits)
    keep_alive = not conn_close and (version == "1.1" or conn_keep)
    if upgrade is not None:
        upgrade = _upgrade(upgrade, upgrades, method, version,
                           conn_upgrade and not chunked and not content_length)
    return Request(method, target, path, query, version, headers, keep_alive,
                   expect and version == "1.1", content_length, chunked, upgrade)


def _body_framing(te_values: list[bytes] | None, cl_values: list[bytes] | None,
                  version: str, limits: Limits) -> tuple[int | None, bool]:
    """(Content-Length, chunked) of a request with a body (RFC 9112 §6.1-6.3): both
    headers is a smuggling attempt (400); a length over --limit-request-body is 413."""
    if te_values is not None:
        if cl_values is not None:
            raise Reject(400, "both Transfer-Encoding and Content-Length")
        _transfer_encoding(te_values, version)
        return None, True
    assert cl_values is not None
    content_length = _content_length(cl_values)
    if limits.body and content_length > limits.body:
        raise Reject(413, "request body too large")
    return content_length, False


def _upgrade(value: bytes, upgrades: frozenset[bytes], method: bytes, version: str,
             bodiless: bool) -> bytes | None:
    """The protocol a request switches to, or None: the request is served as HTTP/1.

    A server that does not switch ignores Upgrade (RFC 9110 §7.8), so only a bodiless
    HTTP/1.1 GET with `Connection: upgrade` naming a protocol in `upgrades` switches."""
    if not bodiless or version != "1.1" or method != b"GET" or not upgrades:
        return None
    for proto in value.lower().split(b","):
        name = proto.strip(b" \t")
        if name in upgrades:
            return name
    return None


def check_head_bytes(head: bytes) -> None:
    """Raw checks on a complete head for a backend that normalises them away (h11).

    Every line ends in CRLF (no bare CR or LF) and no field line starts with whitespace
    (obs-fold) or has whitespace before its colon. llhttp enforces these itself.
    """
    inner = head[:-4]
    if b"\r" in inner.replace(b"\r\n", b"") or b"\n" in inner.replace(b"\r\n", b""):
        raise Reject(400, "bare CR or LF in head")
    check_field_lines(inner.split(b"\r\n")[1:])


def check_field_lines(lines: list[bytes]) -> None:
    """Field lines: no obs-fold / leading whitespace, token name directly before the colon."""
    for line in lines:
        if not line or line[0] in (0x20, 0x09):
            raise Reject(400, "obsolete line folding or empty field line")
        name, colon, _ = line.partition(b":")
        if not colon or not name or name.translate(None, _TCHAR):
            raise Reject(400, "invalid header name")


def parse_field_section(section: bytes) -> Headers:
    """Fields of a trailer section (ending in CRLF CRLF, or a bare CRLF), checked here alone."""
    if section == b"\r\n":
        return []
    check_field_lines(section[:-4].split(b"\r\n"))
    fields = split_fields(b"X\r\n" + section)
    for name, value in fields:
        check_field(name, value)
    return fields


def split_fields(head: bytes) -> Headers:
    """(lower-case name, stripped value) of each field line of a checked head."""
    out: Headers = []
    for line in head[:-4].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        out.append((name.lower(), value.strip(b" \t")))
    return out


_QSTR = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
_TOKEN_RE = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_CHUNK_LINE = re.compile(
    rb"([0-9A-Fa-f]+)(?:[ \t]*;[ \t]*" + _TOKEN_RE
    + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN_RE + b"|" + _QSTR + rb"))?)*\r\n")
MAX_CHUNK_SIZE = 2**63 - 1


def chunk_size(line: bytes) -> int:
    """Size of a chunk from its line (incl. CRLF): hex digits, then RFC 9112 §7.1.1 exts."""
    m = _CHUNK_LINE.fullmatch(line)
    if m is None:
        raise Reject(400, "invalid chunk size line")
    size = int(m.group(1), 16)
    if size > MAX_CHUNK_SIZE:
        raise Reject(400, "chunk size too large")
    return size


def decode_path(raw: bytes) -> bytes:
    """The percent-decoded path of a request target (RFC 3986 §2.1), as bytes: WSGI
    decodes it as latin-1 (PEP 3333), ASGI as UTF-8 (the ASGI spec's `path`)."""
    return unquote_to_bytes(raw) if b"%" in raw else raw
