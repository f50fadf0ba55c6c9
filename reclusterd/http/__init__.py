"""Sans-IO HTTP/1.x: bytes in, events out (parser); events in, bytes out (response).

No sockets, no processes: every worker class shares this one implementation of the rules.
"""

from .events import Data, EndOfMessage, Event, Limits, ProtocolError, Request
from .parser import Parser, make_parser
from .response import (
    CONTINUE_100,
    FramingError,
    InvalidResponse,
    Response,
    error_for,
    error_response,
)
from .rules import decode_path

__all__ = [
    "CONTINUE_100", "Data", "EndOfMessage", "Event", "FramingError", "InvalidResponse",
    "Limits", "Parser", "ProtocolError", "Request", "Response", "decode_path", "error_for",
    "error_response", "make_parser",
]
