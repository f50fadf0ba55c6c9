"""Issue 14 item 8: slow readers cost the thread worker buffers, not threads. A response
write that would block parks the connection in epoll and gives the pool thread back."""

from __future__ import annotations

import socket
import threading
import time

from tests.support.http_client import http_get
from tests.support.process import reclusterd, wait_for, wait_log

APP = "tests.e2e.test_wsgi_apps:app"


class SlowReader:
    """Downloads /big (20 MiB) reading 64 KiB every 2 s, on a small receive buffer."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(b"GET /big?20 HTTP/1.1\r\nHost: h\r\n\r\n")
        self.got = 0
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while not self.stop.is_set():
                data = self.sock.recv(64 * 1024)
                if not data:
                    return
                self.got += len(data)
                self.stop.wait(2.0)         # the client's pace, not a wait for the server
        except OSError as e:
            self.error = e

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


def test_eight_slow_readers_do_not_starve_normal_requests() -> None:
    with reclusterd(APP, "-k", "thread", "--workers", "1", "--threads", "4") as srv:
        srv.wait_ready()
        wait_log(srv, ") ready in")
        readers = [SlowReader(srv.port) for _ in range(8)]
        try:
            wait_for(lambda: all(r.got for r in readers), timeout=10,
                     what="every slow reader to get its first bytes")
            t0 = time.monotonic()
            for _ in range(20):
                status, _, body = http_get(srv.port, "/hello", timeout=5)
                assert status == 200 and body == b"Hello, world!\n"
            assert time.monotonic() - t0 < 10
            # ...while every slow reader is still mid-transfer, and none was dropped.
            assert all(r.error is None and 0 < r.got < 20 << 20 for r in readers)
        finally:
            for r in readers:
                r.close()
