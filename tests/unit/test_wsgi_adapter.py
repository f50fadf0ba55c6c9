"""The WSGI adapter (wsgi/handler.py, environ.py, response.py, input.py) with no Worker and
no socket: a fake connection takes the client's bytes and keeps the server's, and the
environ the app saw and the response bytes are checked against PEP 3333."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any, cast

import h11
import pytest

from reclusterd import config
from reclusterd.meter import Meter
from reclusterd.wsgi.handler import WSGIHandler

App = Callable[..., Any]


class FakeSock:
    """A connected client as the adapter sees it: reads return what the client sent (then
    EOF), sends are kept whole. No file descriptor, so sendfile is never chosen."""

    def __init__(self, incoming: bytes) -> None:
        self.incoming = bytearray(incoming)
        self.out = bytearray()
        self.closed = False

    def fileno(self) -> int:
        return -1

    def setblocking(self, flag: bool) -> None:
        pass

    def setsockopt(self, *args: object) -> None:
        pass

    def recv(self, n: int, flags: int = 0) -> bytes:
        data = bytes(self.incoming[:n])
        del self.incoming[:n]
        return data

    def send(self, data: bytes | memoryview) -> int:
        self.out += data
        return len(data)

    def shutdown(self, how: int) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class FakeListener:
    """The listening socket, as far as the per-listener environ keys need it."""

    def __init__(self, addr: object, fd: int) -> None:
        self.addr = addr
        self.fd = fd

    def getsockname(self) -> object:
        return self.addr

    def fileno(self) -> int:
        return self.fd


class Served:
    """What one request produced: the environ the app saw, the bytes out, reuse."""

    def __init__(self, environ: dict[str, Any], out: bytes, keep: bool, meter: Meter) -> None:
        self.environ = environ
        self.out = out
        self.keep = keep
        self.meter = meter

    def response(self) -> tuple[int, dict[str, str], bytes]:
        """The response parsed strictly by h11 (status, lower-case headers, body)."""
        conn = h11.Connection(h11.CLIENT)
        conn.send(h11.Request(method=self.environ.get("REQUEST_METHOD", "GET"), target="/",
                              headers=[("Host", "x")]))
        conn.receive_data(self.out)
        conn.receive_data(b"")
        status, headers, body = 0, {}, b""
        while True:
            ev = conn.next_event()
            if isinstance(ev, h11.Response):
                status = ev.status_code
                headers = {k.decode(): v.decode("latin-1") for k, v in ev.headers}
            elif isinstance(ev, h11.Data):
                body += ev.data
            elif isinstance(ev, (h11.EndOfMessage, h11.ConnectionClosed)) or ev is h11.NEED_DATA:
                return status, headers, body


def serve(app: App, raw: bytes, *opts: str, listener: object = ("127.0.0.1", 8000),
          secure: bool = False, peer: object = ("10.0.0.1", 1234)) -> Served:
    """Feed `raw` to a fresh connection and serve its first request with `app`."""
    cfg = config.load(["x:app", "--workers", "2", *opts], {})
    meter = Meter()
    handler = WSGIHandler(cfg, app, meter, multithread=True, secure=secure)
    seen: dict[str, Any] = {}

    def recording(environ: dict[str, Any], start_response: Any) -> Any:
        seen.update(environ)
        return app(environ, start_response)

    handler.app = recording
    lsock = FakeListener(listener, id(listener) & 0xFFFF)
    sock = FakeSock(raw)
    conn = handler.new_conn(cast(Any, sock), peer,
                            handler.listener_environ(cast(Any, lsock)))
    while not conn.events:
        conn.read_more(1.0)
    keep = handler.serve(conn, conn.events.popleft())
    return Served(seen, bytes(sock.out), keep, meter)


def hello(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"hello"]


GET = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"


# --- the environ (PEP 3333 "environ Variables", RFC 3875 §4.1) ---------------------------

def test_environ_request_keys() -> None:
    raw = (b"POST /a%20b/c?x=1&y=%20 HTTP/1.1\r\nHost: example.com:8080\r\n"
           b"Content-Type: text/plain\r\nContent-Length: 3\r\nX-Multi: a\r\nX-Multi: b\r\n"
           b"X_Under: dropped\r\n\r\nabc")
    env = serve(hello, raw).environ
    assert env["REQUEST_METHOD"] == "POST"
    assert env["PATH_INFO"] == "/a b/c"           # decoded, as latin-1 text
    assert env["QUERY_STRING"] == "x=1&y=%20"     # not decoded
    assert env["RAW_URI"] == "/a%20b/c?x=1&y=%20"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("example.com", "8080")
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("10.0.0.1", "1234")
    assert env["CONTENT_TYPE"] == "text/plain"
    assert env["CONTENT_LENGTH"] == "3"
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env
    assert env["HTTP_X_MULTI"] == "a,b"          # repeated fields joined with ","
    assert not any("UNDER" in k for k in env)    # "_" in a name: dropped (no spoofing)
    assert env["SCRIPT_NAME"] == ""


def test_environ_wsgi_keys() -> None:
    env = serve(hello, GET).environ
    assert env["wsgi.version"] == (1, 0)
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.multithread"] is True
    assert env["wsgi.multiprocess"] is True      # --workers 2
    assert env["wsgi.run_once"] is False
    assert env["wsgi.input_terminated"] is True
    assert env["SERVER_SOFTWARE"].startswith("reclusterd/")
    assert env["wsgi.input"].read() == b""


def test_environ_without_host_uses_the_listener() -> None:
    env = serve(hello, b"GET / HTTP/1.0\r\n\r\n", listener=("::1", 8443)).environ
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("[::1]", "8443")
    assert env["SERVER_PROTOCOL"] == "HTTP/1.0"


def test_environ_unix_listener_secure() -> None:
    env = serve(hello, b"GET / HTTP/1.0\r\n\r\n", listener="/run/app.sock", secure=True,
                peer="").environ
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("localhost", "443")
    assert env["wsgi.url_scheme"] == "https"
    assert env["REMOTE_ADDR"] == "" and "REMOTE_PORT" not in env


def test_environ_absolute_target_authority_wins() -> None:
    raw = b"GET http://origin.test:81/p?q HTTP/1.1\r\nHost: other\r\n\r\n"
    env = serve(hello, raw).environ
    assert env["HTTP_HOST"] == "origin.test:81"
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("origin.test", "81")
    assert env["PATH_INFO"] == "/p" and env["QUERY_STRING"] == "q"


def test_wsgi_input_reads_chunked_body() -> None:
    got: list[bytes] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        inp = environ["wsgi.input"]
        got.extend([inp.readline(), inp.read(2), inp.read()])
        start_response("200 OK", [("Content-Length", "0")])
        return []

    raw = (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"4\r\nab\nc\r\n3\r\ndef\r\n0\r\n\r\n")
    served = serve(app, raw)
    assert got == [b"ab\n", b"cd", b"ef"]
    assert "CONTENT_LENGTH" not in served.environ
    assert served.keep


def test_wsgi_errors_go_to_the_error_log(caplog: pytest.LogCaptureFixture) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        environ["wsgi.errors"].write("app says hi\n")
        environ["wsgi.errors"].writelines(["one\n", "two\n"])
        return hello(environ, start_response)

    with caplog.at_level(logging.ERROR, logger="reclusterd.error"):
        serve(app, GET)
    assert [r.getMessage() for r in caplog.records] == ["app says hi", "one", "two"]


# --- the response (PEP 3333 "The start_response() Callable", "Buffering and Streaming") --

def test_one_chunk_list_is_sent_with_its_length() -> None:
    served = serve(hello, GET)
    assert served.out.startswith(b"HTTP/1.1 200 OK\r\n")
    status, headers, body = served.response()
    assert (status, headers["content-length"], body) == (200, "5", b"hello")
    assert served.keep
    assert served.meter.requests == 1


def test_write_callable_then_iterable_stream_in_order() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"one,")
        write(b"")                                  # empty writes send nothing
        yield b"two,"
        yield b""
        yield b"three"

    served = serve(app, GET)
    status, headers, body = served.response()
    assert (status, body) == (200, b"one,two,three")
    assert headers["transfer-encoding"] == "chunked"   # no length: chunked on HTTP/1.1
    assert served.out.endswith(b"0\r\n\r\n")
    assert served.keep


def test_http10_stream_without_length_is_close_delimited() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"a"
        yield b"b"

    served = serve(app, b"GET / HTTP/1.0\r\n\r\n")
    head, _, body = served.out.partition(b"\r\n\r\n")
    assert body == b"ab"
    assert b"transfer-encoding" not in head.lower()
    assert not served.keep


def test_exc_info_before_anything_is_sent_replaces_the_response() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("X-First", "1")])
        try:
            raise ValueError("late failure")
        except ValueError:
            start_response("503 Service Unavailable", [("Content-Length", "4")],
                           sys.exc_info())
        return [b"oops"]

    status, headers, body = serve(app, GET).response()
    assert (status, body) == (503, b"oops")
    assert "x-first" not in headers


def test_exc_info_after_the_head_is_sent_reraises(caplog: pytest.LogCaptureFixture
                                                   ) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        write = start_response("200 OK", [])
        write(b"partial")
        try:
            raise ValueError("too late")
        except ValueError:
            start_response("500 Internal Server Error", [], sys.exc_info())
        return [b"never"]

    with caplog.at_level(logging.ERROR, logger="reclusterd.error"):
        served = serve(app, GET)
    assert served.out.count(b"HTTP/1.1 ") == 1     # no second head: the 200 stands
    assert b"partial" in served.out and b"never" not in served.out
    assert not served.keep                          # the response is cut: close
    assert any("too late" in (r.exc_text or "") for r in caplog.records)


def test_second_start_response_without_exc_info_is_a_500() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        start_response("201 Created", [])
        return [b""]

    assert serve(app, GET).response()[0] == 500


class Closing:
    """A response iterable with close(), failing after `fail_after` items if set."""

    def __init__(self, items: list[bytes], fail_after: int | None = None) -> None:
        self.items = items
        self.fail_after = fail_after
        self.closed = 0

    def __iter__(self) -> Iterator[bytes]:
        for i, item in enumerate(self.items):
            if i == self.fail_after:
                raise RuntimeError("iterable failed")
            yield item

    def close(self) -> None:
        self.closed += 1


def test_close_is_called_once_after_the_body() -> None:
    result = Closing([b"a", b"b"])

    def app(environ: dict[str, Any], start_response: Any) -> Closing:
        start_response("200 OK", [("Content-Length", "2")])
        return result

    assert serve(app, GET).response()[2] == b"ab"
    assert result.closed == 1


def test_close_is_called_when_the_iterable_fails() -> None:
    result = Closing([b"a", b"b"], fail_after=0)

    def app(environ: dict[str, Any], start_response: Any) -> Closing:
        start_response("200 OK", [])
        return result

    served = serve(app, GET)
    assert result.closed == 1
    assert served.response()[0] == 500             # nothing was sent yet: a 500 instead


class NoFileno(io.BytesIO):
    """A file-like object without a usable fileno() (as BytesIO), tracking close()."""

    was_closed = False

    def close(self) -> None:
        NoFileno.was_closed = True
        super().close()


@pytest.mark.parametrize("length", [True, False])
def test_file_wrapper_falls_back_to_iteration(length: bool) -> None:
    data = b"0123456789" * 2000                      # several blksize reads

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        headers = [("Content-Length", str(len(data)))] if length else []
        start_response("200 OK", headers)
        return environ["wsgi.file_wrapper"](NoFileno(data), 4096)

    NoFileno.was_closed = False
    served = serve(app, GET)
    status, headers, body = served.response()
    assert (status, body) == (200, data)
    assert ("content-length" in headers) is length
    assert NoFileno.was_closed                      # the wrapper's close() is the file's


def test_file_wrapper_of_a_real_file_without_a_socket(tmp_path: Any) -> None:
    """A real file but no real socket (TLS, or this fake): iteration, not os.sendfile."""
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 10000)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [("Content-Length", "10000")])
        return environ["wsgi.file_wrapper"](open(path, "rb"))  # noqa: SIM115

    assert serve(app, GET).response()[2] == b"x" * 10000
