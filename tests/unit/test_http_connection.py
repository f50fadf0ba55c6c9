"""http/connection.py: the rules of an HTTP/1 connection, driven with a fake clock."""

from __future__ import annotations

import pytest

from reclusterd.http import Request, make_parser
from reclusterd.http.connection import (
    CLOSE,
    DRAIN_IDLE,
    DRAIN_LIMIT,
    FOREVER,
    IO_TIMEOUT,
    NOTHING,
    TIMEOUT,
    ConnectionRules,
    H1Connection,
    body_allows_reuse,
    busy_answer,
    over_capacity,
)

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def conn(keep_alive: float = 5, header: float = 20, persistent: bool = True,
         kind: str = "httptools") -> tuple[H1Connection, Clock]:
    clock = Clock()
    rules = ConnectionRules(keep_alive, header, persistent)
    return H1Connection(rules, make_parser(kind), clock), clock


def request(c: H1Connection, raw: bytes = GET) -> Request:
    events = c.receive(raw)
    req = events[0]
    assert isinstance(req, Request)
    c.start_request()
    return req


@pytest.mark.parametrize("kind", ["httptools", "h11"])
def test_new_connection_waits_header_timeout_for_its_first_byte(kind: str) -> None:
    c, clock = conn(header=7, kind=kind)
    assert c.next_deadline() == (107.0, CLOSE)


def test_header_timeout_zero_is_off_everywhere() -> None:
    c, clock = conn(header=0)
    assert c.next_deadline() == (FOREVER, CLOSE)
    clock.now += 1
    assert c.receive(b"GET / HT") == []
    assert c.next_deadline() == (FOREVER, NOTHING)


@pytest.mark.parametrize("kind", ["httptools", "h11"])
def test_whole_head_within_header_timeout_of_its_first_byte(kind: str) -> None:
    c, clock = conn(header=3, kind=kind)
    clock.now = 110.0
    assert c.receive(b"GET / HTTP/1.1\r\n") == []
    assert c.next_deadline() == (113.0, TIMEOUT)
    clock.now = 112.5
    assert c.receive(b"Host: x\r\n") == []
    assert c.next_deadline() == (113.0, TIMEOUT), "the clock runs from the first byte"
    events = c.receive(b"\r\n")
    assert isinstance(events[0], Request) and c.head_start == 0.0


def test_no_deadline_while_the_app_runs() -> None:
    c, clock = conn()
    request(c)
    assert c.next_deadline() == (FOREVER, NOTHING)
    clock.now += 1000
    assert c.next_deadline() == (FOREVER, NOTHING)


def test_keep_alive_idle_deadline_after_a_response() -> None:
    c, clock = conn(keep_alive=5)
    request(c)
    clock.now = 200.0
    assert c.response_done(True)
    assert c.next_deadline() == (205.0, CLOSE)


def test_keep_alive_zero_means_one_request_and_say_so() -> None:
    c, _ = conn(keep_alive=0)
    assert not c.reusable, "the response head must say Connection: close"
    request(c)
    assert not c.response_done(True)


def test_sync_rules_close_after_each_response() -> None:
    c, _ = conn(keep_alive=5, persistent=False)
    assert not c.reusable
    request(c)
    assert not c.response_done(True)


def test_response_that_said_close_closes() -> None:
    c, _ = conn()
    request(c)
    assert not c.response_done(False)


def test_pipelined_partial_head_starts_its_clock_when_the_response_is_done() -> None:
    c, clock = conn(header=4)
    events = c.receive(GET + b"GET /2 HT")
    assert len([e for e in events if isinstance(e, Request)]) == 1
    c.start_request()
    clock.now = 150.0
    assert c.response_done(True)
    assert c.next_deadline() == (154.0, TIMEOUT)


def test_drain_closes_idle_connections_soon_and_says_close() -> None:
    c, clock = conn(keep_alive=30)
    request(c)
    assert c.response_done(True)
    clock.now += 0.2
    c.begin_drain(5)
    assert not c.reusable
    assert c.next_deadline() == (100.0 + DRAIN_IDLE, CLOSE)


def test_drain_gives_a_head_under_way_the_grace() -> None:
    c, clock = conn(header=20)
    c.receive(b"GET / HTTP/1.1\r\n")
    c.begin_drain(2)
    assert c.next_deadline() == (102.0, TIMEOUT)
    fresh, _ = conn(header=20)
    fresh.begin_drain(2)
    assert fresh.next_deadline() == (102.0, CLOSE)


def test_drain_with_header_timeout_off_still_ends() -> None:
    c, _ = conn(header=0)
    c.receive(b"GET / HT")
    c.begin_drain(3)
    assert c.next_deadline() == (103.0, CLOSE)


def test_begin_drain_twice_keeps_the_first_deadline() -> None:
    c, clock = conn()
    c.begin_drain(3)
    clock.now += 2
    c.begin_drain(3)
    assert c.drain_until == 103.0


@pytest.mark.parametrize(("keep_alive", "graceful", "want"), [
    (5, 30, 5), (0, 30, DRAIN_IDLE), (60, 10, 10), (0.1, 30, DRAIN_IDLE)])
def test_drain_grace(keep_alive: float, graceful: float, want: float) -> None:
    assert ConnectionRules(keep_alive, 20).drain_grace(graceful) == want


def test_io_timeout_follows_header_timeout_or_default_when_off() -> None:
    assert ConnectionRules(5, 7).io_timeout == 7
    assert ConnectionRules(5, 0).io_timeout == IO_TIMEOUT


def _req(raw: bytes) -> Request:
    ev = make_parser().feed(raw)[0]
    assert isinstance(ev, Request)
    return ev


def test_body_allows_reuse() -> None:
    cl = _req(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (DRAIN_LIMIT * 4))
    assert body_allows_reuse(cl, 0, True, False, False)
    assert not body_allows_reuse(cl, 0, True, True, False), "a broken body closes"
    assert not body_allows_reuse(cl, 0, False, False, False), "too much left to skip"
    assert body_allows_reuse(cl, DRAIN_LIMIT * 3, False, False, False)
    assert not body_allows_reuse(cl, DRAIN_LIMIT * 3, False, False, True), "100 pending"
    chunked = _req(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert not body_allows_reuse(chunked, 0, False, False, False), "unknown rest: close"
    assert body_allows_reuse(chunked, 0, True, False, False)


def test_over_capacity() -> None:
    assert not over_capacity(9, 10) and over_capacity(10, 10)
    assert not over_capacity(0, 0) and over_capacity(1, 0)


@pytest.mark.parametrize("first", [b"", b"G", b"GET / HTTP/1.1\r\n", b"POST /x", b"HEADX"])
def test_busy_answer_has_a_body(first: bytes) -> None:
    busy = busy_answer(first)
    assert busy.startswith(b"HTTP/1.1 503 ") and b"Connection: close" in busy
    assert busy.endswith(b"\r\n\r\nService Unavailable\n")


@pytest.mark.parametrize("first", [b"HEAD / HTTP/1.1\r\n", b"HEAD ", b"HE", b"H"])
def test_busy_answer_to_head_has_no_body(first: bytes) -> None:
    """RFC 9110 §9.3.2, as every answer the server makes itself."""
    busy = busy_answer(first)
    assert busy.startswith(b"HTTP/1.1 503 ") and busy.endswith(b"\r\n\r\n")
    assert b"Content-Length: 20" in busy


def test_eof_mid_head_gives_the_parser_error() -> None:
    c, _ = conn()
    c.receive(b"GET / HTTP/1.1\r\nHo")
    events = c.receive(b"")
    assert events == [] or type(events[0]).__name__ == "ProtocolError"
