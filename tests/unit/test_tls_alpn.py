"""ALPN offers per worker class: h2 only where an HTTP/2 driver exists."""

from __future__ import annotations

import pytest

from reclusterd import tls


def test_h2_capable_worker_offers_h2_first() -> None:
    assert tls.worker_alpn(("h1", "h2"), speaks_h2=True) == ("h2", "http/1.1")


def test_h1_only_setting_turns_h2_off() -> None:
    assert tls.worker_alpn(("h1",), speaks_h2=True) == ("http/1.1",)


def test_sync_worker_offers_http11_whatever_was_asked() -> None:
    assert tls.worker_alpn(("h1", "h2"), speaks_h2=False) == ("http/1.1",)
    assert tls.worker_alpn(("h2",), speaks_h2=False) == ("http/1.1",)


def test_unknown_protocol_is_refused() -> None:
    with pytest.raises(tls.TLSError):
        tls.worker_alpn(("h3",), speaks_h2=True)
