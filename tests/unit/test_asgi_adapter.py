"""The ASGI adapter (asgi/protocol.py + cycle.py) with no Worker and no socket: bytes in
through a fake transport, the scope and the bytes written out checked."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from reclusterd import config
from reclusterd.asgi.protocol import HttpProtocol
from reclusterd.asgi.state import ServerState
from reclusterd.logging import AccessLog
from reclusterd.meter import Meter


class Transport(asyncio.Transport):
    """Collects what the protocol writes; records close/EOF."""

    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False
        self.eof = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.out += data

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def abort(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("10.1.2.3", 4567), "sockname": ("127.0.0.1", 8000)}.get(
            name, default)


def serve(app: Any, raw: bytes, *opts: str) -> tuple[Transport, Meter]:
    """Feed `raw` to a fresh connection, run the loop until the app is done."""
    cfg = config.load(["x:app", *opts], {})
    loop = asyncio.new_event_loop()
    try:
        meter = Meter()
        state = ServerState(app, cfg, meter, loop, False, None, AccessLog(None), ws=False)
        proto = HttpProtocol(state)
        t = Transport()
        proto.connection_made(t)
        proto.data_received(raw)

        async def settle() -> None:
            for _ in range(50):
                await asyncio.sleep(0)

        loop.run_until_complete(settle())
        return t, meter
    finally:
        loop.close()


def hello(seen: dict[str, Any] | None = None) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if seen is not None:
            seen.update(scope)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"hi"})
    return app


@pytest.mark.parametrize("parser", ["httptools", "h11"])
def test_scope_and_bytes(parser: str) -> None:
    seen: dict[str, Any] = {}
    t, meter = serve(hello(seen), b"GET /a%20b?q=1 HTTP/1.1\r\nHost: h\r\n\r\n",
                     "--http", parser)
    assert seen["path"] == "/a b" and seen["raw_path"] == b"/a%20b"
    assert seen["query_string"] == b"q=1" and seen["client"] == ("10.1.2.3", 4567)
    assert seen["server"] == ("127.0.0.1", 8000) and seen["scheme"] == "http"
    assert seen["http_version"] == "1.1" and seen["method"] == "GET"
    out = bytes(t.out)
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and out.endswith(b"\r\n\r\nhi")
    assert b"\r\nDate: " in out and b"\r\nServer: reclusterd\r\n" in out
    assert b"Connection: close" not in out and not t.closed
    assert meter.requests == 1 and not meter.in_flight


def test_keep_alive_zero_says_close() -> None:
    t, _ = serve(hello(), b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", "--keep-alive", "0")
    assert b"\r\nConnection: close\r\n" in bytes(t.out) and (t.closed or t.eof)


def test_pipelined_requests_are_answered_in_order() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = scope["path"].encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    t, meter = serve(app, b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /22 HTTP/1.1\r\nHost: h\r\n\r\n")
    out = bytes(t.out)
    assert out.index(b"\r\n\r\n/1") < out.index(b"\r\n\r\n/22") and meter.requests == 2


def test_unread_expect_continue_body_makes_the_response_say_close() -> None:
    t, _ = serve(hello(), b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
                          b"Expect: 100-continue\r\n\r\n")
    out = bytes(t.out)
    assert b"100 Continue" not in out and b"\r\nConnection: close\r\n" in out


def test_framing_error_gets_400_and_close() -> None:
    t, meter = serve(hello(), b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: x\r\n\r\n")
    assert bytes(t.out).startswith(b"HTTP/1.1 400 ") and (t.closed or t.eof)
    assert meter.requests == 0


def test_over_capacity_gets_503() -> None:
    cfg = config.load(["x:app", "--worker-connections", "1"], {})
    loop = asyncio.new_event_loop()
    try:
        state = ServerState(hello(), cfg, Meter(), loop, False, None, None, ws=False)
        first, second = Transport(), Transport()
        HttpProtocol(state).connection_made(first)
        refused = HttpProtocol(state)
        refused.connection_made(second)
        assert not first.out and not second.out       # answered on its first bytes
        refused.data_received(b"GET / HTTP/1.1\r\n")
        assert bytes(second.out).startswith(b"HTTP/1.1 503 ")
        assert b"\r\nConnection: close\r\n" in bytes(second.out) and second.eof
    finally:
        loop.close()
