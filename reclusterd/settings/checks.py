"""The settings table's validators: each takes an already-typed value and returns it
(possibly normalised) or raises ValueError with a message that reads after "SETTING: "."""

from __future__ import annotations

import ipaddress
import re

from reclusterd import gunicorn_map, workerclasses
from reclusterd.sockets import parse_address

_DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_SPEC_RE = re.compile(rf"^{_DOTTED}:{_DOTTED}$")
_APP_RE = re.compile(rf"^{_DOTTED}(?::{_DOTTED})?$")


def check_address(addr: str) -> str:
    """A bind address in the one grammar binding uses (sockets.parse_address), normalised:
    `localhost` -> `localhost:8000`, `:8000` -> `0.0.0.0:8000`."""
    return str(parse_address(addr))


def check_addresses(addrs: tuple[str, ...]) -> tuple[str, ...]:
    """Every bind address valid, at least one."""
    if not addrs:
        raise ValueError("at least one address is needed")
    return tuple(check_address(a) for a in addrs)


def check_spec(value: str) -> str:
    """A "module:name" import spec (hooks, plug-in worker classes)."""
    if not _SPEC_RE.match(value):
        raise ValueError(f"expected module:name, got {value!r}")
    return value


def check_app(value: str) -> str:
    """APP is "module:attr" (dotted attr) or "module" (attr "app")."""
    if not _APP_RE.match(value):
        hint = ""
        if value.endswith("()") and _APP_RE.match(value[:-2]):
            # Gunicorn's "module:create_app()" spelling: point at the flag we use instead.
            hint = f"; for an application factory use '{value[:-2]}' with --factory"
        raise ValueError(f"expected module:attr (e.g. myapp:app), got {value!r}{hint}")
    return value


def check_worker_class(value: str) -> str:
    """auto, sync, thread, asyncio or module:Class; Gunicorn's names as Gunicorn users
    type them are taken too (`-k gthread` -> thread, uvicorn's UvicornWorker -> asyncio)."""
    if value in workerclasses.NAMES or _SPEC_RE.match(value):
        return value
    mapped = gunicorn_map.GUNICORN_WORKERS.get(value.removeprefix("egg:gunicorn#"))
    if mapped is not None:
        return mapped
    raise ValueError(f"must be {', '.join(workerclasses.NAMES)} or module:Class (or "
                     f"Gunicorn's gthread, uvicorn.workers.UvicornWorker), got {value!r}")


def check_allow_ips(items: tuple[str, ...]) -> tuple[str, ...]:
    """IP addresses, CIDR networks, or "*" (trust everyone)."""
    for item in items:
        if item == "*":
            continue
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(f"expected IP addresses, CIDRs or '*', got {item!r}") from None
    return items


def check_root_path(value: str) -> str:
    """"" or an absolute path, without its trailing slash ("/api/" -> "/api")."""
    path = value.strip().rstrip("/")
    if path and not path.startswith("/"):
        raise ValueError(f"must start with '/', got {value!r}")
    return path


def check_env_pairs(items: tuple[str, ...]) -> tuple[str, ...]:
    """KEY=VALUE items: a non-empty key without '=' or NUL (what os.environ accepts)."""
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or "\0" in item:
            raise ValueError(f"expected KEY=VALUE, got {item!r}")
    return tuple(f"{k.strip()}={v}" for k, _, v in (i.partition("=") for i in items))


_TLS_VERSIONS = {"tlsv1.2": "TLSv1.2", "1.2": "TLSv1.2", "tlsv1.3": "TLSv1.3", "1.3": "TLSv1.3"}


def check_tls_version(value: str) -> str:
    """TLSv1.2 or TLSv1.3 (also spelt 1.2, 1.3): older protocols are broken (RFC 8996)."""
    try:
        return _TLS_VERSIONS[value.strip().lower()]
    except KeyError:
        raise ValueError(f"must be TLSv1.2 or TLSv1.3 (or 1.2, 1.3), got {value!r}") from None


def parse_umask(raw: str) -> int:
    """"022", "0o22", "0x12" or "18"... a leading 0 or no prefix means octal, like Gunicorn."""
    text = raw.strip().lower()
    if text.startswith(("0o", "0x", "0b")):
        return int(text, 0)
    return int(text, 8)


_HTTP_PROTOCOLS = ("h1", "h2")


def check_http_protocols(items: tuple[str, ...]) -> tuple[str, ...]:
    """h1 and/or h2 (case-insensitive, each once): what the server offers (ALPN on TLS)."""
    names = tuple(dict.fromkeys(i.strip().lower() for i in items))
    if not names:
        raise ValueError("at least one protocol is needed (h1, h2)")
    for name in names:
        if name not in _HTTP_PROTOCOLS:
            raise ValueError(f"unknown protocol {name!r}; expected h1 and/or h2")
    return names


def check_h2_window(value: int) -> int:
    """An HTTP/2 flow-control window: at most 2**31-1 octets (RFC 9113 §6.9.2)."""
    if value > 2**31 - 1:
        raise ValueError(f"must be at most 2147483647, got {value}")
    return value


def check_h2_frame_size(value: int) -> int:
    """SETTINGS_MAX_FRAME_SIZE: 16384..16777215 octets (RFC 9113 §6.5.2)."""
    if not 2**14 <= value <= 2**24 - 1:
        raise ValueError(f"must be between 16384 and 16777215, got {value}")
    return value
