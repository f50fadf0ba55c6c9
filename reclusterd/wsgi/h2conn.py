"""The thread worker's HTTP/2 driver: one connection over a non-blocking socket, the
sans-IO `http.h2.H2Connection` under one lock, one WSGI call per stream (wsgi.h2call).

Threads: whichever pool thread epoll wakes for the socket (`ready`) reads it, feeds
H2Connection and starts the WSGI calls of the requests that arrived (the last one inline,
the others through `submit`, so streams run concurrently on the pool); the apps' threads
send their responses themselves. Every socket call and every H2Connection call is made
under `lock` (an SSL object must not be read and written by two threads at once); the
streams wait on conditions over that same lock (for body bytes, send credit, or room).

Buffers, not threads, absorb a slow reader: the bytes for the socket wait in `out`, and
the socket is armed for EPOLLOUT while some do; a writer waits once `out` holds
HIGH_WATER octets, or when the client gives no credit, each wait bounded by the write
deadline HTTP/1 uses (`ConnectionRules.io_timeout`: H2Connection resets a stream that
gets no credit, `expire` ends a connection whose socket takes nothing).
"""

from __future__ import annotations

import logging
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from reclusterd.http import Request
from reclusterd.http.events import Headers
from reclusterd.http.h2 import (
    H2Connection,
    H2Event,
    SendCredit,
    StreamEvent,
    StreamGone,
    StreamReset,
    Terminated,
)
from reclusterd.wsgi.conn import ClientGone, Environ
from reclusterd.wsgi.h2call import H2Stream

if TYPE_CHECKING:
    from reclusterd.wsgi.handler import WSGIHandler

__all__ = ["H2Conn", "HIGH_WATER"]

log = logging.getLogger("reclusterd.error")
RECV_SIZE = 65536
READS_PER_TURN = 8              # then back to epoll: the other connections' turn
HIGH_WATER = 256 * 1024         # octets queued for the socket before writers wait
_IN = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLONESHOT
_OUT = select.EPOLLOUT
_WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError,
                ssl.SSLWantWriteError)


class H2Conn:
    """One HTTP/2 connection of the thread worker (see the module docstring).

    `submit` queues a task for the pool; `on_close` is called once, outside the lock,
    when the connection ends (the worker forgets it, then `close_socket`)."""

    def __init__(self, sock: socket.socket, h2: H2Connection, handler: WSGIHandler,
                 base_environ: Environ, remote_addr: str, ep: select.epoll, polled: bool,
                 submit: Callable[[Callable[[], None]], None],
                 on_close: Callable[[H2Conn], None]) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.h2 = h2
        self.handler = handler
        self.base_environ = base_environ
        self.remote_addr = remote_addr
        self.ep = ep
        self.polled = polled            # registered in the epoll set already
        self.submit = submit
        self.on_close = on_close
        self.lock = threading.Lock()
        self.streams: dict[int, H2Stream] = {}
        self.out = bytearray()          # bytes for the socket, in order
        self.armed = 0                  # the epoll mask armed (0: an event is being served)
        self.owned = False              # a poller is in `ready`: it arms at its end
        self.closed = False
        self.last_write = time.monotonic()
        self.received = 0               # octets read so far
        self.io_timeout = h2.rules.io_timeout

    # -- the poller's side -------------------------------------------------------------
    def start(self, events: list[H2Event]) -> None:
        """The connection just switched to HTTP/2 (`events`: an upgrade's stream 1): send
        the preface, read what is already there (TLS may hold decrypted bytes that epoll
        will never report), serve."""
        with self.lock:
            new = self._handle(events)
        self.ready(new)

    def ready(self, new: list[H2Stream] | None = None) -> None:
        """epoll says the socket is readable or writable: read, write, serve."""
        with self.lock:
            self.armed = 0
            self.owned = True
            new = new or []
            if not self.closed:
                new += self._read()
                self._pull()
                self._flush()
            self.owned = False
            ending = self._settle()
        if ending:
            self._close()
            return
        for st in new[:-1]:
            self.submit(st.run)
        if new:
            new[-1].run()       # the thread that read it: no hand-off for the last one

    def _read(self) -> list[H2Stream]:
        new: list[H2Stream] = []
        for _ in range(READS_PER_TURN):
            try:
                data = self.sock.recv(RECV_SIZE)
                if isinstance(self.sock, ssl.SSLSocket):
                    while self.sock.pending():
                        data += self.sock.recv(self.sock.pending())
            except _WOULD_BLOCK:
                break
            except OSError:
                data = b""
            self.received += len(data)
            new += self._handle(self.h2.receive(data))
            if not data or self.h2.closed:
                break
        return new

    def _handle(self, events: list[H2Event]) -> list[H2Stream]:
        """Under the lock: H2Connection's events to the streams; the new streams."""
        new: list[H2Stream] = []
        streams = self.streams
        for e in events:
            tp = type(e)
            if tp is StreamEvent:
                assert isinstance(e, StreamEvent)
                ev = e.event
                if type(ev) is Request:
                    st = streams[e.stream_id] = H2Stream(self, e.stream_id, ev)
                    new.append(st)
                else:
                    st0 = streams.get(e.stream_id)
                    if st0 is not None:
                        st0.feed(ev)
            elif tp is StreamReset:
                st0 = streams.get(e.stream_id)  # type: ignore[union-attr]
                if st0 is not None:
                    st0.lost()
            elif tp is SendCredit:
                sid = e.stream_id  # type: ignore[union-attr]
                for st in (streams.values() if not sid else
                           [s for s in (streams.get(sid),) if s is not None]):
                    st.wake()
            elif tp is Terminated:
                for st in streams.values():
                    st.lost()
        return new

    def _settle(self) -> bool:
        """Under the lock: True if the connection is over (close it), else arm epoll."""
        if self.closed:
            return False
        if self.h2.finished:
            self.closed = True
            for st in self.streams.values():
                st.lost()
            return True
        if not self.owned:
            self._arm(_IN | (_OUT if self.out else 0))
        return False

    def _arm(self, mask: int) -> None:
        if mask == self.armed:
            return
        try:
            if self.polled:
                self.ep.modify(self.fd, mask)
            else:
                self.ep.register(self.fd, mask)
                self.polled = True
            self.armed = mask
        except OSError:
            self.closed = True      # the socket is gone: _close follows (the caller's)

    def _close(self) -> None:
        """Outside the lock, once: the worker forgets the connection, which closes it."""
        self.on_close(self)

    def close_socket(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    # -- bytes out ---------------------------------------------------------------------
    def _pull(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.out += data

    def _flush(self) -> None:
        """Under the lock: write what the socket takes now; wake the writers waiting for
        room when some went out."""
        out = self.out
        if self.closed:
            out.clear()     # the socket may be closed already (its fd reused)
            return
        sent = False
        while out:
            try:
                n = self.sock.send(out)
            except _WOULD_BLOCK:
                break
            except OSError:
                out.clear()     # the client is gone: its EOF or the deadline ends it
                break
            del out[:n]
            sent = True
        if sent:
            self.last_write = time.monotonic()
            if len(out) < HIGH_WATER // 2:
                for st in self.streams.values():
                    if st.waiting or st.parked:
                        st.wake()

    def pump(self) -> bool:
        """Under the lock, from a stream that waits (for body, credit or room): read and
        write what the socket allows now, as a poller would; True if anything moved. So
        a stream never depends on a free pool thread to read its connection (with
        --threads 1 there is none while the app runs); new streams go to the pool."""
        if self.closed:
            return False
        before = (len(self.out), self.received)
        new = self._read()
        self._pull()
        self._flush()
        for st in new:
            self.submit(st.run)
        return (len(self.out), self.received) != before

    def _push(self) -> bool:
        """Under the lock, from an app's thread: send what H2Connection queued, arm for
        the rest; True if the connection ended meanwhile."""
        self._pull()
        self._flush()
        return self._settle()

    # -- the streams' side (app threads) -------------------------------------------------
    def send(self, st: H2Stream, head: tuple[int, Headers] | None, data: bytes | memoryview,
             end: bool, park: bool = False) -> tuple[memoryview | None, int]:
        """Send a response head (if given) and body piece; ClientGone when the stream or
        the connection is gone; FramingError/InvalidResponse are the app's (H2Connection).

        Out of send credit or of room in `out`: wait for it (bounded: see the module
        docstring), or with `park`, return (what is left, the stream's wake count then)
        for `park()`. (None, _) once all of it was taken."""
        view = memoryview(data)
        ending = False
        try:
            with self.lock:
                try:
                    if self.closed or st.gone:
                        raise StreamGone("stream gone")
                    if head is not None:
                        self.h2.send_headers(st.sid, *head)
                    while True:
                        room = HIGH_WATER - len(self.out)
                        no_credit = False
                        if room > 0:
                            piece = view[:room]
                            last = end and len(piece) == len(view)
                            taken = self.h2.send_data(st.sid, bytes(piece), last)
                            view = view[taken:]
                            if not view:
                                if end:         # its slot is free before the client
                                    self._free(st)  # sees END_STREAM (else a new
                                return None, 0      # stream could be REFUSED_STREAM)
                            no_credit = taken < len(piece)
                        ending = self._push()
                        if ending or self.closed:
                            raise StreamGone("connection closed")
                        if no_credit or len(self.out) >= HIGH_WATER:
                            if park:
                                return view, st.kicks
                            st.wait_send()
                finally:
                    ending = self._push() or ending
        except StreamGone as e:
            raise ClientGone(str(e)) from None
        finally:
            if ending:
                self._close()

    def park(self, st: H2Stream, kicks: int) -> bool:
        """Leave the stream's response to its wake-up (credit, room, reset: it is then
        resumed on the pool) unless one came since `send` returned (`kicks` is stale):
        then False, try again. A slow reader holds a buffer, not a thread."""
        with self.lock:
            if st.kicks != kicks or st.gone or self.closed:
                return False
            st.parked = True
            st.meter.waiting(st.token)          # the client's time, not the app's
            return True

    def send_continue(self, st: H2Stream) -> None:
        self._call(lambda: self.h2.send_continue(st.sid))

    def consumed(self, st: H2Stream, size: int) -> None:
        """The app read `size` octets of the stream's body: the client may send more."""
        self._call(lambda: self.h2.ack_data(st.sid, size))

    def reset(self, st: H2Stream) -> None:
        self._call(lambda: self.h2.reset(st.sid))

    def done(self, st: H2Stream) -> None:
        """The stream's WSGI call is over: free its slot (RST if unfinished)."""
        self._call(lambda: self._free(st))

    def _free(self, st: H2Stream) -> None:
        if self.streams.pop(st.sid, None) is not None:
            self.h2.stream_done(st.sid)

    def _call(self, step: Callable[[], Any]) -> None:
        with self.lock:
            if not self.closed:
                try:
                    step()
                except StreamGone:
                    pass
            ending = self._push()
        if ending:
            self._close()

    # -- the main thread: deadlines and draining ---------------------------------------
    def expire(self, now: float) -> None:
        """Apply H2Connection's deadlines; end a connection whose socket took nothing
        for the write deadline."""
        with self.lock:
            if self.closed:
                return
            if self.out and now - self.last_write > self.io_timeout:
                log.info("closing HTTP/2 connection: the client stopped reading")
                self.out.clear()
                self.closed = True
                for st in self.streams.values():
                    st.lost()
                ending = True
            else:
                if now >= self.h2.next_deadline():
                    self._handle(self.h2.expire())
                ending = self._push()
        if ending:
            self._close()

    def begin_drain(self, grace: float) -> None:
        """GOAWAY naming the last stream; the open ones finish within `grace` s."""
        with self.lock:
            if not self.closed:
                self.h2.begin_drain(grace)
            ending = self._push()
        if ending:
            self._close()
