"""HTTP client helpers for end-to-end tests: raw bytes, one GET parsed strictly by h11,
several responses on one connection, and GETs over unix sockets and TLS."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from collections.abc import Sequence
from pathlib import Path

import h11


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


def get_body(port: int, path: str = "/", timeout: float = 5.0) -> str:
    """GET with a fresh connection; the body as text ('' unless status 200)."""
    try:
        status, _, body = http_get(port, path, timeout=timeout)
    except Exception:  # connection refused/reset, or h11 seeing a truncated response
        return ""
    return body.decode(errors="replace") if status == 200 else ""


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
