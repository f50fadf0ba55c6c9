"""The parser's caches never change an answer: cold and warm give the same events."""

from __future__ import annotations

import base64

import pytest

from reclusterd.http import Limits, ProtocolError, Request, headcache, make_parser
from reclusterd.http.parser import HttptoolsParser

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
            headcache.clear_caches()
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
    headcache.clear_caches()
    p = make_parser("httptools")
    for i in range(3 * headcache.MAX_CACHED_LINES):
        p.feed(b"GET /%d HTTP/1.1\r\n" % i + H + b"\r\n")
        assert len(headcache.LINES) <= headcache.MAX_CACHED_LINES
    headcache.clear_caches()
    p.feed(b"GET /" + b"a" * headcache.MAX_CACHED_LINE + b" HTTP/1.1\r\n" + H + b"\r\n")
    assert not headcache.LINES  # long lines are not kept


@pytest.mark.parametrize("kind", PARSERS)
def test_head_memo_hit_is_a_fresh_request(kind: str) -> None:
    raw = b"GET /m HTTP/1.1\r\n" + H + b"X-A: 1\r\n\r\n"
    want = [(b"host", b"example.com"), (b"x-a", b"1")]
    headcache.clear_caches()
    for _ in range(4):  # miss (line cached), miss (head memoised), hit, hit
        req = parse(kind, raw)[0]
        assert isinstance(req, Request)
        assert req.headers == want and req.path == b"/m"
        req.headers.append((b"x-injected", b"1"))  # an ASGI middleware editing scope headers
        req.path = b"/changed"
    assert any(raw in memo for _, _, memo in headcache.BOUNDS.values())


def test_head_memo_hit_skips_llhttp() -> None:
    raw = b"GET /s HTTP/1.1\r\n" + H + b"\r\n"
    headcache.clear_caches()
    for _ in range(2):
        make_parser("httptools").feed(raw)
    p = HttptoolsParser(Limits())
    assert isinstance(p.feed(raw + raw)[2], Request)
    assert p._p is None  # no llhttp parser was even built
    post = b"POST /s HTTP/1.1\r\n" + H + b"Content-Length: 2\r\n\r\nok"
    assert [type(e).__name__ for e in p.feed(post + raw)] == \
        ["Request", "Data", "EndOfMessage", "Request", "EndOfMessage"]


@pytest.mark.parametrize("kind", PARSERS)
def test_head_memo_per_limits(kind: str) -> None:
    raw = b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-%d: v\r\n" % i for i in range(6)) + b"\r\n"
    assert isinstance(parse(kind, raw)[0], Request)
    assert isinstance(parse(kind, raw)[0], Request)  # memo hit under the default limits
    events = parse(kind, raw, limits=LIMITED)
    assert isinstance(events[-1], ProtocolError) and events[-1].status == 431


@pytest.mark.parametrize("kind", PARSERS)
@pytest.mark.parametrize("mode", ["whole", "bytes", "random"])
def test_known_heads_mixed_with_bodies(kind: str, mode: str) -> None:
    """Memo hits skip the backend; the requests with bodies after them still parse."""
    get = b"GET /g HTTP/1.1\r\n" + H + b"\r\n"
    post = b"POST /p HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\nhello"
    chunked = (b"POST /c HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
               b"3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n")
    raw = get + post + get + chunked + get + get + post
    headcache.clear_caches()
    cold = parse(kind, raw, mode)
    warm = parse(kind, raw, mode)
    assert cold == warm
    assert [e.target for e in warm if isinstance(e, Request)] == \
        [b"/g", b"/p", b"/g", b"/c", b"/g", b"/g", b"/p"]
    bad = get + get + b"POST /p HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\nhelloX"
    events = parse(kind, bad + b" / HTTP/1.1\r\n\r\n", mode)
    assert isinstance(events[-1], ProtocolError)


def test_head_memo_bounded() -> None:
    headcache.clear_caches()
    p = make_parser("httptools")
    for i in range(3 * headcache.MAX_CACHED_HEADS):
        p.feed(b"GET / HTTP/1.1\r\n" + H + b"X-N: %d\r\n\r\n" % i)
        assert all(len(memo) <= headcache.MAX_CACHED_HEADS for _, _, memo in
                   headcache.BOUNDS.values())
    headcache.clear_caches()
    p.feed(b"GET / HTTP/1.1\r\n" + H + b"X-Big: " + b"v" * headcache.MAX_CACHED_HEAD + b"\r\n\r\n")
    assert not any(memo for _, _, memo in headcache.BOUNDS.values())
