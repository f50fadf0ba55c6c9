"""The peer conformance corpus (tests/data/conformance/requests.json) at the parser level.

Every case, both parsers, fed whole, per byte and in random splits: accept cases give the
listed requests in order; reject cases give a ProtocolError with an allowed status.
"""

from __future__ import annotations

import base64
import random
from typing import Any
from urllib.parse import unquote_to_bytes

import pytest

from reclusterd.http import Data, EndOfMessage, Event, ProtocolError, Request, make_parser
from tests.data import conformance_cases

CASES = conformance_cases()
REJECT_STATUSES = {400, 413, 414, 431, 501, 505}
PARSERS = ["httptools", "h11"]


def _feed(kind: str, raw: bytes, mode: str) -> list[Event]:
    p = make_parser(kind)
    events: list[Event] = []
    if mode == "whole":
        events += p.feed(raw)
    elif mode == "bytes":
        for i in range(len(raw)):
            events += p.feed(raw[i:i + 1])
    else:
        rnd = random.Random(len(raw))
        i = 0
        while i < len(raw):
            n = rnd.randint(1, 17)
            events += p.feed(raw[i:i + n])
            i += n
    return events  # no EOF: a last request whose body never completes is just unanswered


def _messages(events: list[Event]) -> tuple[list[dict[str, Any]], ProtocolError | None]:
    out: list[dict[str, Any]] = []
    for ev in events:
        if isinstance(ev, Request):
            out.append({"req": ev, "body": b"", "done": False})
        elif isinstance(ev, Data):
            out[-1]["body"] += ev.data
        elif isinstance(ev, EndOfMessage):
            out[-1]["done"] = True
        elif isinstance(ev, ProtocolError):
            return out, ev
    return out, None


def _split(value: str) -> list[str]:
    return [v.strip(" \t") for v in value.split(",")]


def _check_request(got: dict[str, Any], want: dict[str, Any]) -> None:
    req: Request = got["req"]
    assert got["done"]
    assert req.method.decode("latin-1") == want["method"]
    assert unquote_to_bytes(req.path).decode("latin-1") == want["path"]
    assert req.query.decode("latin-1") == want["query"]
    assert got["body"].decode("latin-1") == want["body"]
    joined: dict[str, list[str]] = {}
    for name, value in req.headers:
        joined.setdefault(name.decode("latin-1"), []).extend(_split(value.decode("latin-1")))
    for name, value in want["headers"].items():
        if name == "content-length":
            assert [int(v) for v in joined[name]] == [int(value)]
        else:
            assert joined.get(name) == _split(value), name
    for name in want.get("absent", []):
        assert name.lower() not in joined


@pytest.mark.parametrize("mode", ["whole", "bytes", "random"])
@pytest.mark.parametrize("kind", PARSERS)
@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_corpus_case(case: dict[str, Any], kind: str, mode: str) -> None:
    raw = base64.b64decode(case["raw_b64"])
    messages, error = _messages(_feed(kind, raw, mode))
    if case["expect"] == "accept":
        assert error is None, f"{case['note']}: rejected with {error}"
        complete = [m for m in messages if m["done"]]
        assert len(complete) == len(case["requests"])
        assert all(m["done"] for m in messages[:len(complete)])
        for got, want in zip(complete, case["requests"], strict=True):
            _check_request(got, want)
    else:
        assert error is not None, f"{case['note']}: accepted {messages}"
        assert error.status in REJECT_STATUSES


def test_corpus_present() -> None:
    assert len(CASES) == 127
