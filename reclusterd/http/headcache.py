"""Memos of the request-head checks: a hot path's shortcut, bounded against floods.

Whether a head is accepted and what it means is a pure function of its bytes, the
Limits and the backend, so a repeat (keep-alive clients, many clients sending the same
head or URL) can skip the parse, the checks and the backend. Both memos are bounded
(a flood of unique heads only costs a refill) and hold only short entries.
"""

from __future__ import annotations

from .events import Limits


def max_head(limits: Limits) -> int:
    """Upper bound on the bytes of one request head (or trailer section) under `limits`."""
    line = limits.request_line or 65536
    size = limits.field_size or 65536
    count = limits.fields or 1000
    return line + 2 + count * (size + 2) + 2


# A whole bodiless request head that was accepted -> the Request's fields (headers as a
# tuple: every hit gets its own list). Whether a head is accepted and what it means is a
# pure function of its bytes, the Limits and the backend, so there is one such memo per
# (backend class, Limits); a repeat (keep-alive clients, many clients sending the same
# head) skips the parse, the checks and the backend entirely.
Memo = dict[bytes, tuple[bytes, bytes, bytes, bytes, str, tuple[tuple[bytes, bytes], ...],
                     bool, bool, int | None]]
MAX_CACHED_HEADS = 256
MAX_CACHED_HEAD = 1024  # bytes: with the count, bounds the memo to well under 1 MB


def bounds_for(limits: Limits) -> tuple[int, int, Memo]:
    """(head bound, size below which no line/head limit can be broken, memo) for `limits`."""
    top = max_head(limits)
    return top, min(limits.request_line or top, limits.field_size or top, top), {}


# per (backend class, distinct Limits), computed once
BOUNDS: dict[tuple[type, int, int, int, int, frozenset[bytes]], tuple[int, int, Memo]] = {}

# Request lines that passed `rules.request_line` and the target checks -> (method, target,
# version, path, query): a pure function of the line's bytes, so a repeat (keep-alive
# clients, many clients of one URL) skips the split and the checks; the objects are shared.
LINES: dict[bytes, tuple[bytes, bytes, str, bytes, bytes]] = {}
MAX_CACHED_LINES = 512
MAX_CACHED_LINE = 256  # bytes; so the cache holds at most ~0.3 MB however it is fed


def clear_caches() -> None:
    """Forget every cached request line and head (tests compare cold and warm answers)."""
    LINES.clear()
    for _, _, memo in BOUNDS.values():
        memo.clear()
