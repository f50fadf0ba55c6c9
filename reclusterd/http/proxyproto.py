"""PROXY protocol v1 and v2 (HAProxy's proxy-protocol.txt), sans-IO: bytes in, a verdict out.

A load balancer in TCP mode (HAProxy `send-proxy`, AWS NLB) sends one header before
anything else on the connection, before a TLS ClientHello too, naming the client it
accepted the connection from. `parse(data)` reads it from the connection's first
bytes: a `ProxyInfo` (with how many bytes it took), None (need more bytes), or
ProxyError. `ProxyReader` turns that into the two socket calls a driver makes, so it
never reads past the header (the bytes after it belong to TLS or the HTTP parser):
peek what is there, then consume exactly what `step` says.

The spec says a receiver configured for the protocol must not guess whether a header
is there: without one the connection is refused (HAProxy spec §2, "MUST not try to
guess").
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

__all__ = ["MAX_V1", "V2_SIGNATURE", "ProxyClosed", "ProxyError", "ProxyInfo", "ProxyReader",
           "parse", "refusal"]

V1_PREFIX = b"PROXY "
MAX_V1 = 107                  # the longest v1 line, CRLF included (spec §2.1)
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_HEADER = 16                # signature, version/command, family/protocol, length
# v2 family byte (high nibble) -> (address block bytes, address size) for AF_INET / AF_INET6;
# AF_UNIX (0x3) carries 216 bytes of paths: no IP client, the socket peer stays
_V2_INET = {0x1: (12, 4), 0x2: (36, 16)}
_V2_UNIX_BLOCK = 216
Address = tuple[str, int]


class ProxyError(ValueError):
    """Not a valid PROXY header (or none where one is required): close the connection."""

    quiet = False           # log at debug only (a port probe), else one warning


class ProxyClosed(ProxyError):
    """The peer closed without sending a byte: a TCP health check of the port."""

    quiet = True


@dataclass(frozen=True, slots=True)
class ProxyInfo:
    """A complete header: `consumed` bytes long; `client` the source address it names,
    None for LOCAL (a health check of the proxy itself), UNKNOWN or a non-IP family:
    then the socket's own peer is the client (spec §2.1, §2.2)."""

    consumed: int
    client: Address | None
    server: Address | None
    version: int


def refusal(peer: str | None, why: ProxyError | str) -> tuple[int, str]:
    """(log level, message) for a connection closed over its PROXY header: one line."""
    level = 10 if isinstance(why, ProxyError) and why.quiet else 30   # DEBUG, WARNING
    return level, f"PROXY protocol: closing the connection from {peer or 'a unix socket'}: {why}"


def parse(data: bytes) -> ProxyInfo | None:
    """The header at the start of `data`; None if it may still be one but is incomplete."""
    n = min(len(data), len(V2_SIGNATURE))
    if n and data[:n] == V2_SIGNATURE[:n]:
        return _parse_v2(data) if len(data) >= V2_HEADER else None
    n = min(len(data), len(V1_PREFIX))
    if n and data[:n] == V1_PREFIX[:n]:
        return _parse_v1(data)
    if not data:
        return None
    raise ProxyError("no PROXY protocol header")


def _parse_v1(data: bytes) -> ProxyInfo | None:
    end = data.find(b"\r\n", 0, MAX_V1)
    if end < 0:
        if len(data) >= MAX_V1 or b"\n" in data[:MAX_V1]:
            raise ProxyError("PROXY v1 line not ended by CRLF within 107 bytes")
        return None
    line = data[:end]
    fields = line.split(b" ")
    proto = fields[1] if len(fields) > 1 else b""
    if proto == b"UNKNOWN":       # the rest of the line is to be ignored (spec §2.1)
        return ProxyInfo(end + 2, None, None, 1)
    if proto not in (b"TCP4", b"TCP6") or len(fields) != 6:
        raise ProxyError(f"bad PROXY v1 line {line[:MAX_V1]!r}")
    family = 4 if proto == b"TCP4" else 6
    src = _v1_address(fields[2], fields[4], family)
    dst = _v1_address(fields[3], fields[5], family)
    return ProxyInfo(end + 2, src, dst, 1)


def _v1_address(host: bytes, port: bytes, family: int) -> Address:
    try:
        ip = ipaddress.ip_address(host.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise ProxyError(f"bad PROXY v1 address {host!r}") from None
    if ip.version != family:
        raise ProxyError(f"PROXY v1 address {host!r} is not TCP{family}")
    # decimal 0-65535 without a sign or leading zeros
    if not (port.isdigit() and len(port) <= 5 and (port == b"0" or port[:1] != b"0")):
        raise ProxyError(f"bad PROXY v1 port {port!r}")
    number = int(port)
    if number > 65535:
        raise ProxyError(f"bad PROXY v1 port {port!r}")
    return str(ip), number


def _parse_v2(data: bytes) -> ProxyInfo | None:
    ver_cmd, fam, length = data[12], data[13], struct.unpack_from("!H", data, 14)[0]
    if ver_cmd >> 4 != 2:
        raise ProxyError(f"PROXY v2: unsupported version {ver_cmd >> 4}")
    command = ver_cmd & 0x0F
    if command > 1:
        raise ProxyError(f"PROXY v2: unknown command {command}")
    total = V2_HEADER + length
    if len(data) < total:
        return None
    if command == 0:            # LOCAL: the proxy's own connection; addresses ignored
        return ProxyInfo(total, None, None, 2)
    family, transport = fam >> 4, fam & 0x0F
    if family > 3 or transport > 2:
        raise ProxyError(f"PROXY v2: unknown address family/protocol 0x{fam:02x}")
    if family == 0x3 and length < _V2_UNIX_BLOCK:
        raise ProxyError("PROXY v2: address block shorter than its family needs")
    inet = _V2_INET.get(family)
    if inet is None or transport == 0:  # UNSPEC, AF_UNIX: keep the socket's peer
        return ProxyInfo(total, None, None, 2)
    block, size = inet
    if length < block:
        raise ProxyError("PROXY v2: address block shorter than its family needs")
    body = data[V2_HEADER:V2_HEADER + block]
    src = ipaddress.ip_address(body[:size])
    dst = ipaddress.ip_address(body[size:2 * size])
    sport, dport = struct.unpack_from("!HH", body, 2 * size)
    # the TLVs after the address block (ALPN, authority, SSL info...) are skipped
    return ProxyInfo(total, (str(src), sport), (str(dst), dport), 2)


class ProxyReader:
    """The header read off a socket in steps, never past its end.

    The driver peeks at what the socket holds (MSG_PEEK) and calls `step(peeked)`:
    it returns (n, info) where n is the number of those bytes to consume now. While the
    header is incomplete every peeked byte is part of it (else `parse` would have found
    its end), so consuming them all keeps the socket from staying readable (no busy
    loop on a slow sender); once complete, exactly the header's rest is consumed.
    """

    __slots__ = ("buffered",)

    def __init__(self) -> None:
        self.buffered = b""

    def step(self, peeked: bytes) -> tuple[int, ProxyInfo | None]:
        """(bytes to consume, the header or None for "wait for more"); ProxyError if the
        bytes are not a header, or the client closed (`peeked` = b"") before its end."""
        if not peeked:
            if not self.buffered:
                raise ProxyClosed("connection closed before sending anything")
            raise ProxyError("connection closed before a complete PROXY header")
        data = self.buffered + peeked
        info = parse(data)
        if info is None:
            self.buffered = data
            return len(peeked), None
        return info.consumed - len(self.buffered), info
