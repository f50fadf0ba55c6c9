"""Issue 14 item 6: a log reader that stops reading never stops serving.

stdout and stderr go to one pipe nobody reads (`2>&1 | cat` with cat stopped): once
the pipe is full, log lines are dropped and counted, and every request is still served.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.support.http_client import http_get
from tests.support.process import ROOT, free_port, port_answers, reclusterd, wait_for, wait_log

REQUESTS = 3000
CLIENTS = 4
LONG_PATH = "/" + "x" * 2000    # ~2 KB per access line: 6 MB in all, far over any buffer


def dropped(status_port: int) -> float:
    _, _, body = http_get(status_port, "/metrics", timeout=5)
    m = re.search(rb"^reclusterd_log_lines_dropped_total (\S+)$", body, re.M)
    assert m, body
    return float(m.group(1))


def _client(port: int, n: int, errors: list[str]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for _ in range(n):
            conn.request("GET", LONG_PATH)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                errors.append(f"status {resp.status}")
    except OSError as e:
        errors.append(repr(e))
    finally:
        conn.close()


@pytest.mark.parametrize("klass", ["thread", "sync", "asyncio"])
def test_a_stalled_log_reader_drops_lines_instead_of_blocking(klass: str) -> None:
    port, status_port = free_port(), free_port()
    app = "tests.apps.matrix:asgi" if klass == "asyncio" else "tests.apps.matrix:wsgi"
    read_end, write_end = os.pipe()    # the reader never reads: the stopped `cat`
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("WEB_CONCURRENCY", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "reclusterd", app, "-k", klass, "--workers", "2",
         "--bind", f"127.0.0.1:{port}", "--status-bind", f"127.0.0.1:{status_port}",
         "--access-logfile", "-", "--log-level", "debug"],
        cwd=str(ROOT), env=env, stdin=subprocess.DEVNULL, stdout=write_end,
        stderr=write_end, start_new_session=True)
    os.close(write_end)
    try:
        wait_for(lambda: port_answers(port), 20, what="the server to answer")
        errors: list[str] = []
        per = REQUESTS // CLIENTS
        clients = [threading.Thread(target=_client, args=(port, per, errors))
                   for _ in range(CLIENTS)]
        for t in clients:
            t.start()
        for t in clients:
            t.join(60)
        assert not errors, errors[:5]
        wait_for(lambda: dropped(status_port) > 0, 10, what="dropped log lines in /metrics")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        os.close(read_end)


def _read_fifo_until(path: str, text: bytes, timeout: float = 20.0) -> bytes:
    """Open the FIFO for reading (the reader arriving late) and read until `text`."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    got = bytearray()
    try:
        def more() -> bool:
            try:
                got.extend(os.read(fd, 1 << 20))
            except BlockingIOError:
                pass
            return text in got
        wait_for(more, timeout, interval=0.01, what=f"{text!r} in the FIFO")
    finally:
        os.close(fd)
    return bytes(got)


@pytest.mark.parametrize(("klass", "which"), [("thread", "access"), ("asyncio", "access"),
                                              ("sync", "error")])
def test_a_log_fifo_without_a_reader_never_blocks(tmp_path: Path, klass: str,
                                                  which: str) -> None:
    """Issue 14 QA: opening a FIFO with no reader blocked the master's open(). Now it
    starts and serves; the lines wait in the pipe and buffers, then are dropped and
    counted; a reader that comes later gets them (and the drop notice)."""
    fifo = str(tmp_path / f"{which}.log")
    os.mkfifo(fifo)
    port, status_port = free_port(), free_port()
    app = "tests.apps.matrix:asgi" if klass == "asyncio" else "tests.apps.matrix:wsgi"
    logs = (["--access-logfile", fifo] if which == "access"
            else ["--error-logfile", fifo, "--access-logfile", fifo])
    with reclusterd(app, "-k", klass, "--workers", "1", "--status-bind",
                    f"127.0.0.1:{status_port}", *logs, port=port) as srv:
        wait_for(lambda: port_answers(port), 20, what="the server to answer")
        if which == "access":
            wait_log(srv, f"access-logfile: {fifo} is a FIFO with no reader")
        errors: list[str] = []
        _client(port, 1200, errors)     # ~2.4 MB of lines: more than pipe + log buffer
        assert not errors, errors[:5]
        wait_for(lambda: dropped(status_port) > 0, 10, what="dropped log lines in /metrics")
        seen = _read_fifo_until(fifo, b"line(s) were dropped")
        if which == "error":
            assert seen.count(b"is a FIFO with no reader") == 1     # the master's, once
        else:
            assert srv.stderr().count("is a FIFO with no reader") == 1
            assert LONG_PATH.encode() in seen
