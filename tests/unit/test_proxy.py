"""Unit tests for reclusterd.http.forwarded: trust list, XFF walk, X-Forwarded-Proto, RFC 7239."""

from __future__ import annotations

import pytest

from reclusterd.http.forwarded import ProxyResolver, from_config, resolve


def H(**kw: str) -> list[tuple[bytes, bytes]]:
    return [(k.replace("_", "-").encode(), v.encode()) for k, v in kw.items()]


LOCAL = ProxyResolver(["127.0.0.1"])


def test_trust_list_parsing() -> None:
    r = ProxyResolver(["10.0.0.0/8, 192.168.1.5", "::1", "fd00::/8"])
    assert r.trusted("10.2.3.4") and r.trusted("192.168.1.5") and r.trusted("::1")
    assert r.trusted("fd12::1") and r.trusted("::ffff:10.1.1.1")
    assert not r.trusted("192.168.1.6") and not r.trusted("8.8.8.8")
    assert not r.trusted("not-an-ip")
    assert r.trusted(None) and r.trusted("")         # unix socket peer
    assert ProxyResolver(["*"]).trusted("8.8.8.8")
    with pytest.raises(ValueError, match="bogus"):
        ProxyResolver(["bogus"])


def test_untrusted_peer_headers_ignored() -> None:
    hdrs = H(x_forwarded_for="1.1.1.1", x_forwarded_proto="https", forwarded="for=2.2.2.2")
    assert LOCAL.resolve("8.8.8.8", hdrs)[::2] == ("8.8.8.8", "http")


def test_trusted_peer_xff_and_proto() -> None:
    assert LOCAL.resolve("127.0.0.1", H(x_forwarded_for="1.1.1.1",
                                        x_forwarded_proto="https"))[::2] == ("1.1.1.1", "https")
    assert LOCAL.resolve("127.0.0.1", [])[::2] == ("127.0.0.1", "http")


def test_rightmost_untrusted_hop() -> None:
    r = ProxyResolver(["127.0.0.1", "10.0.0.0/8"])
    # client spoofed 6.6.6.6; the real client 1.1.1.1 was appended by our 10.x proxy
    hdrs = H(x_forwarded_for="6.6.6.6, 1.1.1.1, 10.0.0.2")
    assert r.resolve("127.0.0.1", hdrs)[::2] == ("1.1.1.1", "http")
    # all hops trusted -> left-most
    assert r.resolve("127.0.0.1", H(x_forwarded_for="10.1.1.1, 10.0.0.2"))[0] == "10.1.1.1"
    # trust all -> left-most (Gunicorn's "*")
    assert ProxyResolver(["*"]).resolve("9.9.9.9", hdrs)[0] == "6.6.6.6"


def test_multiple_xff_headers_and_ports() -> None:
    hdrs = [(b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-for", b"1.1.1.1:5555")]
    assert LOCAL.resolve("127.0.0.1", hdrs)[0] == "1.1.1.1"
    assert LOCAL.resolve("127.0.0.1", H(x_forwarded_for="[2001:db8::1]:80"))[0] == "2001:db8::1"
    assert LOCAL.resolve("127.0.0.1", H(x_forwarded_for="2001:db8::1"))[0] == "2001:db8::1"


def test_proto_alignment_and_validation() -> None:
    r = ProxyResolver(["127.0.0.1", "10.0.0.0/8"])
    hdrs = H(x_forwarded_for="1.1.1.1, 10.0.0.2", x_forwarded_proto="https, http")
    assert r.resolve("127.0.0.1", hdrs)[::2] == ("1.1.1.1", "https")
    assert LOCAL.resolve("127.0.0.1", H(x_forwarded_proto="HTTPS"))[::2] == ("127.0.0.1", "https")
    assert LOCAL.resolve("127.0.0.1", H(x_forwarded_proto="gopher"))[::2] == ("127.0.0.1", "http")
    assert from_config(["127.0.0.1"], secure=True).resolve("8.8.8.8", []).scheme == "https"


def test_rfc7239_forwarded() -> None:
    hdrs = H(forwarded='for=6.6.6.6, for="[2001:db8:cafe::17]:4711";proto=https;by=10.0.0.9')
    assert LOCAL.resolve("127.0.0.1", hdrs)[::2] == ("2001:db8:cafe::17", "https")
    # Forwarded wins over X-Forwarded-*
    both = H(forwarded="for=1.2.3.4;proto=https", x_forwarded_for="5.5.5.5")
    assert LOCAL.resolve("127.0.0.1", both)[::2] == ("1.2.3.4", "https")
    # quoted values with separators inside
    q = H(forwarded='for="1.2.3.4";host="a;b,c";proto=http')
    assert LOCAL.resolve("127.0.0.1", q)[::2] == ("1.2.3.4", "http")
    # proto only
    assert LOCAL.resolve("127.0.0.1", H(forwarded="proto=https"))[::2] == ("127.0.0.1", "https")


def test_unix_peer_trusted() -> None:
    assert LOCAL.resolve(None, H(x_forwarded_for="1.1.1.1"))[::2] == ("1.1.1.1", "http")
    assert resolve("", H(x_forwarded_for="1.1.1.1"), LOCAL)[0] == "1.1.1.1"


@pytest.mark.parametrize("value", ["not-an-ip", "unknown", "_hidden", '"_x:_p"', "1.2.3",
                                   "example.com", "[::1", '""', "1.1.1.1.1",
                                   "fe80::1%eth0"])
@pytest.mark.parametrize("header", ["x-forwarded-for", "forwarded"])
def test_a_hop_that_is_not_an_ip_never_becomes_the_client(value: str, header: str) -> None:
    """The client is unknown past such a hop: the proxy that reported it stands in."""
    hdr = [(header.encode(), (f"for={value}" if header == "forwarded" else value).encode())]
    assert LOCAL.resolve("127.0.0.1", hdr, 4321)[:2] == ("127.0.0.1", 4321)
    star = ProxyResolver(["*"])
    assert star.resolve("127.0.0.1", hdr, 4321)[:2] == ("127.0.0.1", 4321)
    # behind a known hop: that hop (named by our proxy) is the client, never the value
    r = ProxyResolver(["127.0.0.1", "10.0.0.0/8"])
    chain = f"{value}, 10.0.0.2" if header == "x-forwarded-for" else \
        f"for={value}, for=10.0.0.2"
    assert r.resolve("127.0.0.1", [(header.encode(), chain.encode())], 4321)[:2] == \
        ("10.0.0.2", 0)
    # a spoofed left part never wins over it either
    chain = f"6.6.6.6, {value}" if header == "x-forwarded-for" else \
        f"for=6.6.6.6, for={value}"
    assert r.resolve("127.0.0.1", [(header.encode(), chain.encode())], 4321)[:2] == \
        ("127.0.0.1", 4321)


@pytest.mark.parametrize(("headers", "client"), [
    (H(x_forwarded_for="10.0.0.5"), ("10.0.0.5", 0)),
    (H(x_forwarded_for="10.0.0.5:5555"), ("10.0.0.5", 5555)),
    (H(x_forwarded_for="[2001:db8::1]:4711"), ("2001:db8::1", 4711)),
    (H(x_forwarded_for="2001:db8::1"), ("2001:db8::1", 0)),
    (H(forwarded='for="[2001:db8::1]:4711"'), ("2001:db8::1", 4711)),
    (H(forwarded="for=192.0.2.60:80;proto=http"), ("192.0.2.60", 80)),
    (H(forwarded='for="192.0.2.60:_p1"'), ("192.0.2.60", 0)),
    (H(forwarded='for="192.0.2.60:99999"'), ("192.0.2.60", 0)),
    (H(x_forwarded_for="10.0.0.5", x_forwarded_port="8443"), ("10.0.0.5", 0)),
])
def test_the_client_port_is_the_forwarded_one_or_zero(
        headers: list[tuple[bytes, bytes]], client: tuple[str, int]) -> None:
    # never the proxy's own TCP port (X-Forwarded-Port is the port the proxy was reached on)
    assert LOCAL.resolve("127.0.0.1", headers, 40000)[:2] == client


def test_no_forwarding_keeps_the_peer_and_its_port() -> None:
    assert LOCAL.resolve("127.0.0.1", [], 40000)[:2] == ("127.0.0.1", 40000)
    assert LOCAL.resolve("8.8.8.8", H(x_forwarded_for="1.1.1.1"), 40000)[:2] == \
        ("8.8.8.8", 40000)
    assert LOCAL.resolve("127.0.0.1", H(forwarded="proto=https"), 40000) == \
        ("127.0.0.1", 40000, "https")
