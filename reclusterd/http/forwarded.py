"""Who is the client? X-Forwarded-For/-Proto and RFC 7239 Forwarded, from trusted peers only.

Pure functions, no I/O. `ProxyResolver(cfg.forwarded_allow_ips)` parses the trust list
once (IPs, CIDRs, "*"); `resolve(peer_ip, headers)` is then cheap per request.

Rule: the hop chain is the forwarded-for list followed by the socket peer. Walking
from the right, every trusted hop is skipped; the first untrusted one is the client
(a client can prepend whatever it likes, but cannot forge what our own proxies
appended). If every hop is trusted, the left-most is the client. Headers from an
untrusted peer are ignored entirely. A unix-socket peer (no IP) is a local proxy
and is trusted.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import NamedTuple

Headers = Sequence[tuple[bytes, bytes]]
_Net = ipaddress.IPv4Network | ipaddress.IPv6Network
_SCHEMES = {"http", "https"}


def _parse_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(value.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class ProxyResolver:
    """The parsed --forwarded-allow-ips list and the per-request resolution."""

    __slots__ = ("trust_all", "networks", "default_scheme")

    def __init__(self, allow_ips: Iterable[str], default_scheme: str = "http") -> None:
        self.trust_all = False
        self.networks: list[_Net] = []
        self.default_scheme = default_scheme
        for raw in allow_ips:
            for item in raw.split(","):
                item = item.strip()
                if not item:
                    continue
                if item == "*":
                    self.trust_all = True
                    continue
                try:
                    self.networks.append(ipaddress.ip_network(item, strict=False))
                except ValueError:
                    raise ValueError(f"not an IP address or network: {item!r}") from None

    def trusted(self, host: str | None) -> bool:
        """Is this hop (IP text, or None/"" for a unix-socket peer) one of our proxies?"""
        if self.trust_all or not host:
            return True
        ip = _parse_ip(host)
        if ip is None:
            return False
        return any(ip in net for net in self.networks)

    def resolve(self, peer_ip: str | None, headers: Headers, peer_port: int = 0) -> Client:
        """The client of a request from `peer_ip`:`peer_port` with these (lower-case) headers."""
        return resolve(peer_ip, headers, self, peer_port)


def _header_values(headers: Headers, name: bytes) -> list[str]:
    out: list[str] = []
    for k, v in headers:
        if k == name or k.lower() == name:
            out.extend(p.strip() for p in v.decode("latin-1").split(","))
    return out


def _hop(text: str) -> tuple[str, int]:
    """A forwarded hop as (host, port): '"[::1]:80"' -> ('::1', 80), '1.2.3.4' -> ('1.2.3.4', 0).

    RFC 7239 §6 node = nodename [":" node-port]; a port that is not 1-65535 digits
    (an obfuscated "_p", garbage) counts as not given (0)."""
    host = text.strip().strip('"')
    port = ""
    if host.startswith("["):
        host, closed, rest = host[1:].partition("]")
        if not closed:
            return "[" + host, 0    # not an address: never the client
        port = rest[1:] if rest.startswith(":") else ""
    elif host.count(":") == 1:
        host, _, port = host.partition(":")
    number = int(port) if port.isascii() and port.isdigit() and len(port) <= 5 else 0
    return host, number if number <= 65535 else 0


def _forwarded_elements(headers: Headers) -> list[dict[str, str]]:
    """RFC 7239 Forwarded: elements left to right, each {param: value} (lower-case names)."""
    out: list[dict[str, str]] = []
    for element in _split_quoted(_joined(headers, b"forwarded"), ","):
        params: dict[str, str] = {}
        for pair in _split_quoted(element, ";"):
            name, sep, value = pair.partition("=")
            if sep:
                value = value.strip()
                if len(value) >= 2 and value[0] == value[-1] == '"':
                    value = value[1:-1].replace('\\"', '"')
                params[name.strip().lower()] = value
        out.append(params)
    return out


def _joined(headers: Headers, name: bytes) -> str:
    return ",".join(v.decode("latin-1") for k, v in headers if k == name or k.lower() == name)


def _split_quoted(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    quoted = escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == sep and not quoted:
            parts.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    tail = "".join(cur).strip()
    if tail or parts:
        parts.append(tail)
    return [p for p in parts if p]


class Client(NamedTuple):
    """Who the request is from, as the app should see it."""

    host: str       # an IP address text, or "" (a unix-socket peer without forwarding)
    port: int       # 0 when a proxy named the client without its port (as Uvicorn)
    scheme: str     # "http" or "https"


def _client(hops: list[tuple[str, int]], resolver: ProxyResolver) -> int:
    """Index of the client in `hops` (the socket peer last, itself trusted).

    Walking from the right, trusted hops are skipped; the first untrusted hop is the
    client. A hop that is not an IP address ("unknown", an obfuscated "_name" of
    RFC 7239 §6.3, garbage) ends the walk: the client is unknown, so the last hop
    known (the proxy that reported it) stands in for it. Every hop trusted: left-most."""
    for i in range(len(hops) - 2, -1, -1):
        host = hops[i][0]
        # a zone id (fe80::1%eth0) names an interface of the proxy's machine: no address
        # the app can use, so it counts as "not an IP" too
        if "%" in host or _parse_ip(host) is None:
            return i + 1
        if not resolver.trusted(host):
            return i
    return 0


def resolve(peer_ip: str | None, headers: Headers, resolver: ProxyResolver,
            peer_port: int = 0) -> Client:
    """The client (host, port, scheme): forwarding headers believed only from a trusted peer.

    RFC 7239 Forwarded wins when present; else X-Forwarded-For / X-Forwarded-Proto.
    The client's port is the one its hop names, else 0: the peer's port is the proxy's
    (Uvicorn does the same). The host is always an IP address (or the peer's "").
    """
    peer = (peer_ip or "", peer_port)
    scheme = resolver.default_scheme
    if not resolver.trusted(peer_ip):
        return Client(peer[0], peer[1], scheme)
    elements = _forwarded_elements(headers)
    if elements:
        # each element is one hop; one without for= names no one (like "unknown")
        hops = [_hop(e.get("for", "")) for e in elements] + [peer]
        i = _client(hops, resolver)
        # the scheme the client reached the first proxy with; else what the nearest
        # proxy that said so was reached with
        proto = (elements[i].get("proto") if i < len(elements) else "") or next(
            (e["proto"] for e in reversed(elements) if e.get("proto")), "")
        proto = proto.lower()
        return Client(*hops[i], proto if proto in _SCHEMES else scheme)
    xff = [_hop(h) for h in _header_values(headers, b"x-forwarded-for") if h]
    i = _client([*xff, peer], resolver)
    host, port = xff[i] if i < len(xff) else peer
    protos = [p.lower() for p in _header_values(headers, b"x-forwarded-proto") if p]
    if protos:
        # aligned with the client hop when both lists have one entry per hop; else the
        # value the nearest (right-most, trusted) proxy appended
        proto = protos[i] if i < len(xff) and len(protos) == len(xff) else protos[-1]
        if proto in _SCHEMES:
            scheme = proto
    return Client(host, port, scheme)


def from_config(allow_ips: Iterable[str], secure: bool = False) -> ProxyResolver:
    """Resolver for a worker: default scheme https when the listener speaks TLS."""
    return ProxyResolver(allow_ips, "https" if secure else "http")
