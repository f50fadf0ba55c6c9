"""Events the sans-IO parser emits: plain slotted dataclasses, cheap to build."""

from __future__ import annotations

from dataclasses import dataclass, field

Headers = list[tuple[bytes, bytes]]


@dataclass(slots=True)
class Limits:
    """Request size limits (0 = unlimited), taken from the config."""

    request_line: int = 8190
    fields: int = 100
    field_size: int = 8190
    body: int = 0


@dataclass(slots=True)
class Request:
    """A request head. `path` is still percent-encoded; `headers` lower-case names, wire order."""

    method: bytes
    target: bytes
    path: bytes
    query: bytes
    http_version: str
    headers: Headers
    keep_alive: bool
    expect_continue: bool
    content_length: int | None
    chunked: bool
    upgrade: bytes | None


@dataclass(slots=True)
class Data:
    """A piece of the request body, de-chunked."""

    data: bytes


@dataclass(slots=True)
class EndOfMessage:
    """End of the request body; trailers of a chunked body (lower-case names)."""

    trailers: Headers = field(default_factory=list)


@dataclass(slots=True)
class ProtocolError:
    """The request cannot be served: answer `status` and close. Terminal.

    `reason` is for the log only (a fixed text, never client bytes); `head`: the refused
    request is a HEAD, so the answer carries no body (RFC 9110 §9.3.2)."""

    status: int
    reason: str
    head: bool = False


Event = Request | Data | EndOfMessage | ProtocolError
