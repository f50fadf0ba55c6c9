"""WebSocket over the asyncio worker (wsproto): echo, close codes, ping, reject, limits."""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    TextMessage,
)
from wsproto.frame_protocol import FrameProtocol

from tests.support.apps import ASGI_ROUTES
from tests.support.http_client import http_get
from tests.support.process import Server, reclusterd, wait_for
from tests.support.ws_client import WSClient

PARSERS = ["httptools", "h11"]


@pytest.fixture(scope="module", params=PARSERS)
def srv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
        ) -> Iterator[Server]:
    d: Path = tmp_path_factory.mktemp("asgiws")
    s = reclusterd(ASGI_ROUTES, "--workers", "1", "--http", request.param, "--chdir", str(d),
                   env={"ASGI_MARKERS": str(d / "marks")})
    try:
        s.wait_ready()
        s.marks = d / "marks"  # type: ignore[attr-defined]
        yield s
    finally:
        s.stop()


def accepted(ws: WSClient) -> AcceptConnection:
    ev = ws.next_event()
    assert isinstance(ev, AcceptConnection), ev
    return ev


def test_echo_text_and_binary(srv: Server) -> None:
    with WSClient(srv.port, "/ws") as ws:
        accepted(ws)
        ws.send(TextMessage(data="héllo"))
        ev = ws.next_event()
        assert isinstance(ev, TextMessage) and ev.data == "héllo"
        ws.send(BytesMessage(data=b"\x00\x01\xff"))
        ev = ws.next_event()
        assert isinstance(ev, BytesMessage) and ev.data == b"\x00\x01\xff"


def test_fragmented_and_large_message(srv: Server) -> None:
    big = b"x" * (3 * 1024 * 1024)
    with WSClient(srv.port, "/ws") as ws:
        accepted(ws)
        ws.send(BytesMessage(data=b"ab", message_finished=False))
        ws.send(BytesMessage(data=b"cd", message_finished=True))
        ev = ws.next_event()
        assert isinstance(ev, BytesMessage) and ev.data == b"abcd"
        ws.send(BytesMessage(data=big))
        got = b""
        while len(got) < len(big):
            ev = ws.next_event()
            assert isinstance(ev, BytesMessage)
            got += ev.data
        assert got == big


def test_frames_sent_with_the_handshake(srv: Server) -> None:
    """A frame in the same write as the upgrade head (parser.unprocessed()) reaches the app."""
    client = FrameProtocol(client=True, extensions=[])
    head = (b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(head + client.send_data("early", True))
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(4096)
        resp, rest = buf.split(b"\r\n\r\n", 1)
        assert resp.startswith(b"HTTP/1.1 101 ")
        assert b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in resp      # RFC 6455 example accept token
        frames: list[object] = []
        while not frames:
            client.receive_bytes(rest)
            frames = list(client.received_frames())
            rest = b"" if frames else s.recv(4096)
        assert frames[0].payload == "early"  # type: ignore[attr-defined]


def test_ping_pong(srv: Server) -> None:
    with WSClient(srv.port, "/ws") as ws:
        accepted(ws)
        ws.send(Ping(payload=b"are you there"))
        ev = ws.next_event()
        assert isinstance(ev, Pong) and ev.payload == b"are you there"


def test_server_close_code(srv: Server) -> None:
    with WSClient(srv.port, "/ws") as ws:
        accepted(ws)
        ws.send(TextMessage(data="close"))
        ev = ws.next_event()
        assert isinstance(ev, CloseConnection)
        assert (ev.code, ev.reason) == (4001, "bye")
        ws.send(ev.response())


def test_client_close_code_reaches_app(srv: Server) -> None:
    marks: Path = srv.marks  # type: ignore[attr-defined]
    with WSClient(srv.port, "/ws") as ws:
        accepted(ws)
        ws.send(CloseConnection(code=4321, reason="done"))
        ev = ws.next_event()
        assert isinstance(ev, CloseConnection) and ev.code == 4321   # echoed
    wait_for(lambda: marks.exists() and "wsdisconnect 4321" in marks.read_text(),
             what="app saw disconnect 4321")


def test_abrupt_close_is_1006(srv: Server) -> None:
    marks: Path = srv.marks  # type: ignore[attr-defined]
    with WSClient(srv.port, "/ws") as ws:
        accepted(ws)
    wait_for(lambda: marks.exists() and "wsdisconnect 1006" in marks.read_text(),
             what="app saw disconnect 1006")


def test_subprotocol(srv: Server) -> None:
    with WSClient(srv.port, "/ws", subprotocols=["chat", "superchat"]) as ws:
        ev = accepted(ws)
        assert ev.subprotocol == "chat"


def test_close_before_accept_is_403(srv: Server) -> None:
    with WSClient(srv.port, "/reject") as ws:
        ev = ws.next_event()
        assert isinstance(ev, RejectConnection) and ev.status_code == 403
        while not isinstance(ev, RejectData) or not ev.body_finished:
            ev = ws.next_event()


def test_message_too_big_closes_1009(tmp_path: Path) -> None:
    with reclusterd(ASGI_ROUTES, "--workers", "1", "--chdir", str(tmp_path)) as srv:
        srv.wait_ready()
        with WSClient(srv.port, "/ws") as ws:
            accepted(ws)
            ws.send(BytesMessage(data=b"y" * (16 * 1024 * 1024 + 1)))
            ev = ws.next_event()
            assert isinstance(ev, CloseConnection) and ev.code == 1009
        assert http_get(srv.port, "/")[0] == 200


def test_ws_none_serves_upgrade_as_http(tmp_path: Path) -> None:
    with reclusterd(ASGI_ROUTES, "--workers", "1", "--chdir", str(tmp_path),
                    "--ws", "none") as srv:
        srv.wait_ready()
        with WSClient(srv.port, "/") as ws:
            ev = ws.next_event()
            assert isinstance(ev, RejectConnection) and ev.status_code == 200


def test_term_closes_websockets_1012_and_exits_0(tmp_path: Path) -> None:
    with reclusterd(ASGI_ROUTES, "--workers", "1", "--chdir", str(tmp_path)) as srv:
        srv.wait_ready()
        with WSClient(srv.port, "/ws") as ws:
            accepted(ws)
            srv.signal(signal.SIGTERM)
            ev = ws.next_event()
            assert isinstance(ev, CloseConnection) and ev.code == 1012
            ws.send(ev.response())
        assert srv.wait_exit(20) == 0


def test_permessage_deflate(srv: Server) -> None:
    from wsproto.extensions import PerMessageDeflate

    text = "compress me " * 1000
    with WSClient(srv.port, "/ws", extensions=[PerMessageDeflate()]) as ws:
        ev = accepted(ws)
        assert [e.name for e in ev.extensions] == ["permessage-deflate"]  # type: ignore[attr-defined]
        ws.send(TextMessage(data=text))
        got = ""
        while len(got) < len(text):
            ev2 = ws.next_event()
            assert isinstance(ev2, TextMessage)
            got += ev2.data
        assert got == text
