"""The ceiling: uvloop + httptools answering a canned "Hello world!" with no app at all.

No Python server can beat this on the hello scenario (it does no per-request work but
parse and one write), so it shows how close reclusterd gets to the floor of the stack.
Same shape as the others: a parent binds 127.0.0.1:PORT and forks N workers that accept
on the shared socket.

    .venv/bin/python loadtests/ceiling.py PORT [WORKERS]    # from the repository root
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys

import httptools
import uvloop

_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n"
KEEP = _HEAD + b"\r\nHello world!"
CLOSE = _HEAD + b"Connection: close\r\n\r\nHello world!"


class Canned(asyncio.Protocol):
    """Parse requests with httptools; answer each with the canned response."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.parser = httptools.HttpRequestParser(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_message_complete(self) -> None:
        if self.parser.should_keep_alive():
            self.transport.write(KEEP)
        else:
            self.transport.write(CLOSE)
            self.transport.close()


def serve(sock: socket.socket) -> None:
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(loop.create_server(Canned, sock=sock, backlog=2048))
    loop.run_forever()


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("port", type=int, help="TCP port on 127.0.0.1")
    ap.add_argument("workers", type=int, nargs="?", default=2, help="processes (default 2)")
    args = ap.parse_args(argv)
    port, workers = args.port, args.workers
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(2048)
    sock.setblocking(False)
    children = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            serve(sock)
            os._exit(0)
        children.append(pid)

    def stop(signum: int, frame: object) -> None:
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for _ in children:
        try:
            os.wait()
        except ChildProcessError:
            break
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
