"""--proxy-protocol on the asyncio worker: read a connection's PROXY header before its
transport reads a byte, then hand the connection back (plain) or start TLS on it.

The transport is paused at once (connection_made); the header is read off a duplicate
of its socket descriptor with MSG_PEEK, never past its end (http.proxyproto.ProxyReader),
so what follows (an HTTP request, a TLS ClientHello) stays in the kernel for the
transport, or for `loop.start_tls`, to read. asyncio and uvloop both refuse a reader on
a descriptor a transport owns, hence the duplicate (the same socket underneath).
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable

from reclusterd.http.proxyproto import ProxyError, ProxyInfo, ProxyReader

__all__ = ["ProxyRead"]

PEEK = 4096
Done = Callable[[ProxyInfo | None, ProxyError | str], None]


class ProxyRead:
    """Reads one header; calls `done(info, "")` once read, `done(None, why)` if refused.
    While `holding` (until the protocol has its final transport), bytes delivered to the
    protocol (after start_tls, before its result is in) are kept in `held`."""

    __slots__ = ("loop", "raw", "reader", "done", "held", "reading", "holding")

    def __init__(self, loop: asyncio.AbstractEventLoop, transport: asyncio.Transport,
                 done: Done) -> None:
        self.loop = loop
        self.done = done
        self.reader = ProxyReader()
        self.held: list[bytes] = []
        self.holding = True
        transport.pause_reading()
        sock = transport.get_extra_info("socket")
        self.raw: socket.socket | None = socket.socket(fileno=os.dup(sock.fileno()))
        self.raw.setblocking(False)
        loop.add_reader(self.raw.fileno(), self._readable)
        self.reading = True

    def _readable(self) -> None:
        raw = self.raw
        if raw is None or not self.reading:
            return
        try:
            peeked = raw.recv(PEEK, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            peeked = b""
        try:
            n, info = self.reader.step(peeked)
            if n:
                raw.recv(n)         # already peeked: all there
        except (ProxyError, OSError) as e:
            self.stop()
            self.done(None, e if isinstance(e, ProxyError) else str(e))
            return
        if info is not None:
            self.stop()
            self.done(info, "")

    def stop(self) -> None:
        """Stop reading (idempotent): the header is in, or refused. The duplicate stays
        open until `close`: libuv (uvloop) forgets a descriptor's poll registration
        lazily, and a duplicate closed at once would let the next connection's duplicate
        (the same number) inherit the stale one, and never be woken."""
        if self.reading:
            self.reading = False
            assert self.raw is not None
            self.loop.remove_reader(self.raw.fileno())

    def close(self) -> None:
        """The connection is gone: stop, and close the duplicate."""
        self.stop()
        raw, self.raw = self.raw, None
        if raw is not None:
            raw.close()
