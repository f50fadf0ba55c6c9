"""README's "Writing a worker class" example, byte for byte (tests/e2e/test_worker_plugin.py)."""

import socket
import time

from reclusterd.workers.base import Worker


class TinyWorker(Worker):
    app_kinds = ("wsgi",)

    def run(self) -> None:
        self.install_signals()
        sock = self.listeners[0].sock
        sock.settimeout(self.hb_interval)       # wake up for heartbeats and TERM
        self.channel.ready()
        while not self.draining:
            self.maybe_heartbeat()
            try:
                conn, _ = sock.accept()
            except (TimeoutError, BlockingIOError, InterruptedError):
                continue
            with conn:
                self.serve(conn)

    def serve(self, conn: socket.socket) -> None:
        t0 = time.monotonic()
        token = self.meter.started(t0)
        path = conn.recv(65536).split(b" ")[1].decode("latin-1")
        got: list[str] = []
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "",
                   "SERVER_NAME": "localhost", "SERVER_PORT": "0",
                   "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http"}
        body = b"".join(self.app(environ, lambda status, headers: got.append(status)))
        conn.sendall(f"HTTP/1.1 {got[0]}\r\nContent-Length: {len(body)}\r\n"
                     "Connection: close\r\n\r\n".encode() + body)
        self.meter.finished(token, int(got[0][:3]), time.monotonic() - t0)
