"""Shared helpers for end-to-end tests: real processes, real sockets, deadlines not sleeps."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import psutil

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def free_port(host: str = "127.0.0.1") -> int:
    """An ephemeral loopback port that was free a moment ago."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for(cond: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.02,
             what: str = "condition") -> T:
    """Poll `cond` until it returns something truthy, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = cond()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def port_answers(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class Server:
    """A reclusterd (or other) process started in its own process group."""

    def __init__(self, args: Sequence[str], cwd: str | Path | None = None,
                 env: dict[str, str] | None = None, port: int | None = None,
                 host: str = "127.0.0.1") -> None:
        self.port = port if port is not None else free_port(host)
        self.host = host
        self.logdir = Path(tempfile.mkdtemp(prefix="reclusterd-test-"))
        self.stdout_path = self.logdir / "stdout.log"
        self.stderr_path = self.logdir / "stderr.log"
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT)] + ([full_env["PYTHONPATH"]] if full_env.get("PYTHONPATH") else []))
        full_env.pop("WEB_CONCURRENCY", None)
        full_env["PYTHONUNBUFFERED"] = "1"
        if env:
            full_env.update(env)
        self.args = [a.replace("{port}", str(self.port)) for a in args]
        self._out = open(self.stdout_path, "wb")  # noqa: SIM115
        self._err = open(self.stderr_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.args, cwd=str(cwd or ROOT), env=full_env, stdin=subprocess.DEVNULL,
            stdout=self._out, stderr=self._err, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 15.0) -> Server:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"server exited with {self.proc.returncode}:\n{self.stderr()}")
            return port_answers(self.port, self.host)
        wait_for(ready, timeout, what=f"port {self.port} to answer")
        return self

    def workers(self) -> set[int]:
        """PIDs of the live (non-zombie) children of the arbiter."""
        try:
            children = psutil.Process(self.pid).children()
        except psutil.NoSuchProcess:
            return set()
        out = set()
        for c in children:
            try:
                if c.status() != psutil.STATUS_ZOMBIE:
                    out.add(c.pid)
            except psutil.NoSuchProcess:
                pass
        return out

    def wait_workers(self, n: int, timeout: float = 15.0) -> set[int]:
        return wait_for(lambda: w if len(w := self.workers()) == n else None, timeout,
                        what=f"{n} workers")

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def wait_exit(self, timeout: float = 15.0) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """Kill the whole process group (the arbiter and every worker it forked)."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        else:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self._out.close()
        self._err.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def reclusterd(app: str, *opts: str, **kw: object) -> Server:
    """Start `python -m reclusterd APP --bind 127.0.0.1:{port} OPTS...`."""
    args = [sys.executable, "-m", "reclusterd", app, "--bind", "127.0.0.1:{port}", *opts]
    return Server(args, **kw)  # type: ignore[arg-type]


def raw_request(port: int, data: bytes, host: str = "127.0.0.1", timeout: float = 5.0,
                shutdown_write: bool = False) -> bytes:
    """Send bytes, read until the server closes (or timeout), return everything read."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(data)
        if shutdown_write:
            s.shutdown(socket.SHUT_WR)
        chunks = []
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    break
                chunks.append(b)
        except TimeoutError:
            pass
        return b"".join(chunks)


def http_get(port: int, path: str = "/", host: str = "127.0.0.1", timeout: float = 5.0,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One GET with Connection: close over a raw socket, parsed strictly by h11."""
    import h11

    conn = h11.Connection(h11.CLIENT)
    hdrs = [("Host", f"{host}:{port}"), ("Connection", "close")]
    hdrs += list((headers or {}).items())
    req = conn.send(h11.Request(method="GET", target=path, headers=hdrs))
    req += conn.send(h11.EndOfMessage())
    raw = raw_request(port, req, host=host, timeout=timeout)
    conn.receive_data(raw)
    conn.receive_data(b"")
    status = 0
    rh: dict[str, str] = {}
    body = b""
    while True:
        ev = conn.next_event()
        if isinstance(ev, h11.Response):
            status = ev.status_code
            rh = {k.decode().lower(): v.decode() for k, v in ev.headers}
        elif isinstance(ev, h11.Data):
            body += ev.data
        elif ev is h11.NEED_DATA or isinstance(ev, (h11.EndOfMessage, h11.ConnectionClosed)):
            break
    return status, rh, body


# ARBITER: helpers for the arbiter lifecycle tests (load generator, logs, process titles)

import http.client  # noqa: E402
import threading  # noqa: E402


def proc_title(pid: int) -> str:
    """The process title as ps shows it (setproctitle rewrites /proc/PID/cmdline)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def wait_log(server: Server, text: str, timeout: float = 15.0, count: int = 1) -> str:
    """Wait until `text` appears `count` times in the server's stderr; return the stderr."""
    def found() -> str | None:
        err = server.stderr()
        return err if err.count(text) >= count else None
    try:
        return wait_for(found, timeout, what=f"log line {text!r}")
    except AssertionError:
        raise AssertionError(f"no {text!r} in log:\n{server.stderr()[-4000:]}") from None


def get_body(port: int, path: str = "/", timeout: float = 5.0) -> str:
    """GET with a fresh connection; the body as text ('' unless status 200)."""
    try:
        status, _, body = http_get(port, path, timeout=timeout)
    except Exception:  # connection refused/reset, or h11 seeing a truncated response
        return ""
    return body.decode(errors="replace") if status == 200 else ""


class LoadGen:
    """Threads hammering GET `path`: half with keep-alive connections, half with a new
    connection per request. Every response must be 200; bodies are recorded.

    A request on a reused keep-alive connection that the server closed before sending
    a single byte is retried once on a new connection, as HTTP clients may for idempotent
    requests (RFC 9112 9.3.1); those are counted in `retried`, not in `failures`.
    """

    def __init__(self, port: int, path: str = "/", keepalive: int = 2, fresh: int = 2) -> None:
        self.port = port
        self.path = path
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.retried = 0
        self.failures: list[str] = []
        self.bodies: set[str] = set()
        self.threads = [threading.Thread(target=self._run, args=(True,), daemon=True)
                        for _ in range(keepalive)]
        self.threads += [threading.Thread(target=self._run, args=(False,), daemon=True)
                         for _ in range(fresh)]

    def __enter__(self) -> LoadGen:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(10)

    def wait_requests(self, n: int, timeout: float = 10.0) -> None:
        start = self.ok
        wait_for(lambda: self.ok - start >= n, timeout, what=f"{n} more requests")

    def _record(self, status: int, body: bytes, mode: str) -> None:
        with self.lock:
            if status == 200:
                self.ok += 1
                self.bodies.add(body.decode(errors="replace").split()[0] if body else "")
            else:
                self.failures.append(f"{mode}: status {status}")

    def _run(self, keepalive: bool) -> None:
        conn: http.client.HTTPConnection | None = None
        reused = False
        mode = "keep-alive" if keepalive else "new-conn"
        while not self.stop_event.is_set():
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                reused = False
            c = conn
            try:
                headers = {} if keepalive else {"Connection": "close"}
                c.request("GET", self.path, headers=headers)
                resp = c.getresponse()
                body = resp.read()
                self._record(resp.status, body, mode)
                if not keepalive or resp.will_close:
                    c.close()
                    conn = None
                else:
                    reused = True
            except (http.client.RemoteDisconnected, ConnectionResetError,
                    BrokenPipeError) as e:
                c.close()
                conn = None
                if keepalive and reused:
                    with self.lock:
                        self.retried += 1
                    continue
                with self.lock:
                    self.failures.append(f"{mode}: {e!r}")
            except OSError as e:
                c.close()
                conn = None
                with self.lock:
                    self.failures.append(f"{mode}: {e!r}")
        if conn is not None:
            conn.close()


def wait_worker_pids(server: Server, n: int, timeout: float = 15.0,
                     exclude: set[int] | frozenset[int] = frozenset()) -> set[int]:
    """Wait for exactly n live workers (children of the arbiter), none of them in `exclude`."""
    def check() -> set[int] | None:
        w = server.workers()
        return w if len(w) == n and not (w & exclude) else None
    return wait_for(check, timeout, what=f"{n} workers (excluding {sorted(exclude)})")


ARBITER_APP = '''
import os, time
VERSION = {version!r}
{extra}
_hog = []


def app(environ, start_response):
    path = environ["PATH_INFO"]
    qs = environ.get("QUERY_STRING", "")
    if path == "/slow":
        open("slow-started", "w").close()
        time.sleep(float(qs or 1))
    elif path == "/hang":
        open("hang-started", "w").close()
        while True:
            time.sleep(1)
    elif path == "/hog":
        _hog.append(b"x" * (int(qs or 1) * 1024 * 1024))
    body = ("%s %d\\n" % (VERSION, os.getpid())).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''


def write_app(directory: Path, version: str = "v1", extra: str = "",
              name: str = "app") -> Path:
    """A WSGI app module `name:app` answering 'VERSION PID'; /slow?S, /hang, /hog?MB.

    /slow and /hang create `slow-started` / `hang-started` in the cwd when they begin.

    `extra` is module-level code run at import (e.g. `raise RuntimeError(...)`).
    """
    path = directory / f"{name}.py"
    path.write_text(ARBITER_APP.format(version=version, extra=extra))
    return path


def arbiter_server(directory: Path, *opts: str, app: str = "app:app",
                   env: dict[str, str] | None = None) -> Server:
    """reclusterd on a fresh port, cwd = directory (the app's home), no stale .pyc."""
    full_env = {"PYTHONDONTWRITEBYTECODE": "1"}
    full_env.update(env or {})
    return reclusterd(app, *opts, cwd=directory, env=full_env)


# OPS ---------------------------------------------------------------------------------
# Helpers for tests/e2e/test_ops_*.py: inherited fds, unix sockets, TLS, a probe app.

OPS_ECHO_APP = '''
import json, os

def app(environ, start_response):
    body = json.dumps({"pid": os.getpid(), "remote_addr": environ.get("REMOTE_ADDR"),
                       "scheme": environ.get("wsgi.url_scheme"),
                       "path": environ.get("PATH_INFO")}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''


def ops_write_echo_app(directory: Path) -> str:
    """A WSGI app `opsapp:app` answering JSON: pid, REMOTE_ADDR, wsgi.url_scheme, path."""
    (directory / "opsapp.py").write_text(OPS_ECHO_APP)
    return "opsapp:app"


def ops_server_with_fds(args: Sequence[str], fds: Sequence[int], **kw: object) -> Server:
    """A Server whose process inherits `fds` under the same numbers (fd://N, LISTEN_FDS)."""
    real = subprocess.Popen

    def popen(*a: object, **k: object) -> subprocess.Popen[bytes]:
        k["pass_fds"] = tuple(fds)
        return real(*a, **k)  # type: ignore[call-overload, no-any-return]

    subprocess.Popen = popen  # type: ignore[assignment, misc]
    try:
        return Server(args, **kw)  # type: ignore[arg-type]
    finally:
        subprocess.Popen = real  # type: ignore[misc]


def ops_parse_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Minimal parse of a Content-Length or close-delimited response (status, headers, body)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        body = body[:int(headers["content-length"])]
    return status, headers, body


def ops_unix_get(path: str | Path, target: str = "/", timeout: float = 5.0,
                 ) -> tuple[int, dict[str, str], bytes]:
    """GET over a unix stream socket with Connection: close."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
                  .encode())
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return ops_parse_response(b"".join(chunks))


def ops_unix_answers(path: str | Path) -> bool:
    try:
        return ops_unix_get(path, timeout=1.0)[0] == 200
    except OSError:
        return False


def ops_make_cert(directory: Path) -> tuple[str, str] | None:
    """A self-signed cert/key for localhost via the openssl CLI; None when it is missing."""
    import shutil

    if not shutil.which("openssl"):
        return None
    cert, key = directory / "cert.pem", directory / "key.pem"
    r = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)], capture_output=True, timeout=60)
    if r.returncode != 0:
        return None
    return str(cert), str(key)


def ops_https_get(port: int, target: str = "/", cafile: str | None = None,
                  timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """GET over TLS to 127.0.0.1 (verifying against `cafile` when given)."""
    import ssl

    ctx = ssl.create_default_context(cafile=cafile)
    if cafile is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
                  .encode())
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except ssl.SSLError:
            pass
    return ops_parse_response(b"".join(chunks))


def ops_http_ok(port: int, target: str = "/", host: str = "127.0.0.1") -> bool:
    try:
        return http_get(port, target, host=host, timeout=2.0)[0] == 200
    except OSError:
        return False


# WORKERS: read several responses on one connection (keep-alive, pipelining), parsed by h11.

class Resp:
    """One parsed response: status, lower-case header dict (repeats joined by ','), body."""

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes,
                 complete: bool) -> None:
        self.status = status
        self.header_list = [(k.decode().lower(), v.decode("latin-1")) for k, v in headers]
        self.headers: dict[str, str] = {}
        for k, v in self.header_list:
            self.headers[k] = self.headers[k] + "," + v if k in self.headers else v
        self.body = body
        self.complete = complete

    def __repr__(self) -> str:
        return f"Resp({self.status}, {self.headers}, {self.body[:80]!r})"


def read_responses(sock: socket.socket, methods: Sequence[str], timeout: float = 10.0,
                   informational: list[int] | None = None) -> tuple[list[Resp], bool]:
    """Read one response per entry of `methods` (HEAD matters for framing) from `sock`.

    Returns (responses, closed): stops early if the server closes. Raw bytes after the
    last response are kept in the h11 buffer (callers check `closed` for "nothing more").
    Informational (1xx) status codes seen are appended to `informational`.
    """
    import h11

    conn = h11.Connection(h11.CLIENT)
    out: list[Resp] = []
    closed = False
    sock.settimeout(timeout)
    for method in methods:
        conn.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
        conn.send(h11.EndOfMessage())
        status, body = 0, b""
        headers: list[tuple[bytes, bytes]] = []
        while True:
            try:
                ev = conn.next_event()
            except h11.RemoteProtocolError:
                return out + [Resp(status, headers, body, False)], True
            if ev is h11.NEED_DATA:
                if closed:
                    if status:
                        out.append(Resp(status, headers, body, False))
                    return out, True
                try:
                    data = sock.recv(65536)
                except (TimeoutError, ConnectionResetError):
                    data = b""
                closed = not data
                conn.receive_data(data)
                continue
            if isinstance(ev, h11.InformationalResponse):
                if informational is not None:
                    informational.append(ev.status_code)
            elif isinstance(ev, h11.Response):
                status, headers = ev.status_code, list(ev.headers)
            elif isinstance(ev, h11.Data):
                body += ev.data
            elif isinstance(ev, h11.EndOfMessage):
                out.append(Resp(status, headers, body, True))
                break
            elif isinstance(ev, h11.ConnectionClosed):
                return out, True
        if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
            return out, True
        conn.start_next_cycle()
    return out, closed


def server_closes(sock: socket.socket, timeout: float = 5.0) -> bool:
    """True if the server closes `sock` (EOF or reset) within `timeout`, sending nothing more."""
    sock.settimeout(timeout)
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


# ASGI ---------------------------------------------------------------------------------
# A small blocking WebSocket client over a raw socket, framed by wsproto (tests only).

class WSClient:
    """Connect, handshake, then send/recv messages; events are wsproto events."""

    def __init__(self, port: int, path: str = "/", subprotocols: Sequence[str] = (),
                 host: str = "127.0.0.1", timeout: float = 10.0,
                 extensions: Sequence[object] = ()) -> None:
        from wsproto import WSConnection
        from wsproto.connection import ConnectionType
        from wsproto.events import Request as WSRequest

        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.events: list[object] = []
        self.closed = False
        self.sock.sendall(self.ws.send(WSRequest(host=f"{host}:{port}", target=path,
                                                 subprotocols=list(subprotocols),
                                                 extensions=list(extensions))))  # type: ignore[arg-type]

    def _pump(self) -> None:
        try:
            data = self.sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            data = b""
        if not data:
            self.closed = True
            self.ws.receive_data(None)
        else:
            self.ws.receive_data(data)
        self.events.extend(self.ws.events())

    def next_event(self) -> object:
        """The next wsproto event from the server (a CloseConnection(1006) once closed)."""
        while not self.events:
            if self.closed:
                raise AssertionError("websocket closed with no more events")
            self._pump()
        return self.events.pop(0)

    def send(self, event: object) -> None:
        self.sock.sendall(self.ws.send(event))  # type: ignore[arg-type]

    def raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> WSClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ASGI: the test app for tests/e2e/test_asgi_*.py (HTTP routes, lifespan markers, websocket).
ASGI_APP = r'''
import asyncio, json, os
MARK = os.environ.get("ASGI_MARKERS")

def mark(s):
    if MARK:
        with open(MARK, "a") as f:
            f.write(f"{s} {os.getpid()}\n")

async def lifespan(scope, receive, send):
    while True:
        m = await receive()
        if m["type"] == "lifespan.startup":
            if os.environ.get("ASGI_FAIL_STARTUP") or os.path.exists("fail_startup"):
                await send({"type": "lifespan.startup.failed", "message": "db unreachable"})
                return
            scope["state"]["started_by"] = os.getpid()
            mark("startup")
            await send({"type": "lifespan.startup.complete"})
        elif m["type"] == "lifespan.shutdown":
            mark("shutdown")
            await send({"type": "lifespan.shutdown.complete"})
            return

async def ws(scope, receive, send):
    await receive()
    if scope["path"] == "/reject":
        await send({"type": "websocket.close"})
        return
    subs = scope["subprotocols"]
    await send({"type": "websocket.accept", "subprotocol": subs[0] if subs else None})
    while True:
        m = await receive()
        if m["type"] == "websocket.disconnect":
            mark(f"wsdisconnect {m['code']}")
            return
        if m.get("text") == "close":
            await send({"type": "websocket.close", "code": 4001, "reason": "bye"})
            return
        if m.get("text") is not None:
            await send({"type": "websocket.send", "text": m["text"]})
        else:
            await send({"type": "websocket.send", "bytes": m["bytes"]})

async def body_of(receive):
    chunks = []
    while True:
        m = await receive()
        assert m["type"] == "http.request", m
        chunks.append(m["body"])
        if not m.get("more_body"):
            return b"".join(chunks), len(chunks)

async def app(scope, receive, send):
    t = scope["type"]
    if t == "lifespan":
        return await lifespan(scope, receive, send)
    if t == "websocket":
        return await ws(scope, receive, send)
    path = scope["path"]
    headers = [(b"content-type", b"text/plain")]
    if path.startswith("/scope"):
        s = {k: v for k, v in scope.items() if k != "headers"}
        s["headers"] = [[k.decode(), v.decode()] for k, v in scope["headers"]]
        s = {k: (v.decode("latin-1") if isinstance(v, bytes) else v) for k, v in s.items()}
        body = json.dumps(s).encode()
    elif path == "/echo":
        data, n = await body_of(receive)
        headers.append((b"x-chunks", str(n).encode()))
        body = data
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for i in range(5):
            await send({"type": "http.response.body", "body": b"part%d\n" % i, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    elif path == "/sleep":
        mark("sleeping")
        await asyncio.sleep(0.5)
        body = b"slept"
    elif path == "/error":
        raise RuntimeError("boom")
    elif path == "/error-after-start":
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("boom after start")
    elif path == "/listheaders":
        await send({"type": "http.response.start", "status": 201,
                    "headers": [[b"x-list", b"yes"], [b"content-length", b"2"]]})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    elif path == "/noresponse":
        return
    elif path == "/badmsg":
        await send({"type": "http.response.body", "body": b"x"})
        return
    else:
        body = b"Hello, world!"
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
'''


def asgi_write_app(directory: Path) -> Path:
    """Write the ASGI test app as `tapp.py` into `directory` (serve it as tapp:app)."""
    (directory / "tapp.py").write_text(ASGI_APP)
    return directory / "tapp.py"
