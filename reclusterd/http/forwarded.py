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

    def resolve(self, peer_ip: str | None, headers: Headers) -> tuple[str, str]:
        """(client_ip, scheme) for a request from `peer_ip` with these (lower-case) headers."""
        return resolve(peer_ip, headers, self)


def _header_values(headers: Headers, name: bytes) -> list[str]:
    out: list[str] = []
    for k, v in headers:
        if k == name or k.lower() == name:
            out.extend(p.strip() for p in v.decode("latin-1").split(","))
    return out


def _strip_port(host: str) -> str:
    """'[::1]:80' -> '::1', '1.2.3.4:80' -> '1.2.3.4', '::1' -> '::1'."""
    host = host.strip().strip('"')
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


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


def _pick(hops: list[str], resolver: ProxyResolver) -> int:
    """Index of the client in `hops` (peer excluded): right-most untrusted, else left-most."""
    for i in range(len(hops) - 1, -1, -1):
        if not resolver.trusted(hops[i]):
            return i
    return 0


def resolve(peer_ip: str | None, headers: Headers, resolver: ProxyResolver) -> tuple[str, str]:
    """(client_ip, scheme): believe forwarding headers only when `peer_ip` is trusted.

    RFC 7239 Forwarded wins when present; else X-Forwarded-For / X-Forwarded-Proto.
    """
    peer = peer_ip or ""
    scheme = resolver.default_scheme
    if not resolver.trusted(peer_ip):
        return peer, scheme
    elements = _forwarded_elements(headers)
    if elements:
        fors = [_strip_port(e.get("for", "")) for e in elements]
        idx = _pick(fors, resolver) if any(fors) else -1
        client = fors[idx] if idx >= 0 and fors[idx] else peer
        proto = elements[idx].get("proto", "") if idx >= 0 else ""
        if not proto:       # nearest proxy that said which scheme it was reached with
            proto = next((e["proto"] for e in reversed(elements) if e.get("proto")), "")
        proto = proto.lower()
        return client, proto if proto in _SCHEMES else scheme
    xff = [_strip_port(h) for h in _header_values(headers, b"x-forwarded-for") if h]
    client = peer
    idx = -1
    if xff:
        idx = _pick(xff, resolver)
        client = xff[idx] or peer
    protos = [p.lower() for p in _header_values(headers, b"x-forwarded-proto") if p]
    if protos:
        # aligned with the client hop when both lists have one entry per hop; else the
        # value the nearest (right-most, trusted) proxy appended
        proto = protos[idx] if xff and len(protos) == len(xff) else protos[-1]
        if proto in _SCHEMES:
            scheme = proto
    return client, scheme


def from_config(allow_ips: Iterable[str], secure: bool = False) -> ProxyResolver:
    """Resolver for a worker: default scheme https when the listener speaks TLS."""
    return ProxyResolver(allow_ips, "https" if secure else "http")
