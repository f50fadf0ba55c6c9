"""A Starlette app for the client-gone tests (issue 13, items 9-10).

GET /sse    -> an SSE StreamingResponse, one event every 50 ms until the client leaves;
               prints "details: sse finally ran" when its generator is closed
GET /watch  -> streams "first", then polls request.is_disconnected(); prints
               "details: is_disconnected turned True"
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route


def _say(text: str) -> None:
    print(f"details: {text}", file=sys.stderr, flush=True)


async def sse(request: Request) -> StreamingResponse:
    async def events() -> AsyncIterator[bytes]:
        try:
            n = 0
            while True:
                yield f"data: {n}\n\n".encode()
                n += 1
                await asyncio.sleep(0.05)
        finally:
            _say("sse finally ran")
    return StreamingResponse(events(), media_type="text/event-stream")


async def watch(request: Request) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        yield b"first\n"
        while not await request.is_disconnected():
            await asyncio.sleep(0.05)
        _say("is_disconnected turned True")
    return StreamingResponse(body(), media_type="text/plain")


app = Starlette(routes=[Route("/sse", sse), Route("/watch", watch)])
