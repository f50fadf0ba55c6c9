"""Response bytes: status line, header validation, Date/Server, framing, keep-alive."""

from __future__ import annotations

import email.utils
import time

import h11
import pytest

from reclusterd.http import (
    CONTINUE_100,
    FramingError,
    InvalidResponse,
    Request,
    Response,
    error_response,
    make_parser,
)
from reclusterd.http import response as response_mod


def req(method: bytes = b"GET", version: str = "1.1", keep_alive: bool | None = None,
        extra: bytes = b"") -> Request:
    conn = b"" if version == "1.1" else b""
    if keep_alive is False:
        conn = b"Connection: close\r\n"
    elif keep_alive and version == "1.0":
        conn = b"Connection: keep-alive\r\n"
    raw = (method + b" / HTTP/" + version.encode() + b"\r\nHost: x\r\n" + conn + extra
           + b"\r\n")
    ev = make_parser("httptools").feed(raw)[0]
    assert isinstance(ev, Request)
    return ev


def headers_of(head: bytes) -> dict[bytes, list[bytes]]:
    out: dict[bytes, list[bytes]] = {}
    for line in head.split(b"\r\n")[1:-2]:
        name, _, value = line.partition(b": ")
        out.setdefault(name.lower(), []).append(value)
    return out


def client_read(request_bytes: bytes, wire: bytes) -> tuple[h11.Response, bytes]:
    """Let h11 (a strict client) read what we wrote."""
    c = h11.Connection(h11.CLIENT)
    c.send(h11.Request(method=request_bytes, target="/", headers=[("Host", "x")]))
    c.send(h11.EndOfMessage())
    c.receive_data(wire)
    resp = c.next_event()
    assert isinstance(resp, h11.Response)
    body = b""
    while True:
        ev = c.next_event()
        if isinstance(ev, h11.Data):
            body += ev.data
        elif isinstance(ev, h11.EndOfMessage):
            return resp, body
        else:
            raise AssertionError(ev)


def test_status_line_and_default_headers() -> None:
    r = Response(req(), 200, [(b"Content-Type", b"text/plain"), (b"Content-Length", b"2")])
    assert r.head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert r.head.endswith(b"\r\n\r\n")
    h = headers_of(r.head)
    assert h[b"content-type"] == [b"text/plain"]
    assert h[b"content-length"] == [b"2"]
    assert h[b"server"] == [b"reclusterd"]
    assert len(h[b"date"]) == 1 and h[b"date"][0].endswith(b" GMT")
    assert b"connection" not in h and r.keep_alive
    assert r.body(b"ok") == b"ok" and r.end() == b"" and r.complete
    resp, body = client_read(b"GET", r.head + b"ok")
    assert resp.status_code == 200 and body == b"ok"


@pytest.mark.parametrize("status,phrase", [(404, b"Not Found"), (201, b"Created"),
                                           (503, b"Service Unavailable"), (418, b"I'm a Teapot")])
def test_reason_phrases(status: int, phrase: bytes) -> None:
    head = Response(req(), status, [(b"content-length", b"0")]).head
    assert head.startswith(b"HTTP/1.1 %d %s\r\n" % (status, phrase))


def test_custom_and_unknown_reason() -> None:
    assert Response(req(), 200, reason="Fine").head.startswith(b"HTTP/1.1 200 Fine\r\n")
    assert Response(req(), 299).head.startswith(b"HTTP/1.1 299 \r\n")
    with pytest.raises(InvalidResponse):
        Response(req(), 200, reason="a\r\nX-Injected: 1")
    with pytest.raises(InvalidResponse):
        Response(req(), 42)


@pytest.mark.parametrize("name,value", [
    (b"X-A", b"a\r\nX-Injected: 1"), (b"X-A", b"a\nb"), (b"X-A", b"a\rb"), (b"X-A", b"a\x00b"),
    (b"X A", b"v"), (b"X:A", b"v"), (b"", b"v"), (b"X\r\nA", b"v"), (b"X\xe9", b"v"),
    ("x-str", b"v"), (b"X-A", "str-value"),
])
def test_invalid_headers_raise(name: bytes, value: bytes) -> None:
    with pytest.raises(InvalidResponse):
        Response(req(), 200, [(name, value)])


def test_list_pairs_and_bytearray_accepted() -> None:
    for _ in range(2):  # second round hits the line cache
        head = Response(req(), 200, [[b"X-A", b"1"], (b"X-B", bytearray(b"2")),  # type: ignore[list-item]
                                     (b"content-length", b"0")]).head
        assert b"X-A: 1\r\n" in head and b"X-B: 2\r\n" in head
    with pytest.raises(InvalidResponse):
        Response(req(), 200, [[b"X-A", b"a\r\nb"]])  # type: ignore[list-item]


def test_tab_and_obs_text_values_allowed() -> None:
    head = Response(req(), 200, [(b"X-A", b"a\tb \xe9"), (b"content-length", b"0")]).head
    assert b"X-A: a\tb \xe9\r\n" in head


def test_chunked_when_no_length_on_11() -> None:
    r = Response(req(), 200, [(b"content-type", b"text/plain")])
    h = headers_of(r.head)
    assert h[b"transfer-encoding"] == [b"chunked"] and b"content-length" not in h
    wire = r.head + r.body(b"hello") + r.body(b"") + r.body(b" world") + r.end()
    assert r.complete and r.keep_alive
    resp, body = client_read(b"GET", wire)
    assert body == b"hello world"


def test_close_delimited_on_10() -> None:
    r = Response(req(version="1.0", keep_alive=True), 200, [])
    h = headers_of(r.head)
    assert b"transfer-encoding" not in h and b"content-length" not in h
    assert h[b"connection"] == [b"close"] and not r.keep_alive
    assert r.body(b"abc") == b"abc" and r.end() == b"" and r.complete


def test_http10_keep_alive_echo() -> None:
    r = Response(req(version="1.0", keep_alive=True), 200, [(b"content-length", b"1")])
    assert headers_of(r.head)[b"connection"] == [b"keep-alive"] and r.keep_alive
    r = Response(req(version="1.0"), 200, [(b"content-length", b"1")])
    assert headers_of(r.head)[b"connection"] == [b"close"] and not r.keep_alive


def test_connection_close_cases() -> None:
    r = Response(req(keep_alive=False), 200, [(b"content-length", b"0")])
    assert headers_of(r.head)[b"connection"] == [b"close"] and not r.keep_alive
    r = Response(req(), 200, [(b"content-length", b"0")], keep_alive=False)  # draining
    assert headers_of(r.head)[b"connection"] == [b"close"] and not r.keep_alive
    r = Response(req(), 200, [(b"content-length", b"0"), (b"Connection", b"close")])
    assert headers_of(r.head)[b"connection"] == [b"close"] and not r.keep_alive
    r = Response(req(), 200, [(b"content-length", b"0"), (b"Connection", b"keep-alive")])
    assert b"connection" not in headers_of(r.head) and r.keep_alive


@pytest.mark.parametrize("status", [204, 304, 100, 103])
def test_no_body_statuses(status: int) -> None:
    r = Response(req(), status, [(b"content-length", b"5")])
    h = headers_of(r.head)
    assert b"transfer-encoding" not in h
    assert (b"content-length" in h) == (status == 304)
    assert r.body(b"") == b"" and r.end() == b"" and r.complete and r.keep_alive
    r = Response(req(), status, [])
    with pytest.raises(FramingError, match="status has none"):
        r.body(b"hello")
    assert not r.keep_alive
    # HEAD: the app's (GET) body is dropped, never an error (RFC 9110 §9.3.2)
    r = Response(req(b"HEAD"), status, [])
    assert r.body(b"hello") == b"" and r.end() == b"" and r.keep_alive


def test_head_keeps_length_sends_no_body() -> None:
    r = Response(req(b"HEAD"), 200, [(b"content-length", b"1234")])
    h = headers_of(r.head)
    assert h[b"content-length"] == [b"1234"] and b"transfer-encoding" not in h
    assert r.body(b"x" * 1234) == b"" and r.end() == b"" and r.complete and r.keep_alive
    r = Response(req(b"HEAD"), 200, [])
    assert b"transfer-encoding" not in headers_of(r.head)
    assert r.body(b"abc") == b"" and r.end() == b""


def test_app_transfer_encoding_replaced() -> None:
    r = Response(req(), 200, [(b"Transfer-Encoding", b"chunked")])
    assert headers_of(r.head)[b"transfer-encoding"] == [b"chunked"]
    assert r.body(b"ab") == b"2\r\nab\r\n"
    r = Response(req(), 200, [(b"Transfer-Encoding", b"chunked"), (b"Content-Length", b"2")])
    h = headers_of(r.head)
    assert b"transfer-encoding" not in h and h[b"content-length"] == [b"2"]
    r = Response(req(version="1.0"), 200, [(b"Transfer-Encoding", b"chunked")])
    assert b"transfer-encoding" not in headers_of(r.head) and not r.keep_alive


def test_content_length_validation() -> None:
    for bad in (b"-1", b"1.5", b"abc", b"", b"1 2", b"99999999999999999999"):
        with pytest.raises(InvalidResponse):
            Response(req(), 200, [(b"content-length", bad)])
    with pytest.raises(InvalidResponse):
        Response(req(), 200, [(b"content-length", b"1"), (b"content-length", b"2")])
    r = Response(req(), 200, [(b"content-length", b"3"), (b"Content-Length", b"3")])
    assert headers_of(r.head)[b"content-length"] == [b"3"]


def test_content_length_cache_keeps_every_check() -> None:
    """Twice each: the second Response takes the cached (name, value) -> length path."""
    for _ in range(2):
        for bad in (b"+5", b"0x5", b"5_0", b"\xd9\xa5", b"5\r", b"1" * 19):
            with pytest.raises(InvalidResponse):
                Response(req(), 200, [(b"Content-Length", bad)])
        with pytest.raises(InvalidResponse):
            Response(req(), 200, [(b"Content-Length", b"7"), (b"Content-Length", b"8")])
        with pytest.raises(InvalidResponse):
            Response(req(), 200, [[b"Content-Length", b"7"],  # type: ignore[list-item]
                                  (b"Content-Length", b"8")])
        r = Response(req(), 200, [(b"Content-Length", b" 7 "), (b"content-length", b"7")])
        assert headers_of(r.head)[b"content-length"] == [b"7"]
        assert r.head.count(b"ength: ") == 1
        r = Response(req(), 200, [(b"Content-Length", b"0" * 18)])
        assert headers_of(r.head)[b"content-length"] == [b"0"]


def test_content_length_cache_bounded() -> None:
    for n in range(response_mod._LENGTHS_MAX + 50):
        Response(req(), 200, [(b"content-length", b"%d" % n)])
    assert len(response_mod._LENGTHS) <= response_mod._LENGTHS_MAX


@pytest.mark.parametrize("pieces", [[b"abcdef"], [b"abc", b"defgh"], [b"abcde", b"x"]])
def test_body_over_content_length_is_an_error(pieces: list[bytes]) -> None:
    r = Response(req(), 200, [(b"content-length", b"5")])
    out = b""
    with pytest.raises(FramingError, match="longer than its Content-Length"):
        for p in pieces:
            out += r.body(p)
    assert len(out) <= 5 and not r.keep_alive     # nothing past the declared length
    assert r.body(b"more") == b"" and r.end() == b"" and not r.complete


@pytest.mark.parametrize("pieces", [[], [b"abc"], [b"a", b"bcd"]])
def test_body_short_of_content_length_is_an_error(pieces: list[bytes]) -> None:
    r = Response(req(), 200, [(b"content-length", b"5")])
    for p in pieces:
        r.body(p)
    with pytest.raises(FramingError, match="shorter than its Content-Length"):
        r.end()
    assert not r.complete and not r.keep_alive
    assert r.end() == b"" and r.body(b"x") == b""


def test_app_date_and_server_kept() -> None:
    h = headers_of(Response(req(), 200, [(b"Date", b"yesterday"), (b"Server", b"mine"),
                                         (b"content-length", b"0")]).head)
    assert h[b"date"] == [b"yesterday"] and h[b"server"] == [b"mine"]


def test_date_cached_per_second(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[float] = []
    real = email.utils.formatdate

    def counting(t: float, usegmt: bool) -> str:
        calls.append(t)
        return real(t, usegmt=usegmt)

    monkeypatch.setattr("reclusterd.http.response.formatdate", counting)
    clock = [1_800_000_000.2]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    response_mod._date_second = -1
    a = response_mod.http_date()
    clock[0] += 0.5
    b = response_mod.http_date()
    assert a == b and len(calls) == 1
    clock[0] += 1
    c = response_mod.http_date()
    assert c != a and len(calls) == 2
    assert a == b"Date: Fri, 15 Jan 2027 08:00:00 GMT\r\n"
    response_mod._date_second = -1  # the next caller recomputes from the real clock


def test_101_switching_protocols() -> None:
    r = Response(req(extra=b"Connection: upgrade\r\nUpgrade: websocket\r\n"), 101,
                 [(b"Upgrade", b"websocket"), (b"Connection", b"Upgrade")])
    h = headers_of(r.head)
    assert h[b"connection"] == [b"Upgrade"] and h[b"upgrade"] == [b"websocket"]
    assert b"transfer-encoding" not in h and not r.keep_alive


def test_error_response_and_continue() -> None:
    raw = error_response(400)
    assert raw.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    h = headers_of(raw[:raw.index(b"\r\n\r\n") + 4])
    assert h[b"connection"] == [b"close"] and h[b"content-type"][0].startswith(b"text/plain")
    assert raw.endswith(b"\r\n\r\nBad Request\n")
    assert int(h[b"content-length"][0]) == len(b"Bad Request\n")
    head = error_response(400, head=True)
    assert head == raw[:-len(b"Bad Request\n")], "HEAD: the same head, no body"
    assert error_response(431).endswith(b"Request Header Fields Too Large\n")
    assert error_response(599).startswith(b"HTTP/1.1 599 Error\r\n")
    resp, body = client_read(b"GET", error_response(505))
    assert resp.status_code == 505 and body
    assert CONTINUE_100 == b"HTTP/1.1 100 Continue\r\n\r\n"


def test_date_and_server_piece_follows_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1_800_000_000.2]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    response_mod._date_second = -1  # not monkeypatch: undoing it would keep the fake date
    for want in (b"Fri, 15 Jan 2027 08:00:00 GMT", b"Fri, 15 Jan 2027 08:00:01 GMT"):
        for hdrs in ([], [(b"server", b"mine")]):
            h = headers_of(Response(req(), 200, [(b"content-length", b"0"), *hdrs]).head)
            assert h[b"date"] == [want]
            assert h[b"server"] == ([b"mine"] if hdrs else [b"reclusterd"])
        clock[0] += 1
    response_mod._date_second = -1  # the next caller recomputes from the real clock


def test_server_and_date_headers_can_be_turned_off() -> None:
    """--no-server-header / --no-date-header; an app's own Server/Date always wins."""
    from reclusterd.http.response import configure_headers, error_response

    r = req()
    try:
        for server, date in ((False, True), (True, False), (False, False)):
            configure_headers(server=server, date=date)
            for head in (Response(r, 200, []).head, error_response(400)):
                assert (b"\r\nServer: reclusterd\r\n" in head) == server, head
                assert (b"\r\nDate: " in head) == date, head
            head = Response(r, 200, [(b"Server", b"app")]).head
            assert b"Server: app\r\n" in head and (b"\r\nDate: " in head) == date
            head = Response(r, 200, [(b"Date", b"app-date")]).head
            assert head.count(b"Date:") == 1 and (b"Server: reclusterd" in head) == server
            head = Response(r, 200, [(b"Server", b"app"), (b"Date", b"app-date")]).head
            assert head.count(b"Server:") == 1 and head.count(b"Date:") == 1
    finally:
        configure_headers()
    head = Response(r, 200, []).head
    assert b"Server: reclusterd\r\n" in head and b"\r\nDate: " in head
