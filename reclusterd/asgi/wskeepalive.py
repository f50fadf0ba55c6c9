"""WebSocket keep-alive: a ping every --ws-ping-interval s, the pong due within --ws-ping-timeout.

RFC 6455 §5.5.2/5.5.3: a Ping must be answered by a Pong with the same payload as
soon as practical. A peer that does not answer in time is gone (a dead NAT
mapping, a suspended laptop): the session is told to fail the connection, as the
websockets library (Uvicorn's default) does with close code 1011.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["KeepAlive"]


class KeepAlive:
    """The ping timer of one WebSocket; `send_ping(payload)` writes a Ping frame,
    `timed_out()` fails the connection. Intervals in seconds; 0 = off."""

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float, timeout: float,
                 send_ping: Callable[[bytes], None], timed_out: Callable[[], None]) -> None:
        self.loop = loop
        self.interval = interval
        self.timeout = timeout
        self.send_ping = send_ping
        self.timed_out = timed_out
        self.count = 0
        self.expected: bytes | None = None    # payload of the ping awaiting its pong
        self.timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """The connection is open: the first ping goes out `interval` s from now."""
        if self.interval > 0:
            self.timer = self.loop.call_later(self.interval, self._ping)

    def _ping(self) -> None:
        self.count += 1
        payload = self.expected = b"ka%d" % self.count
        self.send_ping(payload)
        if self.timeout > 0:
            self.timer = self.loop.call_later(self.timeout, self._expired)
        else:
            self.timer = self.loop.call_later(self.interval, self._ping)

    def _expired(self) -> None:
        self.timer = None
        self.timed_out()

    def pong(self, payload: bytes) -> None:
        """A Pong arrived: if it answers our ping, the next ping is due in `interval` s."""
        if self.expected is None or payload != self.expected:
            return       # unsolicited (§5.5.3 allows it) or a stale answer: not ours
        self.expected = None
        self.stop()
        self.timer = self.loop.call_later(self.interval, self._ping)

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
