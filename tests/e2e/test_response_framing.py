"""Issue 13, item 11: an app that breaks its own response framing (more body than its
Content-Length, less at the end, content on 204/304) gets the same treatment on every
worker class: the error is raised into the app while it can still see it, logged once
(one line, no traceback), and the connection closes, so a pipelined request behind it is
never answered out of step and the client never reads the surplus as a response.
"""

from __future__ import annotations

import pytest

from tests.support.http_client import raw_request
from tests.support.process import reclusterd, wait_for

KINDS = [("sync", "wsgi", "httptools"), ("thread", "wsgi", "h11"),
         ("thread", "wsgi", "httptools"), ("asyncio", "asgi", "httptools"),
         ("asyncio", "asgi", "h11")]
CASES = ["/bad/over", "/bad/over?split", "/bad/short", "/bad/short?split",
         "/bad/body?status=204", "/bad/body?status=304", "/bad/body?status=204&split"]
NEXT = b"GET /env HTTP/1.1\r\nHost: a\r\n\r\n"


def answer(raw: bytes) -> tuple[int, int | None, bytes]:
    """(status, declared Content-Length, body bytes after the head) of the one response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = next((int(v) for k, _, v in (ln.partition(b":") for ln in lines[1:])
                   if k.strip().lower() == b"content-length"), None)
    return status, length, body


@pytest.mark.parametrize(("kind", "flavour", "parser"), KINDS)
def test_framing_violations_error_log_once_and_close(kind: str, flavour: str,
                                                     parser: str) -> None:
    with reclusterd(f"tests.apps.details:{flavour}", "--workers", "1", "--worker-class", kind,
                    "--http", parser) as srv:
        srv.wait_ready()
        for target in CASES:
            # a keep-alive request with a pipelined one behind it
            raw = raw_request(srv.port, f"GET {target} HTTP/1.1\r\nHost: a\r\n\r\n".encode()
                              + NEXT)
            status, length, body = answer(raw)
            assert raw.count(b"HTTP/1.1 ") == 1, (target, raw)   # the next one: never
            if status == 500:
                assert length == len(body), (target, raw)
            else:   # the head went out first: the body stops short, the connection closes
                assert status == 200 and length is not None and len(body) < length, \
                    (target, raw)
        lines = wait_for(lambda: _count(srv.stderr(), "broke its response framing",
                                        len(CASES)), what="one log line per violation")
        assert all("closing the connection" in ln for ln in lines)
        err = srv.stderr()
        assert "Traceback" not in err, err
        # raised into the app while it runs: every case for ASGI (its last send() fails);
        # a WSGI app has returned before a short body shows, so only the others reach it
        seen = err.count("details: app saw")
        assert seen == (len(CASES) if flavour == "asgi" else len(CASES) - 2), err


def _count(text: str, needle: str, n: int) -> list[str] | None:
    lines = [ln for ln in text.splitlines() if needle in ln]
    assert len(lines) <= n, text
    return lines if len(lines) == n else None


@pytest.mark.parametrize(("kind", "flavour"), [("thread", "wsgi"), ("asyncio", "asgi")])
def test_a_head_request_body_is_dropped_not_an_error(kind: str, flavour: str) -> None:
    """RFC 9110 §9.3.2: apps send the GET body to HEAD; the server drops it, no error."""
    with reclusterd(f"tests.apps.details:{flavour}", "--workers", "1", "--worker-class",
                    kind) as srv:
        srv.wait_ready()
        raw = raw_request(srv.port, b"HEAD /env HTTP/1.1\r\nHost: a\r\n\r\n" + NEXT)
        assert raw.count(b"HTTP/1.1 200 ") == 2, raw
        assert "framing" not in srv.stderr()
