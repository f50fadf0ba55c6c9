"""The HTTP/2 defences the h2 library leaves to its user, counted on frame headers.

`FrameScanner` reads the 9-octet header of every frame before h2 sees the bytes, so a
frame is judged by what it announces, not after it has been buffered:

- a frame longer than our SETTINGS_MAX_FRAME_SIZE is refused at its header (h2 would
  buffer the whole announced length first: up to 16 MiB per connection);
- a header block (HEADERS + CONTINUATION*) is bounded in octets and frames
  (CONTINUATION flood, CVE-2024-27316), and the time it has been open is known;
- SETTINGS, PING, PRIORITY, empty frames (DATA without data nor END_STREAM, empty
  HEADERS/CONTINUATION fragments) and unknown frame types are counted per window
  (floods, CVE-2019-9512/9515/9516/9518);
- WINDOW_UPDATE frames past the ones our own output earns (`window_credit`: two per
  DATA frame sent, its stream's and the connection's, one per stream opened) count the
  same way: a download's updates return credit for what it received and never count,
  a stream of +1 increments while we send nothing soon does.

`ResetWatch` is the rapid reset rule (CVE-2023-44487) and the reset flood one
(CVE-2019-9514): streams reset before their response completed, by the client or by us
(refused, malformed), faster than streams complete. Exceeding any limit raises `Calm`:
the connection ends with GOAWAY (its `code`). Times are monotonic seconds from the driver.
"""

from __future__ import annotations

__all__ = ["Calm", "Counts", "FLOOD_LIMITS", "FLOOD_WINDOW", "FrameScanner", "MAX_BLOCK_FRAMES",
           "MIN_CHUNK", "MIN_CRUMB", "ResetWatch", "SMALL_FRAMES", "ENHANCE_YOUR_CALM",
           "FRAME_SIZE_ERROR"]

FRAME_SIZE_ERROR = 0x6
ENHANCE_YOUR_CALM = 0xB

_DATA, _HEADERS, _PRIORITY, _RST_STREAM, _SETTINGS = 0x0, 0x1, 0x2, 0x3, 0x4
_PING, _WINDOW_UPDATE, _CONTINUATION = 0x6, 0x8, 0x9
_LAST_KNOWN = 0xA     # ALTSVC (RFC 7838), ignored too
_END_STREAM, _ACK, _END_HEADERS = 0x1, 0x1, 0x4
PREFACE_LENGTH = 24

FLOOD_WINDOW = 10.0     # s: counts below start again after this long
# Frames of each kind a client may send per FLOOD_WINDOW. Real clients send a handful of
# SETTINGS/PING per connection and PRIORITY at most once per stream.
FLOOD_LIMITS = {"settings": 100, "ping": 100, "priority": 1000, "empty": 100,
                "unknown": 100, "window_update": 100}
MAX_BLOCK_FRAMES = 32   # HEADERS + CONTINUATION frames of one header block
# DATA frames shorter than MIN_CHUNK (not a body's last) the server sends per FLOOD_WINDOW:
# past it, credit smaller than that is left unused until more comes (data dribble).
SMALL_FRAMES = {"small": 64}
MIN_CHUNK = 1024
# ... except for a client whose whole stream window is small (h2.H2Connection._crumb): a
# frame of half its window is a full one for it, down to this many octets.
MIN_CRUMB = 256


class Calm(Exception):
    """The client broke a limit: GOAWAY with `code` and close. `reason` is a fixed text."""

    def __init__(self, reason: str, code: int = ENHANCE_YOUR_CALM) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class Counts:
    """Events per kind in fixed windows of FLOOD_WINDOW s."""

    __slots__ = ("start", "counts", "limits")

    def __init__(self, limits: dict[str, int]) -> None:
        self.start = float("-inf")
        self.counts: dict[str, int] = {}
        self.limits = limits

    def over(self, kind: str, now: float) -> bool:
        """Count one; True once the window's count is past the kind's limit."""
        if now - self.start >= FLOOD_WINDOW:
            self.start = now
            self.counts.clear()
        n = self.counts[kind] = self.counts.get(kind, 0) + 1
        return n > self.limits[kind]

    def add(self, kind: str, now: float) -> None:
        if self.over(kind, now):
            raise Calm(f"{kind} frame flood")


class FrameScanner:
    """Follows frame boundaries in the client's byte stream (after its 24-octet preface).

    `max_block`: octets a header block may have in all (its fragments, padding included).
    `block_since`: when the header block now open began (None: none is open); while one
    is open no other frame may come (RFC 9113 §6.10), so its deadline is the connection's.
    `window_credit`: WINDOW_UPDATE frames the client may send before they count as a
    flood (the connection adds to it as it sends DATA and opens streams).
    """

    __slots__ = ("_preface", "_head", "_skip", "max_block", "block", "block_frames",
                 "block_since", "_counts", "window_credit")

    def __init__(self, max_block: int, preface: bool = True,
                 limits: dict[str, int] | None = None) -> None:
        self._preface = PREFACE_LENGTH if preface else 0
        self._head = b""          # part of a frame header
        self._skip = 0            # payload octets of the current frame still to come
        self.max_block = max_block
        self.block = 0
        self.block_frames = 0
        self.block_since: float | None = None
        self._counts = Counts(limits or FLOOD_LIMITS)
        self.window_credit = 0

    def feed(self, data: bytes, max_frame: int, now: float) -> None:
        """Account for `data`; raise Calm at the first frame header over a limit.
        `max_frame`: the SETTINGS_MAX_FRAME_SIZE in force (h2's, after our SETTINGS ack)."""
        i, n = 0, len(data)
        if self._preface:
            take = min(self._preface, n)
            self._preface -= take
            i = take
        while i < n:
            if self._skip:
                take = min(self._skip, n - i)
                self._skip -= take
                i += take
                continue
            need = 9 - len(self._head)
            self._head += data[i:i + need]
            i += need
            if len(self._head) < 9:
                return
            head, self._head = self._head, b""
            length = int.from_bytes(head[:3], "big")
            if length > max_frame:
                raise Calm("frame larger than SETTINGS_MAX_FRAME_SIZE", FRAME_SIZE_ERROR)
            self._frame(length, head[3], head[4], now)
            self._skip = length

    def _frame(self, length: int, ftype: int, flags: int, now: float) -> None:
        if ftype == _HEADERS or ftype == _CONTINUATION:
            self._block(length, ftype, flags, now)
            if length == 0 and not flags & _END_HEADERS:
                self._counts.add("empty", now)
        elif ftype == _DATA:
            if length == 0 and not flags & _END_STREAM:
                self._counts.add("empty", now)
        elif ftype == _SETTINGS or ftype == _PING:
            if ftype == _SETTINGS and flags & _ACK and length:
                raise Calm("SETTINGS ACK with a payload", FRAME_SIZE_ERROR)  # §6.5
            if not flags & _ACK:
                self._counts.add("settings" if ftype == _SETTINGS else "ping", now)
        elif ftype == _PRIORITY:
            self._counts.add("priority", now)
        elif ftype == _WINDOW_UPDATE:
            if self.window_credit > 0:
                self.window_credit -= 1
            else:
                self._counts.add("window_update", now)
        elif ftype > _LAST_KNOWN:
            self._counts.add("unknown", now)

    def _block(self, length: int, ftype: int, flags: int, now: float) -> None:
        """A header block fragment: bound the block, note when it opened and closed.
        (A CONTINUATION outside a block is h2's to refuse, PROTOCOL_ERROR.)"""
        if ftype == _HEADERS:
            self.block, self.block_frames, self.block_since = 0, 0, now
        elif self.block_since is None:
            return
        self.block += length
        self.block_frames += 1
        if self.block > self.max_block:
            raise Calm("header block too large")
        if self.block_frames > MAX_BLOCK_FRAMES:
            raise Calm("too many CONTINUATION frames")
        if flags & _END_HEADERS:
            self.block_since = None


class ResetWatch:
    """Streams reset before their response completed vs streams completed, per window.

    `limit`: premature resets a window may have while they outnumber completions. Twice
    SETTINGS_MAX_CONCURRENT_STREAMS lets a browser cancel every stream it has open (a
    page navigated away from) twice over, and stops a client whose streams mostly end
    in a reset: the work it starts and abandons is never paid for by answers it reads.
    """

    __slots__ = ("limit", "start", "resets", "completed")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.start = float("-inf")
        self.resets = 0
        self.completed = 0

    def _roll(self, now: float) -> None:
        if now - self.start >= FLOOD_WINDOW:
            self.start, self.resets, self.completed = now, 0, 0

    def reset(self, now: float) -> None:
        """A stream ended in RST_STREAM before its response did (either side sent it)."""
        self._roll(now)
        self.resets += 1
        if self.resets > self.limit and self.resets > self.completed:
            raise Calm("streams reset faster than they complete (rapid reset)")

    def complete(self, now: float) -> None:
        """A response was sent to its end."""
        self._roll(now)
        self.completed += 1
