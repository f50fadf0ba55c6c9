"""Parser behaviour on valid traffic: both parsers, fed whole, per byte and in random splits."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from reclusterd.http import (
    Data,
    EndOfMessage,
    Limits,
    ProtocolError,
    Request,
    make_parser,
)

from .test_http_support import MODES, PARSERS, parse, splits

pytestmark = [pytest.mark.parametrize("mode", MODES), pytest.mark.parametrize("kind", PARSERS)]

H = b"Host: example.com\r\n"


def _reqs(events: Sequence[object]) -> list[Request]:
    return [e for e in events if isinstance(e, Request)]


def test_simple_get(kind: str, mode: str) -> None:
    raw = b"GET /a/b%20c?x=1&y=2 HTTP/1.1\r\n" + H + b"User-Agent: t\r\n\r\n"
    ev = parse(kind, raw, mode)
    assert len(ev) == 2
    req, end = ev
    assert isinstance(req, Request) and isinstance(end, EndOfMessage)
    assert req.method == b"GET"
    assert req.target == b"/a/b%20c?x=1&y=2"
    assert req.path == b"/a/b%20c" and req.query == b"x=1&y=2"
    assert req.http_version == "1.1"
    assert req.headers == [(b"host", b"example.com"), (b"user-agent", b"t")]
    assert req.keep_alive and not req.expect_continue and not req.chunked
    assert req.content_length is None and req.upgrade is None
    assert end.trailers == []


def test_header_names_lowered_values_stripped(kind: str, mode: str) -> None:
    raw = b"GET / HTTP/1.1\r\n" + H + b"X-Mixed-Case:   spaced \t \r\nX-Empty:\r\n\r\n"
    req = _reqs(parse(kind, raw, mode))[0]
    assert req.headers[1:] == [(b"x-mixed-case", b"spaced"), (b"x-empty", b"")]


def test_post_content_length(kind: str, mode: str) -> None:
    raw = b"POST /p HTTP/1.1\r\n" + H + b"Content-Length: 11\r\n\r\nhello world"
    ev = parse(kind, raw, mode)
    assert ev[1:] == [Data(b"hello world"), EndOfMessage([])]
    req = ev[0]
    assert isinstance(req, Request) and req.content_length == 11


def test_content_length_zero(kind: str, mode: str) -> None:
    raw = b"POST /p HTTP/1.1\r\n" + H + b"Content-Length: 0\r\n\r\n"
    ev = parse(kind, raw, mode)
    assert ev[1:] == [EndOfMessage([])]


def test_chunked_with_extensions_and_trailers(kind: str, mode: str) -> None:
    raw = (b"POST /c HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
           b"5;name=value\r\nhello\r\n6 ; a ; b=\"q;s\"\r\n world\r\nA\r\n0123456789\r\n"
           b"0\r\nX-Sum: abc\r\nX-Other:  two \r\n\r\n")
    ev = parse(kind, raw, mode)
    req = ev[0]
    assert isinstance(req, Request) and req.chunked and req.content_length is None
    assert ev[1:] == [Data(b"hello world0123456789"),
                      EndOfMessage([(b"x-sum", b"abc"), (b"x-other", b"two")])]


def test_chunked_no_trailers(kind: str, mode: str) -> None:
    raw = b"POST /c HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    assert parse(kind, raw, mode)[1:] == [Data(b"abc"), EndOfMessage([])]


def test_pipelining_in_order(kind: str, mode: str) -> None:
    raw = (b"GET /1 HTTP/1.1\r\n" + H + b"\r\n"
           b"POST /2 HTTP/1.1\r\n" + H + b"Content-Length: 2\r\n\r\nab"
           b"POST /3 HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n"
           b"HEAD /4 HTTP/1.1\r\n" + H + b"\r\n")
    ev = parse(kind, raw, mode)
    assert [r.path for r in _reqs(ev)] == [b"/1", b"/2", b"/3", b"/4"]
    assert [type(e).__name__ for e in ev] == [
        "Request", "EndOfMessage", "Request", "Data", "EndOfMessage",
        "Request", "Data", "EndOfMessage", "Request", "EndOfMessage"]


def test_crlf_between_requests_ignored(kind: str, mode: str) -> None:
    raw = (b"\r\nPOST /1 HTTP/1.1\r\n" + H + b"Content-Length: 1\r\n\r\na\r\n"
           b"GET /2 HTTP/1.1\r\n" + H + b"\r\n")
    assert [r.path for r in _reqs(parse(kind, raw, mode))] == [b"/1", b"/2"]


def test_head_request(kind: str, mode: str) -> None:
    raw = b"HEAD /h HTTP/1.1\r\n" + H + b"\r\n"
    ev = parse(kind, raw, mode)
    assert isinstance(ev[0], Request) and ev[0].method == b"HEAD"
    assert ev[1:] == [EndOfMessage([])]


def test_http10_no_keepalive_by_default(kind: str, mode: str) -> None:
    raw = b"GET / HTTP/1.0\r\n\r\nGET /ignored HTTP/1.0\r\n\r\n"
    ev = parse(kind, raw, mode)
    reqs = _reqs(ev)
    assert len(reqs) == 1 and reqs[0].http_version == "1.0" and not reqs[0].keep_alive


def test_http10_keepalive_on_request(kind: str, mode: str) -> None:
    raw = (b"GET /1 HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"
           b"GET /2 HTTP/1.0\r\nconnection: keep-alive\r\n\r\n")
    reqs = _reqs(parse(kind, raw, mode))
    assert [r.keep_alive for r in reqs] == [True, True]


def test_connection_close_stops_parsing(kind: str, mode: str) -> None:
    raw = (b"GET /1 HTTP/1.1\r\n" + H + b"Connection: keep-alive, close\r\n\r\n"
           b"garbage that is never parsed\r\n\r\n")
    ev = parse(kind, raw, mode, eof=True)
    assert len(ev) == 2 and isinstance(ev[1], EndOfMessage)
    assert isinstance(ev[0], Request) and not ev[0].keep_alive


def test_expect_continue(kind: str, mode: str) -> None:
    raw = (b"POST /u HTTP/1.1\r\n" + H + b"Expect: 100-Continue\r\nContent-Length: 3\r\n\r\n"
           b"abc")
    ev = parse(kind, raw, mode)
    assert isinstance(ev[0], Request) and ev[0].expect_continue
    assert ev[1:] == [Data(b"abc"), EndOfMessage([])]


def test_expect_continue_ignored_on_http10(kind: str, mode: str) -> None:
    raw = b"POST /u HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx"
    req = _reqs(parse(kind, raw, mode))[0]
    assert not req.expect_continue


@pytest.mark.parametrize("target,path,query", [
    (b"http://example.com/a/b?c=d", b"/a/b", b"c=d"),
    (b"https://example.com:8443/", b"/", b""),
    (b"http://example.com", b"/", b""),
    (b"http://example.com?q=1", b"/", b"q=1"),
    (b"HTTP://Example.COM/x", b"/x", b""),
])
def test_absolute_form(kind: str, mode: str, target: bytes, path: bytes, query: bytes) -> None:
    raw = b"GET " + target + b" HTTP/1.1\r\n" + H + b"\r\n"
    req = _reqs(parse(kind, raw, mode))[0]
    assert (req.target, req.path, req.query) == (target, path, query)


def test_asterisk_options(kind: str, mode: str) -> None:
    req = _reqs(parse(kind, b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n", mode))[0]
    assert req.path == b"*" and req.query == b""


def test_fragment_refused(kind: str, mode: str) -> None:
    """A fragment is never part of a request-target (RFC 9112 §3.2): 400, not misread."""
    ev = parse(kind, b"GET /p?q=1#frag HTTP/1.1\r\n" + H + b"\r\n", mode)
    assert not _reqs(ev) and isinstance(ev[-1], ProtocolError) and ev[-1].status == 400


def test_upgrade_stops_and_keeps_rest(kind: str, mode: str) -> None:
    raw = (b"GET /ws HTTP/1.1\r\n" + H + b"Connection: Upgrade\r\nUpgrade: websocket\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    frames = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58GET / HTTP/1.1\r\n\r\n"
    p = make_parser(kind, upgrades=frozenset((b"websocket",)))
    events: list[object] = []
    for piece in splits(raw + frames, mode):
        events += p.feed(piece)
    assert len(events) == 2
    req = events[0]
    assert isinstance(req, Request) and req.upgrade == b"websocket"
    assert isinstance(events[1], EndOfMessage)
    assert p.unprocessed() == frames
    assert p.feed(b"more") == [] and p.unprocessed() == frames + b"more"


def test_upgrade_ignored_without_connection_token(kind: str, mode: str) -> None:
    raw = (b"GET /1 HTTP/1.1\r\n" + H + b"Upgrade: websocket\r\n\r\n"
           b"GET /2 HTTP/1.1\r\n" + H + b"\r\n")
    reqs = _reqs(parse(kind, raw, mode))
    assert [r.upgrade for r in reqs] == [None, None]


def test_upgrade_ignored_on_http10_keepalive(kind: str, mode: str) -> None:
    raw = (b"GET /1 HTTP/1.0\r\nConnection: upgrade, keep-alive\r\nUpgrade: websocket\r\n\r\n"
           b"GET /2 HTTP/1.0\r\n\r\n")
    reqs = _reqs(parse(kind, raw, mode))
    assert [r.path for r in reqs] == [b"/1", b"/2"] and reqs[0].upgrade is None


def test_connect_refused_before_its_head_ends(kind: str, mode: str) -> None:
    """CONNECT is 501 from its request line: the tunnel bytes after it are never parsed."""
    raw = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\x16\x03\x01"
    ev = parse(kind, raw, mode)
    assert len(ev) == 1 and isinstance(ev[0], ProtocolError) and ev[0].status == 501


def test_eof_between_requests_is_quiet(kind: str, mode: str) -> None:
    ev = parse(kind, b"GET / HTTP/1.1\r\n" + H + b"\r\n", mode, eof=True)
    assert len(ev) == 2


def test_eof_inside_request_is_error(kind: str, mode: str) -> None:
    ev = parse(kind, b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\nab", mode, eof=True)
    assert isinstance(ev[-1], ProtocolError) and ev[-1].status == 400
    ev = parse(kind, b"GET / HTTP/1.1\r\nHo", mode, eof=True)
    assert ev == [ProtocolError(400, "connection closed inside a request")]


def test_error_is_terminal(kind: str, mode: str) -> None:
    p = make_parser(kind)
    ev = p.feed(b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n")
    assert len(ev) == 1 and isinstance(ev[0], ProtocolError)
    assert p.feed(b"GET / HTTP/1.1\r\n" + H + b"\r\n") == []


def test_large_body_streams(kind: str, mode: str) -> None:
    if mode == "bytes":
        pytest.skip("per-byte on 1 MB is slow and adds nothing")
    body = bytes(range(256)) * 4096
    raw = b"PUT /big HTTP/1.1\r\n" + H + b"Content-Length: %d\r\n\r\n" % len(body) + body
    ev = parse(kind, raw, mode)
    assert ev[1] == Data(body) and ev[2] == EndOfMessage([])


def test_limits_default_allow_normal_request(kind: str, mode: str) -> None:
    raw = b"GET /" + b"a" * 8000 + b" HTTP/1.1\r\n" + H + b"X: " + b"v" * 8000 + b"\r\n\r\n"
    assert isinstance(parse(kind, raw, mode, Limits())[0], Request)


def test_unlimited_when_zero(kind: str, mode: str) -> None:
    lim = Limits(request_line=0, fields=0, field_size=0, body=0)
    raw = (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + H
           + b"".join(b"X-%d: v\r\n" % i for i in range(150)) + b"\r\n")
    req = parse(kind, raw, mode, lim)[0]
    assert isinstance(req, Request) and len(req.headers) == 151


def test_make_parser_rejects_unknown(kind: str, mode: str) -> None:
    with pytest.raises(ValueError):
        make_parser("nope")
