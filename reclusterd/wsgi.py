"""PEP 3333 over the sans-IO http/ package: environ, wsgi.input, start_response, write().

`Conn` (wsgi_conn) is one client connection (socket + parser + pending events)
with deadline-bounded blocking helpers; `WSGIHandler.serve(conn, request)` runs
the app for one request and writes the response (Exchange, in wsgi_response;
wsgi.input in wsgi_input). Worker classes decide when to read, which thread runs
`serve`, and what to do with the connection after. The names are re-exported
here, so `from reclusterd.wsgi import Conn, ...` keeps working.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

from reclusterd.http import InvalidResponse, Request, error_response
from reclusterd.wsgi_conn import (
    LINGER_BYTES,
    RECV_SIZE,
    ClientGone,
    Conn,
    Environ,
    tls_wrap,
    wait_fd,
)
from reclusterd.wsgi_input import DRAIN_LIMIT, NO_BODY, Input, NoBody
from reclusterd.wsgi_response import ErrorStream, Exchange, FileWrapper

if TYPE_CHECKING:
    from reclusterd.workers.base import Worker

__all__ = [
    "DRAIN_LIMIT", "LINGER_BYTES", "NO_BODY", "RECV_SIZE", "ClientGone", "Conn", "Environ",
    "ErrorStream", "Exchange", "FileWrapper", "Input", "NoBody", "WSGIHandler", "tls_wrap",
    "wait_fd",
]

log = logging.getLogger("reclusterd.error")
_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")}
_PROTOCOLS = {"1.1": "HTTP/1.1", "1.0": "HTTP/1.0"}


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
        # Header lines repeat on every request (Host, User-Agent, Accept...): one dict hit
        # instead of decode+upper+replace; bounded so hostile clients cannot grow it.
        self.lines: dict[tuple[bytes, bytes], tuple[str, str]] = {}
        self.hosts: dict[tuple[str, str], tuple[str, str]] = {}
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

    def _line(self, name: bytes, value: bytes) -> tuple[str, str]:
        key = self.keys.get(name)
        if key is None:
            key = self._key(name)
        line = (key, value.decode("latin-1") if key else "")
        if len(self.lines) < 512:
            self.lines[(name, value)] = line
        return line

    def _host(self, host: str, scheme: str) -> tuple[str, str]:
        i = host.rfind(":")
        if i > host.rfind("]"):
            got = (host[:i], host[i + 1:])
        else:
            got = (host, "443" if scheme == "https" else "80")
        if len(self.hosts) < 256:
            self.hosts[(host, scheme)] = got
        return got

    def _absolute_authority(self, env: Environ, target: bytes) -> None:
        """RFC 9112 §3.2.2: with an absolute-form target the server ignores Host and uses
        the target's authority (the parser has already checked the target's syntax)."""
        scheme, _, rest = target.partition(b"://")
        authority = rest.split(b"/", 1)[0].split(b"?", 1)[0].rpartition(b"@")[2]
        if authority:
            host = authority.decode("latin-1")
            env["HTTP_HOST"] = host
            env["SERVER_NAME"], env["SERVER_PORT"] = self._host(
                host, "https" if scheme.lower() == b"https" else "http")

    def environ(self, conn: Conn, req: Request) -> Environ:
        """PEP 3333 environ for one request."""
        env = conn.base_environ.copy()
        path = req.path
        env["PATH_INFO"] = (unquote_to_bytes(path) if b"%" in path else path).decode("latin-1")
        env["QUERY_STRING"] = req.query.decode("latin-1")
        method = _METHODS.get(req.method)
        env["REQUEST_METHOD"] = req.method.decode("latin-1") if method is None else method
        version = req.http_version
        env["SERVER_PROTOCOL"] = _PROTOCOLS.get(version) or "HTTP/" + version
        env["RAW_URI"] = req.target.decode("latin-1")
        if req.content_length is not None:
            env["CONTENT_LENGTH"] = str(req.content_length)
        lines = self.lines
        for hdr in req.headers:
            line = lines.get(hdr)
            if line is None:
                line = self._line(*hdr)
            key = line[0]
            if key:
                old = env.get(key)
                env[key] = line[1] if old is None else old + "," + line[1]
        host = env.get("HTTP_HOST")
        if host:
            scheme = env["wsgi.url_scheme"]
            got = self.hosts.get((host, scheme))
            env["SERVER_NAME"], env["SERVER_PORT"] = got or self._host(host, scheme)
        if req.target[:1] != b"/" and b"://" in req.target:
            self._absolute_authority(env, req.target)
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
        except (Exception, SystemExit, KeyboardInterrupt) as e:  # noqa: BLE001
            # The app's error must not kill the worker, nor a pool thread: an app calling
            # sys.exit() gets a 500 like any other failure (our own stops use os._exit).
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

    def _failed(self, ex: Exchange, e: BaseException) -> None:
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
