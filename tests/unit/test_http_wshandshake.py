"""http.wshandshake: RFC 6455 §4.2.1 opening-handshake checks, on heads parsed by both parsers."""

from __future__ import annotations

import pytest

from reclusterd.http import Limits, Request, make_parser
from reclusterd.http.wshandshake import handshake_problem, handshake_refusal, offers_websocket

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
BASE = {"Host": "h", "Upgrade": "websocket", "Connection": "Upgrade",
        "Sec-WebSocket-Key": KEY, "Sec-WebSocket-Version": "13"}


def parse(parser: str, start: str = "GET / HTTP/1.1", drop: str = "",
          extra: list[tuple[str, str]] | None = None, **fields: str) -> Request:
    hdrs = {**BASE, **{k.replace("_", "-"): v for k, v in fields.items()}}
    lines = [f"{k}: {v}" for k, v in hdrs.items() if k != drop]
    lines += [f"{k}: {v}" for k, v in extra or ()]
    raw = (start + "\r\n" + "".join(line + "\r\n" for line in lines) + "\r\n").encode()
    events = make_parser(parser, Limits()).feed(raw)
    assert isinstance(events[0], Request), events
    return events[0]


@pytest.fixture(params=["httptools", "h11"])
def parser(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.parametrize("fields", [
    {}, {"Upgrade": "WebSocket"}, {"Upgrade": "h2c, websocket"},
    {"Connection": "keep-alive, upgrade"}, {"Connection": "UPGRADE"},
    {"Sec-WebSocket-Key": "AAAAAAAAAAAAAAAAAAAAAA=="},
])
def test_valid_handshakes(parser: str, fields: dict[str, str]) -> None:
    req = parse(parser, **{k.replace("-", "_"): v for k, v in fields.items()})
    assert offers_websocket(req)
    assert handshake_problem(req) is None


def test_upgrade_in_http10_is_ignored(parser: str) -> None:
    """RFC 9110 §7.8: a server MUST ignore Upgrade in an HTTP/1.0 request."""
    assert not offers_websocket(parse(parser, start="GET / HTTP/1.0"))


@pytest.mark.parametrize(("kw", "status"), [
    ({"Sec_WebSocket_Version": "8"}, 426),
    ({"Sec_WebSocket_Version": "7"}, 426),
    ({"Sec_WebSocket_Version": "13, 8"}, 426),
    ({"Sec_WebSocket_Version": "abc"}, 426),
    ({"drop": "Sec-WebSocket-Version"}, 426),
    ({"Sec_WebSocket_Key": "abc"}, 400),
    ({"Sec_WebSocket_Key": "YWJj"}, 400),                          # base64 of 3 bytes
    ({"Sec_WebSocket_Key": "AAAAAAAAAAAAAAAAAAAAAAAA"}, 400),      # 18 bytes
    ({"Sec_WebSocket_Key": "dGhlIHNhbXBsZSBub25jZQ"}, 400),        # padding missing
    ({"Sec_WebSocket_Key": "dGhlIHNhbXBsZSBub25j*Q=="}, 400),      # not the alphabet
    ({"drop": "Sec-WebSocket-Key"}, 400),
    ({"extra": [("Sec-WebSocket-Key", KEY)]}, 400),                # twice (§11.3.1)
    ({"start": "POST / HTTP/1.1"}, 400),
    ({"start": "PUT / HTTP/1.1"}, 400),
    ({"Connection": "keep-alive"}, 400),
    ({"Upgrade": "websocket/13"}, 400),                            # a versioned product
    ({"Content_Length": "5"}, 400),                                # a body: smuggling
    ({"Transfer_Encoding": "chunked"}, 400),
    ({"drop": "Connection"}, 400),
])
def test_invalid_handshakes(parser: str, kw: dict[str, object], status: int) -> None:
    req = parse(parser, **kw)  # type: ignore[arg-type]
    assert offers_websocket(req)
    problem = handshake_problem(req)
    assert problem is not None and problem[0] == status
    out = handshake_refusal(req, *problem)
    head, body = out.split(b"\r\n\r\n", 1)
    low = head.lower()
    assert out.startswith(b"HTTP/1.1 %d " % status)
    assert b"\r\nsec-websocket-version: 13" in low and b"\r\nconnection: close" in low
    assert (b"\r\nupgrade: websocket" in low) == (status == 426)   # RFC 9110 §15.5.22
    assert body.endswith(b"\n") and KEY.encode() not in body


@pytest.mark.parametrize("fields", [{"Upgrade": "h2c"}, {"Upgrade": "websockets"},
                                    {"drop": "Upgrade"}])
def test_other_upgrades_are_not_websocket(parser: str, fields: dict[str, str]) -> None:
    assert not offers_websocket(parse(parser, **fields))
