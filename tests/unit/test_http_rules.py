"""Every strict framing rule (issue 5): the exact status, both parsers, any split."""

from __future__ import annotations

import pytest

from reclusterd.http import Limits, ProtocolError, Request

from .test_http_support import MODES, PARSERS, parse

H = b"Host: example.com\r\n"
POST = b"POST / HTTP/1.1\r\n" + H
CHUNKED = POST + b"Transfer-Encoding: chunked\r\n\r\n"
GET = b"GET / HTTP/1.1\r\n" + H

REJECT: list[tuple[str, bytes, int]] = [
    # Content-Length
    ("cl sign", POST + b"Content-Length: +5\r\n\r\nhello", 400),
    ("cl negative", POST + b"Content-Length: -5\r\n\r\nhello", 400),
    ("cl underscore", POST + b"Content-Length: 1_0\r\n\r\n", 400),
    ("cl hex", POST + b"Content-Length: 0x5\r\n\r\nhello", 400),
    ("cl inner space", POST + b"Content-Length: 1 2\r\n\r\n", 400),
    ("cl empty", POST + b"Content-Length: \r\n\r\n", 400),
    ("cl list", POST + b"Content-Length: 5, 5\r\n\r\nhello", 400),
    ("cl overflow", POST + b"Content-Length: 99999999999999999999999\r\n\r\n", 400),
    ("cl differing dup", POST + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
    ("cl identical dup", POST + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400),
    # Transfer-Encoding
    ("te unknown", POST + b"Transfer-Encoding: gzip\r\n\r\n", 400),
    ("te gzip then chunked", POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    ("te two lines", POST + b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
    ("te chunked not final", POST + b"Transfer-Encoding: chunked, gzip\r\n\r\n", 400),
    ("te chunked twice", POST + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400),
    ("te chunked twice lines",
     POST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("te on 1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("te plus cl", POST + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400),
    ("te empty", POST + b"Transfer-Encoding: \r\n\r\n", 400),
    # chunked body
    ("chunk size not hex", CHUNKED + b"g\r\nx\r\n0\r\n\r\n", 400),
    ("chunk size sign", CHUNKED + b"+5\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk size 0x", CHUNKED + b"0x5\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk size space", CHUNKED + b"5 \r\nhello\r\n0\r\n\r\n", 400),
    ("chunk size empty", CHUNKED + b"\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk size huge", CHUNKED + b"fffffffffffffffffff\r\nx", 400),
    ("chunk no crlf after data", CHUNKED + b"5\r\nhelloXX0\r\n\r\n", 400),
    ("chunk lf after data", CHUNKED + b"5\r\nhello\n0\r\n\r\n", 400),
    ("chunk bare lf size", CHUNKED + b"5\nhello\r\n0\r\n\r\n", 400),
    ("chunk ext empty", CHUNKED + b"5;\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk ext bare cr", CHUNKED + b"5;a\rb\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk ext bare lf", CHUNKED + b"5;a\nhello\r\n0\r\n\r\n", 400),
    ("chunk ext bad char", CHUNKED + b"5;a=\"x\x00\"\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk ext too long", CHUNKED + b"5;a=" + b"x" * 5000 + b"\r\nhello\r\n0\r\n\r\n", 400),
    ("trailer obs-fold", CHUNKED + b"0\r\nX: a\r\n b\r\n\r\n", 400),
    ("trailer bad name", CHUNKED + b"0\r\nX Y: a\r\n\r\n", 400),
    ("trailer content-length", CHUNKED + b"0\r\nContent-Length: 5\r\n\r\n", 400),
    ("trailer nul", CHUNKED + b"0\r\nX: a\x00b\r\n\r\n", 400),
    # header syntax
    ("space before colon", GET + b"X-A : b\r\n\r\n", 400),
    ("tab before colon", GET + b"X-A\t: b\r\n\r\n", 400),
    ("empty name", GET + b": b\r\n\r\n", 400),
    ("no colon", GET + b"X-A b\r\n\r\n", 400),
    ("leading whitespace line", b"GET / HTTP/1.1\r\n " + H + b"\r\n", 400),
    ("obs-fold", GET + b"X-A: a\r\n  b\r\n\r\n", 400),
    ("name with slash", GET + b"X/A: b\r\n\r\n", 400),
    ("name with non-ascii", GET + b"X\xe9: b\r\n\r\n", 400),
    ("nul in value", GET + b"X-A: a\x00b\r\n\r\n", 400),
    ("cr in value", GET + b"X-A: a\rb\r\n\r\n", 400),
    ("ctl in value", GET + b"X-A: a\x01b\r\n\r\n", 400),
    ("del in value", GET + b"X-A: a\x7fb\r\n\r\n", 400),
    ("bare lf line ends", b"GET / HTTP/1.1\n" + H.replace(b"\r\n", b"\n") + b"\n", 400),
    ("bare lf one line", b"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", 400),
    ("bare cr", b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 400),
    # Host
    ("no host on 1.1", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("two hosts", GET + H + b"\r\n", 400),
    ("two hosts on 1.0", b"GET / HTTP/1.0\r\n" + H + H + b"\r\n", 400),
    ("bad host", b"GET / HTTP/1.1\r\nHost: a b/c\r\n\r\n", 400),
    ("host with userinfo", b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400),
    # request line
    ("two spaces", b"GET  / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("trailing space", b"GET / HTTP/1.1 \r\n" + H + b"\r\n", 400),
    ("tab separator", b"GET\t/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("leading space", b" GET / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("http/0.9 line", b"GET /\r\n\r\n", 400),
    ("lowercase version", b"GET / http/1.1\r\n" + H + b"\r\n", 400),
    ("version 1.01", b"GET / HTTP/1.01\r\n" + H + b"\r\n", 400),
    ("version junk", b"GET / HTTP/x.y\r\n" + H + b"\r\n", 400),
    ("version 0.9", b"GET / HTTP/0.9\r\n" + H + b"\r\n", 505),
    ("version 2.0", b"GET / HTTP/2.0\r\n" + H + b"\r\n", 505),
    ("version 3.1", b"GET / HTTP/3.1\r\n" + H + b"\r\n", 505),
    ("version 1.2", b"GET / HTTP/1.2\r\n" + H + b"\r\n", 505),
    ("method not token", b"G(T / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("method unknown", b"BREW / HTTP/1.1\r\n" + H + b"\r\n", 501),
    ("method lower-case", b"get / HTTP/1.1\r\n" + H + b"\r\n", 501),
    ("target non-ascii", b"GET /\xc3\xa9 HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("target ctl", b"GET /a\x01b HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("asterisk with GET", b"GET * HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("authority with GET", b"GET example.com:80 HTTP/1.1\r\n" + H + b"\r\n", 400),
    # CONNECT (we do not tunnel): 501 whatever its target
    ("CONNECT authority form", b"CONNECT example.com:443 HTTP/1.1\r\n" + H + b"\r\n", 501),
    ("CONNECT origin form", b"CONNECT / HTTP/1.1\r\n" + H + b"\r\n", 501),
    ("CONNECT no port", b"CONNECT example.com HTTP/1.1\r\n" + H + b"\r\n", 501),
    ("CONNECT userinfo", b"CONNECT u@example.com:443 HTTP/1.1\r\n" + H + b"\r\n", 501),
    ("authority form with OPTIONS", b"OPTIONS example.com:443 HTTP/1.1\r\n" + H + b"\r\n",
     400),
    ("asterisk with POST", b"POST * HTTP/1.1\r\n" + H + b"Content-Length: 0\r\n\r\n", 400),
    # octets no request-target may hold (RFC 9112 §3.2, RFC 3986)
    ("fragment", b"GET /x#frag?b=2 HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("fragment in query", b"GET /x?a=1#f HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("fragment absolute", b"GET http://example.com/#f HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("double quote", b'GET /"x" HTTP/1.1\r\n' + H + b"\r\n", 400),
    ("angle brackets", b"GET /<script> HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("target del", b"GET /a\x7f HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("absolute bad scheme", b"GET ftp://example.com/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("absolute userinfo", b"GET http://u:p@example.com/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("absolute no authority", b"GET http:///x HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("relative target", b"GET a/b HTTP/1.1\r\n" + H + b"\r\n", 400),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", PARSERS)
@pytest.mark.parametrize("raw,status", [(r, s) for _, r, s in REJECT],
                         ids=[n for n, _, _ in REJECT])
def test_rejected(kind: str, mode: str, raw: bytes, status: int) -> None:
    events = parse(kind, raw, mode, eof=False)
    errors = [e for e in events if isinstance(e, ProtocolError)]
    assert errors, events
    assert errors[0].status == status, errors[0]
    assert events[-1] is errors[0]  # terminal
    assert not any(isinstance(e, Request) for e in events[events.index(errors[0]):])


LIMITED = Limits(request_line=100, fields=5, field_size=64, body=10)
LIMIT_CASES: list[tuple[str, bytes, int]] = [
    ("request line", b"GET /" + b"a" * 120 + b" HTTP/1.1\r\n" + H + b"\r\n", 414),
    ("request line unterminated", b"GET /" + b"a" * 200, 414),
    ("field size", GET + b"X-Big: " + b"v" * 80 + b"\r\n\r\n", 431),
    ("field size unterminated", GET + b"X-Big: " + b"v" * 200, 431),
    ("field count", GET + b"".join(b"X-%d: v\r\n" % i for i in range(6)) + b"\r\n", 431),
    ("body content-length", POST + b"Content-Length: 11\r\n\r\n" + b"x" * 11, 413),
    ("body chunked", CHUNKED + b"6\r\nabcdef\r\n6\r\nghijkl\r\n0\r\n\r\n", 413),
    ("trailer count",
     CHUNKED + b"0\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(6)) + b"\r\n", 431),
    ("trailer size", CHUNKED + b"0\r\nX: " + b"v" * 80 + b"\r\n\r\n", 431),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", PARSERS)
@pytest.mark.parametrize("raw,status", [(r, s) for _, r, s in LIMIT_CASES],
                         ids=[n for n, _, _ in LIMIT_CASES])
def test_limits(kind: str, mode: str, raw: bytes, status: int) -> None:
    events = parse(kind, raw, mode, LIMITED)
    assert isinstance(events[-1], ProtocolError), events
    assert events[-1].status == status


@pytest.mark.parametrize("kind", PARSERS)
def test_limits_at_the_edge_accepted(kind: str) -> None:
    raw = (b"POST /" + b"a" * (100 - 16) + b" HTTP/1.1\r\n" + H
           + b"X-Big: " + b"v" * (64 - 9) + b"\r\n" + b"Content-Length: 10\r\n\r\n" + b"x" * 10)
    events = parse(kind, raw, "whole", LIMITED)
    assert not any(isinstance(e, ProtocolError) for e in events), events


@pytest.mark.parametrize("kind", PARSERS)
def test_slow_unbounded_head_is_cut(kind: str) -> None:
    """A head that never ends (many small fields) is refused once over the bound."""
    lim = Limits(request_line=100, fields=5, field_size=64)
    raw = GET + b"".join(b"X-%d: v\r\n" % i for i in range(400))
    events = parse(kind, raw, "random", lim)
    assert isinstance(events[-1], ProtocolError) and events[-1].status == 431


@pytest.mark.parametrize("kind", PARSERS)
def test_accepted_edge_cases(kind: str) -> None:
    ok = [
        GET + b"X-Tab: a\tb\r\nX-High: caf\xc3\xa9\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost:\r\n\r\n",                  # empty Host is allowed
        b"GET / HTTP/1.0\r\n\r\n",                           # no Host on 1.0
        b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
        POST + b"Content-Length: 007\r\n\r\nabcdefg",
        CHUNKED + b"0005\r\nhello\r\n0\r\n\r\n",
        CHUNKED + b"5 ; a = \"q \\\" s\"\r\nhello\r\n0\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n",
        b"GET /a[1]{2}|^\\`?q[]=1&r={x}|y HTTP/1.1\r\n" + H + b"\r\n",  # browsers send these
    ]
    for raw in ok:
        events = parse(kind, raw, "whole")
        assert isinstance(events[0], Request), (raw, events)
        assert not any(isinstance(e, ProtocolError) for e in events), (raw, events)
