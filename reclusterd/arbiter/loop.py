"""The master process: bind, fork workers, watch them; the policy decides the rest.

One thread, one loop (Gunicorn's arbiter shape): signal handlers only enqueue and
write to a wakeup pipe; the loop `select()`s on that pipe, every worker's control
channel and the status server, with a timeout that is the nearest deadline. Each
turn: read control messages, dispatch signals by name, reap, run the timers,
manage. The loop owns the table (through `Policy`) and the side effects (it is
the policy's `Effects`): fork, kill, sd_notify, closing listeners.
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, NoReturn

from reclusterd import appenv, control, sockets, systemd
from reclusterd import logging as rlogging
from reclusterd.apploader import AppLoadError
from reclusterd.arbiter import ctlserver, startup
from reclusterd.arbiter.ctlserver import ControlServer
from reclusterd.arbiter.hookcalls import ServerHooks, ServerView, WorkerView, load_hooks
from reclusterd.arbiter.pause import paused_for
from reclusterd.arbiter.policy import Policy
from reclusterd.arbiter.process import (
    become_worker,
    exit_description,
    fork_shared,
    remove_pidfile,
    set_title,
    start_line,
)
from reclusterd.arbiter.reexec import ReExec
from reclusterd.arbiter.reloader import Reloader, describe, patterns_for
from reclusterd.arbiter.rollout import load_config
from reclusterd.arbiter.startup import StartupError
from reclusterd.arbiter.status import StatusServer
from reclusterd.arbiter.table import plural
from reclusterd.backoff import Backoff
from reclusterd.signals import SignalQueue, signame
from reclusterd.workers.boot import prepare_fork, worker_reaped

if TYPE_CHECKING:
    from reclusterd.config import Config

log = logging.getLogger("reclusterd.error")

MAX_SLEEP = 5.0            # never sleep longer than this (a safety net, not polling)
STATUS_RETRY = 1.0         # a re-exec'd master retries --status-bind this often


class Arbiter:
    """`Arbiter(cfg, argv, environ).run()` -> exit status."""

    def __init__(self, cfg: Config, argv: Sequence[str], environ: Mapping[str, str]) -> None:
        self.cfg = cfg
        self.argv = list(argv)
        self.environ = dict(environ)
        self.pid = os.getpid()
        self.listeners: list[sockets.Listener] = []
        self.channels: dict[int, socket.socket] = {}   # pid -> arbiter end of its channel
        self.sigq = SignalQueue()
        self.selector = selectors.DefaultSelector()
        self.policy = Policy(cfg, self, Backoff(cfg.backoff), time.monotonic())
        self.app: object = None
        self.pidfile: str | None = None
        self.reexec = ReExec()
        self.status: StatusServer | None = None
        self.status_retry_at: float | None = None
        self.reloader: Reloader | None = None    # --reload
        self.ctl: ControlServer | None = None
        self.hooks = ServerHooks({}, ServerView(self))
        self.when_ready_called = False
        self.hooked_target = cfg.workers
        self.watchdog: float | None = systemd.watchdog_interval(self.environ)
        self.watchdog_at = 0.0
        self.handlers: dict[int, Callable[[float], object]] = {
            signal.SIGHUP: self.handle_hup, signal.SIGTERM: self.policy.stop_graceful,
            signal.SIGINT: self.policy.stop_fast, signal.SIGQUIT: self.policy.stop_fast,
            signal.SIGTTIN: lambda now: self.policy.scale(+1),
            signal.SIGTTOU: lambda now: self.policy.scale(-1),
            signal.SIGUSR1: self.handle_usr1, signal.SIGUSR2: self.handle_usr2,
        }

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
            while not self.policy.finished():
                self._tick()
        except Exception:
            log.exception("arbiter crashed; killing workers")
            self.policy.exit_code = 1
            self.policy.stopper.kill_all()
        finally:
            self.hooks.call("on_exit")
            self._cleanup()
        log.info("master %d exiting with status %d", self.pid, self.policy.exit_code)
        return self.policy.exit_code

    def _start(self) -> None:
        try:
            rlogging.setup_logging(self.cfg)
        except OSError as e:
            raise StartupError(f"error-logfile: cannot open {self.cfg.error_logfile}: "
                               f"{e.strerror or e}") from None
        set_title(self.cfg.name or self.cfg.app)
        # Handlers before binding: once the port answers, a TERM must be a clean stop.
        self.sigq.install()
        self.selector.register(self.sigq.fileno(), selectors.EVENT_READ, None)
        try:
            self.hooks = ServerHooks(load_hooks(self.cfg), ServerView(self))
        except AppLoadError as e:
            raise StartupError(str(e)) from None
        if not self.hooks.call("on_starting"):   # fatal, as in Gunicorn
            raise StartupError("on_starting hook failed (traceback above); not starting")
        # The pidfile before the port: a script that waits for the port reads it next
        # (listen() alone makes the kernel complete TCP handshakes, no accept() needed).
        if self.cfg.pid:
            startup.claim_pidfile(self.cfg.pid, self.pid)
            self.pidfile = self.cfg.pid
        self.listeners = startup.open_listeners(self.cfg, self.environ)
        if self.cfg.preload:
            with self.sigq.defaults((signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)):
                self._preload()
        self._start_status_server()
        if self.cfg.reload:
            self.reloader = Reloader(patterns_for(self.cfg))
            self.selector.register(self.reloader.fileno(), selectors.EVENT_READ, None)
            self.reloader.start()
        self.ctl = startup.control_server(self.cfg, self.pid, self.environ, self.selector,
                                          self.ctl_command)
        log.info("%s", start_line(self.pid, self.cfg, self.listeners))
        self.notify(f"STATUS=starting {plural(self.cfg.workers, 'worker')}")

    def _preload(self) -> None:
        from reclusterd.apploader import AppLoadError, load_app

        try:
            self.app = load_app(self.cfg)
        except AppLoadError as e:
            raise StartupError(f"cannot load app {self.cfg.app}: {e}"
                               + (f"\n{e.traceback}" if e.traceback else "")) from None

    def _start_status_server(self) -> None:
        """Bind --status-bind; a re-exec'd master (USR2) retries until the old one lets go."""
        self.status_retry_at = None
        if not self.cfg.status_bind:
            return
        server = startup.status_server(self.cfg, self.environ, self.snapshot)
        if server is None:
            self.status_retry_at = time.monotonic() + STATUS_RETRY
            return
        self.status = server
        self.selector.register(server.fileno(), selectors.EVENT_READ, server)

    def _tick(self) -> None:
        asked = self._sleep_time()
        before = time.monotonic()
        events = self.selector.select(asked)
        # Control messages first: a worker's "ready" that arrived with a TERM must count
        # (it may already be serving), else TERM would treat it as still booting.
        for key, _ in events:
            if isinstance(key.data, int):
                self._read_control(key.data)
            elif self.status is not None and key.data is self.status:
                try:
                    self.status.handle_io()
                except Exception:
                    log.exception("status server error")
            elif key.data is not None:
                key.data.handle_io()   # the control socket and its connections
        for sig in self.sigq.drain():
            self._on_signal(sig)
        if self.reloader is not None:
            self._on_change(self.reloader.take())
        self._nworkers_hook()   # before the spawns it causes, as in Gunicorn
        self._reap()
        now = time.monotonic()
        # A turn much longer than the sleep asked for: time the master did not see
        # (arbiter/pause). Read every channel (a select that timed out while we were
        # stopped reports no events) and restart the workers' timeouts from now.
        gap = paused_for(before, asked, now)
        if gap:
            self._read_all_control()
            self.policy.resumed(gap, now)
        elif (deadline := self.policy.next_deadline(now)) is not None and deadline <= now:
            self._read_all_control()   # judge a timeout only on everything the worker sent
        if self.watchdog and now >= self.watchdog_at:
            self.notify("WATCHDOG=1")
            self.watchdog_at = now + self.watchdog
        if self.status_retry_at is not None and now >= self.status_retry_at:
            self._start_status_server()
        self.policy.check_timers(now)
        self.policy.manage(now)
        self._nworkers_hook()   # a promoted reload with another worker count
        if self.policy.notified_ready and not self.when_ready_called:
            self.when_ready_called = True
            self.hooks.call("when_ready")

    def _nworkers_hook(self) -> None:
        """nworkers_changed(server, new, old): TTIN/TTOU, ctl workers, a reload."""
        if self.policy.target != self.hooked_target:
            old, self.hooked_target = self.hooked_target, self.policy.target
            self.hooks.call("nworkers_changed", self.policy.target, old)

    def _sleep_time(self) -> float:
        now = time.monotonic()
        deadlines = [now + MAX_SLEEP]
        policy = self.policy.next_deadline(now)
        if policy is not None:
            deadlines.append(policy)
        if self.status_retry_at is not None:
            deadlines.append(self.status_retry_at)
        if self.watchdog:
            deadlines.append(self.watchdog_at)
        return max(0.0, min(deadlines) - now)

    # ------------------------------------------------------------ signals, by name

    def _on_signal(self, sig: int) -> None:
        if sig == signal.SIGCHLD:
            return  # reaped every turn
        if sig != signal.SIGUSR1:
            log.info("master %d got %s", self.pid, signame(sig))
        if self.policy.stopping is not None and sig not in (
                signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            return
        handler = self.handlers.get(sig)
        if handler is not None:
            handler(time.monotonic())

    def handle_hup(self, now: float) -> None:
        new = load_config(self.argv, self.environ, self.policy.cfg,
                                  self.policy.generation)
        if new is None:
            return
        try:   # the app's environment and the hooks, from the new config, before forking
            appenv.apply(appenv.app_environ(new))
            loaded = load_hooks(new)
        except (appenv.EnvError, AppLoadError) as e:
            log.error("reload aborted: %s; generation %d keeps serving", e,
                      self.policy.generation)
            return
        self.hooks = ServerHooks(loaded, self.hooks.server)
        self.hooks.call("on_reload")
        self.policy.reload(new, time.monotonic())

    def _on_change(self, changed: list[str]) -> None:
        """--reload: files changed; the same health-gated reload as HUP."""
        if not changed or self.reloader is None or self.policy.stopping is not None:
            return
        log.info("reload: %s changed; reloading (as on HUP)",
                 describe(changed, self.reloader.patterns))
        self.handle_hup(time.monotonic())

    def handle_usr1(self, now: float) -> None:
        rlogging.reopen_logs()
        log.info("master %d got SIGUSR1: log files reopened", self.pid)
        self.policy.forward_usr1()

    def handle_usr2(self, now: float) -> None:
        self.pidfile = self.reexec.start(self.argv, self.environ, self.listeners, self.pidfile,
                                         lambda: self.hooks.call("pre_exec"))

    def ctl_command(self, request: dict[str, object]) -> dict[str, object]:
        """One `reclusterd ctl` request (ctlserver.command)."""
        return ctlserver.command(request, self.policy, self.snapshot, self.handle_hup,
                                 self.policy.stop_graceful)

    # ------------------------------------------------------------ Effects

    def spawn(self, generation: int, cfg: Config) -> int | None:
        """Fork one worker of `generation`; the child never returns."""
        self.hooks.call("pre_fork", WorkerView(None, generation, cfg))
        prepare_fork(cfg, getattr(self.app, "kind", None))  # shared with the child, not copied
        arb, chan = control.pair()
        # Block our signals across fork: one sent to the new child before it drops the
        # master's handlers would be swallowed by them (a TERM to a booting worker lost);
        # blocked, it stays pending until the child has reset them to the defaults.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, self.sigq.signals)
        try:
            pid = fork_shared()
        except OSError as e:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            log.error("fork failed: %s", e)
            arb.close()
            chan.close()
            return None
        if pid == 0:
            self._child(cfg, chan, arb, generation)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        chan.close()
        self.channels[pid] = arb
        self.selector.register(arb.fileno(), selectors.EVENT_READ, pid)
        return pid

    def send(self, pid: int, sig: int) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    def notify(self, state: str) -> None:
        systemd.notify(state, self.environ)

    def close_listeners(self) -> None:
        if self.listeners:
            sockets.close_listeners(self.listeners, unlink=self.reexec.pid is None)
            self.listeners = []

    def apply_logging(self, cfg: Config) -> None:
        try:
            rlogging.setup_logging(cfg)
        except Exception:
            log.exception("reload: could not apply log settings")

    # ------------------------------------------------------------ workers

    def _child(self, cfg: Config, chan: control.WorkerChannel, arb: socket.socket,
               generation: int) -> NoReturn:
        """In the forked child: drop the master's fds and handlers, then be a worker."""
        closers: list[Callable[[], None]] = [self.sigq.close_in_child, self.selector.close,
                                             arb.close]
        closers += [other.close for other in self.channels.values()]
        for side in (self.status, self.reloader, self.ctl):
            if side is not None:
                closers.append(side.close_in_child)
        self.status = self.ctl = None
        become_worker(self.pid, closers, cfg, self.listeners, chan, generation, self.app)

    def _read_control(self, pid: int) -> None:
        sock = self.channels.get(pid)
        w = self.policy.table.get(pid)
        if sock is None or w is None:
            return
        now = time.monotonic()
        while True:  # every queued message, however many: "ready" may sit behind beats
            batch = control.recv_all(sock)
            for data in batch:
                try:
                    kind, payload = control.decode(data)
                except ValueError as e:
                    log.warning("%s sent a bad control message: %s", w.label, e)
                    continue
                self.policy.on_message(w, kind, payload, now)
            if len(batch) < control.RECV_BATCH:
                return

    def _read_all_control(self) -> None:
        for pid in list(self.channels):
            self._read_control(pid)

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
            if pid == self.reexec.pid:
                self.pidfile = self.reexec.exited(status, self.pid, self.pidfile)
                continue
            self._read_control(pid)  # a boot_error sent just before exiting
            worker_reaped(pid)
            sock = self.channels.pop(pid, None)
            if sock is not None:
                self.selector.unregister(sock.fileno())
                sock.close()
            what = exit_description(status)
            code = os.waitstatus_to_exitcode(status)
            signum = -code if code < 0 else None
            w = self.policy.exited(pid, what, time.monotonic(), signum)
            if w is None:
                log.debug("reaped process %d (not a worker)", pid)
            else:
                self.hooks.call("child_exit", WorkerView(pid, w.generation, w.cfg, what))

    # ------------------------------------------------------------ helpers

    def snapshot(self) -> dict[str, object]:
        """Cluster state for the status server (see Policy.snapshot), with the log lines
        the master itself dropped added to the workers' (heartbeat key log_dropped)."""
        snap = self.policy.snapshot(time.monotonic(), self.pid)
        totals = snap.get("totals")
        if isinstance(totals, dict):
            totals["log_dropped"] = totals.get("log_dropped", 0) + rlogging.lines_dropped()
        return snap

    def _cleanup(self) -> None:
        self.close_listeners()
        if self.reloader is not None:
            self.reloader.stop()
            self.reloader = None
        if self.ctl is not None:
            self.ctl.close()
            self.ctl = None
        if self.status is not None:
            try:
                self.status.close()
            except Exception:
                pass
            self.status = None
        if self.pidfile:
            remove_pidfile(self.pidfile, self.pid)
            self.pidfile = None
        self.sigq.uninstall()
        self.selector.close()
