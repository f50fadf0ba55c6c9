"""ASGI lifespan: startup before the worker reports ready, shutdown on graceful stop.

--lifespan on: the app must support it (an exception is a failed boot).
--lifespan auto: an app that raises before answering startup is taken as not
supporting lifespan (logged at debug), the worker serves without it.
--lifespan off: never called.
A `lifespan.startup.failed` message is a failed boot in every mode.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from typing import Any

from reclusterd.asgi.types import ASGI_VERSION, ASGIApp, Message

__all__ = ["Lifespan", "LifespanFailed"]

log = logging.getLogger("reclusterd.error")


class LifespanFailed(Exception):
    """Startup failed: the text (message or traceback) goes to channel.boot_error."""


class Lifespan:
    """Drives one app's lifespan scope in a background task."""

    def __init__(self, app: ASGIApp, mode: str, loop: asyncio.AbstractEventLoop) -> None:
        self.app = app
        self.mode = mode
        self.loop = loop
        self.state: dict[str, Any] = {}
        self.supported = False
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._startup: asyncio.Future[str | None] = loop.create_future()
        self._shutdown: asyncio.Future[str | None] = loop.create_future()
        self._task: asyncio.Task[None] | None = None
        self._error: str | None = None

    async def startup(self) -> None:
        """Run startup; raise LifespanFailed when the app reports or raises a failure."""
        if self.mode == "off":
            return
        scope: Message = {"type": "lifespan", "asgi": ASGI_VERSION, "state": self.state}
        self._task = self.loop.create_task(self._run(scope))
        await self._inbox.put({"type": "lifespan.startup"})
        waits: list[asyncio.Future[Any]] = [self._startup, self._task]
        done, _ = await asyncio.wait(waits,
                                     return_when=asyncio.FIRST_COMPLETED)
        if self._startup.done():
            error = self._startup.result()
            if error is not None:
                raise LifespanFailed(f"ASGI lifespan startup failed: {error}")
            self.supported = True
            return
        # the app finished (returned or raised) without answering startup
        if self.mode == "on":
            raise LifespanFailed("ASGI lifespan startup failed:\n"
                                 + (self._error or "the app returned without answering "
                                    "lifespan.startup"))
        log.debug("ASGI lifespan not supported by the app (--lifespan auto): %s",
                  (self._error or "returned").strip().splitlines()[-1])

    async def shutdown(self, timeout: float) -> None:
        """Send lifespan.shutdown and wait (bounded) for the app's answer."""
        if not self.supported or self._task is None or self._task.done():
            return
        await self._inbox.put({"type": "lifespan.shutdown"})
        try:
            waits: list[asyncio.Future[Any]] = [self._shutdown, self._task]
            done, _ = await asyncio.wait(waits, timeout=max(timeout, 0.1),
                                         return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            return
        if not done:
            log.warning("ASGI lifespan shutdown did not finish within %.1fs", timeout)
        elif self._shutdown.done() and self._shutdown.result() is not None:
            log.error("ASGI lifespan shutdown failed: %s", self._shutdown.result())
        if not self._task.done():
            self._task.cancel()

    async def _run(self, scope: Message) -> None:
        try:
            await self.app(scope, self._receive, self._send)
        except BaseException as exc:
            self._error = traceback.format_exc()
            if self.supported:
                log.error("ASGI lifespan task failed:\n%s", self._error)
            elif self.mode == "on" and not self._startup.done():
                log.error("ASGI lifespan startup raised:\n%s", self._error)
            if not isinstance(exc, Exception):
                raise

    async def _receive(self) -> Message:
        return await self._inbox.get()

    async def _send(self, message: Message) -> None:
        mtype = message["type"]
        if mtype == "lifespan.startup.complete":
            _resolve(self._startup, None)
        elif mtype == "lifespan.startup.failed":
            _resolve(self._startup, str(message.get("message", "")) or "(no message)")
        elif mtype == "lifespan.shutdown.complete":
            _resolve(self._shutdown, None)
        elif mtype == "lifespan.shutdown.failed":
            _resolve(self._shutdown, str(message.get("message", "")) or "(no message)")
        else:
            raise RuntimeError(f"unexpected ASGI lifespan message {mtype!r}")


def _resolve(fut: asyncio.Future[str | None], value: str | None) -> None:
    if fut.done():
        raise RuntimeError("ASGI lifespan message sent twice")
    fut.set_result(value)
