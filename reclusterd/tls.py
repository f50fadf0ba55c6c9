"""Server TLS: the SSLContext built from --certfile/--keyfile/--ca-certs/--ciphers, and ALPN.

Standard library only, so the arbiter (which builds the context once, before forking)
and every worker class can use it without importing each other.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterable
from dataclasses import dataclass

# --http-protocols names -> ALPN protocol IDs (IANA "TLS ALPN Protocol IDs" registry).
ALPN_IDS = {"h2": "h2", "h1": "http/1.1"}


class TLSError(ValueError):
    """The TLS context could not be built (missing or bad cert/key, bad ciphers).

    str() is one line naming the setting, so the CLI can print it and exit non-zero.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class TLSOptions:
    """The settings a server context is built from; certfile None means plain TCP."""

    certfile: str | None
    keyfile: str | None
    ca_certs: str | None
    ciphers: str | None
    alpn: tuple[str, ...]


def alpn_protocols(http_protocols: Iterable[str]) -> tuple[str, ...]:
    """ALPN IDs for the offered protocols, h2 first: OpenSSL picks in the server's order
    (RFC 7301 §3.2), so a client offering both gets HTTP/2."""
    wanted = set(http_protocols)
    unknown = wanted - ALPN_IDS.keys()
    if unknown:
        raise TLSError(f"http-protocols: unknown protocol {sorted(unknown)[0]!r} (h1, h2)")
    return tuple(alpn for name, alpn in ALPN_IDS.items() if name in wanted)


_cache: dict[tuple[object, ...], ssl.SSLContext] = {}


def _mtime(path: str | None) -> float:
    try:
        return os.stat(path).st_mtime if path else 0.0
    except OSError:
        return -1.0


def ssl_context(options: TLSOptions) -> ssl.SSLContext | None:
    """Server TLS context, or None without a certfile.

    Cached by options and file mtimes: the arbiter builds it once before forking and
    workers asking again get the inherited object; a HUP with renewed certificate files
    builds a fresh one.
    """
    paths = (options.certfile, options.keyfile, options.ca_certs)
    key = (options, *(_mtime(p) for p in paths))
    if key in _cache:
        return _cache[key]
    ctx = _build(options)
    if ctx is not None:
        _cache.clear()
        _cache[key] = ctx
    return ctx


def _build(options: TLSOptions) -> ssl.SSLContext | None:
    certfile, keyfile, ca_certs = options.certfile, options.keyfile, options.ca_certs
    if not certfile:
        if keyfile:
            raise TLSError("--keyfile given without --certfile")
        return None
    for name, path in (("certfile", certfile), ("keyfile", keyfile), ("ca_certs", ca_certs)):
        if path and not os.path.isfile(path):
            raise TLSError(f"{name}: no such file: {path}")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(certfile, keyfile or None)
    except (ssl.SSLError, OSError) as e:
        raise TLSError(f"certfile/keyfile: cannot load {certfile}: {_reason(e)}") from None
    if ca_certs:
        try:
            ctx.load_verify_locations(cafile=ca_certs)
        except (ssl.SSLError, OSError) as e:
            raise TLSError(f"ca_certs: cannot load {ca_certs}: {_reason(e)}") from None
        ctx.verify_mode = ssl.CERT_OPTIONAL
    if options.ciphers:
        try:
            ctx.set_ciphers(options.ciphers)
        except ssl.SSLError as e:
            raise TLSError(f"ciphers: {_reason(e)}: {options.ciphers}") from None
    if options.alpn:
        ctx.set_alpn_protocols(list(options.alpn))
    return ctx


def _reason(e: ssl.SSLError | OSError) -> str:
    """OpenSSL's short reason (e.g. "PEM_lib") rather than its multi-line repr."""
    reason = getattr(e, "reason", None) or e.strerror
    return str(reason or e).splitlines()[0]
