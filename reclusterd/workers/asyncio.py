"""The asyncio worker: one event loop per process (uvloop when available) serving ASGI apps.

Boot order: loop -> lifespan startup -> servers on the inherited listeners ->
channel.ready(). One periodic timer does the housekeeping: heartbeat, keep-alive
and header deadlines. A blocked loop stops that timer, so the arbiter sees a
silent worker and replaces it. TERM drains (stop listening, finish in-flight
requests, lifespan shutdown, exit 0); QUIT/INT exit at once (base class).

Hot-path choices (measured, see the commit log): asyncio.Protocol callbacks, not streams;
no timer per request (one sweep per tick); the app is started after the body events of
the same read, so a GET's receive() never waits; the response head goes out with the
first body piece. Every request runs in an ordinary task: running the app's first
step without one saved ~13% CPU on hello (wrk -t2 -c64, 20.2 vs 23.4 us/request) but
breaks code that needs asyncio.current_task() (asyncio.timeout, anyio: FastAPI sync
routes); revisit with asyncio.eager_task_factory on Python 3.12+.

WSGI apps are refused with a boot error naming the thread worker: running a
blocking app on an event loop would only add a thread hop to the thread worker.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from reclusterd.asgi.lifespan import Lifespan, LifespanFailed
from reclusterd.asgi.protocol import HttpProtocol
from reclusterd.asgi.state import ServerState
from reclusterd.http.forwarded import from_config
from reclusterd.logging import AccessLog
from reclusterd.workers.acceptpause import AcceptPause
from reclusterd.workers.aioaccept import Acceptor
from reclusterd.workers.base import EXIT_BOOT_ERROR, BootError, Worker
from reclusterd.workers.share import join

if TYPE_CHECKING:
    from reclusterd.config import Config
    from reclusterd.control import WorkerChannel
    from reclusterd.sockets import Listener

__all__ = ["AsyncioWorker", "loop_factory", "proxy_loop"]

log = logging.getLogger("reclusterd.error")
LIFESPAN_RESERVE = 2.0        # seconds of the graceful timeout kept for lifespan shutdown
CANCEL_GRACE = 0.5            # of that reserve: for cancelled request tasks' cleanup


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """--loop auto|asyncio|uvloop -> a new-loop function; BootError if uvloop is missing."""
    if choice in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError as e:
            if choice == "uvloop":
                raise BootError(f"--loop uvloop: uvloop is not installed ({e})") from e
        else:
            return uvloop.new_event_loop
    return asyncio.new_event_loop


def proxy_loop(choice: str) -> str:
    """--proxy-protocol needs the stdlib loop: the header is read before the transport
    reads a byte (asgi.proxyread), and uvloop starts reading a connection before its
    protocol can pause it. auto -> asyncio; uvloop -> BootError."""
    if choice == "uvloop":
        raise BootError("--proxy-protocol runs on the asyncio loop: uvloop reads a "
                        "connection before the PROXY header can be taken off it; "
                        "use --loop auto or asyncio")
    return "asyncio"


def websocket_enabled(choice: str) -> bool:
    """--ws auto|wsproto|none -> serve WebSocket upgrades? BootError if wsproto is missing."""
    if choice == "none":
        return False
    try:
        import wsproto  # noqa: F401
    except ImportError as e:
        if choice == "wsproto":
            raise BootError(f"--ws wsproto: wsproto is not installed ({e})") from e
        return False
    return True


class AsyncioWorker(Worker):
    """ASGI worker on one event loop; see the module docstring."""

    app_kinds: ClassVar[tuple[str, ...]] = ("asgi",)
    speaks_h2: ClassVar[bool] = True        # asgi.h2protocol

    def __init__(self, cfg: Config, listeners: Sequence[Listener], channel: WorkerChannel,
                 app: Any, kind: str) -> None:
        super().__init__(cfg, listeners, channel, app, kind)
        self.new_loop = loop_factory(proxy_loop(cfg.loop) if cfg.proxy_protocol else cfg.loop)
        self.ws = websocket_enabled(cfg.ws)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop_event: asyncio.Event | None = None
        self.state: ServerState | None = None
        self._tick: asyncio.TimerHandle | None = None
        self.acceptors: list[Acceptor] = []

    def run(self) -> None:
        loop = self.new_loop()
        asyncio.set_event_loop(loop)
        self.loop = loop
        self.install_signals()
        loop.add_signal_handler(signal.SIGTERM, self.begin_drain)
        try:
            code = loop.run_until_complete(self.serve())
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            except Exception:  # noqa: BLE001 - best effort at exit
                pass
            loop.close()
        if code:
            raise SystemExit(code)

    def begin_drain(self) -> None:
        super().begin_drain()
        if self.state is not None:
            self.state.draining = True      # responses from now on say Connection: close
        if self.loop is not None and self.stop_event is not None:
            self.loop.call_soon_threadsafe(self.stop_event.set)

    def over_memory(self) -> None:
        """Over --max-worker-memory (seen in the loop): stop accepting now, not when the
        serve coroutine next runs: the client of a response saying close reconnects at
        once, and must reach another worker, not a 503 here."""
        self.begin_drain()
        for acceptor in self.acceptors:
            acceptor.close()

    async def serve(self) -> int:
        """Lifespan startup, listen, report ready, serve until TERM, drain; the exit code."""
        loop = asyncio.get_running_loop()
        cfg = self.cfg
        self.stop_event = asyncio.Event()
        if self.draining:
            self.stop_event.set()
        ctx = self.ssl
        state = self.state = ServerState(
            self.app, cfg, self.meter, loop, ctx is not None,
            from_config(cfg.forwarded_allow_ips, secure=ctx is not None),
            AccessLog(cfg.access_logfile, cfg.access_logformat,
                      bool(cfg.log_config)), self.ws)
        lifespan = Lifespan(self.app, cfg.lifespan, loop)
        try:
            await lifespan.startup()
        except LifespanFailed as e:          # the arbiter logs the text
            self.channel.boot_error(str(e))
            return EXIT_BOOT_ERROR
        if lifespan.supported:
            state.state = lifespan.state
        if state.proxy_peers is not None:   # PROXY header first, TLS after it (protocol)
            state.tls_after, ctx = ctx, None
        errors = AcceptPause()   # one per worker: shared by its listeners
        self.share = share = join()
        conns = state.connections
        acceptors = self.acceptors = [
            Acceptor(loop, lst.sock, lambda: HttpProtocol(state), ctx, errors, share,
                     conns.__len__) for lst in self.listeners]
        for acceptor in acceptors:
            acceptor.start()
        self.channel.ready()
        self._start_ticker(loop, state)
        await self.stop_event.wait()
        # The arbiter SIGKILLs us graceful_timeout after its TERM: connections get that
        # time minus a reserve, so lifespan shutdown always gets a chance to run.
        graceful = float(cfg.graceful_timeout)
        deadline = loop.time() + graceful
        for acceptor in acceptors:
            acceptor.close()
        await self._drain(state, deadline - min(LIFESPAN_RESERVE, graceful / 4))
        await lifespan.shutdown(deadline - loop.time())
        self._stop_ticker()
        self.final_heartbeat()
        return 0

    def _start_ticker(self, loop: asyncio.AbstractEventLoop, state: ServerState) -> None:
        """Heartbeat + sweep every `interval` s from the loop itself (until _stop_ticker)."""
        rules = state.rules     # deadlines are acted on within half their length
        interval = max(0.05, min(self.hb_interval, 0.5, rules.keep_alive / 2 or 0.5,
                                 rules.header_timeout / 2 or 0.5))
        hb_every = self.hb_interval
        channel = self.channel
        next_hb = 0.0

        def tick() -> None:
            nonlocal next_hb
            state.sweep()
            if self.share is not None:      # closed connections, between two accepts
                self.share.publish(len(state.connections))
                self.share.stamp(time.monotonic())
            now = state.now
            if now >= next_hb:
                next_hb = now + hb_every
                channel.heartbeat(self.meter.stats())
            self._tick = loop.call_later(interval, tick)

        self._tick = loop.call_later(0, tick)

    def _stop_ticker(self) -> None:
        if self._tick is not None:
            self._tick.cancel()

    async def _drain(self, state: ServerState, deadline: float) -> None:
        """Finish in-flight requests until the deadline, then cut what is left. Requests
        count until their app task ends, not their connection: a task whose client left
        still runs its cleanup, and one left at the deadline is cancelled (its `finally`
        runs) instead of being dropped with the loop."""
        loop = asyncio.get_running_loop()
        state.drain()
        assert state.empty is not None
        try:
            await asyncio.wait_for(state.empty.wait(), max(0.0, deadline - loop.time()))
        except asyncio.TimeoutError:
            log.warning("worker %d: %d connection(s), %d request task(s) left after the "
                        "graceful timeout: cancelled", self.pid, len(state.connections),
                        len(state.tasks))
            await state.cut(CANCEL_GRACE)
