"""A small blocking WebSocket client over a raw socket, framed by wsproto (tests only)."""

from __future__ import annotations

import socket
from collections.abc import Sequence

from wsproto import WSConnection
from wsproto.connection import ConnectionType
from wsproto.events import Request as WSRequest


class WSClient:
    """Connect, handshake, then send/recv messages; events are wsproto events."""

    def __init__(self, port: int, path: str = "/", subprotocols: Sequence[str] = (),
                 host: str = "127.0.0.1", timeout: float = 10.0,
                 extensions: Sequence[object] = ()) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.events: list[object] = []
        self.closed = False
        self.sock.sendall(self.ws.send(WSRequest(host=f"{host}:{port}", target=path,
                                                 subprotocols=list(subprotocols),
                                                 extensions=list(extensions))))  # type: ignore[arg-type]

    def _pump(self) -> None:
        try:
            data = self.sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            data = b""
        if not data:
            self.closed = True
            self.ws.receive_data(None)
        else:
            self.ws.receive_data(data)
        self.events.extend(self.ws.events())

    def next_event(self) -> object:
        """The next wsproto event from the server (a CloseConnection(1006) once closed)."""
        while not self.events:
            if self.closed:
                raise AssertionError("websocket closed with no more events")
            self._pump()
        return self.events.pop(0)

    def send(self, event: object) -> None:
        self.sock.sendall(self.ws.send(event))  # type: ignore[arg-type]

    def raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> WSClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
