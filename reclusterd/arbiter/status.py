"""The arbiter's status endpoint: /metrics (Prometheus text), /livez, /readyz.

The arbiter sums its workers' heartbeats into a snapshot (policy.snapshot);
`render` turns that into Prometheus text and `StatusServer` answers HTTP from
inside the arbiter's select loop: `fileno()` is an epoll/kqueue fd that turns
readable when any of its sockets (the listener and open connections) is ready,
and `handle_io()` does only non-blocking work with tiny bounded buffers, so the
arbiter never stalls. /livez fails once no worker has been ready for longer than
--boot-timeout (a crash-looping app), /readyz while too few are ready.
"""

from __future__ import annotations

import selectors
import socket
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from reclusterd import sockets
from reclusterd.meter import BUCKETS, CLASSES, H2_OPEN, PROTOCOLS, bucket_key, protocol_key

if TYPE_CHECKING:
    from reclusterd.config import Config

Snapshot = Callable[[], Mapping[str, Any]]


def _states(snap: Mapping[str, Any]) -> dict[str, int]:
    workers = snap.get("workers")
    if not isinstance(workers, Mapping):
        workers = snap.get("states") or {}
    return {str(k): int(v) for k, v in workers.items()}


def _totals(snap: Mapping[str, Any]) -> Mapping[str, float]:
    totals = snap.get("totals")
    if not isinstance(totals, Mapping):
        totals = snap.get("stats")
    return totals if isinstance(totals, Mapping) else {}


def is_ready(snap: Mapping[str, Any]) -> bool:
    """/readyz: the arbiter's verdict `ready`; else not shutting down and >= min_ready ready."""
    if "ready" in snap:
        return bool(snap["ready"])
    if snap.get("shutting_down") or snap.get("stopping"):
        return False
    return _states(snap).get("ready", 0) >= max(1, int(snap.get("min_ready", 1)))


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def render(snap: Mapping[str, Any]) -> str:
    """Prometheus text exposition (format 0.0.4) of the arbiter's snapshot.

    Reads `workers` (state -> count), `totals` (heartbeat keys summed over live and
    exited workers), `restarts` (reason -> count), `ready`, `generation`
    (`states`/`stats` accepted as older names).
    """
    t = _totals(snap)
    lines: list[str] = []

    def family(name: str, kind: str, help_: str) -> None:
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} {kind}")

    family("reclusterd_workers", "gauge", "Worker processes by state.")
    workers = _states(snap)
    for state in ("booting", "ready", "draining"):
        workers.setdefault(state, 0)
    for state, n in sorted(workers.items()):
        lines.append(f'reclusterd_workers{{state="{state}"}} {int(n)}')
    family("reclusterd_ready", "gauge", "1 while /readyz answers 200.")
    lines.append(f"reclusterd_ready {1 if is_ready(snap) else 0}")
    if "generation" in snap:
        family("reclusterd_generation", "gauge", "Current worker generation (bumps on reload).")
        lines.append(f"reclusterd_generation {int(snap['generation'])}")
    family("reclusterd_requests_total", "counter", "Requests handled by all workers.")
    lines.append(f"reclusterd_requests_total {_num(t.get('requests', 0))}")
    # A labelled family of its own: a label on reclusterd_requests_total would turn its
    # one series into three and break every query that reads it as a single number.
    family("reclusterd_requests_by_protocol_total", "counter",
           "Requests by HTTP version (HTTP/1.0, HTTP/1.1, HTTP/2).")
    for version in PROTOCOLS:
        lines.append(f'reclusterd_requests_by_protocol_total{{protocol="HTTP/{version}"}} '
                     f"{_num(t.get(protocol_key(version), 0))}")
    family("reclusterd_http2_connections_open", "gauge", "HTTP/2 connections open now.")
    lines.append(f"reclusterd_http2_connections_open {_num(t.get(H2_OPEN, 0))}")
    family("reclusterd_responses_total", "counter", "Responses by status class.")
    for cls in CLASSES:
        lines.append(f'reclusterd_responses_total{{class="{cls}"}} '
                     f"{_num(t.get('s' + cls, 0))}")
    family("reclusterd_worker_restarts_total", "counter", "Worker replacements by reason.")
    for reason, n in sorted((snap.get("restarts") or {}).items()):
        lines.append(f'reclusterd_worker_restarts_total{{reason="{_label(reason)}"}} {int(n)}')
    family("reclusterd_requests_in_flight", "gauge", "Requests being handled right now.")
    lines.append(f"reclusterd_requests_in_flight {_num(t.get('in_flight', 0))}")
    family("reclusterd_workers_rss_bytes", "gauge", "Resident memory of all workers.")
    lines.append(f"reclusterd_workers_rss_bytes {_num(t.get('rss_kb', 0) * 1024)}")
    family("reclusterd_log_lines_dropped_total", "counter",
           "Log lines dropped because the log output could not keep up.")
    lines.append(f"reclusterd_log_lines_dropped_total {_num(t.get('log_dropped', 0))}")
    family("reclusterd_request_duration_seconds", "histogram", "Request duration.")
    cum = 0.0
    for i, bound in enumerate((*BUCKETS, float("inf"))):
        cum += t.get(bucket_key(i), 0.0)
        le = "+Inf" if bound == float("inf") else repr(bound)
        lines.append(f'reclusterd_request_duration_seconds_bucket{{le="{le}"}} {_num(cum)}')
    lines.append(f"reclusterd_request_duration_seconds_sum {_num(t.get('dsum', 0.0))}")
    lines.append(f"reclusterd_request_duration_seconds_count {_num(cum)}")
    return "\n".join(lines) + "\n"


def _label(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


# ---------------------------------------------------------------- status server

MAX_REQUEST = 4096
MAX_CONNECTIONS = 64
CONN_TIMEOUT = 5.0


class _Conn:
    __slots__ = ("sock", "fd", "inbuf", "outbuf", "born")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.inbuf = b""
        self.outbuf = b""
        self.born = time.monotonic()


class StatusServer:
    """Tiny HTTP/1.0 server for the arbiter's select loop: /metrics, /livez, /readyz."""

    def __init__(self, cfg: Config, snapshot: Snapshot) -> None:
        address = cfg.status_bind
        if not address:
            raise ValueError("StatusServer needs cfg.status_bind")
        # cfg's umask applies to a unix status socket; nothing else of the app's binds
        options = sockets.BindOptions(backlog=64, reuse_port=False, umask=cfg.umask)
        [self.listener] = sockets.bind_listeners([address], {}, options)
        self.address = address
        self.snapshot = snapshot
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener.sock, selectors.EVENT_READ, None)
        self.conns: dict[int, _Conn] = {}

    def fileno(self) -> int:
        """Readable when the listener or any connection needs attention."""
        return int(self.selector.fileno())

    def handle_io(self) -> None:
        """Do all pending non-blocking work; safe to call any time (also expires idle conns)."""
        for key, events in self.selector.select(0):
            if key.data is None:
                self._accept()
            else:
                conn: _Conn = key.data
                if events & selectors.EVENT_READ:
                    self._read(conn)
                if events & selectors.EVENT_WRITE and conn.fd in self.conns:
                    self._write(conn)
        now = time.monotonic()
        for conn in [c for c in self.conns.values() if now - c.born > CONN_TIMEOUT]:
            self._close(conn)

    def close_in_child(self) -> None:
        """In a forked worker: close every inherited fd, unlink nothing."""
        for conn in list(self.conns.values()):
            conn.sock.close()
        self.conns.clear()
        self.selector.close()
        self.listener.sock.close()

    def close(self) -> None:
        for conn in list(self.conns.values()):
            self._close(conn)
        self.selector.close()
        sockets.close_listeners([self.listener])

    # -- internals ---------------------------------------------------------
    def _accept(self) -> None:
        for _ in range(16):
            try:
                sock, _ = self.listener.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if len(self.conns) >= MAX_CONNECTIONS:
                oldest = min(self.conns.values(), key=lambda c: c.born)
                self._close(oldest)
            sock.setblocking(False)
            conn = _Conn(sock)
            self.conns[conn.fd] = conn
            self.selector.register(sock, selectors.EVENT_READ, conn)

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(MAX_REQUEST)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not data:
            self._close(conn)
            return
        conn.inbuf += data
        if b"\r\n\r\n" in conn.inbuf or b"\n\n" in conn.inbuf:
            conn.outbuf = self.respond(conn.inbuf)
            conn.inbuf = b""
            self.selector.modify(conn.sock, selectors.EVENT_WRITE, conn)
            self._write(conn)
        elif len(conn.inbuf) > MAX_REQUEST:
            conn.outbuf = _response(431, "request header too large\n")
            self.selector.modify(conn.sock, selectors.EVENT_WRITE, conn)
            self._write(conn)

    def _write(self, conn: _Conn) -> None:
        try:
            sent = conn.sock.send(conn.outbuf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        conn.outbuf = conn.outbuf[sent:]
        if not conn.outbuf:
            self._close(conn)

    def _close(self, conn: _Conn) -> None:
        if self.conns.pop(conn.fd, None) is not None:
            try:
                self.selector.unregister(conn.fd)
            except (KeyError, ValueError):
                pass
        conn.sock.close()

    def respond(self, raw: bytes) -> bytes:
        """The full response bytes for one raw request head."""
        line = raw.split(b"\n", 1)[0].decode("latin-1", "replace").strip()
        parts = line.split()
        if len(parts) < 2:
            return _response(400, "bad request\n")
        method, target = parts[0], parts[1]
        if method not in ("GET", "HEAD"):
            return _response(405, "method not allowed\n", extra="Allow: GET, HEAD\r\n")
        path = target.split("?", 1)[0]
        head = method == "HEAD"
        try:
            snap = self.snapshot()
        except Exception as e:  # noqa: BLE001 - a status page must not kill the arbiter
            return _response(500, f"snapshot failed: {e}\n", head=head)
        if path == "/livez":
            if snap.get("live", True):
                return _response(200, "ok\n", head=head)
            return _response(503, "no worker ready for longer than --boot-timeout\n",
                             head=head)
        if path == "/readyz":
            if is_ready(snap):
                return _response(200, "ready\n", head=head)
            return _response(503, "not ready\n", head=head)
        if path == "/metrics":
            return _response(200, render(snap), head=head,
                             ctype="text/plain; version=0.0.4; charset=utf-8")
        return _response(404, "not found\n", head=head)


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            431: "Request Header Fields Too Large", 500: "Internal Server Error",
            503: "Service Unavailable"}


def _response(status: int, body: str, head: bool = False, extra: str = "",
              ctype: str = "text/plain; charset=utf-8") -> bytes:
    data = body.encode()
    hdr = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n"
           f"Content-Type: {ctype}\r\nContent-Length: {len(data)}\r\n"
           f"Cache-Control: no-store\r\n{extra}Connection: close\r\n\r\n")
    return hdr.encode() + (b"" if head else data)
