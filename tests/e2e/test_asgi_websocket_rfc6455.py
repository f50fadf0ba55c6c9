"""RFC 6455 conformance on the asyncio worker, both parsers, with raw bytes on real sockets.

Handshakes (§4.2.1) are refused before the app sees websocket.connect; protocol
errors fail the connection with a Close frame then FIN (§7.1.7); the --ws-*
settings. Frame cases follow the Autobahn testsuite's sections (case ids noted).
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.process import Server, reclusterd, wait_for

PARSERS = ["httptools", "h11"]
KEY = b"dGhlIHNhbXBsZSBub25jZQ=="          # RFC 6455 §1.3's example key
MAX = 65536                                # --ws-max-size of the module's server


def start(tmp: Path, parser: str, *extra: str) -> Server:
    marks = tmp / "marks"
    marks.touch()
    s = reclusterd("tests.apps.asgi_ws_echo:app",
                   "--workers", "1", "--http", parser, "--chdir", str(tmp),
                   *extra, env={"WS_MARKS": str(marks)})
    s.wait_ready()
    s.marks = marks  # type: ignore[attr-defined]
    return s


def marks(srv: Server) -> str:
    return Path(srv.marks).read_text()  # type: ignore[attr-defined]


@pytest.fixture(scope="module", params=PARSERS)
def srv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
        ) -> Iterator[Server]:
    s = start(tmp_path_factory.mktemp("ws6455"), request.param, "--ws-max-size", str(MAX),
              "--ws-ping-interval", "0")
    try:
        yield s
    finally:
        s.stop()


# -- raw frames ------------------------------------------------------------------------

def frame(opcode: int, payload: bytes = b"", fin: bool = True, rsv: int = 0,
          masked: bool = True, length: int | None = None) -> bytes:
    """One frame as a client writes it (§5.2); `length` overrides the announced size."""
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    mbit = 0x80 if masked else 0
    if n < 126:
        head += bytes([mbit | n])
    elif n < 65536:
        head += bytes([mbit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mbit | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


class RawWS:
    """A client socket after a 101: sends raw bytes, reads the server's frames."""

    def __init__(self, port: int, path: str = "/ws", extra: bytes = b"") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: t\r\n"
                          b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                          b"Sec-WebSocket-Key: " + KEY + b"\r\nSec-WebSocket-Version: 13\r\n"
                          + extra + b"\r\n")
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self._more()
        self.head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        assert self.head.startswith(b"HTTP/1.1 101 "), self.head

    def _more(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError
        self.buf += data

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._more()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_frame(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next server frame (servers never mask, §5.1)."""
        b0, b1 = self._take(2)
        assert not b1 & 0x80, "server frames are not masked"
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._take(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._take(8))[0]
        return b0 & 0x0F, self._take(n)

    def expect_close(self, code: int) -> None:
        """The next frame is a Close with `code`, then the server closes TCP (§7.1.7)."""
        op, payload = self.read_frame()
        while op != 8:           # a pong or an echo sent before the failure
            op, payload = self.read_frame()
        assert struct.unpack("!H", payload[:2])[0] == code, payload
        assert len(payload) <= 125
        with pytest.raises(EOFError):
            while True:
                self._more()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawWS:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def raw_exchange(port: int, head: bytes) -> bytes:
    """Send a request head, read the whole answer until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head)
        out = b""
        while True:
            try:
                data = s.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            out += data
    return out


# -- §4.2.1: handshakes ------------------------------------------------------------------

GOOD = {"Host": "t", "Upgrade": "websocket", "Connection": "Upgrade",
        "Sec-WebSocket-Key": KEY.decode(), "Sec-WebSocket-Version": "13"}


def handshake(method: str = "GET", version: str = "HTTP/1.1", drop: str = "",
              **fields: str) -> bytes:
    hdrs = {**GOOD, **{k.replace("_", "-"): v for k, v in fields.items()}}
    lines = "".join(f"{k}: {v}\r\n" for k, v in hdrs.items() if k != drop)
    return f"{method} /hs HTTP{version[4:]}\r\n{lines}\r\n".encode()


REFUSED = [
    ("version 8", handshake(Sec_WebSocket_Version="8"), 426),
    ("version 14", handshake(Sec_WebSocket_Version="14"), 426),
    ("version 13,8 list", handshake(Sec_WebSocket_Version="13, 8"), 426),
    ("no version", handshake(drop="Sec-WebSocket-Version"), 426),
    ("key abc", handshake(Sec_WebSocket_Key="abc"), 400),
    ("key 15 bytes", handshake(Sec_WebSocket_Key="AAAAAAAAAAAAAAAAAAAA"), 400),
    ("key 17 bytes", handshake(Sec_WebSocket_Key="AAAAAAAAAAAAAAAAAAAAAAA="), 400),
    ("key not base64", handshake(Sec_WebSocket_Key="dGhlIHNhbXBsZSBub25jZQ=!"), 400),
    ("no key", handshake(drop="Sec-WebSocket-Key"), 400),
    ("POST", handshake(method="POST"), 400),
    ("no Connection: upgrade", handshake(Connection="keep-alive"), 400),
    # a body on the handshake: a 101 would leave HTTP framing running over the frames
    # that follow (WebSocket smuggling); the pipelined request must never be answered
    ("body + smuggled GET", handshake(Content_Length="5") + b"hello"
     b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("chunked body + smuggled GET", handshake(Transfer_Encoding="chunked") + b"0\r\n\r\n"
     b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("versioned websocket token", handshake(Upgrade="websocket/13"), 400),
]


@pytest.mark.parametrize(("what", "head", "status"), REFUSED, ids=[r[0] for r in REFUSED])
def test_bad_handshake_refused_before_the_app(srv: Server, what: str, head: bytes,
                                              status: int) -> None:
    out = raw_exchange(srv.port, head)
    resp_head = out.split(b"\r\n\r\n", 1)[0].lower()
    assert out.startswith(b"HTTP/1.1 %d " % status), (what, out)
    assert b"\r\nsec-websocket-version: 13" in resp_head
    assert b"\r\nconnection: close" in resp_head
    if status == 426:
        assert b"\r\nupgrade: websocket" in resp_head
    assert b"/hs" not in out and b"smuggled" not in out and out.count(b"HTTP/1.1 ") == 1
    # a good handshake afterwards shows the app was never given the bad one
    with RawWS(srv.port, "/after"):
        wait_for(lambda: "connect /after" in marks(srv), what="the good handshake connected")
    assert "connect /hs" not in marks(srv)


ACCEPTED = [
    ("Upgrade case-insensitive", handshake(Upgrade="WebSocket")),
    ("Upgrade token list", handshake(Upgrade="h2c, websocket")),
    ("Connection token list", handshake(Connection="keep-alive, Upgrade")),
    ("Connection upper case", handshake(Connection="UPGRADE")),
]


@pytest.mark.parametrize(("what", "head"), ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_good_handshakes_switch(srv: Server, what: str, head: bytes) -> None:
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(head)
        out = b""
        while b"\r\n\r\n" not in out:
            out += s.recv(4096)
    assert out.startswith(b"HTTP/1.1 101 "), (what, out)
    assert b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in out


def test_upgrade_to_another_protocol_is_plain_http(srv: Server) -> None:
    out = raw_exchange(srv.port, b"GET / HTTP/1.1\r\nHost: t\r\nUpgrade: h2c\r\n"
                                 b"Connection: Upgrade, close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 ") and b"plain http" in out


def test_upgrade_in_http10_is_served_as_http(srv: Server) -> None:
    """RFC 9110 §7.8: a server MUST ignore Upgrade in an HTTP/1.0 request."""
    head = handshake(version="HTTP/1.0")
    out = raw_exchange(srv.port, head)
    assert out.startswith(b"HTTP/1.1 200 ") and b"plain http" in out, out


# -- §5, §7.1.7: protocol errors fail with a Close frame (Autobahn sections 2-7) --------------

FAILS = [
    ("2.5 ping over 125", [frame(0x9, b"\xfe" * 126)], 1002),
    ("close over 125", [frame(0x8, close_payload(1000, b"x" * 124))], 1002),
    ("unmasked text", [frame(0x1, b"hello", masked=False)], 1002),
    ("3.1 text RSV=1", [frame(0x1, b"Hello", rsv=1)], 1002),
    ("3.2 text RSV=2 after a good one", [frame(0x1, b"ok"), frame(0x1, b"Hello", rsv=2)], 1002),
    ("3.7 close RSV=7", [frame(0x8, close_payload(1000), rsv=7)], 1002),
    ("4.1.1 opcode 3", [frame(0x3)], 1002),
    ("4.1.5 opcode 7 with payload", [frame(0x7, b"reserved")], 1002),
    ("4.2.1 opcode 11", [frame(0xB)], 1002),
    ("4.2.5 opcode 15", [frame(0xF, b"reserved")], 1002),
    ("5.1 ping fragmented", [frame(0x9, b"a", fin=False), frame(0x0, b"b")], 1002),
    ("5.9 continuation without start", [frame(0x0, b"x"), frame(0x1, b"ok")], 1002),
    ("5.15 continuation after a message",
     [frame(0x1, b"a", fin=False), frame(0x0, b"b"), frame(0x0, b"c", fin=False)], 1002),
    ("new text inside a fragmented one", [frame(0x1, b"a", fin=False), frame(0x1, b"b")], 1002),
    ("6.3.1 invalid UTF-8", [frame(0x1, "κόσμε".encode() + b"\xed\xa0\x80edited")], 1007),
    ("6.4.1 invalid UTF-8 across fragments",
     [frame(0x1, "κόσμε".encode(), fin=False), frame(0x0, b"\xf4\x90\x80\x80", fin=False)],
     1007),
    ("lone continuation byte", [frame(0x1, b"\x80")], 1007),
    ("7.3.2 close with 1 byte", [frame(0x8, b"\x03")], 1002),
    ("7.5.1 close reason not UTF-8", [frame(0x8, close_payload(1000, b"\xce\xba\xe1\xbd"))],
     1007),
    ("7.9.1 close code 0", [frame(0x8, close_payload(0))], 1002),
    ("7.9.x close code 1005 (local only)", [frame(0x8, close_payload(1005))], 1002),
    ("7.9.x close code 1999 (reserved)", [frame(0x8, close_payload(1999))], 1002),
]


@pytest.mark.parametrize(("what", "frames", "code"), FAILS, ids=[f[0] for f in FAILS])
def test_protocol_error_sends_close_then_fin(srv: Server, what: str, frames: list[bytes],
                                             code: int) -> None:
    path = "/f" + "".join(c for c in what if c.isalnum())
    with RawWS(srv.port, path) as ws:
        ws.send(b"".join(frames))
        ws.expect_close(code)
    wait_for(lambda: f"disconnect {code} {path}" in marks(srv), what=f"app told {code}")


WORKS = [
    ("1.1.1 empty text", [frame(0x1)], [(0x1, b"")]),
    ("1.2.8 binary 65536 in chops", [frame(0x2, b"\xfe" * MAX)], [(0x2, b"\xfe" * MAX)]),
    ("2.2 ping with payload", [frame(0x9, b"hi")], [(0xA, b"hi")]),
    ("2.10-like pings then text", [frame(0x9, b"1"), frame(0x9, b"2"), frame(0x1, b"t")],
     [(0xA, b"1"), (0xA, b"2"), (0x1, b"t")]),
    ("5.6 ping inside a fragmented text",
     [frame(0x1, b"frag", fin=False), frame(0x9, b"p"), frame(0x0, b"ment")],
     [(0xA, b"p"), (0x1, b"fragment")]),
    ("6.2.1 valid UTF-8 split mid-character",
     [frame(0x1, "κό".encode()[:3], fin=False), frame(0x0, "κό".encode()[3:])],
     [(0x1, "κό".encode())]),
]


@pytest.mark.parametrize(("what", "frames", "answers"), WORKS, ids=[w[0] for w in WORKS])
def test_conforming_frames_are_served(srv: Server, what: str, frames: list[bytes],
                                      answers: list[tuple[int, bytes]]) -> None:
    with RawWS(srv.port) as ws:
        data = b"".join(frames)
        for i in range(0, len(data), 997):          # Autobahn 1.2.8's chop size
            ws.send(data[i:i + 997])
        for want in answers:
            assert ws.read_frame() == want, what
        ws.send(frame(0x8, close_payload(1000)))
        op, payload = ws.read_frame()
        assert (op, payload[:2]) == (0x8, struct.pack("!H", 1000))


# -- --ws-max-size (Autobahn section 9 at a small limit) ---------------------------------------

def test_frame_header_over_max_size_fails_at_once(srv: Server) -> None:
    """Only the header is sent: the 1009 cannot be waiting for the payload."""
    with RawWS(srv.port) as ws:
        ws.send(frame(0x2, b"", length=MAX + 1))
        ws.expect_close(1009)


@pytest.mark.parametrize("size", [2 ** 31, 2 ** 62])
def test_huge_announced_lengths_fail_at_once(srv: Server, size: int) -> None:
    with RawWS(srv.port) as ws:
        ws.send(frame(0x1, b"", length=size))
        ws.expect_close(1009)


def test_fragments_summing_over_max_size_fail_at_the_header(srv: Server) -> None:
    half = MAX // 2 + 1
    with RawWS(srv.port) as ws:
        ws.send(frame(0x2, b"a" * half, fin=False))
        ws.send(frame(0x0, b"", length=half))
        ws.expect_close(1009)


def test_message_of_exactly_max_size_is_served(srv: Server) -> None:
    with RawWS(srv.port) as ws:
        ws.send(frame(0x1, b"a" * (MAX - 1), fin=False) + frame(0x0, b"b"))
        assert ws.read_frame() == (0x1, b"a" * (MAX - 1) + b"b")


# -- --ws-ping-interval / --ws-ping-timeout / --ws-per-message-deflate ------------------------

@pytest.mark.parametrize("parser", PARSERS)
def test_keepalive_pings_and_timeout(tmp_path: Path, parser: str) -> None:
    srv = start(tmp_path, parser, "--ws-ping-interval", "0.2", "--ws-ping-timeout", "3")
    try:
        with RawWS(srv.port, "/answers") as ws:
            for _ in range(3):             # answered pings keep the connection open
                op, payload = ws.read_frame()
                assert op == 0x9 and payload
                ws.send(frame(0xA, payload))
            ws.send(frame(0x1, b"still here"))
            got = ws.read_frame()
            while got[0] == 0x9:
                ws.send(frame(0xA, got[1]))
                got = ws.read_frame()
            assert got == (0x1, b"still here")
        with RawWS(srv.port, "/silent") as ws:
            assert ws.read_frame()[0] == 0x9   # never answered
            ws.expect_close(1011)
        wait_for(lambda: "disconnect 1006 /silent" in marks(srv), what="app saw 1006")
    finally:
        srv.stop()


@pytest.mark.parametrize("flags", [("--no-ws-per-message-deflate",),
                                   ("--ws-per-message-deflate", "false")])
def test_per_message_deflate_off(tmp_path: Path, flags: tuple[str, ...]) -> None:
    srv = start(tmp_path, "httptools", *flags)
    try:
        offer = b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        with RawWS(srv.port, extra=offer) as ws:
            assert b"sec-websocket-extensions" not in ws.head.lower()
            ws.send(frame(0x1, b"Hello", rsv=4))    # RSV1 without the extension
            ws.expect_close(1002)
        with RawWS(srv.port, extra=offer) as ws:
            ws.send(frame(0x1, b"plain"))
            assert ws.read_frame() == (0x1, b"plain")
    finally:
        srv.stop()
