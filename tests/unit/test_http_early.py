"""Issue 13 items 1-6 at the http/ level: refusals at the first impossible byte, one target
octet set for both parsers, HEAD-aware and fixed error answers, ignored Upgrades."""

from __future__ import annotations

import pytest

from reclusterd.http import Data, EndOfMessage, Limits, ProtocolError, Request, make_parser
from reclusterd.http.connection import ConnectionRules, H1Connection
from reclusterd.http.rules import TLS_ON_PLAIN

from .test_http_support import PARSERS, parse

H = b"Host: a\r\n"
PREFIXES = [(b"\x00", 400), (b" ", 400), (b"\t", 400), (b"\x16\x03", 400), (b"G(", 400),
            (b"GET\t", 400), (b"GET  ", 400), (b"GET /\x01", 400), (b"GET /#", 400),
            (b"GET / H1", 400), (b"GET / HTTP/1.1x", 400), (b"GET / HTTP/1.1\r\n ", 400),
            (b"GET / HTTP/1.1\r\nA B", 400), (b"MKCALENDARXY", 501), (b"BREW ", 501),
            (b"CONNECT ", 501), (b"POConnection: x", 501)]


@pytest.mark.parametrize("kind", PARSERS)
@pytest.mark.parametrize("prefix,status", PREFIXES)
def test_refused_before_the_line_ends(kind: str, prefix: bytes, status: int) -> None:
    """No CRLF CRLF yet, the header deadline far away: the answer comes from the prefix,
    the same whether the bytes come at once or one by one."""
    for pieces in ([prefix], [prefix[i:i + 1] for i in range(len(prefix))]):
        p = make_parser(kind)
        events = [e for piece in pieces for e in p.feed(piece)]
        assert len(events) == 1 and isinstance(events[0], ProtocolError), (pieces, events)
        assert events[0].status == status


@pytest.mark.parametrize("kind", PARSERS)
def test_valid_prefixes_wait(kind: str) -> None:
    raw = b"\r\nGET /a?b=[1] HTTP/1.1\r\nHost: a\r\n\r\n"
    p = make_parser(kind)
    for i in range(len(raw) - 1):
        assert p.feed(raw[i:i + 1]) == [], raw[:i + 1]
    assert isinstance(p.feed(raw[-1:])[0], Request)


def test_tls_client_hello_named() -> None:
    ev = make_parser("h11").feed(b"\x16\x03\x01\x02\x00\x01")
    assert isinstance(ev[0], ProtocolError) and ev[0].reason == TLS_ON_PLAIN


def test_both_parsers_accept_the_same_target_octets() -> None:
    for octet in range(256):
        raw = b"GET /a" + bytes([octet]) + b"b HTTP/1.1\r\n" + H + b"\r\n"
        kinds = {type(parse(kind, raw)[0]) for kind in PARSERS}
        assert len(kinds) == 1, (octet, kinds)
        ok = kinds == {Request}
        assert ok == (0x21 <= octet <= 0x7E and octet not in b'#"<>'), octet


@pytest.mark.parametrize("kind", PARSERS)
@pytest.mark.parametrize("raw", [b"HEAD / HTTP/1.1\r\n\r\n", b"HEAD /#x HTTP/1.1\r\n" + H,
                                 b"HEAD /" + b"a" * 200])
def test_errors_to_head_are_marked(kind: str, raw: bytes) -> None:
    ev = parse(kind, raw, limits=Limits(request_line=100))
    assert isinstance(ev[-1], ProtocolError) and ev[-1].head


def test_reject_and_timeout_answers() -> None:
    h1 = H1Connection(ConnectionRules(5, 20), make_parser("h11"), lambda: 0.0)
    h1.receive(b"HEAD / HT")
    assert h1.timeout_response().endswith(b"\r\n\r\n"), "408 to HEAD: no body"
    bad = h1.reject(ProtocolError(400, "illegal header line: bytearray(b'x')"))
    assert bad.endswith(b"\r\n\r\nBad Request\n") and b"bytearray" not in bad


@pytest.mark.parametrize("kind", PARSERS)
@pytest.mark.parametrize("fields", [
    b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nContent-Length: 5\r\n\r\nhello",
    b"Connection: upgrade\r\nUpgrade: websocket\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n0\r\nX: y\r\n\r\n"])
def test_upgrade_with_body_is_an_ordinary_request(kind: str, fields: bytes) -> None:
    p = make_parser(kind, upgrades=frozenset((b"websocket",)))
    events = p.feed(b"POST / HTTP/1.1\r\n" + H + fields + b"GET /2 HTTP/1.1\r\n" + H + b"\r\n")
    reqs = [e for e in events if isinstance(e, Request)]
    assert [r.upgrade for r in reqs] == [None, None] and [r.path for r in reqs] == [b"/", b"/2"]
    assert b"".join(e.data for e in events if isinstance(e, Data)) == b"hello"
    assert sum(isinstance(e, EndOfMessage) for e in events) == 2
