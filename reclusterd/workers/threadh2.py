"""HTTP/2 on the thread worker: when a connection switches, and the HTTP/2 connections
it then has (wsgi.h2conn drives each; their streams' WSGI calls run on the pool through
workers.tasks).

A connection switches (else it stays HTTP/1 exactly as before):
- on TLS, when the handshake chose ALPN h2 (offered when --http-protocols has h2);
- on a plain bind, from a peer in --forwarded-allow-ips, with --http2-cleartext
  prior-knowledge/both: when its first octets are the client preface (RFC 9113 §3.3);
  upgrade/both: on an HTTP/1.1 request with `Upgrade: h2c` and HTTP2-Settings
  (h2rules.h2c_settings), whose body (up to one stream window) is read first and which
  is answered on stream 1 after the 101 (RFC 7540 §3.2).
"""

from __future__ import annotations

import ssl
import threading
import time
from typing import TYPE_CHECKING

from reclusterd.asgi.state import h2_settings
from reclusterd.http import CONTINUE_100, Data, EndOfMessage, Limits, Request
from reclusterd.http.h2 import H2Connection, H2Event
from reclusterd.http.h2rules import h2c_settings, preface_state
from reclusterd.workers.tasks import TaskQueue
from reclusterd.wsgi.conn import RECV_SIZE, ClientGone, Conn
from reclusterd.wsgi.h2conn import H2Conn

if TYPE_CHECKING:
    import select
    from collections.abc import Callable

    from reclusterd.config import Config
    from reclusterd.wsgi.handler import WSGIHandler

__all__ = ["H2Switch"]

_WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError,
                ssl.SSLWantWriteError)


class H2Switch:
    """The thread worker's HTTP/2 side: switch decisions and the open HTTP/2 connections
    (`conns`, guarded by the worker's `lock`)."""

    def __init__(self, cfg: Config, handler: WSGIHandler, ep: select.epoll,
                 lock: threading.Lock, h1conns: dict[int, Conn],
                 close: Callable[[Conn], None], secure: bool,
                 wake: Callable[[], None]) -> None:
        self.settings = h2_settings(cfg)
        self.handler = handler
        self.ep = ep
        self.lock = lock
        self.h1conns = h1conns      # the worker's HTTP/1 table (a switched one leaves it)
        self.close = close          # the worker's close of an HTTP/1 connection
        self.wake = wake
        self.alpn = secure and "h2" in cfg.http_protocols
        self.limits = Limits(cfg.limit_request_line, cfg.limit_request_fields,
                             cfg.limit_request_field_size, cfg.limit_request_body)
        self.grace = float(cfg.graceful_timeout)
        proxy = handler.environs.proxy      # --forwarded-allow-ips (None: nobody)
        self.trust = proxy
        mode = str(cfg.http2_cleartext)
        plain = not secure and proxy is not None
        self.prior = plain and mode in ("prior-knowledge", "both")
        self.upgrade = plain and mode in ("upgrade", "both")
        self.tasks = TaskQueue(ep)
        self.conns: dict[int, H2Conn] = {}
        self.fresh: set[int] = set()            # plain connections to sniff for the preface
        self.held: dict[int, bytes] = {}        # a preface's first octets, still too few
        self.draining = False

    def trusted(self, conn: Conn) -> bool:
        return self.trust is not None and self.trust.trusted(conn.remote_addr or None)

    # -- switching ---------------------------------------------------------------------
    def accepted(self, conn: Conn) -> None:
        """A new connection (its fd may be a closed one's: forget that one's state)."""
        self.held.pop(conn.fd, None)
        if self.prior or self.alpn:
            self.fresh.add(conn.fd)
        else:
            self.fresh.discard(conn.fd)

    def first_read(self, conn: Conn) -> bool | None:
        """A fresh connection's first turn (after its TLS handshake): True if it switched
        to HTTP/2, None to wait for more octets, False to serve it as HTTP/1."""
        if conn.tls:
            self.fresh.discard(conn.fd)
            took: bool | None = self.alpn_h2(conn)
        else:
            took = self.sniff(conn)
        if took:
            self.switch(conn, None)
        return took

    def upgraded(self, conn: Conn, req: Request) -> bool:
        """`Upgrade: h2c`: True if the connection switched (or closed: the client left
        while its body was read), False to serve the request as HTTP/1."""
        try:
            upgrade = self.upgrade_request(conn, req)
        except ClientGone:
            self.close(conn)
            return True
        if upgrade is None:
            return False
        self.switch(conn, upgrade)
        return True

    def sniff(self, conn: Conn) -> bool | None:
        """First read of a plain connection that may open with the preface: True (HTTP/2:
        the octets are held for it), False (HTTP/1: they went to its parser), None (too
        few octets yet; wait for more)."""
        fd = conn.fd
        if not self.trusted(conn):
            self.fresh.discard(fd)
            return False
        try:
            data = conn.sock.recv(RECV_SIZE)
        except _WOULD_BLOCK:
            return None
        except OSError:
            data = b""
        data = self.held.pop(fd, b"") + data
        state = preface_state(data) if data else False
        if state is None:
            self.held[fd] = data
            return None
        self.fresh.discard(fd)
        if state:
            self.held[fd] = data
            return True
        events = conn.h1.receive(data) if data else []
        conn.events.extend(events)
        return False

    def alpn_h2(self, conn: Conn) -> bool:
        """After the TLS handshake: did the client choose h2?"""
        sock = conn.sock
        return isinstance(sock, ssl.SSLSocket) and sock.selected_alpn_protocol() == "h2"

    def upgrade_request(self, conn: Conn, req: Request) -> tuple[Request, bytes, bytes] | None:
        """`Upgrade: h2c` from a trusted peer: (request, HTTP2-Settings, body) once its body
        is read whole (blocking, bounded by the body's size and the read deadline), else
        None (served as HTTP/1). ClientGone if the client leaves meanwhile."""
        settings = h2c_settings(req, self.settings.initial_window_size)
        if settings is None or not self.trusted(conn):
            return None
        body = bytearray()
        events = conn.events
        if req.expect_continue and req.content_length:
            conn.sendall(CONTINUE_100)
        while True:
            while not events:
                conn.read_more()
            ev = events.popleft()
            if type(ev) is Data:
                body += ev.data
            elif type(ev) is EndOfMessage:
                break
            else:
                events.appendleft(ev)   # a ProtocolError: served (refused) as HTTP/1
                return None
        events.clear()          # nothing may follow before the 101 (RFC 7540 §3.2)
        return req, settings, bytes(body)

    def switch(self, conn: Conn, upgrade: tuple[Request, bytes, bytes] | None) -> None:
        """Hand `conn` from the worker's HTTP/1 table to an H2Conn, and serve it."""
        h2 = H2Connection(self.settings, self.handler.rules, self.limits, time.monotonic)
        events: list[H2Event] = []
        if upgrade is not None:
            events = h2.upgrade(*upgrade)
        else:
            h2.start()
            first = self.held.pop(conn.fd, b"")
            if first:
                events = h2.receive(first)
        hc = H2Conn(conn.sock, h2, self.handler, conn.base_environ, conn.remote_addr,
                    self.ep, conn.polled, self.tasks.submit, self._closed)
        with self.lock:
            self.h1conns.pop(conn.fd, None)
            self.conns[hc.fd] = hc
            self.handler.meter.h2_open += 1
        if self.draining:       # after registering: drain() sees it, or we see draining
            with hc.lock:
                h2.begin_drain(self.grace)
        hc.start(events)

    def _closed(self, hc: H2Conn) -> None:
        with self.lock:
            if self.conns.get(hc.fd) is hc:
                del self.conns[hc.fd]
                self.handler.meter.h2_open -= 1
        hc.close_socket()
        if self.draining:
            self.wake()

    # -- the poll loop and the main thread ---------------------------------------------
    def serve(self, fd: int) -> bool:
        """A poller got `fd`'s event: a task, or an HTTP/2 connection's; False if neither."""
        if fd == self.tasks.fd:
            task = self.tasks.take()
            if task is not None:
                task()
            return True
        hc = self.conns.get(fd)
        if hc is None:
            return False
        hc.ready()
        return True

    def expire(self, now: float) -> None:
        with self.lock:
            conns = list(self.conns.values())
        for hc in conns:
            hc.expire(now)

    def drain(self) -> None:
        """GOAWAY on every connection; the open streams finish within --graceful-timeout."""
        self.draining = True
        with self.lock:
            conns = list(self.conns.values())
        for hc in conns:
            hc.begin_drain(self.grace)

    @property
    def idle(self) -> bool:
        """No connection open, no stream waiting for a thread (a drain may end)."""
        return not self.conns and not self.tasks.pending
