"""sd_notify over a real AF_UNIX datagram socket: READY, RELOADING (+MONOTONIC_USEC), STATUS."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.apps import write_app
from tests.support.process import arbiter_server, wait_worker_pids


class Notifications:
    """The NOTIFY_SOCKET end: collects datagrams, waits for one that matches."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.got: list[str] = []

    def expect(self, *lines: str, timeout: float = 20.0) -> str:
        """The next datagram containing every one of `lines` (earlier ones are kept)."""
        deadline = time.monotonic() + timeout
        while True:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                msg = self.sock.recv(4096).decode()
            except TimeoutError:
                raise AssertionError(f"no notification with {lines}; got {self.got}") from None
            self.got.append(msg)
            if all(line in msg.split("\n") for line in lines):
                return msg


@pytest.fixture
def notes(tmp_path: Path) -> Iterator[Notifications]:
    n = Notifications(tmp_path / "notify.sock")
    yield n
    n.sock.close()


def test_status_follows_worker_count_and_reloading_is_stamped(
        tmp_path: Path, notes: Notifications) -> None:
    write_app(tmp_path)
    with arbiter_server(tmp_path, "--workers", "2", "--backoff", "1",
                        env={"NOTIFY_SOCKET": str(notes.path)}) as srv:
        notes.expect("READY=1", "STATUS=serving, generation 1, 2 of 2 workers ready")
        srv.signal(signal.SIGTTIN)
        notes.expect("STATUS=serving, generation 1, 3 of 3 workers ready")
        srv.signal(signal.SIGTTOU)
        notes.expect("STATUS=serving, generation 1, 2 of 2 workers ready")
        # the retired third worker may still be exiting: pick one of the two serving
        os.kill(min(wait_worker_pids(srv, 2)), signal.SIGKILL)  # a crash: down, then back
        notes.expect("STATUS=serving, generation 1, 1 of 2 workers ready")
        notes.expect("STATUS=serving, generation 1, 2 of 2 workers ready")
        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        srv.signal(signal.SIGHUP)
        msg = notes.expect("RELOADING=1")
        after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        stamp = [x for x in msg.split("\n") if x.startswith("MONOTONIC_USEC=")]
        assert len(stamp) == 1 and before <= int(stamp[0].split("=")[1]) <= after
        notes.expect("READY=1", "STATUS=serving, generation 2, 2 of 2 workers ready")
        srv.signal(signal.SIGTERM)
        notes.expect("STOPPING=1")
        assert srv.wait_exit(15) == 0
