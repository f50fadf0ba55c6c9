"""asgi.websocket.MessageSizeLimit and asgi.wskeepalive.KeepAlive without sockets."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, TextMessage
from wsproto.frame_protocol import FrameProtocol, Opcode

from reclusterd.asgi.websocket import MessageSizeLimit
from reclusterd.asgi.wskeepalive import KeepAlive


def server(limit: int) -> Connection:
    return Connection(ConnectionType.SERVER, [MessageSizeLimit(limit)])


def header_only(opcode: Opcode, length: int, fin: bool = True) -> bytes:
    """A masked client frame header announcing `length` bytes, with no payload after it."""
    b0 = (0x80 if fin else 0) | int(opcode)
    b1 = 0x80 | (126 if length < 65536 else 127)           # masked, extended length (§5.2)
    ext = length.to_bytes(2 if length < 65536 else 8, "big")
    return bytes([b0, b1]) + ext + b"\x00\x00\x00\x00"


@pytest.mark.parametrize("length", [11, 65536, 2 ** 40])
def test_header_over_the_limit_fails_before_its_payload(length: int) -> None:
    ws = server(10 if length == 11 else 1000)
    ws.receive_data(header_only(Opcode.BINARY, max(length, 126)))
    events = list(ws.events())
    assert isinstance(events[-1], CloseConnection) and events[-1].code == 1009


def test_fragments_are_summed_per_message_and_reset_after_it() -> None:
    client = FrameProtocol(client=True, extensions=[])
    ws = server(10)
    ws.receive_data(client.send_data(b"123456", fin=True) + client.send_data(b"123456", fin=True))
    got = [e for e in ws.events() if isinstance(e, BytesMessage)]
    assert b"".join(e.data for e in got) == b"123456" * 2      # two messages of 6: fine
    ws.receive_data(client.send_data("123456", fin=False) + client.send_data("123456", fin=True))
    events = list(ws.events())
    assert any(isinstance(e, TextMessage) for e in events)      # the first part arrived
    assert isinstance(events[-1], CloseConnection) and events[-1].code == 1009


def test_control_frames_do_not_count() -> None:
    client = FrameProtocol(client=True, extensions=[])
    ws = server(4)
    ws.receive_data(client.ping(b"x" * 100) + client.send_data(b"1234", fin=True))
    assert not any(isinstance(e, CloseConnection) for e in ws.events())


class FakeLoop:
    """call_later recorded, fired by the test: no clock, no sleeping."""

    def __init__(self) -> None:
        self.timers: list[tuple[float, Callable[[], None], Handle]] = []

    def call_later(self, delay: float, cb: Callable[[], None]) -> Handle:
        h = Handle()
        self.timers.append((delay, cb, h))
        return h

    def fire(self) -> float:
        """Run the only live timer; its delay."""
        live = [t for t in self.timers if not t[2].cancelled]
        assert len(live) == 1, live
        self.timers.clear()
        live[0][1]()
        return live[0][0]


class Handle:
    cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


def keepalive(interval: float, timeout: float) -> tuple[KeepAlive, FakeLoop, list[bytes],
                                                         list[bool]]:
    loop, pings, expired = FakeLoop(), [], []
    ka = KeepAlive(loop, interval, timeout, pings.append,  # type: ignore[arg-type]
                   lambda: expired.append(True))
    return ka, loop, pings, expired


def test_answered_pings_go_on_and_a_missing_pong_times_out() -> None:
    ka, loop, pings, expired = keepalive(20, 5)
    ka.start()
    assert loop.fire() == 20 and len(pings) == 1          # ping, pong due in 5
    ka.pong(b"not ours")                                   # unsolicited: ignored
    ka.pong(pings[0])
    assert loop.fire() == 20 and len(pings) == 2           # next ping 20 s after the pong
    assert loop.fire() == 5 and expired == [True]          # no pong: timed out


def test_no_timeout_keeps_pinging_and_zero_interval_is_off() -> None:
    ka, loop, pings, expired = keepalive(3, 0)
    ka.start()
    for n in range(1, 4):
        assert loop.fire() == 3 and len(pings) == n
    assert not expired
    ka.stop()
    assert all(h.cancelled for _, _, h in loop.timers)
    ka, loop, pings, _ = keepalive(0, 5)
    ka.start()
    assert not loop.timers
