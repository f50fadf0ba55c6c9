"""Worker lifecycle shared by every worker class: boot in the forked child, signals,
heartbeats, request accounting, recycling (max-requests, memory) and drain state.

The arbiter calls `run_worker()` in the child. A worker class (built in or a
`module:Class` plug-in) subclasses `Worker` and implements `run()`; the
helpers here are written so that both the thread and the asyncio workers use
them from their hot paths without measurable cost.
"""

from __future__ import annotations

import faulthandler
import importlib
import logging
import os
import random
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, ClassVar, NoReturn

from reclusterd.meter import Meter

if TYPE_CHECKING:
    from reclusterd.config import Config
    from reclusterd.control import WorkerChannel
    from reclusterd.sockets import Listener

log = logging.getLogger("reclusterd.error")

BUILTIN_CLASSES = {
    "sync": "reclusterd.workers.sync:SyncWorker",
    "thread": "reclusterd.workers.thread:ThreadWorker",
    "asyncio": "reclusterd.workers.asyncio:AsyncioWorker",
}
EXIT_OK = 0
EXIT_BOOT_ERROR = 3
# Signals the arbiter handles; a forked child must not keep its handlers.
_RESET_SIGNALS = tuple(
    getattr(signal, n) for n in ("SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1",
                                 "SIGUSR2", "SIGTTIN", "SIGTTOU", "SIGCHLD", "SIGWINCH",
                                 "SIGABRT", "SIGALRM") if hasattr(signal, n))
_IGNORED_WHILE_BOOTING = frozenset(
    getattr(signal, n) for n in ("SIGUSR1", "SIGUSR2", "SIGHUP", "SIGTTIN", "SIGTTOU", "SIGWINCH")
    if hasattr(signal, n))


class BootError(Exception):
    """The worker cannot start serving (bad hook, wrong worker class for the app)."""


@dataclass
class WorkerInfo:
    """What a post_fork hook receives: the worker process, before the app is loaded."""

    pid: int
    generation: int
    cfg: Config


def import_object(spec: str, what: str) -> Any:
    """Import "module:attr" (dotted attr allowed); BootError with a one-line reason."""
    mod_name, sep, attr = spec.partition(":")
    if not sep or not mod_name or not attr:
        raise BootError(f"{what}: {spec!r} is not of the form module:attr")
    try:
        obj: Any = importlib.import_module(mod_name)
    except ImportError as e:
        raise BootError(f"{what}: cannot import module {mod_name!r}: {e}") from e
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise BootError(f"{what}: module {mod_name!r} has no attribute {attr!r}") from None
    return obj


def resolve_worker_class(name: str, kind: str) -> type[Worker]:
    """auto -> thread (WSGI) / asyncio (ASGI); sync/thread/asyncio; or module:Class."""
    if name == "auto":
        name = "thread" if kind == "wsgi" else "asyncio"
    spec = BUILTIN_CLASSES.get(name, name)
    cls = import_object(spec, "worker class")
    if not (isinstance(cls, type) and issubclass(cls, Worker)):
        raise BootError(f"worker class {name!r} is not a reclusterd.workers.base.Worker")
    if kind not in cls.app_kinds:
        served = " and ".join(k.upper() for k in cls.app_kinds)
        other = "thread" if kind == "wsgi" else "asyncio"
        raise BootError(f"worker class {name!r} serves {served} apps only, but the app is "
                        f"{kind.upper()}; use --worker-class {other} (or auto)")
    return cls


def _reset_signals() -> None:
    try:
        signal.set_wakeup_fd(-1)
    except (ValueError, OSError):
        pass
    # Until install_signals() runs (the app may take long to import), signals that only
    # mean something to a serving worker are ignored: a stray `kill -USR1` sent to the
    # whole process group must not kill a booting worker.
    for sig in _RESET_SIGNALS:
        try:
            signal.signal(sig, signal.SIG_IGN if sig in _IGNORED_WHILE_BOOTING
                          else signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _RESET_SIGNALS)


def _flush_logs() -> None:
    for h in logging.getLogger("reclusterd.error").handlers + logging.getLogger().handlers:
        try:
            h.flush()
        except Exception:  # noqa: BLE001 - flushing on exit must not raise
            pass
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except (OSError, ValueError):
            pass


_fault_file: IO[str] | None = None


def install_fault_handler(cfg: Config, on_abort: Callable[[int, Any], Any]) -> None:
    """SIGABRT (and fatal signals) dump every thread's stack to the error log from C, so
    even a worker stuck in a C call dumps; then the previous handler, `on_abort`, runs."""
    global _fault_file
    path = getattr(cfg, "error_logfile", None)
    target: IO[str] = sys.stderr
    if path and path != "-":
        try:
            new = open(path, "a", buffering=1)  # noqa: SIM115 - kept open for the C handler
        except OSError:
            new = None
        if new is not None:
            if _fault_file is not None:
                _fault_file.close()
            _fault_file = target = new
    # faulthandler chains to the handler that was installed when enable() ran.
    faulthandler.disable()
    signal.signal(signal.SIGABRT, on_abort)
    try:
        faulthandler.enable(file=target, all_threads=True)
    except (ValueError, OSError, RuntimeError):
        pass


def run_worker(cfg: Config, listeners: Sequence[Listener], channel: WorkerChannel,
               generation: int, app: object = None) -> NoReturn:
    """Entry point in the forked child; never returns (exit 0 clean, 3 boot error)."""
    code = 1
    try:
        code = _boot_and_serve(cfg, listeners, channel, generation, app)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 - a worker must report, not raise into the arbiter
        log.exception("worker %d crashed", os.getpid())
        code = 1
    finally:
        _flush_logs()
        os._exit(code)


def _boot_and_serve(cfg: Config, listeners: Sequence[Listener], channel: WorkerChannel,
                    generation: int, app: object) -> int:
    _reset_signals()
    try:
        from setproctitle import setproctitle
        setproctitle(f"reclusterd: worker [{cfg.name or cfg.app}]")
    except ImportError:
        pass
    if cfg.chdir:
        os.chdir(cfg.chdir)
    from reclusterd import apploader
    # Hooks and plug-in worker classes live next to the app: same sys.path as the app.
    apploader.put_on_path(cfg.chdir or os.getcwd())
    from reclusterd.logging import setup_logging
    setup_logging(cfg)
    # Behind the C stack dump: exit promptly if ABRT arrives while booting.
    install_fault_handler(cfg, lambda s, f: os._exit(1))
    try:
        if cfg.post_fork:
            hook = import_object(cfg.post_fork, "post_fork hook")
            try:
                hook(WorkerInfo(os.getpid(), generation, cfg))
            except Exception as e:
                raise BootError(f"post_fork hook {cfg.post_fork} failed: {e!r}\n"
                                + traceback.format_exc()) from e
        app, kind = _load(cfg, app)
        cls = resolve_worker_class(cfg.worker_class, kind)
        worker = cls(cfg, listeners, channel, app, kind)
    except BootError as e:          # the arbiter logs the text (once), not us
        channel.boot_error(str(e))
        return EXIT_BOOT_ERROR
    except _AppLoadFailed as e:
        channel.boot_error(e.text)
        return EXIT_BOOT_ERROR
    worker.generation = generation
    worker.run()
    return EXIT_OK


class _AppLoadFailed(Exception):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def _load(cfg: Config, app: object) -> tuple[object, str]:
    """(app, kind) from a preloaded LoadedApp or by importing it now."""
    from reclusterd import apploader
    if app is None:
        try:
            app = apploader.load_app(cfg)
        except apploader.AppLoadError as e:
            raise _AppLoadFailed(e.text()) from e
    if hasattr(app, "kind") and hasattr(app, "app"):
        return app.app, str(app.kind)
    return app, "wsgi"


class Worker:
    """Base worker: lifecycle, signals, accounting. Subclasses implement run().

    Threading notes: counters are plain ints updated under the GIL (a lost
    increment under a race only skews stats); `draining`/`alive` are flags
    read by the serving loop; `wake()` interrupts a selector sleeping on
    `wake_fd` so signals act at once.
    """

    app_kinds: ClassVar[tuple[str, ...]] = ("wsgi", "asgi")

    def __init__(self, cfg: Config, listeners: Sequence[Listener], channel: WorkerChannel,
                 app: Any, kind: str) -> None:
        self.cfg = cfg
        self.listeners = list(listeners)
        self.channel = channel
        self.app = app
        self.kind = kind
        self.pid = os.getpid()
        self.generation = 0
        self.alive = True
        self.draining = False
        timeout = float(cfg.timeout or 0)
        self.timeout = timeout
        self.hb_interval = min(1.0, timeout / 4) if timeout > 0 else 1.0
        self._next_hb = 0.0
        max_requests = 0
        if cfg.max_requests > 0:
            max_requests = cfg.max_requests + random.randint(0, max(0, cfg.max_requests_jitter))
        self.meter = Meter(
            timeout, max_requests, int(cfg.max_worker_memory) * 1024,
            import_object(cfg.pre_request, "pre_request hook") if cfg.pre_request else None,
            import_object(cfg.post_request, "post_request hook") if cfg.post_request else None,
            owner=self)
        self.meter.on_recycle = channel.recycle
        self.meter.on_progress = self.maybe_heartbeat
        self.wake_fd, self._wake_w = os.pipe()
        os.set_blocking(self.wake_fd, False)
        os.set_blocking(self._wake_w, False)

    # -- lifecycle ---------------------------------------------------------
    def run(self) -> None:
        """Serve until stopped; subclasses call install_signals() and channel.ready()."""
        raise NotImplementedError

    def install_signals(self) -> None:
        """TERM drain, QUIT/INT exit now, ABRT stack dump + exit, USR1 reopen logs."""
        signal.signal(signal.SIGTERM, self.handle_term)
        signal.signal(signal.SIGQUIT, self.handle_quit)
        signal.signal(signal.SIGINT, self.handle_quit)
        signal.signal(signal.SIGUSR1, self.handle_usr1)
        for name in ("SIGHUP", "SIGTTIN", "SIGTTOU", "SIGWINCH", "SIGUSR2"):
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), signal.SIG_IGN)
        install_fault_handler(self.cfg, self.handle_abrt)

    def handle_term(self, signum: int, frame: object) -> None:
        self.begin_drain()

    def begin_drain(self) -> None:
        """Stop accepting, finish in-flight requests, then leave run()."""
        if not self.draining:
            self.draining = True
            log.info("worker %d draining", self.pid)
            self.on_drain()
        self.wake()

    def on_drain(self) -> None:
        """Hook for worker classes: responses from now on say Connection: close."""

    def handle_quit(self, signum: int, frame: object) -> None:
        self.alive = False
        _flush_logs()
        os._exit(EXIT_OK)

    def handle_abrt(self, signum: int, frame: object) -> None:
        # The stacks were already written by faulthandler (C level) before we got here.
        log.error("worker %d aborted (SIGABRT), stacks dumped above", self.pid)
        self.alive = False
        _flush_logs()
        os._exit(1)

    def handle_usr1(self, signum: int, frame: object) -> None:
        from reclusterd.logging import reopen_logs
        reopen_logs()
        install_fault_handler(self.cfg, self.handle_abrt)

    def wake(self) -> None:
        """Interrupt a selector that watches wake_fd (signal handlers, other threads)."""
        try:
            os.write(self._wake_w, b"\0")
        except OSError:
            pass

    def clear_wake(self) -> None:
        try:
            while os.read(self.wake_fd, 512):
                pass
        except OSError:
            pass

    # -- heartbeats ------------------------------------------------------------
    def heartbeat_due(self, now: float) -> bool:
        return now >= self._next_hb

    def maybe_heartbeat(self, now: float | None = None) -> None:
        """Call often from the serving loop; sends at most every hb_interval, never when stuck."""
        if now is None:
            now = time.monotonic()
        if now < self._next_hb:
            return
        self._next_hb = now + self.hb_interval
        if self.meter.stuck(now):
            return
        self.channel.heartbeat(self.meter.stats())

    def final_heartbeat(self) -> None:
        """One last beat when leaving run(), so counts since the previous one are not lost."""
        self.channel.heartbeat(self.meter.stats())
