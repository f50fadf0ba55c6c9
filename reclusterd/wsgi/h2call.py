"""One WSGI call on an HTTP/2 stream (PEP 3333 over wsgi.h2conn): the stream's state,
`wsgi.input` over its DATA frames, the response side over H2Connection.

The environ is HTTP/1's (wsgi.environ: underscore headers dropped, forwarded headers
only from trusted peers, `wsgi.url_scheme` from the transport, never `:scheme`) with
SERVER_PROTOCOL "HTTP/2". The body is acknowledged to the client as the app reads it
(a stream holds at most one window). A stream the client resets makes the app's next
read or write raise ClientGone, as a vanished HTTP/1 client does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from reclusterd.http import EndOfMessage, FramingError, InvalidResponse, Request
from reclusterd.http.events import Headers
from reclusterd.http.h2 import StreamGone
from reclusterd.http.response import error_body
from reclusterd.meter import Meter
from reclusterd.wsgi.conn import ClientGone
from reclusterd.wsgi.handler import _caused_by
from reclusterd.wsgi.input import NO_BODY, Input, Responder
from reclusterd.wsgi.response import Exchange, FileWrapper, close_result, log_broken

if TYPE_CHECKING:
    from reclusterd.wsgi.conn import Environ
    from reclusterd.wsgi.handler import WSGIHandler

__all__ = ["H2Link", "H2Stream"]

log = logging.getLogger("reclusterd.error")
FILE_BLOCK = 65536          # octets read per step of a wsgi.file_wrapper response
_ERROR_HEAD = [(b"content-type", b"text/plain; charset=utf-8")]
_EMPTY = memoryview(b"")
_END: Any = object()
PUMP_EVERY = 0.05           # s between two looks at the socket by a waiting stream


class H2Link(Protocol):
    """What a stream sees of its connection (wsgi.h2conn.H2Conn)."""

    lock: threading.Lock
    handler: WSGIHandler
    base_environ: Environ
    remote_addr: str
    closed: bool

    def send(self, st: H2Stream, head: tuple[int, Headers] | None, data: bytes | memoryview,
             end: bool, park: bool = False) -> tuple[memoryview | None, int]: ...
    def send_continue(self, st: H2Stream) -> None: ...
    def consumed(self, st: H2Stream, size: int) -> None: ...
    def pump(self) -> bool: ...
    def submit(self, task: Callable[[], None]) -> None: ...
    def park(self, st: H2Stream, kicks: int) -> bool: ...
    def done(self, st: H2Stream) -> None: ...


class H2Stream:
    """One request stream: the body received and not read yet, and its wake-ups. The
    fields are guarded by the connection's lock (`cond` is over it)."""

    __slots__ = ("conn", "sid", "req", "cond", "body", "ended", "gone", "trailers",
                 "waiting", "parked", "kicks", "meter", "token", "ex")

    def __init__(self, conn: H2Link, sid: int, req: Request) -> None:
        self.conn = conn
        self.sid = sid
        self.req = req
        self.cond = threading.Condition(conn.lock)
        self.body = bytearray()
        self.ended = False
        self.gone = False
        self.trailers: Headers = []
        self.waiting = False        # a writer waits for credit or room (blocking)
        self.parked = False         # the response waits for credit or room (no thread)
        self.kicks = 0              # wake-ups so far (H2Conn.park: none missed)
        self.meter: Meter = conn.handler.meter
        self.token = 0
        self.ex: H2Exchange | None = None

    # -- the reader's side (under the lock) --------------------------------------------
    def feed(self, ev: object) -> None:
        if type(ev) is EndOfMessage:
            self.ended = True
            self.trailers = ev.trailers
        else:
            self.body += ev.data        # type: ignore[attr-defined]
        self.cond.notify()

    def lost(self) -> None:
        self.gone = True
        self.wake()

    def wake(self) -> None:
        """Credit, room, or the stream's end: a parked response is resumed on the pool,
        a waiting thread notified."""
        self.kicks += 1
        if self.parked:
            self.parked = False
            self.conn.submit(self.resume)
        else:
            self.cond.notify()

    # -- the app's side ----------------------------------------------------------------
    def wait_send(self) -> None:
        """Under the lock: wait for credit or room (H2Connection resets a stream that
        gets no credit, the connection's expire ends one that writes nothing)."""
        self._wait()
        if self.gone:
            raise StreamGone(f"HTTP/2 stream {self.sid} is gone")

    def _wait(self) -> None:
        """Under the lock: one step of a wait on the client (the caller loops on its
        condition). Read/write the socket ourselves first (H2Conn.pump), else sleep until
        notified, PUMP_EVERY s at most. Waiting on the client is not app time: not
        "stuck" for --timeout meanwhile (its deadlines are H2Connection's)."""
        conn = self.conn
        if self.gone or conn.closed:
            self.gone = True
            return
        self.meter.waiting(self.token)
        self.waiting = True
        try:
            if not conn.pump():
                self.cond.wait(PUMP_EVERY)
        finally:
            self.waiting = False
            self.meter.progress(self.token)
        if conn.closed:
            self.gone = True

    def take_body(self) -> bytes:
        """The body octets received since the last call (b"" at the end); ClientGone
        if the stream was reset."""
        conn = self.conn
        with conn.lock:
            while not self.body and not self.ended and not self.gone:
                self._wait()
            if self.body:
                data = bytes(self.body)
                self.body.clear()
            elif self.ended:
                return b""
            else:
                raise ClientGone(f"HTTP/2 stream {self.sid} was reset")
        conn.consumed(self, len(data))
        return data

    def run(self) -> None:
        """The stream's WSGI call (a pool thread)."""
        serve(self)

    def resume(self) -> None:
        """Its parked response goes on (a pool thread)."""
        assert self.ex is not None
        resume(self.ex)


class H2Input(Input):
    """wsgi.input of a stream: Input's reads over the stream's DATA frames."""

    __slots__ = ("_st",)

    def __init__(self, st: H2Stream, ex: Responder) -> None:
        self._st = st
        self._buf = bytearray()
        self.done = False
        self._continue = st.req.expect_continue
        self._ex = ex
        self.error = None
        self.trailers = []
        self.nread = 0

    def _fill(self) -> bool:
        if self.done:
            return False
        st = self._st
        if self._continue:
            self._continue = False
            if not self._ex.sent:
                st.conn.send_continue(st)
        data = st.take_body()
        if data:
            self._buf += data
            self.nread += len(data)
            self._ex.progress()
            return True
        self.done = True
        self.trailers = st.trailers
        return False


class H2Exchange(Exchange):
    """start_response() and write() of one stream (Exchange's, sent as HTTP/2), and the
    rest of the response while it waits for the client (`produce`)."""

    __slots__ = ("st", "env", "t0", "result", "chunks", "rest", "rest_end")

    def __init__(self, meter: Meter, st: H2Stream, env: dict[str, Any]) -> None:
        self.meter = meter
        self.st = st
        self.env = env
        self.req = st.req
        self.status = None
        self.code = 0
        self.headers = []
        self.resp = None
        self.sent = False
        self.token = 0
        self.length = 0
        self.broken = None
        self.t0 = 0.0
        self.result: Any = None
        self.chunks: Iterator[bytes] | None = None
        self.rest: memoryview | None = None     # a piece not sent yet
        self.rest_end = False                   # ...and the last one

    def write(self, data: bytes) -> None:
        if type(data) is not bytes:
            raise TypeError(f"response body must be bytes, not {type(data).__name__}")
        if data:
            self.send(data, False)

    def send(self, data: bytes | memoryview, end: bool, park: bool = False
             ) -> tuple[memoryview | None, int]:
        """A body piece (the head first while unsent); `end`: the response ends here.
        With `park`: (what is left when the client is not ready for it, wake count)."""
        head = None
        if not self.sent:
            key, hb = self.parsed_head()
            head = (key[0], hb)
            self.code = key[0]
        try:
            left, kicks = self.st.conn.send(self.st, head, data, end, park)
        except InvalidResponse:
            raise               # nothing went out: a 500 still can
        except FramingError as e:
            self.sent = True
            if self.broken is None:
                self.broken = e
                log_broken(self.req, str(e))
            raise
        except BaseException:
            self.sent = True
            raise
        self.sent = True
        self.length += len(data) - (len(left) if left is not None else 0)
        self.progress()
        return left, kicks

    def start(self, result: Any) -> None:
        """The app's iterable: sent by `produce`."""
        self.result = result
        if type(result) is list and len(result) == 1 and type(result[0]) is bytes:
            self.rest, self.rest_end = memoryview(result[0]), True    # head and body at once
            return
        if type(result) is FileWrapper:
            result.blksize = max(result.blksize, FILE_BLOCK)
        self.chunks = iter(result)

    def produce(self) -> bool:
        """Send the response from where it stopped: True once complete, False when it
        was parked (the client's window or socket is full: H2Stream.wake resumes it)."""
        while True:
            rest = self.rest
            if rest is None:
                if self.chunks is None:
                    return True
                chunk = next(self.chunks, _END)
                if chunk is _END:
                    self.chunks = None
                    self.rest, self.rest_end = _EMPTY, True
                elif type(chunk) is not bytes:
                    raise TypeError(f"response body must be bytes, not {type(chunk).__name__}")
                elif chunk:
                    self.rest, self.rest_end = memoryview(chunk), False
                continue
            left, kicks = self.send(rest, self.rest_end, park=True)
            self.rest = left
            if left is None:
                if self.rest_end:
                    self.chunks = None
                    return True
            elif self.st.conn.park(self.st, kicks):
                return False

    def error(self, status: int) -> None:
        """A fixed-text error answer while no head went out (HEAD: no body)."""
        body = error_body(status)
        self.code = status
        try:
            self.st.conn.send(self.st, (status, [*_ERROR_HEAD, (b"content-length",
                                                               b"%d" % len(body))]),
                              body, True)
        except ClientGone:
            pass
        self.sent = True


def serve(st: H2Stream) -> None:
    """Run the app for the stream's request and send its response (or park it)."""
    conn = st.conn
    handler = conn.handler
    meter = handler.meter
    if st.gone:         # reset before its turn came
        conn.done(st)
        return
    req = st.req
    env = handler.environs.environ(conn.base_environ, conn.remote_addr, req)
    ex = st.ex = H2Exchange(meter, st, env)
    env["wsgi.input"] = ex.input = NO_BODY if st.ended and not st.body else H2Input(st, ex)
    if meter.pre_request is not None:
        meter.before(env)
    ex.t0 = time.monotonic()
    ex.token = st.token = meter.started(ex.t0)
    memory = meter.memory
    if memory is not None and memory.over:      # as HTTP/1: the app is not called
        memory.refused(req.method, req.target)
        ex.error(503)
        _finish(ex)
        return
    try:
        ex.start(handler.app(env, ex.start_response))
        if not ex.produce():
            return
    except (Exception, SystemExit, KeyboardInterrupt) as e:  # noqa: BLE001 - as HTTP/1
        _failed(ex, e)
    except BaseException:
        _finish(ex)
        raise
    _finish(ex)


def resume(ex: H2Exchange) -> None:
    """A parked response goes on; finished (counted, logged) once complete or failed."""
    ex.progress()
    try:
        if not ex.produce():
            return
    except (Exception, SystemExit, KeyboardInterrupt) as e:  # noqa: BLE001 - as HTTP/1
        _failed(ex, e)
    _finish(ex)


def _finish(ex: H2Exchange) -> None:
    """After the response (complete, failed or abandoned): close the iterable, free the
    stream, count and log it."""
    close_result(ex.result)
    st = ex.st
    st.conn.done(st)
    handler = st.conn.handler
    meter = ex.meter
    code = ex.code or 500
    dt = time.monotonic() - ex.t0
    meter.finished(ex.token, code, dt, "2")
    if meter.post_request is not None:
        meter.after(ex.env, code)
    if handler.access.enabled:
        handler._access(ex.env, ex, code, dt)


def _failed(ex: H2Exchange, e: BaseException) -> None:
    """The app or the client failed the response: log once, answer 500 while nothing
    went out, else reset the stream (H2Conn.done does)."""
    req = ex.req
    what = f"{req.method.decode('latin-1')} {req.target.decode('latin-1')}"
    if ex.st.gone or _caused_by(e, ClientGone):
        log.debug("client gone during %s (%s)", what, type(e).__name__)
        return
    if e is ex.broken:
        pass            # logged once where it happened
    elif isinstance(e, InvalidResponse):
        log.error("invalid response from the app to %s: %s", what, e)
    else:
        log.exception("error handling %s", what)
    if not ex.sent:
        ex.error(500)
