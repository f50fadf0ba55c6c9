"""Client connection I/O for the WSGI workers: a non-blocking socket plus its parser.

`Conn` keeps the parsed-but-unhandled events and the connection's rules
(`http.connection.H1Connection`: keep-alive, deadlines), and offers deadline-bounded blocking
helpers (read more, send all, sendfile, lingering close), so the handler and the
worker classes never deal with partial sends or EAGAIN themselves.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import ssl
import time
from collections import deque
from typing import Any, Protocol

from reclusterd.http.connection import H1Connection
from reclusterd.http.proxyproto import ProxyError, ProxyReader, refusal

RECV_SIZE = 65536
LINGER_BYTES = 256 * 1024
_POLLIN = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR
_POLLOUT = select.POLLOUT | select.POLLHUP | select.POLLERR
Environ = dict[str, Any]
_NOTHING = memoryview(b"")
PROXY_PEEK = 4096           # bytes peeked at for a PROXY header (v1 <= 107, v2 rarely > 600)
log = logging.getLogger("reclusterd.error")


class ClientGone(OSError):
    """The client closed, reset, timed out or sent a broken body: stop, close the connection."""


class BodyStalled(ClientGone):
    """The request body stopped arriving (no byte for the idle timeout): 408 or close
    (http.connection.body_stalled)."""


class ClientClock(Protocol):
    """The request's --timeout clock as the connection sees it (wsgi.response.Exchange):
    client I/O is progress, and waiting for the client is not app time (Meter)."""

    @property
    def beat(self) -> float: ...

    def progress(self) -> None: ...

    def waiting(self) -> None: ...


def wait_fd(fd: int, events: int, timeout: float) -> bool:
    """Block until fd is ready for `events` or `timeout` s pass (False; inf = no limit)."""
    p = select.poll()
    p.register(fd, events)
    return bool(p.poll(None if timeout == float("inf") else max(0.0, timeout) * 1000.0))


class Conn:
    """A client connection: non-blocking socket, parser, parsed-but-unhandled events."""

    __slots__ = ("sock", "fd", "h1", "events", "base_environ", "remote_addr", "timeout",
                 "busy", "closed", "tls", "polled", "clock", "defer", "out", "reply",
                 "park_until", "proxy", "tls_after")

    def __init__(self, sock: socket.socket, h1: H1Connection, base_environ: Environ,
                 remote_addr: str) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.h1 = h1
        self.events: deque[Any] = deque()     # parser events not handled yet
        self.base_environ = base_environ
        self.remote_addr = remote_addr
        self.timeout = h1.rules.io_timeout   # idle limit for each body read / response write
        self.busy = False
        self.closed = False
        self.polled = False             # registered in the worker's epoll set yet
        self.clock: ClientClock | None = None     # the request being served, if any
        self.tls = 1 if isinstance(sock, ssl.SSLSocket) else 0
        # Parked writes (thread worker): while `defer` is set, sendall() keeps what the
        # socket cannot take now in `out` instead of waiting; the worker parks the
        # connection (its response continuation in `reply`) until it is writable, or
        # until `park_until` (monotonic s) passes without progress.
        self.defer = False
        self.out: memoryview | None = None
        self.reply: Any = None
        self.park_until = 0.0
        self.proxy: ProxyReader | None = None     # a PROXY header still to read (first)
        self.tls_after: ssl.SSLContext | None = None    # TLS to start once it is read

    def expect_proxy(self, ctx: ssl.SSLContext | None) -> None:
        """--proxy-protocol: the PROXY header comes first, then TLS with `ctx` (if any).
        The drivers' handshake step (tls == 1) reads it: no other change in them."""
        self.proxy = ProxyReader()
        self.tls_after = ctx
        self.tls = 1

    def recv_now(self) -> int:
        """Non-blocking read fed to the parser: bytes read, 0 on EOF, -1 if nothing there."""
        try:
            data = self.sock.recv(RECV_SIZE)
            if self.tls:
                data += self._ssl_pending()
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return -1
        except OSError:
            data = b""
        events = self.h1.receive(data)
        if events:
            self.events.extend(events)
        return len(data)

    def handshake(self) -> int:
        """One non-blocking step of the server-side TLS handshake (the one both blocking
        drivers use): 0 when done (or no TLS), -1 if it failed, else the poll events to
        wait for before the next step."""
        if self.tls != 1:
            return 0
        if self.proxy is not None:
            want = self._proxy_step()
            if want:
                return want
            if self.tls != 1:
                return 0
        sock = self.sock
        assert isinstance(sock, ssl.SSLSocket)
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            return _POLLIN
        except ssl.SSLWantWriteError:
            return _POLLOUT
        except (OSError, ValueError):
            return -1
        self.tls = 2
        return 0

    def _proxy_step(self) -> int:
        """Read (never past) the PROXY header: 0 once read (the client address taken from
        it, TLS wrapped), -1 refused (logged once), else poll events to wait for."""
        sock = self.sock
        reader = self.proxy
        assert reader is not None
        try:
            peeked = sock.recv(PROXY_PEEK, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return _POLLIN
        except OSError:
            peeked = b""
        try:
            n, info = reader.step(peeked)
            if n:
                sock.recv(n)    # bytes already peeked: all there
        except (ProxyError, OSError) as e:
            log.log(*refusal(self.remote_addr, e if isinstance(e, ProxyError) else str(e)))
            return -1
        if info is None:
            return _POLLIN
        self.proxy = None
        if info.client is not None:
            self.remote_addr = info.client[0]
            self.base_environ["REMOTE_ADDR"] = info.client[0]
            self.base_environ["REMOTE_PORT"] = str(info.client[1])
        ctx = self.tls_after
        if ctx is None:
            self.tls = 0
            return 0
        wrapped = tls_wrap(ctx, sock)
        if wrapped is None:
            return -1
        self.sock = wrapped
        return 0

    def _ssl_pending(self) -> bytes:
        sock = self.sock
        assert isinstance(sock, ssl.SSLSocket)
        more = b""
        while sock.pending():
            more += sock.recv(sock.pending())
        return more

    def read_more(self, timeout: float | None = None) -> None:
        """Wait up to the idle timeout for request body bytes and feed them; ClientGone on
        EOF, BodyStalled on timeout."""
        limit = self.timeout if timeout is None else timeout
        while True:
            n = self.recv_now()
            if n > 0:
                return
            if n == 0:
                raise ClientGone("client closed the connection")
            if not self.wait(_POLLIN, limit):
                raise BodyStalled("timed out reading the request body")

    def wait(self, events: int, limit: float) -> bool:
        """The one blocking wait for the client during a request (body bytes, room to
        write, the body after 100 Continue): True once the socket is ready, False after
        `limit` s (the client deadline; inf = none). It is client time, not app time: the
        request's --timeout clock is paused meanwhile (Meter.waiting, renewed each `beat`
        so the heartbeats go on from this thread, sync's only one) and restarts when the
        wait ends, however it ends."""
        clock = self.clock
        if clock is None:
            return wait_fd(self.fd, events, limit)
        deadline = time.monotonic() + limit
        try:
            while True:
                clock.waiting()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                if wait_fd(self.fd, events, min(remaining, clock.beat)):
                    return True
        finally:
            clock.progress()

    def sendall(self, data: bytes) -> None:
        """Write everything (waiting for room up to the idle timeout each time); while
        `defer` is set, what does not fit now is left in `out` (see flush)."""
        if self.out is not None:        # never overtake parked bytes
            rest, self.out = self.out, None
            self._send_rest(rest)
        try:
            n = self.sock.send(data)
        except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            n = 0
        except OSError as e:
            raise ClientGone(str(e)) from e
        if n != len(data):
            if self.defer:
                self.out = memoryview(data)[n:]
                return
            self._send_rest(memoryview(data)[n:])

    def flush(self) -> bool:
        """Send the parked bytes (`out`) without waiting: True once none are left."""
        view = self.out
        while view:
            try:
                n = self.sock.send(view)
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError,
                    ssl.SSLWantReadError):
                self.out = view
                return False
            except OSError as e:
                raise ClientGone(str(e)) from e
            view = view[n:]
            if self.clock is not None:
                self.clock.progress()
        self.out = None
        return True

    def _send_rest(self, view: memoryview) -> None:
        while view:
            if not self.wait(_POLLOUT, self.timeout):
                raise ClientGone("timed out writing to the client")
            try:
                n = self.sock.send(view)
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError,
                    ssl.SSLWantReadError):
                continue
            except OSError as e:
                raise ClientGone(str(e)) from e
            view = view[n:]

    def sendfile(self, fileno: int, offset: int, count: int) -> int:
        """os.sendfile up to `count` bytes from `offset`; returns bytes sent (short at EOF,
        or, with `defer`, when the socket is full: then `out` is set, empty)."""
        sent = 0
        while sent < count:
            try:
                n = os.sendfile(self.fd, fileno, offset + sent, count - sent)
            except (BlockingIOError, InterruptedError):
                if self.defer:
                    self.out = _NOTHING     # wait for room (flush() then says yes)
                    break
                if not self.wait(_POLLOUT, self.timeout):
                    raise ClientGone("timed out writing to the client") from None
                continue
            except OSError as e:
                raise ClientGone(str(e)) from e
            if n == 0:
                break
            sent += n
            if self.clock is not None:
                self.clock.progress()
        return sent

    def close(self, linger: bool = False) -> None:
        """Close; with `linger`, first discard what the client already sent, so the kernel
        sends FIN, not RST (an RST can destroy the response before the client reads it)."""
        self.closed = True
        if self.proxy is not None and self.proxy.buffered:
            # closed by its deadline mid-header (a stalled or truncated PROXY header)
            log.log(*refusal(self.remote_addr, "PROXY header not complete in time"))
            self.proxy = None
        sock = self.sock
        try:
            # Nothing unread (the usual case): a plain close sends FIN already.
            if linger and (self.tls or sock.recv(65536, socket.MSG_DONTWAIT)):
                sock.shutdown(socket.SHUT_WR)
                got = 0
                while got < LINGER_BYTES:
                    data = sock.recv(65536)
                    if not data:
                        break
                    got += len(data)
        except (OSError, ValueError):
            pass
        try:
            sock.close()
        except OSError:
            pass


def tls_wrap(ctx: ssl.SSLContext | None, sock: socket.socket) -> socket.socket | None:
    """Server-side TLS wrap of an accepted socket (handshake later, non-blocking);
    `sock` itself without a context, None (socket closed) if wrapping failed."""
    if ctx is None:
        return sock
    try:
        return ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
    except (OSError, ValueError):
        sock.close()
        return None
