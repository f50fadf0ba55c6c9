"""Shared helpers for the tests/unit/test_http_*.py files (HTTP owner; holds no tests)."""

from __future__ import annotations

import random

from reclusterd.http import Data, Event, Limits, make_parser

PARSERS = ["httptools", "h11"]
MODES = ["whole", "bytes", "random"]


def splits(raw: bytes, mode: str, seed: int = 0) -> list[bytes]:
    """`raw` cut as one piece, per byte, or at random points."""
    if mode == "whole":
        return [raw]
    if mode == "bytes":
        return [raw[i:i + 1] for i in range(len(raw))]
    rnd = random.Random(seed)
    out: list[bytes] = []
    i = 0
    while i < len(raw):
        n = rnd.randint(1, 23)
        out.append(raw[i:i + n])
        i += n
    return out


def normalize(events: list[Event]) -> list[Event]:
    """Merge consecutive Data events (their boundaries depend on the reads)."""
    out: list[Event] = []
    for ev in events:
        if isinstance(ev, Data) and out and isinstance(out[-1], Data):
            out[-1] = Data(out[-1].data + ev.data)
        else:
            out.append(ev)
    return out


def parse(kind: str, raw: bytes, mode: str = "whole", limits: Limits | None = None,
          eof: bool = False, seed: int = 0) -> list[Event]:
    """Feed `raw` to a new parser in pieces; normalized events."""
    p = make_parser(kind, limits)
    events: list[Event] = []
    for piece in splits(raw, mode, seed):
        events += p.feed(piece)
    if eof:
        events += p.feed(b"")
    return normalize(events)
