"""http.proxyproto: PROXY v1/v2 parsing, the never-past-the-header reader, any read split."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reclusterd.http.proxyproto import (
    V2_SIGNATURE,
    ProxyClosed,
    ProxyError,
    ProxyInfo,
    ProxyReader,
    parse,
    refusal,
)

CORPUS = json.loads((Path(__file__).parents[1] / "data" / "proxyproto" / "gunicorn.json")
                    .read_text())
REQUEST = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"


def v2(command: int = 1, fam: int = 0x11, block: bytes = b"", tlvs: bytes = b"") -> bytes:
    body = block + tlvs
    return V2_SIGNATURE + bytes((0x20 | command, fam)) + struct.pack("!H", len(body)) + body


V4_BLOCK = bytes((10, 0, 0, 1, 10, 0, 0, 2)) + struct.pack("!HH", 1234, 443)
V6_BLOCK = bytes(15) + b"\x01" + bytes(15) + b"\x02" + struct.pack("!HH", 5555, 80)


def test_v1_tcp4_tcp6_unknown() -> None:
    line = b"PROXY TCP4 192.0.2.1 198.51.100.2 4000 443\r\n"
    assert parse(line + REQUEST) == ProxyInfo(len(line), ("192.0.2.1", 4000),
                                              ("198.51.100.2", 443), 1)
    line6 = b"PROXY TCP6 2001:db8::1 2001:db8::2 65535 0\r\n"
    info = parse(line6)
    assert info is not None and info.client == ("2001:db8::1", 65535)
    # UNKNOWN: the rest of the line is ignored, the socket's peer stays the client
    assert parse(b"PROXY UNKNOWN whatever\r\n") == ProxyInfo(24, None, None, 1)
    assert parse(b"PROXY UNKNOWN\r\n") == ProxyInfo(15, None, None, 1)


@pytest.mark.parametrize("line", [
    b"PROXY TCP4 192.0.2.1 198.51.100.2 4000\r\n",           # a field short
    b"PROXY TCP4 2001:db8::1 198.51.100.2 1 2\r\n",           # v6 address as TCP4
    b"PROXY TCP6 192.0.2.1 2001:db8::2 1 2\r\n",              # v4 address as TCP6
    b"PROXY TCP4 192.0.2.1 198.51.100.2 65536 1\r\n",         # port out of range
    b"PROXY TCP4 192.0.2.1 198.51.100.2 01 1\r\n",            # leading zero
    b"PROXY TCP4 192.0.2.1 198.51.100.2 -1 1\r\n",
    b"PROXY TCP4  192.0.2.1 198.51.100.2 1 1\r\n",            # two spaces
    b"PROXY UDP4 192.0.2.1 198.51.100.2 1 1\r\n",
    b"PROXY TCP4 192.0.2.1 198.51.100.2 1 1\n",               # LF without CR
    b"PROXY " + b"A" * 110 + b"\r\n",                          # over 107 bytes
    b"GET / HTTP/1.1\r\n\r\n",                                 # no header at all
    b"\x16\x03\x01\x02\x00",                                   # a TLS ClientHello
    b"PROXYTCP4",
])
def test_v1_refused(line: bytes) -> None:
    with pytest.raises(ProxyError):
        parse(line)


def test_v1_length_limit_is_107() -> None:
    longest = b"PROXY TCP6 " + b"ffff:" * 7 + b"ffff " + b"ffff:" * 7 + b"ffff 65535 65535\r\n"
    assert len(longest) == 104 and parse(longest) is not None
    assert parse(b"PROXY " + b"x" * 100) is None            # 106 bytes, no CRLF yet
    with pytest.raises(ProxyError):
        parse(b"PROXY " + b"x" * 101)


def test_v2_inet_inet6_local_unspec_and_tlvs() -> None:
    assert parse(v2(block=V4_BLOCK) + REQUEST) == ProxyInfo(28, ("10.0.0.1", 1234),
                                                            ("10.0.0.2", 443), 2)
    tlvs = b"\x01\x00\x02h2" + b"\x04\x00\x00"              # ALPN, NOOP: skipped
    info = parse(v2(fam=0x21, block=V6_BLOCK, tlvs=tlvs))
    assert info == ProxyInfo(16 + 36 + len(tlvs), ("::1", 5555), ("::2", 80), 2)
    assert parse(v2(command=0, fam=0x11, block=V4_BLOCK)) == ProxyInfo(28, None, None, 2)
    assert parse(v2(command=0, fam=0, block=b"")) == ProxyInfo(16, None, None, 2)
    assert parse(v2(fam=0x00)) == ProxyInfo(16, None, None, 2)             # UNSPEC
    assert parse(v2(fam=0x31, block=bytes(216))) == ProxyInfo(232, None, None, 2)  # UNIX


@pytest.mark.parametrize("data", [
    V2_SIGNATURE + b"\x11\x11\x00\x0c" + V4_BLOCK,             # version 1 in a v2 header
    V2_SIGNATURE + b"\x22\x11\x00\x0c" + V4_BLOCK,             # command 2
    v2(fam=0x41, block=V4_BLOCK),                              # family 4
    v2(fam=0x13, block=V4_BLOCK),                              # transport 3
    v2(fam=0x11, block=V4_BLOCK[:8]),                          # block too short
    v2(fam=0x21, block=V4_BLOCK),
    v2(fam=0x31, block=bytes(100)),
])
def test_v2_refused(data: bytes) -> None:
    with pytest.raises(ProxyError):
        parse(data)


def test_incomplete_is_none() -> None:
    full = v2(block=V4_BLOCK)
    for i in range(1, len(full)):
        assert parse(full[:i]) is None
    assert parse(b"") is None and parse(b"PRO") is None


def feed(data: bytes, cuts: list[int]) -> tuple[ProxyInfo, bytes]:
    """Drive a ProxyReader as a driver does: the socket holds `data`, arriving in pieces
    at `cuts`; returns the header and what is left unread on the socket."""
    reader = ProxyReader()
    pos, arrived = 0, 0
    for cut in [*sorted(set(cuts)), len(data)]:
        arrived = max(arrived, min(cut, len(data)))
        peeked = data[pos:arrived]
        if not peeked:
            continue
        n, info = reader.step(peeked)
        assert 0 <= n <= len(peeked)
        pos += n
        if info is not None:
            return info, data[pos:]
        assert n == len(peeked)         # incomplete: everything seen was header
    raise AssertionError("no header")


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([b"PROXY TCP4 192.0.2.1 198.51.100.2 4000 443\r\n",
                        b"PROXY UNKNOWN\r\n", v2(block=V4_BLOCK, tlvs=b"\x04\x00\x01x")]),
       st.lists(st.integers(min_value=0, max_value=120), max_size=8))
def test_any_split_reads_exactly_the_header(header: bytes, cuts: list[int]) -> None:
    info, rest = feed(header + b"\x16\x03\x01TLS", cuts)
    assert info.consumed == len(header) and rest == b"\x16\x03\x01TLS"


def test_reader_eof() -> None:
    with pytest.raises(ProxyClosed):
        ProxyReader().step(b"")
    reader = ProxyReader()
    assert reader.step(b"PROXY TCP4") == (10, None)
    with pytest.raises(ProxyError) as e:
        reader.step(b"")
    assert not isinstance(e.value, ProxyClosed)


def test_refusal_line() -> None:
    assert refusal("10.0.0.9", "not in --proxy-allow-ips") == (
        30, "PROXY protocol: closing the connection from 10.0.0.9: not in --proxy-allow-ips")
    assert refusal(None, ProxyClosed("x"))[0] == 10


@pytest.mark.parametrize("case", CORPUS, ids=lambda c: c["name"])
def test_gunicorn_corpus(case: dict[str, Any]) -> None:
    data = bytes.fromhex(case["bytes_hex"])
    if case["outcome"] == "refused":
        with pytest.raises(ProxyError):
            parse(data)
        return
    info = parse(data)
    assert info is not None and list(info.client or ()) == case["client"]
    assert data[info.consumed:].startswith(case["method"].encode() + b" " +
                                           case["path"].encode())
