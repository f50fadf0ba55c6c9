"""The raw-frame HTTP/2 client of tests.support.h2_peer over a real socket, against a
running server (h2c prior knowledge from a trusted peer).

`SocketPeer` keeps Peer's HPACK encoder, frame building and bookkeeping (frames,
responses, bodies, status/goaway/resets) but sends octets on a TCP connection and reads
the server's frames with `until(condition)` (a deadline, never a sleep). Writes after
the server closed (a GOAWAY case) are swallowed: what the server sent is what counts.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from hyperframe.frame import Frame, PingFrame

from tests.support.h2_peer import ACK, PING, PREFACE, SETTINGS, Peer, frame, settings

__all__ = ["SocketPeer"]


class SocketPeer(Peer):
    """One client connection to 127.0.0.1:`port`; Peer's helpers, real bytes."""

    def __init__(self, port: int, handshake: bool = True, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.timeout = timeout
        self.client_state()
        self.eof = False
        self.pings = 0
        if handshake:
            self.send(PREFACE + settings() + frame(SETTINGS, ACK, 0))

    def send(self, data: bytes) -> list:  # type: ignore[type-arg, override]
        """Write `data` (nothing happens once the server has closed)."""
        if not self.eof:
            try:
                self.sock.sendall(data)
            except OSError:      # reset or broken pipe: the server ended the connection
                pass
        return []

    def read(self) -> list[Frame]:
        """Whatever the server sent that is already here (no waiting)."""
        self.until(lambda: True)
        return []

    def until(self, done: Callable[[], object], timeout: float | None = None) -> bool:
        """Read frames until `done()` is true, the server closes, or the deadline passes;
        `done()`'s final value as a bool."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not done():
            left = deadline - time.monotonic()
            if self.eof or left <= 0:
                return bool(done())
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                data = b""
            if not data:
                self.eof = True
            else:
                self.take(data)
        return True

    def sync(self) -> bool:
        """Send a PING and read until its ACK: the server has handled all sent before it
        (False: it closed first)."""
        self.pings += 1
        payload = b"sync%04d" % self.pings
        self.send(frame(PING, 0, 0, payload))
        return self.until(lambda: any(isinstance(f, PingFrame) and "ACK" in f.flags
                                      and f.opaque_data == payload for f in self.frames))

    def closed(self) -> bool:
        """The server closed the connection (read until EOF or the deadline)."""
        return self.until(lambda: self.eof)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> SocketPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
