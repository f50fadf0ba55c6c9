"""The master process: bind, fork workers, watch them, replace/scale/reload/stop them.

One thread, one loop: `select()` on the signal wakeup pipe, every worker's
control socket and the status server, with a timeout that is the nearest
deadline (boot/heartbeat timeouts, SIGKILL escalation, backoff, shutdown).
Signal handlers only enqueue; every decision is taken in the loop. No HTTP here.
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, NoReturn, Protocol

from reclusterd import control, masterutil, sockets, systemd
from reclusterd.backoff import Backoff
from reclusterd.signals import SignalQueue
from reclusterd.stopping import Stopping
from reclusterd.workerset import State, Stats, Worker, snapshot

if TYPE_CHECKING:
    from reclusterd.config import Config

log = logging.getLogger("reclusterd.error")

MAX_SLEEP = 5.0            # never sleep longer than this (a safety net, not polling)


class StatusServerLike(Protocol):
    """What the arbiter needs from metrics.StatusServer (served inside this loop)."""

    def fileno(self) -> int: ...
    def handle_io(self) -> None: ...
    def close(self) -> None: ...


class StartupError(Exception):
    """Could not start (bind, TLS, pidfile): one line for the log; exit 1."""


class Arbiter(Stopping):
    """`Arbiter(cfg, argv, environ).run()` -> exit status."""

    def __init__(self, cfg: Config, argv: Sequence[str], environ: Mapping[str, str]) -> None:
        self.cfg = cfg
        self.argv = list(argv)
        self.environ = dict(environ)
        self.pid = os.getpid()
        self.listeners: list[sockets.Listener] = []
        self.workers: dict[int, Worker] = {}
        self.generation = 1
        self.last_generation = 1
        self.num_workers = cfg.workers
        self.backoff = Backoff(cfg.backoff)
        self.sigq = SignalQueue()
        self.selector = selectors.DefaultSelector()
        self.stats = Stats()
        self.app: object = None
        self.stopping: str | None = None          # None | "graceful" | "fast"
        self.drain_at: float | None = None        # graceful: when to start draining
        self.ever_ready = False
        self.exit_code = 0
        self.pidfile: str | None = None
        self.reexec_pid: int | None = None
        self.status: StatusServerLike | None = None
        self.status_retry_at: float | None = None
        self.notified_ready = False
        self.watchdog: float | None = systemd.watchdog_interval(self.environ)
        self.watchdog_at = 0.0
        self.logged_errors: set[str] = set()
        super().__init__()

    # ------------------------------------------------------------ run

    def run(self) -> int:
        """Serve until stopped; 0 after TERM/INT/QUIT, 1 if startup or first boot failed."""
        try:
            self._start()
        except StartupError as e:
            log.error("%s", e)
            self._cleanup()
            return 1
        try:
            while not self._finished():
                self._tick()
        except Exception:
            log.exception("arbiter crashed; killing workers")
            self.exit_code = 1
            for w in self.workers.values():
                self._signal(w, signal.SIGKILL)
        finally:
            self._cleanup()
        log.info("master %d exiting with status %d", self.pid, self.exit_code)
        return self.exit_code

    def _start(self) -> None:
        from reclusterd import logging as rlogging

        try:
            rlogging.setup_logging(self.cfg)
        except OSError as e:
            raise StartupError(f"error-logfile: cannot open {self.cfg.error_logfile}: "
                               f"{e.strerror or e}") from None
        masterutil.set_title(self.cfg.name or self.cfg.app)
        # Handlers before binding: once the port answers, a TERM must be a clean stop.
        self.sigq.install()
        self.selector.register(self.sigq.fileno(), selectors.EVENT_READ, None)
        try:
            self.listeners = sockets.bind_listeners(self.cfg, self.environ)
            sockets.ssl_context(self.cfg)
        except sockets.BindError as e:
            raise StartupError(str(e)) from None
        except OSError as e:
            raise StartupError(f"cannot listen: {e}") from None
        if self.cfg.pid:
            self._write_pidfile(self.cfg.pid)
        try:
            sockets.drop_privileges(self.cfg)
        except sockets.BindError as e:
            raise StartupError(str(e)) from None
        problem = masterutil.log_file_problem(self.cfg)
        if problem:
            raise StartupError(problem)
        if self.cfg.preload:
            with self.sigq.defaults((signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)):
                self._preload()
        self._start_status_server()
        log.info("master %d started: %s, listening on %s, %d workers", self.pid,
                 self.cfg.app, ", ".join(lis.address for lis in self.listeners),
                 self.num_workers)
        self._notify(f"STATUS=starting {self.num_workers} workers")

    def _preload(self) -> None:
        from reclusterd.apploader import AppLoadError, load_app

        try:
            self.app = load_app(self.cfg)
        except AppLoadError as e:
            tb = getattr(e, "traceback", None)
            raise StartupError(f"cannot load app {self.cfg.app}: {e}"
                               + (f"\n{tb}" if tb else "")) from None

    def _start_status_server(self) -> None:
        """Bind --status-bind; a re-exec'd master (USR2) retries until the old one lets go."""
        self.status_retry_at = None
        if not getattr(self.cfg, "status_bind", None):
            return
        try:
            from reclusterd import metrics

            server: StatusServerLike = metrics.StatusServer(self.cfg, self.snapshot)
        except (ImportError, AttributeError, ValueError) as e:
            log.warning("--status-bind: status server unavailable: %s", e)
            return
        except (OSError, sockets.BindError) as e:
            if sockets.FDS_ENV not in self.environ:
                raise StartupError(f"status-bind {self.cfg.status_bind}: {e}") from None
            log.warning("status-bind %s: %s; retrying (old master still holds it?)",
                        self.cfg.status_bind, e)
            self.status_retry_at = time.monotonic() + 1.0
            return
        self.status = server
        self.selector.register(server.fileno(), selectors.EVENT_READ, server)

    def _finished(self) -> bool:
        return self.stopping is not None and self.drain_at is None and not self.workers

    def _tick(self) -> None:
        timeout = self._sleep_time()
        events = self.selector.select(timeout)
        # Control messages first: a worker's "ready" that arrived with a TERM must count
        # (it may already be serving), else TERM would treat it as still booting.
        for key, _ in events:
            data = key.data
            if isinstance(data, Worker):
                self._read_control(data)
            elif self.status is not None and data is self.status:
                try:
                    self.status.handle_io()
                except Exception:
                    log.exception("status server error")
        for sig in self.sigq.drain():
            self._on_signal(sig)
        self._reap()
        self._timers()
        self._manage()

    def _sleep_time(self) -> float:
        now = time.monotonic()
        deadlines = [now + MAX_SLEEP]
        for w in self.workers.values():
            if w.kill_at is not None:
                deadlines.append(w.kill_at)
            elif w.state is State.BOOTING and w.reason is None:
                deadlines.append(w.spawned_at + w.cfg.boot_timeout)
            elif w.state is State.READY and w.reason is None and w.cfg.timeout > 0:
                deadlines.append(w.last_hb + w.cfg.timeout)
        if self.drain_at is not None:
            deadlines.append(self.drain_at)
        if self.status_retry_at is not None:
            deadlines.append(self.status_retry_at)
        if self.stopping is None and self._missing() > 0:
            deadlines.append(now + self.backoff.wait())
        if self.watchdog:
            deadlines.append(self.watchdog_at)
        return max(0.0, min(deadlines) - now)

    # ------------------------------------------------------------ workers

    def spawn(self, generation: int, cfg: Config) -> Worker | None:
        """Fork one worker of `generation`; the child never returns."""
        arb, chan = control.pair()
        # Block our signals across fork: one sent to the new child before it drops the
        # master's handlers would be swallowed by them (a TERM to a booting worker lost);
        # blocked, it stays pending until the child has reset them to the defaults.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, self.sigq.signals)
        try:
            pid = os.fork()
        except OSError as e:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            log.error("fork failed: %s", e)
            arb.close()
            chan.close()
            self.backoff.failure()
            return None
        if pid == 0:
            self._child(cfg, chan, arb, generation)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        chan.close()
        now = time.monotonic()
        w = Worker(pid=pid, generation=generation, cfg=cfg, sock=arb, spawned_at=now,
                   last_hb=now)
        self.workers[pid] = w
        self.selector.register(arb.fileno(), selectors.EVENT_READ, w)
        log.info("%s booting", w.label)
        return w

    def _child(self, cfg: Config, chan: control.WorkerChannel, arb: socket.socket,
               generation: int) -> NoReturn:
        code = 1
        try:
            self.sigq.close_in_child()
            masterutil.die_with_parent(self.pid)
            self.selector.close()
            for other in self.workers.values():
                other.sock.close()
            arb.close()
            if self.status is not None:
                masterutil.close_status_in_child(self.status)
                self.status = None
            from reclusterd.workers.base import run_worker

            run_worker(cfg, self.listeners, chan, generation, self.app)
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:
            log.exception("worker %d crashed", os.getpid())
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:
                    pass
            os._exit(code)

    def _read_control(self, w: Worker) -> None:
        for data in control.recv_all(w.sock):
            try:
                kind, payload = control.decode(data)
            except ValueError as e:
                log.warning("%s sent a bad control message: %s", w.label, e)
                continue
            self._on_message(w, kind, payload)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            except InterruptedError:
                continue
            if pid == 0:
                return
            if pid == self.reexec_pid:
                self._reexec_exited(status)
                continue
            w = self.workers.pop(pid, None)
            if w is None:
                log.debug("reaped process %d (not a worker)", pid)
                continue
            self._read_control(w)  # a boot_error sent just before exiting
            try:
                self.selector.unregister(w.sock.fileno())
            except (KeyError, ValueError):
                pass
            w.sock.close()
            self._on_exit(w, status)

    def _timers(self) -> None:
        now = time.monotonic()
        if self.watchdog and now >= self.watchdog_at:
            self._notify("WATCHDOG=1")
            self.watchdog_at = now + self.watchdog
        if self.drain_at is not None and now >= self.drain_at:
            self._begin_drain()
        if self.status_retry_at is not None and now >= self.status_retry_at:
            self._start_status_server()
        for w in list(self.workers.values()):
            if w.kill_at is not None and now >= w.kill_at:
                log.warning("%s still alive %.1fs after %s: SIGKILL", w.label,
                            now - w.stop_signal_at, "SIGABRT" if w.reason in (
                                "timeout", "boot-timeout") else "the stop signal")
                w.kill_at = None
                self._signal(w, signal.SIGKILL)
            elif w.reason is None and w.state is State.BOOTING:
                if now - w.spawned_at > w.cfg.boot_timeout:
                    self.boot_timed_out(w, now - w.spawned_at)
            elif w.reason is None and w.state is State.READY and w.cfg.timeout > 0:
                silent = now - w.last_hb
                if silent > w.cfg.timeout:
                    self.abort(w, "timeout", f"silent for {silent:.1f}s "
                               f"(timeout {w.cfg.timeout:g}s)")

    # ------------------------------------------------------------ helpers

    def snapshot(self) -> dict[str, object]:
        """Cluster state for the status server / metrics (see workerset.snapshot)."""
        return snapshot(list(self.workers.values()), self.stats, time.monotonic(),
                        pid=self.pid, generation=self.generation,
                        pending=self.pending.generation if self.pending else None,
                        target=self.num_workers, stopping=self.stopping is not None
                        or self.drain_at is not None)

    def _notify(self, state: str) -> None:
        systemd.notify(state, self.environ)

    def _write_pidfile(self, path: str) -> None:
        try:
            masterutil.write_pidfile(path, self.pid)
        except OSError as e:
            raise StartupError(f"pid: cannot write pidfile {path}: {e.strerror or e}") from None
        self.pidfile = path

    def _remove_pidfile(self) -> None:
        if self.pidfile:
            masterutil.remove_pidfile(self.pidfile, self.pid)
        self.pidfile = None

    def _close_status(self) -> None:
        if self.status is not None:
            try:
                self.status.close()
            except Exception:
                pass
        self.status = None

    def _cleanup(self) -> None:
        self._close_listeners()
        self._close_status()
        self._remove_pidfile()
        self.sigq.uninstall()
        self.selector.close()
