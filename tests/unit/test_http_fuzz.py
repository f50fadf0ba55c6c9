"""Property tests: generated requests, mutated and split at random points.

- a parser never raises: bad input only ever gives a terminal ProtocolError event;
- splitting the same bytes anywhere gives the same events;
- httptools and h11 give the same events (differential), so also agree on accept/reject;
- valid generated requests come out exactly as generated.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reclusterd.http import Data, EndOfMessage, Event, Limits, ProtocolError, Request, make_parser

from .test_http_support import normalize

# RECLUSTERD_FUZZ_EXAMPLES=5000 for a longer run
SETTINGS = settings(max_examples=int(os.environ.get("RECLUSTERD_FUZZ_EXAMPLES", "300")),
                    deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
LIMITS = Limits(request_line=200, fields=20, field_size=200, body=2000)

TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
token = st.text(alphabet=TCHAR, min_size=1, max_size=12).map(str.encode)
path_chars = st.text(alphabet="abcXYZ019-._~%/!$&'()*+,;=:@", max_size=20).map(str.encode)
value = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)\
    .map(lambda s: s.strip().encode())
methods = st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"HEAD"])
RESERVED = {b"host", b"content-length", b"transfer-encoding", b"connection", b"upgrade",
            b"expect", b"te", b"trailer"}


@dataclass
class Gen:
    raw: bytes
    method: bytes
    path: bytes
    query: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    trailers: list[tuple[bytes, bytes]]
    keep_alive: bool


@st.composite
def requests(draw: st.DrawFn) -> Gen:
    method = draw(methods)
    path = b"/" + draw(path_chars)
    query = draw(st.one_of(st.just(b""), path_chars.map(lambda q: q.replace(b"/", b""))))
    version = draw(st.sampled_from([b"1.1", b"1.1", b"1.0"]))
    fields = [(n, v) for n, v in draw(st.lists(st.tuples(token, value), max_size=5))
              if n.lower() not in RESERVED]
    headers = [(n.lower(), v) for n, v in fields]
    lines = [n + b": " + v for n, v in fields]
    if version == b"1.1":
        lines.insert(draw(st.integers(0, len(lines))), b"Host: example.com")
        headers.insert(lines.index(b"Host: example.com"), (b"host", b"example.com"))
    close = draw(st.booleans()) if version == b"1.1" else not draw(st.booleans())
    if close and version == b"1.1":
        lines.append(b"Connection: close")
        headers.append((b"connection", b"close"))
    elif not close and version == b"1.0":
        lines.append(b"Connection: keep-alive")
        headers.append((b"connection", b"keep-alive"))
    body = draw(st.binary(max_size=60))
    trailers: list[tuple[bytes, bytes]] = []
    framing = draw(st.sampled_from(["none", "length", "chunked"]))
    if framing == "none":
        body = b""
        wire_body = b""
    elif framing == "length" or version == b"1.0":
        lines.append(b"Content-Length: %d" % len(body))
        headers.append((b"content-length", b"%d" % len(body)))
        wire_body = body
    else:
        lines.append(b"Transfer-Encoding: chunked")
        headers.append((b"transfer-encoding", b"chunked"))
        cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=4)))
        parts = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True) if b > a]
        ext = draw(st.sampled_from([b"", b";a", b";a=b", b" ; x=\"q s\""]))
        wire_body = b"".join(b"%x%s\r\n%s\r\n" % (len(p), ext, p) for p in parts) + b"0\r\n"
        trailer_fields = [(n, v) for n, v in draw(st.lists(st.tuples(token, value), max_size=2))
                          if n.lower() not in RESERVED]
        trailers = [(n.lower(), v) for n, v in trailer_fields]
        wire_body += b"".join(n + b": " + v + b"\r\n" for n, v in trailer_fields) + b"\r\n"
    target = path + (b"?" + query if query else b"")
    raw = (method + b" " + target + b" HTTP/" + version + b"\r\n"
           + b"".join(line + b"\r\n" for line in lines) + b"\r\n" + wire_body)
    return Gen(raw, method, path, query, headers, body, trailers, not close)


INTERESTING = [b" ", b"\r", b"\n", b"\r\n", b"\x00", b":", b"\t", b"0", b"a", b";", b",",
               b"\x7f", b"\xff", b"-", b"9", b"f", b"\r\n\r\n", b"Transfer-Encoding: chunked\r\n",
               b"Content-Length: 3\r\n", b"Host: h\r\n", b" HTTP/1.1", b"chunked",
               b"Connection: upgrade\r\nUpgrade: x\r\n", b" HTTP/1.0", b"CONNECT h:1",
               b"Expect: 100-continue\r\n", b"Connection: keep-alive\r\n", b"#", b"?", b"*"]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    raw = b"".join(g.raw for g in draw(st.lists(requests(), min_size=1, max_size=3)))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(raw)))
        op = draw(st.sampled_from(["insert", "delete", "replace", "dup"]))
        if op == "insert":
            raw = raw[:i] + draw(st.sampled_from(INTERESTING)) + raw[i:]
        elif op == "delete":
            raw = raw[:i] + raw[i + draw(st.integers(1, 3)):]
        elif op == "replace":
            raw = raw[:i] + draw(st.sampled_from(INTERESTING)) + raw[i + 1:]
        else:
            j = draw(st.integers(i, min(len(raw), i + 40)))
            raw = raw[:j] + raw[i:j] + raw[j:]
    return raw


def run(kind: str, pieces: list[bytes], eof: bool = True) -> list[Event]:
    p = make_parser(kind, LIMITS)
    events: list[Event] = []
    for piece in pieces:
        events += p.feed(piece)  # must never raise
    if eof:
        events += p.feed(b"")
    errors = [i for i, e in enumerate(events) if isinstance(e, ProtocolError)]
    assert errors in ([], [len(events) - 1]), events  # at most one error, and it is last
    return normalize(events)


def comparable(events: list[Event]) -> list[object]:
    """Events with error reasons dropped (their wording comes from the backend)."""
    return [e.status if isinstance(e, ProtocolError) else e for e in events]


def cut(raw: bytes, points: list[int]) -> list[bytes]:
    bounds = sorted({p % (len(raw) + 1) for p in points})
    return [raw[a:b] for a, b in zip([0, *bounds], [*bounds, len(raw)], strict=True)]


@SETTINGS
@given(st.lists(requests(), min_size=1, max_size=4), st.lists(st.integers(0, 10**6), max_size=8))
def test_valid_requests_roundtrip(gens: list[Gen], points: list[int]) -> None:
    raw = b"".join(g.raw for g in gens)
    served = []
    for g in gens:
        served.append(g)
        if not g.keep_alive:
            break
    for kind in ("httptools", "h11"):
        events = run(kind, cut(raw, points), eof=False)
        expected: list[Event] = []
        reqs = [e for e in events if isinstance(e, Request)]
        assert len(reqs) == len(served), events
        for g, r in zip(served, reqs, strict=True):
            assert (r.method, r.path, r.query, r.headers, r.keep_alive) == \
                (g.method, g.path, g.query, g.headers, g.keep_alive)
            expected.append(r)
            if g.body:
                expected.append(Data(g.body))
            expected.append(EndOfMessage(g.trailers))
        assert events == expected


@SETTINGS
@given(mutated(), st.lists(st.integers(0, 10**6), max_size=10))
def test_mutated_split_and_differential(raw: bytes, points: list[int]) -> None:
    whole = {k: comparable(run(k, [raw])) for k in ("httptools", "h11")}
    assert whole["httptools"] == whole["h11"]
    for kind in ("httptools", "h11"):
        assert comparable(run(kind, cut(raw, points))) == whole[kind]


@SETTINGS
@given(st.binary(max_size=200), st.lists(st.integers(0, 10**6), max_size=6))
def test_random_bytes_never_raise(raw: bytes, points: list[int]) -> None:
    a = comparable(run("httptools", cut(raw, points)))
    b = comparable(run("h11", cut(raw, points)))
    assert a == b
