"""The WebSocket opening handshake (RFC 6455 §4.2.1), checked sans-IO before any app sees it.

A request whose `Upgrade` field lists the `websocket` protocol (case-insensitive,
in a token list, RFC 9110 §7.8) is a handshake attempt. It is valid only as a
GET on HTTP/1.1 with `Connection: upgrade`, one `Sec-WebSocket-Key` that is the
base64 of 16 bytes, and `Sec-WebSocket-Version: 13` (Host is required of every
HTTP/1.1 request by rules.py already). A wrong or missing version is refused with
426 and `Sec-WebSocket-Version: 13` (§4.2.2 step 4, §4.4), anything else with 400;
every refusal closes the connection.
"""

from __future__ import annotations

import binascii
from base64 import b64decode

from .events import Request
from .response import Response

__all__ = ["VERSION", "handshake_refusal", "handshake_problem", "offers_websocket"]

VERSION = b"13"             # the only version defined (RFC 6455 §4.1, IANA registry)
KEY_BYTES = 16              # §4.1: the key is a random 16-byte value, base64-encoded


def _values(req: Request, name: bytes) -> list[bytes]:
    return [v for n, v in req.headers if n == name]


def _tokens(values: list[bytes]) -> set[bytes]:
    """Lower-case members of comma-separated token lists (protocol versions cut: `a/1` -> `a`)."""
    return {t.strip(b" \t").split(b"/", 1)[0].lower() for v in values for t in v.split(b",")}


def offers_websocket(req: Request) -> bool:
    """Does the request ask to switch to WebSocket (whatever else is wrong with it)?

    Never for HTTP/1.0: a server MUST ignore Upgrade in a 1.0 request (RFC 9110 §7.8),
    so such a request is served as plain HTTP."""
    if req.http_version == "1.0":
        return False
    values = [req.upgrade] if req.upgrade is not None else _values(req, b"upgrade")
    return bool(values) and b"websocket" in _tokens(values)


def handshake_problem(req: Request) -> tuple[int, str] | None:
    """None for a valid §4.2.1 handshake, else (status, short reason) to refuse it with."""
    if req.method != b"GET":
        return 400, "WebSocket handshake must be a GET"
    if b"upgrade" not in _tokens(_values(req, b"connection")):
        return 400, "WebSocket handshake needs Connection: Upgrade"
    if req.content_length or req.chunked:
        # A 101 would turn the body's bytes, and whatever follows, into WebSocket frames
        # while the HTTP parser still frames them: refuse (the smuggling pattern).
        return 400, "WebSocket handshake must have no body"
    if b"websocket" not in {t.strip(b" \t").lower()
                            for v in _values(req, b"upgrade") for t in v.split(b",")}:
        return 400, "Upgrade must name websocket (no version)"
    if _values(req, b"sec-websocket-version") != [VERSION]:
        return 426, "unsupported Sec-WebSocket-Version: 13 is supported"
    keys = _values(req, b"sec-websocket-key")
    if len(keys) != 1 or not _is_key(keys[0]):
        return 400, "Sec-WebSocket-Key must be the base64 of 16 bytes"
    return None


def _is_key(key: bytes) -> bool:
    try:
        return len(b64decode(key, validate=True)) == KEY_BYTES
    except (binascii.Error, ValueError):
        return False


def handshake_refusal(req: Request, status: int, reason: str) -> bytes:
    """The complete refusal: a short fixed text, `Connection: close`; a 426 names the
    protocol and version required (RFC 9110 §15.5.22, RFC 6455 §4.4)."""
    body = reason.encode("ascii") + b"\n"
    headers = [(b"Content-Type", b"text/plain; charset=utf-8"),
               (b"Content-Length", b"%d" % len(body))]
    if status == 426:
        headers.append((b"Upgrade", b"websocket"))
    headers.append((b"Sec-WebSocket-Version", VERSION))   # the case the RFC writes
    r = Response(req, status, headers, keep_alive=False)
    return r.head + r.body(body) + r.end()
