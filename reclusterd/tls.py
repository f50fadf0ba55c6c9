"""Server TLS: the SSLContext built from --certfile/--keyfile/--ca-certs/--ciphers,
--keyfile-password, --ssl-min-version and --cert-reqs, and ALPN.

Standard library only, so the arbiter (which builds the context once, before forking)
and every worker class can use it without importing each other.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

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
    min_version: str                      # TLSv1.2 or TLSv1.3 (settings.check_tls_version)
    keyfile_password: str | None = None
    cert_reqs: str | None = None          # none/optional/required; None: optional with CA

    @classmethod
    def of(cls, cfg: TLSSettings, alpn: tuple[str, ...]) -> TLSOptions:
        """The options a Config names, offering `alpn`."""
        return cls(cfg.certfile, cfg.keyfile, cfg.ca_certs, cfg.ciphers, alpn,
                   cfg.ssl_min_version, cfg.keyfile_password, cfg.cert_reqs)


# What a worker class without an HTTP/2 driver (the sync worker) offers.
HTTP1_ALPN = ("http/1.1",)


class TLSSettings(Protocol):
    """The Config attributes TLSOptions.of reads (this module does not import Config)."""

    @property
    def certfile(self) -> str | None: ...
    @property
    def keyfile(self) -> str | None: ...
    @property
    def ca_certs(self) -> str | None: ...
    @property
    def ciphers(self) -> str | None: ...
    @property
    def keyfile_password(self) -> str | None: ...
    @property
    def ssl_min_version(self) -> str: ...
    @property
    def cert_reqs(self) -> str | None: ...


_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
_CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL,
              "required": ssl.CERT_REQUIRED}


def alpn_protocols(http_protocols: Iterable[str]) -> tuple[str, ...]:
    """ALPN IDs for the offered protocols, h2 first: OpenSSL picks in the server's order
    (RFC 7301 §3.2), so a client offering both gets HTTP/2."""
    wanted = set(http_protocols)
    unknown = wanted - ALPN_IDS.keys()
    if unknown:
        raise TLSError(f"--http-protocols: unknown protocol {sorted(unknown)[0]!r} (h1, h2)")
    return tuple(alpn for name, alpn in ALPN_IDS.items() if name in wanted)


def worker_alpn(http_protocols: Iterable[str], speaks_h2: bool) -> tuple[str, ...]:
    """What a worker class offers by ALPN: --http-protocols when it has an HTTP/2 driver
    (thread, asyncio), else HTTP/1.1 only (the sync worker, whatever was asked)."""
    return alpn_protocols(http_protocols) if speaks_h2 else HTTP1_ALPN


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
    for name, path in (("--certfile", certfile), ("--keyfile", keyfile),
                       ("--ca-certs", ca_certs)):
        if path and not os.path.isfile(path):
            raise TLSError(f"{name}: no such file: {path}")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if options.min_version not in _VERSIONS:
        raise TLSError(f"--ssl-min-version: must be TLSv1.2 or TLSv1.3, got "
                       f"{options.min_version!r}")
    ctx.minimum_version = _VERSIONS[options.min_version]
    _load_key(ctx, options)
    reqs = options.cert_reqs or ("optional" if ca_certs else "none")
    if reqs not in _CERT_REQS:
        raise TLSError(f"--cert-reqs: must be none, optional or required, got {reqs!r}")
    if reqs != "none" and not ca_certs:
        raise TLSError(f"--cert-reqs: {reqs} needs --ca-certs (the CAs client certificates "
                       "are checked against)")
    if ca_certs:
        try:
            ctx.load_verify_locations(cafile=ca_certs)
        except (ssl.SSLError, OSError) as e:
            raise TLSError(f"--ca-certs: cannot load {ca_certs}: {_reason(e)}") from None
    ctx.verify_mode = _CERT_REQS[reqs]
    if options.ciphers:
        try:
            ctx.set_ciphers(options.ciphers)
        except ssl.SSLError as e:
            raise TLSError(f"--ciphers: {_reason(e)}: {options.ciphers}") from None
    if options.alpn:
        ctx.set_alpn_protocols(list(options.alpn))
    return ctx


def _load_key(ctx: ssl.SSLContext, options: TLSOptions) -> None:
    """load_cert_chain with the password given through a callback: OpenSSL calls it only
    for an encrypted key, so we know whether a failure was the password's, and without a
    password it never prompts on a tty."""
    certfile = options.certfile or ""
    keyfile = options.keyfile or certfile
    asked: list[bool] = []

    def password() -> str:
        asked.append(True)
        if options.keyfile_password is None:
            raise TLSError("--keyfile-password: the key is encrypted; give its password")
        return options.keyfile_password

    try:
        ctx.load_cert_chain(certfile, options.keyfile or None, password=password)
    except TLSError:
        raise
    except (ssl.SSLError, OSError) as e:
        if asked:
            raise TLSError(f"--keyfile-password: cannot decrypt {keyfile}: wrong password "
                           f"({_reason(e)})") from None
        raise TLSError(f"--certfile/--keyfile: cannot load {certfile}: {_reason(e)}") from None


def _reason(e: ssl.SSLError | OSError) -> str:
    """OpenSSL's short reason (e.g. "PEM_lib") rather than its multi-line repr."""
    reason = getattr(e, "reason", None) or e.strerror
    return str(reason or e).splitlines()[0]
