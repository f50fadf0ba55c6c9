"""Response side of one WSGI request: start_response(), write(), wsgi.errors, file_wrapper."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from reclusterd.http import FramingError, InvalidResponse, Request, Response
from reclusterd.http.connection import body_allows_reuse
from reclusterd.meter import Meter
from reclusterd.wsgi.conn import Conn
from reclusterd.wsgi.input import Input, NoBody

log = logging.getLogger("reclusterd.error")


class ErrorStream:
    """wsgi.errors: text written by the app goes to the error log."""

    def write(self, s: str) -> int:
        if s.strip():
            log.error("%s", s.rstrip("\n"))
        return len(s)

    def writelines(self, seq: Iterable[str]) -> None:
        for s in seq:
            self.write(s)

    def flush(self) -> None:
        pass


class FileWrapper:
    """wsgi.file_wrapper: iterable over a file; the server sends it with os.sendfile when it can."""

    def __init__(self, filelike: Any, blksize: int = 8192) -> None:
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        data: bytes = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration


def _status_key(status: str) -> tuple[int, str | None]:
    """'200 OK' -> (200, None) when the reason is the standard one (cached status line)."""
    if len(status) < 4 or status[3] != " " or not status[:3].isdigit():
        raise InvalidResponse(f"invalid status {status!r}: expected e.g. '200 OK'")
    code = int(status[:3])
    reason = status[4:]
    try:
        from http import HTTPStatus
        if HTTPStatus(code).phrase == reason:
            return code, None
    except ValueError:
        pass
    return code, reason


_STATUS_CACHE: dict[str, tuple[int, str | None]] = {}


def close_result(result: Any) -> None:
    """PEP 3333: call the app's iterable's close(), if any, once the response is over
    (complete, failed or abandoned); its failure is logged, never raised."""
    if result is not None and hasattr(result, "close"):
        try:
            result.close()
        except Exception:  # noqa: BLE001
            log.exception("close() of the response iterable failed")


def log_broken(req: Request, detail: str) -> None:
    """The one log line for an app that broke its response framing (the connection closes)."""
    log.error("closing the connection: the app broke its response framing (%s %s): %s",
              req.method.decode("latin-1"), req.target.decode("latin-1"), detail)


class Exchange:
    """One request/response: start_response(), write() and what was sent."""

    __slots__ = ("meter", "conn", "req", "status", "code", "headers", "resp", "sent",
                 "token", "input", "length", "broken")

    def __init__(self, meter: Meter, conn: Conn, req: Request) -> None:
        self.meter = meter
        self.conn = conn
        self.req = req
        self.status: str | None = None
        self.code = 0
        self.headers: list[tuple[str, str]] = []
        self.resp: Response | None = None
        self.sent = False
        self.token = 0
        self.length = 0
        self.input: Input | NoBody
        self.broken: FramingError | None = None   # the app broke its framing (logged)

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response() called a second time without exc_info")
        if type(status) is not str:
            raise TypeError(f"status must be a str, not {type(status).__name__}")
        if type(headers) is not list:
            raise TypeError(f"headers must be a list, not {type(headers).__name__}")
        self.status = status
        self.headers = headers
        self.resp = None
        return self.write

    def parsed_head(self) -> tuple[tuple[int, str | None], list[tuple[bytes, bytes]]]:
        """start_response()'s arguments as ((code, reason or None), byte headers);
        InvalidResponse if bad. HTTP/1 (begin) and HTTP/2 (wsgi.h2call) heads start here."""
        status = self.status
        if status is None:
            raise AssertionError("the app gave a body before calling start_response()")
        key = _STATUS_CACHE.get(status)
        if key is None:
            key = _status_key(status)
            if len(_STATUS_CACHE) < 256:
                _STATUS_CACHE[status] = key
        try:
            hb = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in self.headers]
        except (UnicodeError, AttributeError, TypeError, ValueError) as e:
            raise InvalidResponse(f"invalid response header in {self.headers!r}: {e}") from e
        return key, hb

    def begin(self) -> Response:
        """Build the response head from start_response()'s arguments (InvalidResponse if bad)."""
        key, hb = self.parsed_head()
        # The parser stops after an Upgrade request (WSGI cannot switch protocols), so the
        # connection ends here and the response must say so. Read now, not when the request
        # came: a drain that starts while the app runs still makes the response say close.
        inp = self.input
        keep = (self.conn.h1.reusable and self.req.upgrade is None
                and ((inp.done and inp.error is None)   # the usual case, without a call
                     or body_allows_reuse(self.req, inp.nread, inp.done,
                                          inp.error is not None, inp.expect_pending)))
        resp = Response(self.req, key[0], hb, key[1], keep)
        self.code = key[0]
        self.resp = resp
        return resp

    def write(self, data: bytes) -> None:
        """The write() callable (and each chunk of the app's iterable): sent at once."""
        if type(data) is not bytes:
            raise TypeError(f"response body must be bytes, not {type(data).__name__}")
        if not data:
            return
        out = self.framed(data, False)
        self.length += len(data)
        self.conn.sendall(out)
        self.progress()

    def finish(self) -> bool:
        """Send what ends the response; True if the connection may be reused."""
        out = self.framed(b"", True)
        if out:
            self.conn.sendall(out)
        assert self.resp is not None
        return self.resp.keep_alive

    def framed(self, data: bytes, end: bool) -> bytes:
        """Wire bytes for a body piece (and the end), the head first while unsent.

        A FramingError (the app broke its own Content-Length, or sent content on a
        204/304) is logged here, once, whatever the app does with it, then raised into
        the app; the response says no more and the connection closes after it."""
        resp = self.resp
        if resp is None:
            resp = self.begin()
        try:
            out = resp.body(data) if data else b""
            if end:
                out += resp.end()
        except FramingError as e:
            if self.broken is None:
                self.broken = e
                log_broken(self.req, str(e))
            raise
        if not self.sent:
            self.sent = True
            out = resp.head + out
        return out

    @property
    def beat(self) -> float:
        """s: how often a blocking wait for the client renews waiting() (the heartbeat)."""
        return self.meter.beat

    def progress(self) -> None:
        """Client I/O happened: the request is not stuck (see Meter.progress)."""
        self.meter.progress(self.token)

    def waiting(self) -> None:
        """Waiting for the client: not app time (see Meter.waiting)."""
        self.meter.waiting(self.token)



class Reply:
    """One response in progress (WSGIHandler.begin/resume/finish): what is left to send
    when the client's socket is full, so a slow reader holds a buffer, not a thread."""

    __slots__ = ("ex", "env", "t0", "result", "chunks", "file", "produced", "complete",
                 "keep")

    def __init__(self, ex: Exchange, env: dict[str, Any], t0: float) -> None:
        self.ex = ex
        self.env = env
        self.t0 = t0                        # monotonic s the request started
        self.result: Any = None             # the app's iterable
        self.chunks: Iterator[bytes] | None = None
        self.file: tuple[int, int, int] | None = None   # sendfile: fd, start offset, length
        self.produced = False               # the whole body has been framed
        self.complete = False               # ...and sent (or the response failed)
        self.keep = False                   # the response said keep-alive

    def wait_client(self) -> None:
        """Parked on a full socket: waiting for the client is not app time, so the
        request is not "stuck" for --timeout meanwhile (the write deadline applies)."""
        self.ex.waiting()
