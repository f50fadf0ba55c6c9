"""The rules of one HTTP/1 connection, sans-IO: every worker class asks this module.

A driver (the thread, sync and asyncio workers) moves bytes and runs apps; what
the connection may do next is decided here, once, from values:

- keep-alive: may a response say `Connection: keep-alive` (`reusable`,
  `body_allows_reuse`), and does the connection stay open after it
  (`response_done`). `--keep-alive 0` = close after each response, and say so.
- deadlines as values: `next_deadline()` returns (when, what): close an idle
  connection (CLOSE) or answer 408 to a head that did not arrive in time
  (TIMEOUT). `--header-timeout S` = the whole head within S of its first byte;
  0 = off. A new connection waits for its first byte up to the same S.
- draining (TERM): `begin_drain` shortens every wait; responses say close.
- the unread request body a connection may still skip to stay open
  (DRAIN_LIMIT), the answer to a request body that stops arriving (`body_stalled`),
  and the answer to a connection over --worker-connections.

Times are monotonic seconds from the clock the driver gives (tests give a fake one).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from .events import Event, ProtocolError, Request
from .parser import Parser
from .response import error_for, error_response
from .rules import TLS_ON_PLAIN

__all__ = ["CLOSE", "DRAIN_IDLE", "DRAIN_LIMIT", "FOREVER", "NOTHING", "TIMEOUT",
           "BUSY_WAIT", "ConnectionRules", "H1Connection", "body_allows_reuse", "body_stalled",
           "busy_answer",
           "over_capacity"]

NOTHING = 0         # no deadline pending
CLOSE = 1           # idle too long: close silently
TIMEOUT = 2         # request head too slow: 408, then close
FOREVER = float("inf")
DRAIN_LIMIT = 64 * 1024     # unread request body (bytes) read and dropped to keep a connection
DRAIN_IDLE = 1.0            # s: while draining, an idle connection closes after this
IO_TIMEOUT = 20.0           # s: body/response stall limit when --header-timeout is 0 (off)
_BUSY = error_response(503)
_BUSY_HEAD = error_response(503, head=True)
BUSY_WAIT = 1.0    # s a refused connection may take to send its first bytes (HEAD or not)
log = logging.getLogger("reclusterd.error")


@dataclass(frozen=True, slots=True)
class ConnectionRules:
    """The settings that govern every connection of a worker (one object per worker).

    keep_alive: s a connection may idle between requests (0 = one request each);
    header_timeout: s for a whole request head from its first byte (0 = off);
    persistent: False for a worker that serves one request per connection (sync).
    reuse (derived): may connections be kept open after a response at all?
    """

    keep_alive: float
    header_timeout: float
    persistent: bool = True
    reuse: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "reuse", self.persistent and self.keep_alive > 0)

    def drain_grace(self, graceful_timeout: float) -> float:
        """s a connection whose head is under way may still take once draining starts."""
        return min(max(self.keep_alive, DRAIN_IDLE), graceful_timeout)

    @property
    def io_timeout(self) -> float:
        """s a request may wait on the client (body bytes, room to write) with no progress."""
        return self.header_timeout if self.header_timeout > 0 else IO_TIMEOUT


# s a closing TLS connection waits for the client's close_notify (asyncio transports).
# asyncio's default, 30 s, let a client that got GOAWAY or a 400 keep the worker
# decrypting what it sent meanwhile (QA-17: 17 GB in 29.5 s).
TLS_SHUTDOWN = 1.0


def over_capacity(open_connections: int, limit: int) -> bool:
    """--worker-connections: is this connection one too many (503, then close)?"""
    return open_connections >= max(1, limit)


def busy_answer(first: bytes) -> bytes:
    """The 503 for a connection over --worker-connections, given the first bytes the client
    sent (b"" if none came within BUSY_WAIT s): no body when they start a HEAD request
    (RFC 9110 §9.3.2), like every answer the server makes itself."""
    head = first[:5] == b"HEAD " if len(first) >= 5 else bool(first) and b"HEAD ".startswith(first)
    return _BUSY_HEAD if head else _BUSY


def body_allows_reuse(req: Request, received: int, done: bool, failed: bool,
                      continue_pending: bool) -> bool:
    """Can the connection be reused after a response, as far as the request body goes?

    Yes if it was read to its end without error, or if what is left is known (from
    Content-Length) to be small enough (≤ DRAIN_LIMIT) to read and drop. No if the client
    still waits for `100 Continue` (its body is not coming), or for a chunked rest of
    unknown size: the head must say `Connection: close` whenever the server may close."""
    if done:
        return not failed
    if continue_pending:
        return False
    cl = req.content_length
    return cl is not None and cl - received <= DRAIN_LIMIT


def body_stalled(req: Request, response_started: bool) -> bytes | None:
    """A request body made no progress for `ConnectionRules.io_timeout` s: what to send
    before closing. RFC 9110 §15.5.9: 408 (with `Connection: close`) while no response has
    started; once one has, a status cannot be sent any more, so None: just close."""
    return None if response_started else error_for(req, 408)


class H1Connection:
    """State of one HTTP/1 connection: where its head stands, how long it may wait.

    `receive()` feeds bytes to the parser and notes when a request head began;
    the driver calls `start_request()` when it hands a Request to the app and
    `response_done()` when the response is complete.
    """

    __slots__ = ("rules", "parser", "clock", "opened", "head_start", "idle_since", "served",
                 "in_request", "draining", "drain_until", "partial", "reusable")

    def __init__(self, rules: ConnectionRules, parser: Parser,
                 clock: Callable[[], float]) -> None:
        self.rules = rules
        self.parser = parser
        self.clock = clock
        now = self.opened = clock()
        self.head_start = 0.0        # first byte of a head not complete yet (0: none)
        self.idle_since = now
        self.served = 0              # responses completed on this connection
        self.in_request = False      # a request is with the app
        self.draining = False
        self.drain_until = FOREVER   # while draining: no wait goes past this
        self.partial = False         # the parser holds part of a request head
        # May the next response head say keep-alive (settings, TERM)? A plain attribute:
        # it is read for every response.
        self.reusable = rules.reuse

    # -- bytes in, events out -----------------------------------------------------
    def receive(self, data: bytes) -> list[Event]:
        """Feed bytes (b"" = the client's EOF) to the parser; the events they complete."""
        parser = self.parser
        if not data:                 # the client's EOF: no further request can come
            self.reusable = False
        events = parser.feed(data)
        if parser.partial_head:
            self.partial = True
            if not self.in_request and not self.head_start:
                self.head_start = self.clock()
        elif self.partial:
            self.partial = False
            self.head_start = 0.0
        return events

    def start_request(self) -> None:
        """A request head is complete and goes to the app: no head deadline while it runs."""
        self.in_request = True
        self.head_start = 0.0

    # -- answers the server makes itself ------------------------------------------------
    def reject(self, err: ProtocolError) -> bytes:
        """The answer to a request the parser refused (then close): fixed texts only, no
        body for HEAD. A TLS ClientHello on this plain port is logged (once: the error is
        terminal) so a misconfigured client or proxy is seen."""
        if err.reason == TLS_ON_PLAIN:
            log.info("%s", TLS_ON_PLAIN)
        else:
            log.debug("bad request (%d): %s", err.status, err.reason)
        return error_response(err.status, head=err.head)

    def timeout_response(self) -> bytes:
        """The 408 for a request head that did not arrive in time (no body for HEAD)."""
        return error_response(408, head=self.parser.pending_head())

    # -- keep-alive ------------------------------------------------------------------
    def response_done(self, keep: bool) -> bool:
        """The response is complete; True if the connection stays open for another
        request (`keep`: the response said keep-alive and the body allows it)."""
        self.in_request = False
        self.served += 1
        now = self.idle_since = self.clock()
        if self.partial:
            self.head_start = now    # part of the next head is here: its clock runs
        return keep and self.rules.reuse

    # -- deadlines ---------------------------------------------------------------------
    def next_deadline(self) -> tuple[float, int]:
        """(when, what): the next thing to do if nothing arrives before `when`."""
        if self.in_request:
            return FOREVER, NOTHING
        rules = self.rules
        header = rules.header_timeout
        if self.head_start:
            if header <= 0:
                return self.drain_until, CLOSE if self.draining else NOTHING
            return min(self.head_start + header, self.drain_until), TIMEOUT
        if not self.served:
            when = self.opened + header if header > 0 else FOREVER
            return min(when, self.drain_until), CLOSE
        when = self.idle_since + rules.keep_alive
        if self.draining:
            when = min(when, self.idle_since + DRAIN_IDLE)
        return when, CLOSE

    def begin_drain(self, grace: float) -> None:
        """TERM: responses say close from now on; an idle connection closes after
        DRAIN_IDLE s of idleness; one whose head is under way (or has not started)
        gets `grace` s more at most (ConnectionRules.drain_grace)."""
        if not self.draining:
            self.draining = True
            self.reusable = False
            self.drain_until = self.clock() + max(grace, 0.0)
