"""PEP 3333 over the sans-IO http/ package: run the app for one request, write its answer.

`Conn` (wsgi.conn) is one client connection (socket + parser + pending events);
`WSGIHandler.serve(conn, request)` builds the environ (wsgi.environ), runs the
app and writes the response (Exchange, in wsgi.response; wsgi.input in
wsgi.input). Worker classes decide when to read, which thread runs `serve`, and
what to do with the connection after. The handler knows the worker only through
its `Meter` (accounting, hooks); the rules of each connection (keep-alive, deadlines,
draining) are `http.connection`'s.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from reclusterd.http import InvalidResponse, Limits, Request, error_for, make_parser
from reclusterd.http.connection import ConnectionRules, H1Connection, body_stalled
from reclusterd.http.forwarded import ProxyResolver, from_config
from reclusterd.http.proxyproto import refusal
from reclusterd.http.rootpath import mount_prefix
from reclusterd.logging import AccessInfo, AccessLog
from reclusterd.meter import Meter
from reclusterd.wsgi.conn import BodyStalled, ClientGone, Conn, Environ, tls_wrap
from reclusterd.wsgi.environ import EnvironBuilder
from reclusterd.wsgi.input import NO_BODY, Input, NoBody
from reclusterd.wsgi.response import Exchange, FileWrapper, Reply, close_result, log_broken

if TYPE_CHECKING:
    from reclusterd.config import Config
    from reclusterd.http import Parser

log = logging.getLogger("reclusterd.error")
WSGIApp = Callable[..., Any]


class WSGIHandler:
    """Runs a WSGI app for requests parsed on `Conn`s; one per worker, shared by threads.

    `secure` says the listeners speak TLS (wsgi.url_scheme https); `persistent`
    False makes every response close its connection (the sync worker).
    """

    def __init__(self, cfg: Config, app: WSGIApp, meter: Meter, multithread: bool,
                 secure: bool, persistent: bool = True) -> None:
        self.app = app
        self.meter = meter
        self.secure = secure
        self.rules = ConnectionRules(float(cfg.keep_alive), float(cfg.header_timeout),
                                     persistent)
        self.drain_grace = self.rules.drain_grace(float(cfg.graceful_timeout))
        limits = Limits(cfg.limit_request_line, cfg.limit_request_fields,
                        cfg.limit_request_field_size, cfg.limit_request_body)
        kind = cfg.http
        self.new_parser: Callable[[], Parser] = lambda: make_parser(kind, limits)
        self.access = AccessLog(cfg.access_logfile, cfg.access_logformat,
                      bool(cfg.log_config))
        proxy = (from_config(cfg.forwarded_allow_ips, secure=secure)
                 if cfg.forwarded_allow_ips else None)
        self.environs = EnvironBuilder(multithread, cfg.workers > 1, proxy,
                                       mount_prefix(cfg.root_path, os.environ))
        # --proxy-protocol: the peers allowed to send the header (None: off)
        self.proxy_peers = (ProxyResolver(cfg.proxy_allow_ips)
                            if cfg.proxy_protocol else None)
        self.draining = False       # set by the worker on TERM: new connections drain too
        self.park_writes = False    # the worker parks a connection whose socket is full

    def listener_environ(self, lsock: socket.socket) -> Environ:
        """The environ keys fixed for every request on one listener."""
        return self.environs.listener_environ(lsock, self.secure)

    def accept(self, sock: socket.socket, addr: Any, listener_env: Environ,
               ctx: ssl.SSLContext | None) -> Conn | None:
        """An accepted socket as a Conn: TLS-wrapped (handshake later), or, with
        --proxy-protocol, with its PROXY header to read first (TLS after it); None if it
        was closed (a peer not allowed to send the header, a failed wrap)."""
        peers = self.proxy_peers
        if peers is None:
            wrapped = tls_wrap(ctx, sock)
            return None if wrapped is None else self.new_conn(wrapped, addr, listener_env)
        peer = str(addr[0]) if isinstance(addr, tuple) else None
        if not peers.trusted(peer):
            log.log(*refusal(peer, "not in --proxy-allow-ips"))
            sock.close()
            return None
        conn = self.new_conn(sock, addr, listener_env)
        conn.expect_proxy(ctx)
        return conn

    def new_conn(self, sock: socket.socket, addr: Any, listener_env: Environ) -> Conn:
        """Wrap an accepted socket (made non-blocking) with a parser and its environ base."""
        sock.setblocking(False)
        env = listener_env.copy()
        remote = ""     # a unix-socket peer has no address (Gunicorn: "" too) and no port
        if isinstance(addr, tuple):
            remote = str(addr[0])
            env["REMOTE_PORT"] = str(addr[1])
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        env["REMOTE_ADDR"] = remote
        h1 = H1Connection(self.rules, self.new_parser(), time.monotonic)
        if self.draining:
            h1.begin_drain(self.drain_grace)
        return Conn(sock, h1, env, remote)

    def environ(self, conn: Conn, req: Request) -> Environ:
        """PEP 3333 environ for one request."""
        return self.environs.environ(conn.base_environ, conn.remote_addr, req)

    def serve(self, conn: Conn, req: Request) -> bool:
        """Run the app for `req` and write its response; True if `conn` may be reused."""
        return self.finish(self.begin(conn, req))

    def begin(self, conn: Conn, req: Request) -> Reply:
        """Run the app for `req` and send its response as far as the socket takes it
        without waiting when `park_writes` is set (else all of it): `reply.complete`
        False means the rest waits in `conn.out`/the iterable: the worker parks the
        connection and calls resume() once it is writable, then finish()."""
        meter = self.meter
        ex = Exchange(meter, conn, req)
        env = self.environ(conn, req)
        if req.content_length or req.chunked:
            inp: Input | NoBody = Input(conn, req, ex)
        else:
            inp = NO_BODY
        env["wsgi.input"] = ex.input = inp
        if meter.pre_request is not None:
            meter.before(env)
        t0 = time.monotonic()
        ex.token = meter.started(t0)
        conn.clock = ex
        reply = Reply(ex, env, t0)
        memory = meter.memory
        if memory is not None and memory.over:
            memory.refused(req.method, req.target)
            self._error(ex, 503)    # Connection: close; the client may retry elsewhere
            reply.complete = reply.produced = True
            return reply
        try:
            reply.result = self.app(env, ex.start_response)
        except BaseException as e:  # noqa: BLE001 - sorted out by _broke
            self._broke(reply, e)
            return reply
        if memory is not None:
            # This call may have crossed --max-worker-memory: see it before the head is
            # built, so its response already says Connection: close.
            memory.admits(time.monotonic())
        self.resume(reply)
        return reply

    def resume(self, reply: Reply) -> bool:
        """Send more of the response (any thread, never two at once: PEP 3333 lets the
        iterable be advanced from any thread); True once it is complete or has failed."""
        conn = reply.ex.conn
        conn.defer = self.park_writes
        try:
            if conn.out is not None and not conn.flush():
                reply.wait_client()
                return False
            if not reply.produced:
                self._respond(reply)
            if conn.out is not None:
                reply.wait_client()
                return False
        except BaseException as e:  # noqa: BLE001 - sorted out by _broke
            conn.out = None
            self._broke(reply, e)
        finally:
            conn.defer = False
        reply.complete = True
        return True

    def _broke(self, reply: Reply, e: BaseException) -> None:
        """The app or the client failed the response: answer what can still be answered."""
        ex = reply.ex
        reply.keep = False
        reply.complete = reply.produced = True
        if _caused_by(e, BodyStalled):
            # the app may have turned it into its own error: the answer is the same
            req = ex.req
            log.info("closing the connection: the request body stopped arriving (%s %s)",
                     req.method.decode("latin-1"), req.target.decode("latin-1"))
            answer = body_stalled(req, ex.sent)
            if answer is not None:
                self._error(ex, 408, answer)
        elif isinstance(e, ClientGone):
            inp = ex.input
            if inp.error is not None and not ex.sent:
                self._error(ex, inp.error.status)
            log.debug("client gone: %s", e)
        elif isinstance(e, (Exception, SystemExit, KeyboardInterrupt)):
            # The app's error must not kill the worker, nor a pool thread: an app calling
            # sys.exit() gets a 500 like any other failure (our own stops use os._exit).
            self._failed(ex, e)
        else:
            raise e

    def finish(self, reply: Reply) -> bool:
        """After the response (complete, failed or abandoned): close the iterable, drain
        the request body, count and log it; True if the connection may be reused."""
        ex = reply.ex
        conn = ex.conn
        close_result(reply.result)
        keep = reply.keep and reply.complete
        inp = ex.input
        if keep and not inp.done:
            try:
                keep = inp.drain()
            except ClientGone:
                keep = False
        conn.clock = None
        code = ex.code or 500
        dt = time.monotonic() - reply.t0
        meter = self.meter
        meter.finished(ex.token, code, dt, ex.req.http_version)
        if meter.post_request is not None:
            meter.after(reply.env, code)
        if self.access.enabled:
            self._access(reply.env, ex, code, dt)
        return keep     # a keep-alive head went out: the next response says close

    def _respond(self, reply: Reply) -> None:
        """Send the app's iterable until done (reply.produced) or the socket is full
        (conn.out set, with park_writes)."""
        ex = reply.ex
        result = reply.result
        if reply.file is not None:
            self._file_rest(reply)
            return
        if reply.chunks is None:
            if type(result) is list and len(result) == 1 and not ex.sent:
                data = result[0]
                if type(data) is not bytes:
                    raise TypeError(f"response body must be bytes, not {type(data).__name__}")
                out = ex.framed(data, True)
                ex.length = len(data)
                reply.produced = True
                ex.conn.sendall(out)
                assert ex.resp is not None
                reply.keep = ex.resp.keep_alive
                return
            if type(result) is FileWrapper and self._sendfile_ok(ex, result):
                self._send_file(reply, result)
                return
            reply.chunks = iter(result)
        conn = ex.conn
        for chunk in reply.chunks:
            if chunk:
                ex.write(chunk)
                if conn.out is not None:
                    return
        reply.produced = True
        reply.keep = ex.finish()

    def _failed(self, ex: Exchange, e: BaseException) -> None:
        req = ex.req
        what = f"{req.method.decode('latin-1')} {req.target.decode('latin-1')}"
        if e is ex.broken:
            pass                # logged once where it happened (Exchange.framed)
        elif _caused_by(e, ClientGone):
            # the app (or its framework) turned our ClientGone into its own error, e.g.
            # Werkzeug's ClientDisconnected: a client going away is normal, no traceback
            log.debug("client gone during %s (%s)", what, type(e).__name__)
        elif isinstance(e, InvalidResponse):
            log.error("invalid response from the app to %s: %s", what, e)
        else:
            log.exception("error handling %s", what)
        if not ex.sent:
            self._error(ex, 500)

    def _error(self, ex: Exchange, status: int, answer: bytes | None = None) -> None:
        ex.code = status
        ex.sent = True
        try:
            ex.conn.sendall(error_for(ex.req, status) if answer is None else answer)
        except ClientGone:
            pass

    def _sendfile_ok(self, ex: Exchange, fw: FileWrapper) -> bool:
        if type(ex.conn.sock) is not socket.socket or ex.status is None:
            return False
        try:
            fw.filelike.fileno()
        except (AttributeError, OSError, ValueError):
            return False
        return any(k.lower() == "content-length" for k, _ in ex.headers)

    def _send_file(self, reply: Reply, fw: FileWrapper) -> None:
        """Content-Length response body straight from the file with os.sendfile."""
        ex = reply.ex
        resp = ex.begin()
        ex.sent = True
        conn = ex.conn
        reply.keep = resp.keep_alive
        if ex.req.method == b"HEAD" or ex.code < 200 or ex.code in (204, 304):
            reply.produced = True
            conn.sendall(resp.head + resp.end())
            return
        length = int(next(v for k, v in ex.headers if k.lower() == "content-length"))
        f = fw.filelike
        try:
            offset = f.tell()
        except (AttributeError, OSError):
            offset = 0
        reply.file = (f.fileno(), offset, length)
        conn.sendall(resp.head)
        if conn.out is None:
            self._file_rest(reply)

    def _file_rest(self, reply: Reply) -> None:
        """sendfile the rest of the file (reply.file), as far as the socket takes it."""
        assert reply.file is not None
        fileno, offset, length = reply.file
        ex = reply.ex
        sent = ex.conn.sendfile(fileno, offset + ex.length, length - ex.length)
        ex.length += sent
        if ex.conn.out is not None:
            return              # the socket is full (park_writes): resumed when writable
        reply.produced = True
        if ex.length != length:     # the file is shorter than the app's Content-Length
            reply.keep = False
            log_broken(ex.req, f"file shorter than its Content-Length ({ex.length} < "
                               f"{length} bytes)")

    def _access(self, env: Environ, ex: Exchange, status: int, dt: float) -> None:
        req = ex.req
        self.access.log(AccessInfo(env.get("REMOTE_ADDR") or "-", req.method, req.target,
                                   req.http_version, status, ex.length, dt, req.headers,
                                   ex.headers, env))


def _caused_by(e: BaseException, kind: type[ClientGone]) -> bool:
    """Was `e` caused by the client (a `kind` in its cause/context chain)?"""
    seen = 0
    cur: BaseException | None = e
    while cur is not None and seen < 16:
        if isinstance(cur, kind):
            return True
        cur = cur.__cause__ or cur.__context__
        seen += 1
    return False
