"""The parser's caches never change an answer: cold and warm give the same events."""

from __future__ import annotations

import base64

import pytest

from reclusterd.http import Limits, ProtocolError, Request, framing, make_parser

from .test_conformance_parser import CASES
from .test_http_rules import LIMIT_CASES, LIMITED, REJECT
from .test_http_support import PARSERS, parse

H = b"Host: example.com\r\n"
ACCEPT = [
    b"GET / HTTP/1.1\r\n" + H + b"\r\n",
    b"GET /a?b=c#d HTTP/1.1\r\n" + H + b"\r\n",
    b"GET http://example.com/x?y HTTP/1.1\r\n" + H + b"\r\n",
    b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n",
    b"CONNECT example.com:443 HTTP/1.1\r\n" + H + b"\r\n",
    b"POST /p HTTP/1.1\r\n" + H + b"Content-Length: 3\r\n\r\nabc",
    b"GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\n\r\n",
    b"GET /k HTTP/1.1\r\n" + H + b"\r\nGET /k HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n",
]
ALL = ([(r, None) for _, r, _ in REJECT] + [(r, LIMITED) for _, r, _ in LIMIT_CASES]
       + [(r, None) for r in ACCEPT]
       + [(base64.b64decode(c["raw_b64"]), None) for c in CASES])


def _warm(kind: str, raw: bytes) -> None:
    """Cache the first line of `raw` if it is a valid request line on its own."""
    line = raw.split(b"\r\n", 1)[0]
    for extra in (H, b""):
        make_parser(kind).feed(line + b"\r\n" + extra + b"\r\n")


@pytest.mark.parametrize("kind", PARSERS)
def test_cold_and_warm_agree(kind: str) -> None:
    for raw, limits in ALL:
        for mode in ("whole", "random"):
            framing.clear_caches()
            cold = parse(kind, raw, mode, limits)
            _warm(kind, raw)
            warm = parse(kind, raw, mode, limits)
            again = parse(kind, raw, mode, limits)
            assert cold == warm == again, raw


@pytest.mark.parametrize("kind", PARSERS)
def test_cached_line_still_limited(kind: str) -> None:
    raw = b"GET /" + b"a" * 120 + b" HTTP/1.1\r\n" + H + b"\r\n"
    assert isinstance(parse(kind, raw)[0], Request)  # cached under the default limits
    events = parse(kind, raw, limits=Limits(request_line=100))
    assert isinstance(events[-1], ProtocolError) and events[-1].status == 414


def test_line_cache_bounded() -> None:
    framing.clear_caches()
    p = make_parser("httptools")
    for i in range(3 * framing.MAX_CACHED_LINES):
        p.feed(b"GET /%d HTTP/1.1\r\n" % i + H + b"\r\n")
        assert len(framing._LINES) <= framing.MAX_CACHED_LINES
    framing.clear_caches()
    p.feed(b"GET /" + b"a" * framing.MAX_CACHED_LINE + b" HTTP/1.1\r\n" + H + b"\r\n")
    assert not framing._LINES  # long lines are not kept
