"""A load generator for the reload/recycle tests: every response must be a 200."""

from __future__ import annotations

import http.client
import threading

from tests.support.process import wait_for


class LoadGen:
    """Threads hammering GET `path`: half with keep-alive connections, half with a new
    connection per request. Every response must be 200; bodies are recorded.

    A request on a reused keep-alive connection that the server closed before sending
    a single byte is retried once on a new connection, as HTTP clients may for idempotent
    requests (RFC 9112 9.3.1); those are counted in `retried`, not in `failures`.
    """

    def __init__(self, port: int, path: str = "/", keepalive: int = 2, fresh: int = 2,
                 unavailable_ok: bool = False) -> None:
        self.port = port
        self.path = path
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.retried = 0
        self.unavailable = 0
        self.unavailable_ok = unavailable_ok
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

    def _record(self, status: int, body: bytes, mode: str, closes: bool = False) -> None:
        with self.lock:
            if status == 503 and closes and self.unavailable_ok:
                self.unavailable += 1
            elif status == 200:
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
                self._record(resp.status, body, mode, resp.will_close)
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
