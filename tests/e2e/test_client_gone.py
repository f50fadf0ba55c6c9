"""Issue 13, items 9-10: a client that leaves while its response streams is gone.

ASGI: its FIN delivers http.disconnect to a pending receive(), Starlette's
request.is_disconnected() turns True, an SSE StreamingResponse stops. On every worker
class a client going away is logged at most as one line below warning (no traceback,
no ERROR), and the app's finally blocks run.
"""

from __future__ import annotations

import socket
import struct

import pytest

from tests.support.process import Server, reclusterd, wait_log

PARSERS = ["httptools", "h11"]


def leave_after(port: int, request: bytes, first: bytes, close: str = "close") -> None:
    """Send `request`, read until `first` arrives, then go away (FIN, or half-close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        got = b""
        while first not in got:
            chunk = s.recv(65536)
            assert chunk, got
            got += chunk
        if close == "shutdown":
            s.shutdown(socket.SHUT_WR)
            wait_for_close(s)


def wait_for_close(s: socket.socket) -> None:
    """Half-closed: the server must end the response and close (read until EOF)."""
    s.settimeout(10)
    while s.recv(65536):
        pass


def assert_quiet(srv: Server) -> None:
    err = srv.stderr()
    assert "Traceback" not in err, err
    assert "ERROR" not in err and "WARNING" not in err, err


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize("close", ["close", "shutdown"])
def test_asgi_disconnect_reaches_a_pending_receive(parser: str, close: str) -> None:
    with reclusterd("tests.apps.details:asgi", "--workers", "1", "--http", parser) as srv:
        srv.wait_ready()
        leave_after(srv.port, b"GET /stream HTTP/1.1\r\nHost: a\r\n\r\n", b"first\n", close)
        wait_log(srv, "details: receive gave http.disconnect")
        wait_log(srv, "details: finally ran")
        wait_log(srv, "receive gave http.request\n")  # the (empty) body came first
        assert_quiet(srv)


@pytest.mark.parametrize("parser", PARSERS)
def test_starlette_sse_stops_and_is_disconnected_turns_true(parser: str) -> None:
    with reclusterd("tests.apps.details_starlette:app", "--workers", "1", "--http", parser,
                    "--log-level", "debug") as srv:
        srv.wait_ready()
        for _ in range(2):      # the worker keeps serving after each
            leave_after(srv.port, b"GET /sse HTTP/1.1\r\nHost: a\r\n\r\n", b"data: 2\n\n")
            leave_after(srv.port, b"GET /watch HTTP/1.1\r\nHost: a\r\n\r\n", b"first\n")
        wait_log(srv, "details: sse finally ran", count=2)
        wait_log(srv, "details: is_disconnected turned True", count=2)
        assert_quiet(srv)


@pytest.mark.parametrize("kind", ["sync", "thread"])
@pytest.mark.parametrize("parser", PARSERS)
def test_wsgi_client_gone_is_not_an_error(kind: str, parser: str) -> None:
    with reclusterd("tests.apps.details:wsgi", "--workers", "1", "--worker-class", kind,
                    "--http", parser) as srv:
        srv.wait_ready()
        # a streamed response the client stops reading and leaves
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
            s.sendall(b"GET /stream HTTP/1.1\r\nHost: a\r\n\r\n")
            assert s.recv(65536)
        wait_log(srv, "details: finally ran")
        # an upload that breaks off, which the app turns into its own error
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.sendall(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc")
        wait_log(srv, "details: finally ran", count=2)
        assert_quiet(srv)
