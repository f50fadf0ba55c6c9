"""Unit tests for reclusterd.logging: formats, access atoms, JSON, reopen after rotation."""

from __future__ import annotations

import base64
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reclusterd import config, logsink
from reclusterd import logging as rlog
from reclusterd.logging import AccessInfo, AccessLog, format_line


@pytest.fixture(autouse=True)
def restore_error_logger() -> Iterator[None]:
    """setup_logging changes a process-wide logger: put it back for other tests (caplog)."""
    logger = logging.getLogger("reclusterd.error")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    for h in list(logger.handlers):
        if h not in saved[0]:
            logger.removeHandler(h)
            h.close()
    rlog._handlers.clear()
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


def info(**kw: Any) -> AccessInfo:
    base: dict[str, Any] = dict(
        remote_addr="10.0.0.1", method=b"GET", target=b"/p/a?x=1&y=2", http_version="1.1",
        status=200, response_length=12, request_time=0.25,
        request_headers=[(b"user-agent", b"curl/8"), (b"referer", b"http://r/"),
                         (b"x-req-id", b"abc")],
        response_headers=[(b"content-type", b"text/plain")])
    base.update(kw)
    return AccessInfo(**base)


def test_response_header_and_environ_atoms_print_their_values() -> None:
    """%({x}o)s: a response header as the app gave it (WSGI str, ASGI bytes pairs);
    %({x}e)s: a WSGI environ key or an ASGI scope key."""
    fmt = "%({Content-Type}o)s|%({x-id}o)s|%({wsgi.url_scheme}e)s|%({nope}e)s"
    wsgi = info(response_headers=[("Content-Type", "text/html"), ("X-Id", "7")],
                extra={"wsgi.url_scheme": "https", "REMOTE_PORT": "1"})
    assert format_line(fmt, wsgi) == "text/html|7|https|-"
    asgi = info(response_headers=[(b"content-type", b"a/b")],
                extra={"scheme": "http", "raw_path": b"/r", "server": ("h", 80)})
    assert format_line("%({content-type}o)s|%({raw_path}e)s|%({server}e)s", asgi) == (
        "a/b|/r|('h', 80)")


def test_environ_atom_names_are_case_insensitive() -> None:
    """As Gunicorn's: `{request_method}e` finds REQUEST_METHOD, `{SCHEME}e` finds scheme."""
    wsgi = info(extra={"REQUEST_METHOD": "POST", "wsgi.url_scheme": "https"})
    assert format_line("%({request_method}e)s|%({WSGI.URL_SCHEME}e)s|%({nope}e)s",
                       wsgi) == "POST|https|-"
    asgi = info(extra={"scheme": "http", "http_version": "1.1"})
    assert format_line("%({SCHEME}e)s|%({Http_Version}e)s", asgi) == "http|1.1"


def test_default_format() -> None:
    line = format_line(rlog.DEFAULT_ACCESS_FORMAT, info())
    assert re.fullmatch(
        r'10\.0\.0\.1 - - \[\d\d/\w\w\w/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] '
        r'"GET /p/a\?x=1&y=2 HTTP/1\.1" 200 12 "http://r/" "curl/8"', line), line


def test_all_atoms() -> None:
    fmt = ("%(m)s|%(U)s|%(q)s|%(H)s|%(s)s|%(b)s|%(B)s|%(T)s|%(D)s|%(M)s|%(L)s|%(p)s|"
           "%({X-Req-Id}i)s|%({content-type}o)s|%({missing}i)s")
    assert format_line(fmt, info()) == (
        f"GET|/p/a|x=1&y=2|HTTP/1.1|200|12|12|0|250000|250|0.250000|<{os.getpid()}>|"
        "abc|text/plain|-")
    assert format_line("%(b)s %(f)s %(a)s", info(response_length=0, request_headers=[])) \
        == "- - -"


def test_basic_auth_user() -> None:
    tok = base64.b64encode(b"alice:secret")
    assert format_line("%(u)s", info(request_headers=[(b"authorization", b"Basic " + tok)])) \
        == "alice"


def test_bad_format_falls_back() -> None:
    assert "GET /p/a" in format_line("%(h)d", info())


def test_json() -> None:
    rec = json.loads(format_line("json", info()))
    assert rec["method"] == "GET" and rec["path"] == "/p/a" and rec["query"] == "x=1&y=2"
    assert rec["status"] == 200 and rec["bytes"] == 12 and rec["duration"] == 0.25
    assert rec["user_agent"] == "curl/8" and rec["remote_addr"] == "10.0.0.1"


def test_access_log_disabled() -> None:
    log = AccessLog(None, None)
    assert not log.enabled
    log.log(info())


def test_access_log_file_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(str(path), "%(s)s %(U)s")
    assert log.enabled
    log.log(info())
    os.rename(path, tmp_path / "access.log.1")
    log.log(info(status=404))            # still goes to the renamed file
    rlog.reopen_logs()
    log.log(info(status=500))
    logsink.flush_all()
    assert (tmp_path / "access.log.1").read_text() == "200 /p/a\n404 /p/a\n"
    assert path.read_text() == "500 /p/a\n"
    log.close()


def test_error_log_format_file_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "error.log"
    rlog.setup_logging(config.make(error_logfile=str(path), log_level="debug"))
    logger = logging.getLogger("reclusterd.error")
    logger.debug("hello %s", "world")
    os.rename(path, tmp_path / "error.log.1")
    rlog.reopen_logs()
    logger.warning("after")
    logsink.flush_all()
    first = (tmp_path / "error.log.1").read_text()
    assert re.fullmatch(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] "
                        rf"\[{os.getpid()}\] \[DEBUG\] hello world\n", first), first
    assert path.read_text().endswith("[WARNING] after\n")
    rlog.setup_logging(config.make(error_logfile="-", log_level="info"))
    assert logger.level == logging.INFO
    assert len(logger.handlers) == 1


def test_open_log_never_blocks_on_a_fifo_without_a_reader(tmp_path: Path) -> None:
    """Issue 14 QA: open(O_WRONLY) of a FIFO nobody reads waits for a reader."""
    fifo = str(tmp_path / "log.fifo")
    os.mkfifo(fifo)
    fd, unread = rlog.open_log(fifo)        # returns at once
    try:
        assert unread and os.get_blocking(fd)   # the writer thread's writes may block
    finally:
        os.close(fd)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        fd, unread = rlog.open_log(fifo)
        assert not unread
        os.write(fd, b"line\n")
        assert os.read(reader, 100) == b"line\n"
        os.close(fd)
    finally:
        os.close(reader)
    fd, unread = rlog.open_log(str(tmp_path / "plain.log"))
    assert not unread
    os.close(fd)
