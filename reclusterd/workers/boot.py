"""Child start: what runs in a forked worker process before its worker class serves.

The arbiter calls `run_worker()` in the child: the one child signal reset, process
title, --chdir, logging, the server hooks (loaded once per process, `process_hooks`),
post_fork, the app (or the preloaded one), then the one worker-class registry and
"auto" rule (`resolve_worker_class`), post_worker_init, the class's `run()`, and
worker_exit as the process leaves. Also the process-level helpers every worker class uses (stack
dumps on SIGABRT, flushing logs before `os._exit`). The plug-in contract itself
is `workers/base.py`; this module does not import it (base uses these helpers).
"""

from __future__ import annotations

import faulthandler
import importlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, NoReturn, Protocol

from reclusterd import apploader, hooks, sockets, tls, workerclasses
from reclusterd.signals import reset_in_child
from reclusterd.workers import share

if TYPE_CHECKING:
    from reclusterd.config import Config
    from reclusterd.control import WorkerChannel
    from reclusterd.sockets import Listener

log = logging.getLogger("reclusterd.error")

EXIT_OK = 0
EXIT_BOOT_ERROR = 3

class BootError(Exception):
    """The worker cannot start serving (bad hook, wrong worker class for the app)."""


@dataclass
class WorkerInfo:
    """What a post_fork hook receives: the worker process, before the app is loaded
    (Gunicorn's worker object at that moment: .pid, .ppid, .cfg, .log)."""

    pid: int
    generation: int
    cfg: Config
    ppid: int = field(default_factory=os.getppid)
    log: logging.Logger = log


_hooks: tuple[int, Config, Mapping[str, hooks.Hook]] | None = None


def process_hooks(cfg: Config) -> Mapping[str, hooks.Hook]:
    """This process's server hooks, imported and checked once (apploader.load_hooks).

    Cached per pid and Config: a worker forked after a HUP loads the new ones. A bad
    hook is a BootError of one line (plus the user's traceback if their module raised).
    """
    global _hooks
    if _hooks is None or _hooks[0] != os.getpid() or _hooks[1] != cfg:
        try:
            _hooks = (os.getpid(), cfg, apploader.load_hooks(cfg))
        except apploader.AppLoadError as e:
            raise BootError(e.text()) from None
    return _hooks[2]


class WorkerClass(Protocol):
    """What boot needs of a worker class (workers/base.py's Worker is the contract)."""

    app_kinds: tuple[str, ...]

    def __call__(self, cfg: Config, listeners: Sequence[Listener], channel: WorkerChannel,
                 app: Any, kind: str) -> RunnableWorker: ...


class RunnableWorker(Protocol):
    generation: int

    def run(self) -> None: ...

    def exiting(self) -> None: ...


def _is_worker_class(obj: object) -> bool:
    """A subclass of reclusterd.workers.base.Worker (checked by name along the MRO, so
    this module need not import the contract module that imports it)."""
    return isinstance(obj, type) and any(
        c.__module__ == "reclusterd.workers.base" and c.__qualname__ == "Worker"
        for c in obj.__mro__)


def resolve_worker_class(name: str, kind: str) -> WorkerClass:
    """The one worker-class registry: auto -> thread (WSGI) / asyncio (ASGI);
    sync/thread/asyncio; or module:Class (a plug-in subclass of Worker)."""
    name = workerclasses.resolve(name, kind)
    try:
        cls: Any = apploader.import_class(workerclasses.spec(name), "worker class")
    except apploader.AppLoadError as e:
        raise BootError(e.text()) from None
    if not _is_worker_class(cls):
        raise BootError(f"worker class {name!r} is not a reclusterd.workers.base.Worker")
    if kind not in cls.app_kinds:
        served = " and ".join(k.upper() for k in cls.app_kinds)
        other = workerclasses.for_app(kind)
        raise BootError(f"worker class {name!r} serves {served} apps only, but the app is "
                        f"{kind.upper()}; use --worker-class {other} (or auto)")
    got: WorkerClass = cls
    return got


def prepare_fork(cfg: Config, kind: str | None = None) -> None:
    """In the master, before each fork: the connection board the workers share
    (workers/share.py), and the server modules a worker imports as it boots."""
    share.open_board()
    _preimport(cfg, kind)


def worker_reaped(pid: int) -> None:
    """In the master: `pid` exited; its slot on the connection board is free."""
    share.forget(pid)


def _preimport(cfg: Config, kind: str | None) -> None:
    """Import the server modules a worker of `cfg` imports as it boots (its built-in
    worker class and what that imports; uvloop's module for --loop auto/uvloop), so
    every child shares those pages with the master instead of building a private copy
    of each (issue 15: idle USS per thread worker 10.9 -> 6 MB).

    Modules only: no loop, thread or socket is created, and never user code (the app is
    imported here only with --preload, plug-in classes not at all). `kind` is the
    preloaded app's ("wsgi"/"asgi"); unknown, "auto" imports both classes. A module
    that fails to import is left to the worker, which reports it as a boot error.
    """
    name = cfg.worker_class
    kinds = (kind,) if kind else ("wsgi", "asgi")
    names = {workerclasses.resolve(name, k) for k in kinds}
    for resolved in sorted(names & set(workerclasses.BUILTIN_CLASSES)):
        module = workerclasses.spec(resolved).partition(":")[0]
        try:
            mod = importlib.import_module(module)
            if resolved == "asyncio" and not cfg.proxy_protocol:
                mod.loop_factory(cfg.loop)      # imports uvloop (the module only)
        except Exception:  # noqa: BLE001 - the worker imports it again and reports why
            log.debug("preimport of %s failed; left to the workers", module, exc_info=True)


def flush_logs() -> None:
    """Flush the error log, the access log and stdio (before os._exit, which skips that)."""
    from reclusterd.logging import flush_output
    flush_output()
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


def install_fault_handler(path: str | None, on_abort: Callable[[int, Any], Any]) -> None:
    """SIGABRT (and fatal signals) dump every thread's stack to the error log (`path`,
    --error-logfile; None/'-' = stderr) from C, so even a worker stuck in a C call dumps;
    then the previous handler, `on_abort`, runs."""
    global _fault_file
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
        flush_logs()
        os._exit(code)


def _boot_and_serve(cfg: Config, listeners: Sequence[Listener], channel: WorkerChannel,
                    generation: int, app: object) -> int:
    reset_in_child()    # signals.py: the one child reset (the arbiter's fork path ran it too)
    try:
        from setproctitle import setproctitle
        setproctitle(f"reclusterd: worker [{cfg.name or cfg.app}]")
    except ImportError:
        pass
    if cfg.chdir:
        os.chdir(cfg.chdir)
    # Hooks and plug-in worker classes live next to the app: same sys.path as the app.
    apploader.put_on_path(cfg.chdir or os.getcwd())
    from reclusterd.logging import setup_logging
    setup_logging(cfg)
    # Behind the C stack dump: exit promptly if ABRT arrives while booting.
    install_fault_handler(cfg.error_logfile, lambda s, f: os._exit(1))
    try:
        _become_user(cfg)
        loaded = process_hooks(cfg)
        # A failing hook is logged with its traceback by hooks.call; boot fails on it.
        if not hooks.call(loaded, "post_fork", WorkerInfo(os.getpid(), generation, cfg)):
            raise BootError("post_fork hook failed (traceback above)")
        app, kind = _load(cfg, app)
        cls = resolve_worker_class(cfg.worker_class, kind)
        channel.ready_note = f"{workerclasses.resolve(cfg.worker_class, kind)}, {kind.upper()}"
        worker = cls(cfg, listeners, channel, app, kind)
        worker.generation = generation
        if not hooks.call(loaded, "post_worker_init", worker):
            raise BootError("post_worker_init hook failed (traceback above)")
    except BootError as e:          # the arbiter logs the text (once), not us
        channel.boot_error(str(e))
        return EXIT_BOOT_ERROR
    except _AppLoadFailed as e:
        channel.boot_error(e.text)
        return EXIT_BOOT_ERROR
    try:
        worker.run()
    finally:
        worker.exiting()
    return EXIT_OK


def _become_user(cfg: Config) -> None:
    """--user/--group: switch before any app code runs (hooks, import), after what only
    the master's user may read is open: the log files (setup_logging) and the TLS
    certificate and key (loaded into tls's cache for either ALPN list a worker class may
    ask for: a root-only 0600 key stays readable on every HUP)."""
    if cfg.user is None and cfg.group is None:
        return
    if cfg.certfile:
        try:
            for speaks_h2 in (False, True):
                tls.ssl_context(tls.TLSOptions.of(cfg, tls.worker_alpn(cfg.http_protocols,
                                                                       speaks_h2)))
        except tls.TLSError:
            pass        # reported by the worker class, as a boot error
    try:
        uid, gid = sockets.owner_ids(cfg.user, cfg.group)
        sockets.drop_privileges(uid, gid, None)
    except sockets.BindError as e:      # PrivilegeError, an unknown user or group
        raise BootError(str(e)) from None


class _AppLoadFailed(Exception):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def _load(cfg: Config, app: object) -> tuple[object, str]:
    """(app, kind) from a preloaded LoadedApp or by importing it now."""
    if app is None:
        try:
            app = apploader.load_app(cfg)
        except apploader.AppLoadError as e:
            raise _AppLoadFailed(e.text()) from e
    if hasattr(app, "kind") and hasattr(app, "app"):
        return app.app, str(app.kind)
    return app, "wsgi"
