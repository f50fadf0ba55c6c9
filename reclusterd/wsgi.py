"""PEP 3333 over the sans-IO http/ package: environ, wsgi.input, start_response, write().

`Conn` is one client connection (socket + parser + pending events) with
deadline-bounded blocking helpers; `WSGIHandler.serve(conn, request)` runs the
app for one request and writes the response. Worker classes decide when to
read, which thread runs `serve`, and what to do with the connection after.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

from reclusterd.http import (
    CONTINUE_100,
    Data,
    EndOfMessage,
    InvalidResponse,
    ProtocolError,
    Request,
    Response,
    error_response,
)

if TYPE_CHECKING:
    from reclusterd.workers.base import Worker

log = logging.getLogger("reclusterd.error")
DRAIN_LIMIT = 64 * 1024
RECV_SIZE = 65536
LINGER_BYTES = 256 * 1024
_POLLIN = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR
_POLLOUT = select.POLLOUT | select.POLLHUP | select.POLLERR
Environ = dict[str, Any]


class ClientGone(OSError):
    """The client closed, reset, timed out or sent a broken body: stop, close the connection."""


def wait_fd(fd: int, events: int, timeout: float) -> bool:
    """Block until fd is ready for `events` or `timeout` s pass (False)."""
    p = select.poll()
    p.register(fd, events)
    return bool(p.poll(max(0.0, timeout) * 1000.0))


class Conn:
    """A client connection: non-blocking socket, parser, parsed-but-unhandled events."""

    __slots__ = ("sock", "fd", "parser", "events", "base_environ", "remote_addr", "timeout",
                 "busy", "closed", "deadline", "head_start", "partial", "tls", "served",
                 "polled", "on_progress")

    def __init__(self, sock: socket.socket, parser: Any, base_environ: Environ,
                 remote_addr: str, timeout: float) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.parser = parser
        self.events: deque[Any] = deque()
        self.base_environ = base_environ
        self.remote_addr = remote_addr
        self.timeout = timeout          # idle limit for each body read / response write
        self.busy = False
        self.closed = False
        self.deadline = 0.0
        self.head_start = 0.0
        self.partial = False            # bytes fed that did not complete an event yet
        self.served = 0                 # requests answered on this connection
        self.polled = False             # registered in the worker's epoll set yet
        self.on_progress: Callable[[], None] | None = None   # slow writes report progress
        self.tls = 1 if isinstance(sock, ssl.SSLSocket) else 0

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
        events = self.parser.feed(data)
        if events:
            self.events.extend(events)
            self.partial = False
        elif data:
            self.partial = True
        return len(data)

    def _ssl_pending(self) -> bytes:
        sock = self.sock
        assert isinstance(sock, ssl.SSLSocket)
        more = b""
        while sock.pending():
            more += sock.recv(sock.pending())
        return more

    def read_more(self, timeout: float | None = None) -> None:
        """Wait up to the idle timeout for bytes and feed them; ClientGone on timeout/EOF."""
        limit = self.timeout if timeout is None else timeout
        while True:
            n = self.recv_now()
            if n > 0:
                return
            if n == 0:
                raise ClientGone("client closed the connection")
            if not wait_fd(self.fd, _POLLIN, limit):
                raise ClientGone("timed out reading from the client")

    def sendall(self, data: bytes) -> None:
        """Write everything (waiting for room up to the idle timeout each time)."""
        try:
            n = self.sock.send(data)
        except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            n = 0
        except OSError as e:
            raise ClientGone(str(e)) from e
        if n != len(data):
            self._send_rest(memoryview(data)[n:])

    def _send_rest(self, view: memoryview) -> None:
        while view:
            if not wait_fd(self.fd, _POLLOUT, self.timeout):
                raise ClientGone("timed out writing to the client")
            if self.on_progress is not None:
                self.on_progress()
            try:
                n = self.sock.send(view)
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError,
                    ssl.SSLWantReadError):
                continue
            except OSError as e:
                raise ClientGone(str(e)) from e
            view = view[n:]

    def sendfile(self, fileno: int, offset: int, count: int) -> int:
        """os.sendfile up to `count` bytes from `offset`; returns bytes sent (short at EOF)."""
        sent = 0
        while sent < count:
            try:
                n = os.sendfile(self.fd, fileno, offset + sent, count - sent)
            except (BlockingIOError, InterruptedError):
                if not wait_fd(self.fd, _POLLOUT, self.timeout):
                    raise ClientGone("timed out writing to the client") from None
                continue
            except OSError as e:
                raise ClientGone(str(e)) from e
            if n == 0:
                break
            sent += n
            if self.on_progress is not None:
                self.on_progress()
        return sent

    def close(self, linger: bool = False) -> None:
        """Close; with `linger`, first discard what the client already sent, so the kernel
        sends FIN, not RST (an RST can destroy the response before the client reads it)."""
        self.closed = True
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


class Input:
    """wsgi.input: streams the request body from the parser's Data events, never buffers it
    all. Sends `100 Continue` on the first read when the client asked for it."""

    __slots__ = ("_conn", "_buf", "done", "_continue", "_ex", "error", "trailers", "nread")

    def __init__(self, conn: Conn, req: Request, ex: Exchange) -> None:
        self._conn = conn
        self._buf = bytearray()
        self.done = not req.chunked and not req.content_length
        self._continue = req.expect_continue and not self.done
        self._ex = ex
        self.error: ProtocolError | None = None
        self.trailers: list[tuple[bytes, bytes]] = []
        self.nread = 0

    def _fill(self) -> bool:
        """Append the next body bytes to the buffer; False at the end of the body."""
        if self.done:
            return False
        conn = self._conn
        if self._continue:
            self._continue = False
            if not self._ex.sent:
                conn.sendall(CONTINUE_100)
        while not conn.events:
            conn.read_more()
            self._ex.progress()
        ev = conn.events.popleft()
        if type(ev) is Data:
            self._buf += ev.data
            self.nread += len(ev.data)
            return True
        if type(ev) is EndOfMessage:
            self.done = True
            self.trailers = ev.trailers
            return False
        if type(ev) is ProtocolError:
            self.done = True
            self.error = ev
            raise ClientGone(f"bad request body: {ev.status} {ev.reason}")
        raise ClientGone(f"unexpected event in the body: {ev!r}")

    @property
    def expect_pending(self) -> bool:
        """Client waits for 100 Continue that was never sent (its body is not coming)."""
        return self._continue

    def read(self, size: int | None = -1) -> bytes:
        buf = self._buf
        if size is None or size < 0:
            while self._fill():
                pass
            out = bytes(buf)
            buf.clear()
            return out
        while len(buf) < size and self._fill():
            pass
        out = bytes(buf[:size])
        del buf[:size]
        return out

    def readline(self, size: int | None = -1) -> bytes:
        buf = self._buf
        start = 0
        while True:
            i = buf.find(b"\n", start)
            if i >= 0:
                end = i + 1
                break
            if size is not None and 0 <= size <= len(buf):
                end = size
                break
            start = len(buf)
            if not self._fill():
                end = len(buf)
                break
        if size is not None and 0 <= size < end:
            end = size
        out = bytes(buf[:end])
        del buf[:end]
        return out

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines: list[bytes] = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def drain(self, limit: int = DRAIN_LIMIT) -> bool:
        """Discard what the app left unread (up to `limit` bytes); True if the body ended."""
        if self._continue:
            return False      # the client holds its body back; closing is the safe answer
        self._buf.clear()
        start = self.nread
        try:
            while self._fill():
                self._buf.clear()
                if self.nread - start > limit:
                    return False
        except ClientGone:
            return False
        return True


class NoBody:
    """wsgi.input of a request without a body: stateless, so one instance serves all."""

    __slots__ = ()
    done = True
    error: ProtocolError | None = None
    expect_pending = False
    nread = 0

    def read(self, size: int | None = -1) -> bytes:
        return b""

    def readline(self, size: int | None = -1) -> bytes:
        return b""

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        return []

    def __iter__(self) -> Iterator[bytes]:
        return iter(())

    def drain(self, limit: int = DRAIN_LIMIT) -> bool:
        return True


NO_BODY = NoBody()


class ErrorStream:
    """wsgi.errors: text written by the app goes to the error log."""

    def write(self, s: str) -> int:
        if s.strip():
            log.error("%s", s.rstrip("\n"))
        return len(s)

    def writelines(self, seq: Iterable[str]) -> None:
        for s in seq:
            self.write(s)

    def flush(self) -> None:
        pass


class FileWrapper:
    """wsgi.file_wrapper: iterable over a file; the server sends it with os.sendfile when it can."""

    def __init__(self, filelike: Any, blksize: int = 8192) -> None:
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        data: bytes = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration



def _status_key(status: str) -> tuple[int, str | None]:
    """'200 OK' -> (200, None) when the reason is the standard one (cached status line)."""
    if len(status) < 4 or status[3] != " " or not status[:3].isdigit():
        raise InvalidResponse(f"invalid status {status!r}: expected e.g. '200 OK'")
    code = int(status[:3])
    reason = status[4:]
    try:
        from http import HTTPStatus
        if HTTPStatus(code).phrase == reason:
            return code, None
    except ValueError:
        pass
    return code, reason


_STATUS_CACHE: dict[str, tuple[int, str | None]] = {}


class Exchange:
    """One request/response: start_response(), write() and what was sent."""

    __slots__ = ("h", "conn", "req", "status", "code", "headers", "resp", "sent", "token",
                 "input", "length")

    def __init__(self, handler: WSGIHandler, conn: Conn, req: Request) -> None:
        self.h = handler
        self.conn = conn
        self.req = req
        self.status: str | None = None
        self.code = 0
        self.headers: list[tuple[str, str]] = []
        self.resp: Response | None = None
        self.sent = False
        self.token = 0
        self.length = 0
        self.input: Input | NoBody

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response() called a second time without exc_info")
        if type(status) is not str:
            raise TypeError(f"status must be a str, not {type(status).__name__}")
        if type(headers) is not list:
            raise TypeError(f"headers must be a list, not {type(headers).__name__}")
        self.status = status
        self.headers = headers
        self.resp = None
        return self.write

    def begin(self) -> Response:
        """Build the response head from start_response()'s arguments (InvalidResponse if bad)."""
        status = self.status
        if status is None:
            raise AssertionError("the app gave a body before calling start_response()")
        key = _STATUS_CACHE.get(status)
        if key is None:
            key = _status_key(status)
            if len(_STATUS_CACHE) < 256:
                _STATUS_CACHE[status] = key
        try:
            hb = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in self.headers]
        except (UnicodeError, AttributeError, TypeError, ValueError) as e:
            raise InvalidResponse(f"invalid response header in {self.headers!r}: {e}") from e
        keep = self.h.keep_alive and not self.h.worker.draining and self._may_keep()
        resp = Response(self.req, key[0], hb, key[1], keep)
        self.code = key[0]
        self.resp = resp
        return resp

    def _may_keep(self) -> bool:
        inp = self.input
        if inp.done:
            return inp.error is None
        if inp.expect_pending:
            return False
        cl = self.req.content_length
        return cl is None or cl - inp.nread <= DRAIN_LIMIT

    def write(self, data: bytes) -> None:
        """The write() callable (and each chunk of the app's iterable): sent at once."""
        if type(data) is not bytes:
            raise TypeError(f"response body must be bytes, not {type(data).__name__}")
        if not data:
            return
        resp = self.resp
        if not self.sent:
            if resp is None:
                resp = self.begin()
            out = resp.head + resp.body(data)
            self.sent = True
        else:
            assert resp is not None
            out = resp.body(data)
        self.length += len(data)
        self.conn.sendall(out)
        self.progress()

    def finish(self) -> bool:
        """Send what ends the response; True if the connection may be reused."""
        resp = self.resp
        if not self.sent:
            if resp is None:
                resp = self.begin()
            out = resp.head + resp.end()
            self.sent = True
        else:
            assert resp is not None
            out = resp.end()
        if out:
            self.conn.sendall(out)
        return resp.keep_alive

    def progress(self) -> None:
        """Client I/O happened: the request is not stuck; heartbeats may go out (from the
        serving thread, which is what the sync worker needs during a long upload)."""
        worker = self.h.worker
        now = time.monotonic()
        if self.token in worker.in_flight:
            worker.in_flight[self.token] = now
        if worker.heartbeat_due(now):
            worker.maybe_heartbeat(now)


class WSGIHandler:
    """Runs a WSGI app for requests parsed on `Conn`s; one per worker, shared by threads."""

    def __init__(self, worker: Worker, app: Callable[..., Any], multithread: bool) -> None:
        from reclusterd.http import Limits, make_parser
        from reclusterd.logging import AccessLog
        from reclusterd.proxy import from_config
        cfg = worker.cfg
        self.worker = worker
        self.app = app
        self.cfg = cfg
        self.io_timeout = float(cfg.header_timeout or 20.0)
        limits = Limits(cfg.limit_request_line, cfg.limit_request_fields,
                        cfg.limit_request_field_size, cfg.limit_request_body)
        kind = cfg.http
        self.new_parser: Callable[[], Any] = lambda: make_parser(kind, limits)
        self.access = AccessLog(cfg)
        from reclusterd.sockets import ssl_context
        secure = ssl_context(cfg) is not None
        self.proxy = (from_config(cfg.forwarded_allow_ips, secure=secure)
                      if cfg.forwarded_allow_ips else None)
        self.keys: dict[bytes, str] = {b"content-type": "CONTENT_TYPE", b"content-length": ""}
        self.multithread = multithread
        self.keep_alive = float(cfg.keep_alive) > 0   # sync sets False: always close
        self._listener_env: dict[int, Environ] = {}

    def listener_environ(self, lsock: socket.socket, secure: bool) -> Environ:
        """The environ keys fixed for every request on one listener."""
        env = self._listener_env.get(lsock.fileno())
        if env is not None:
            return env
        name, port = "localhost", ""
        addr = lsock.getsockname()
        if isinstance(addr, tuple):
            name, port = str(addr[0]), str(addr[1])
        from reclusterd import __version__
        env = {
            "SERVER_NAME": name, "SERVER_PORT": port, "SCRIPT_NAME": "",
            "SERVER_SOFTWARE": f"reclusterd/{__version__}",
            "wsgi.version": (1, 0), "wsgi.url_scheme": "https" if secure else "http",
            "wsgi.errors": ErrorStream(), "wsgi.multithread": self.multithread,
            "wsgi.multiprocess": self.cfg.workers > 1, "wsgi.run_once": False,
            "wsgi.input_terminated": True, "wsgi.file_wrapper": FileWrapper,
        }
        self._listener_env[lsock.fileno()] = env
        return env

    def new_conn(self, sock: socket.socket, addr: Any, listener_env: Environ) -> Conn:
        """Wrap an accepted socket (made non-blocking) with a parser and its environ base."""
        sock.setblocking(False)
        env = listener_env.copy()
        if isinstance(addr, tuple):
            remote, rport = str(addr[0]), str(addr[1])
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        else:
            remote, rport = "", ""
        env["REMOTE_ADDR"] = remote
        env["REMOTE_PORT"] = rport
        return Conn(sock, self.new_parser(), env, remote, self.io_timeout)

    def _key(self, name: bytes) -> str:
        key = "" if b"_" in name else "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
        if len(self.keys) < 1024:
            self.keys[name] = key
        return key

    def environ(self, conn: Conn, req: Request) -> Environ:
        """PEP 3333 environ for one request."""
        env = conn.base_environ.copy()
        path = req.path
        env["PATH_INFO"] = (unquote_to_bytes(path) if b"%" in path else path).decode("latin-1")
        env["QUERY_STRING"] = req.query.decode("latin-1")
        env["REQUEST_METHOD"] = req.method.decode("latin-1")
        env["SERVER_PROTOCOL"] = "HTTP/" + req.http_version
        env["RAW_URI"] = req.target.decode("latin-1")
        if req.content_length is not None:
            env["CONTENT_LENGTH"] = str(req.content_length)
        keys = self.keys
        for name, value in req.headers:
            key = keys.get(name)
            if key is None:
                key = self._key(name)
            if key:
                old = env.get(key)
                v = value.decode("latin-1")
                env[key] = v if old is None else old + "," + v
        host = env.get("HTTP_HOST")
        if host:
            i = host.rfind(":")
            if i > host.rfind("]"):
                env["SERVER_NAME"], env["SERVER_PORT"] = host[:i], host[i + 1:]
            else:
                env["SERVER_NAME"] = host
                env["SERVER_PORT"] = "443" if env["wsgi.url_scheme"] == "https" else "80"
        if self.proxy is not None and ("HTTP_X_FORWARDED_FOR" in env or "HTTP_FORWARDED" in env
                                       or "HTTP_X_FORWARDED_PROTO" in env):
            client, scheme = self.proxy.resolve(conn.remote_addr or None, req.headers)
            env["REMOTE_ADDR"] = client
            env["wsgi.url_scheme"] = scheme
        return env

    def serve(self, conn: Conn, req: Request) -> bool:
        """Run the app for `req` and write its response; True if `conn` may be reused."""
        worker = self.worker
        ex = Exchange(self, conn, req)
        env = self.environ(conn, req)
        if req.content_length or req.chunked:
            inp: Input | NoBody = Input(conn, req, ex)
        else:
            inp = NO_BODY
        env["wsgi.input"] = ex.input = inp
        if worker.pre_request is not None:
            worker.call_pre_request(env)
        ex.token = token = worker.request_started()
        conn.on_progress = ex.progress
        t0 = time.monotonic()
        keep = False
        result: Any = None
        try:
            result = self.app(env, ex.start_response)
            if type(result) is list and len(result) == 1 and not ex.sent:
                data = result[0]
                if type(data) is not bytes:
                    raise TypeError(f"response body must be bytes, not {type(data).__name__}")
                resp = ex.begin()
                ex.sent = True
                ex.length = len(data)
                conn.sendall(resp.head + resp.body(data) + resp.end())
                keep = resp.keep_alive
            elif type(result) is FileWrapper and self._sendfile_ok(ex, result):
                keep = self._send_file(ex, result)
            else:
                for chunk in result:
                    if chunk:
                        ex.write(chunk)
                keep = ex.finish()
        except ClientGone as e:
            if inp.error is not None and not ex.sent:
                self._error(ex, inp.error.status, inp.error.reason)
            log.debug("client gone: %s", e)
        except Exception as e:  # noqa: BLE001 - the app's error must not kill the worker
            self._failed(ex, e)
        finally:
            if result is not None and hasattr(result, "close"):
                try:
                    result.close()
                except Exception:  # noqa: BLE001
                    log.exception("close() of the response iterable failed")
        if keep and not inp.done:
            keep = inp.drain()
        conn.on_progress = None
        code = ex.code or 500
        dt = time.monotonic() - t0
        worker.request_finished(token, code, dt)
        if worker.post_request is not None:
            worker.call_post_request(env, code)
        if self.access.enabled:
            self._access(env, req, code, ex.length, dt)
        return keep     # a keep-alive head went out: the next response says close

    def _failed(self, ex: Exchange, e: Exception) -> None:
        req = ex.req
        what = f"{req.method.decode('latin-1')} {req.target.decode('latin-1')}"
        if isinstance(e, InvalidResponse):
            log.error("invalid response from the app to %s: %s", what, e)
        else:
            log.exception("error handling %s", what)
        if not ex.sent:
            self._error(ex, 500, "")

    def _error(self, ex: Exchange, status: int, message: str) -> None:
        ex.code = status
        ex.sent = True
        try:
            ex.conn.sendall(error_response(status, message))
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

    def _send_file(self, ex: Exchange, fw: FileWrapper) -> bool:
        """Content-Length response body straight from the file with os.sendfile."""
        resp = ex.begin()
        ex.sent = True
        conn = ex.conn
        if ex.req.method == b"HEAD" or ex.code < 200 or ex.code in (204, 304):
            conn.sendall(resp.head + resp.end())
            return resp.keep_alive
        length = int(next(v for k, v in ex.headers if k.lower() == "content-length"))
        conn.sendall(resp.head)
        f = fw.filelike
        try:
            offset = f.tell()
        except (AttributeError, OSError):
            offset = 0
        sent = conn.sendfile(f.fileno(), offset, length)
        ex.length = sent
        return resp.keep_alive and sent == length

    def _access(self, env: Environ, req: Request, status: int, length: int, dt: float) -> None:
        from reclusterd.logging import AccessInfo
        self.access.log(AccessInfo(env.get("REMOTE_ADDR") or "-", req.method, req.target,
                                   req.http_version, status, length, dt, req.headers))
