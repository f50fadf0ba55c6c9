"""--reload: watch the app's files and wake the arbiter loop when one changes.

watchfiles (Rust `notify`: inotify/FSEvents/kqueue, with debouncing) runs in a
daemon thread and never touches the arbiter's state: it adds the changed paths to
a set under a lock and writes one byte to a pipe the loop `select()`s on, so the
loop wakes at once and the change becomes a reload in the loop's own thread (the
same health-gated reload as HUP). Which paths count is `Patterns.wanted`, pure.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reclusterd.config import Config

log = logging.getLogger("reclusterd.error")

DEFAULT_INCLUDES = ("*.py",)
# Directories nobody edits by hand, compiled files and editor droppings (vim's
# .swp/.swx and its 4913 probe file, emacs' #file# and .#file, backups~).
DEFAULT_EXCLUDES = (".venv", "venv", "__pycache__", ".git", ".hg", "node_modules",
                    ".mypy_cache", ".pytest_cache", ".ruff_cache", ".tox", "*.pyc", "*.pyo",
                    "*.sw[a-p]", "*.swx", "*~", ".#*", "#*#", "4913")
# An editor's save is several events (write a temp file, rename, chmod): watchfiles
# waits until no event came for STEP_MS (at most DEBOUNCE_MS) and yields them as one.
DEBOUNCE_MS = 1600
STEP_MS = 50
READY_MS = 500     # the watcher's idle wakeup (how soon "watching" is logged)
SHOWN = 3   # changed files named in the log line


@dataclass(frozen=True)
class Patterns:
    """Which files under which directories trigger a reload.

    A glob without '/' matches a file name (include) or any path component (exclude,
    so `.venv` skips everything under it); a glob with '/' matches the path relative
    to the watched directory. Given patterns add to the defaults; naming a default
    on the other list drops it (`--reload-include '*.pyc'` watches .pyc files).
    """

    dirs: tuple[str, ...]
    include: tuple[str, ...]
    exclude: tuple[str, ...]

    @classmethod
    def build(cls, dirs: Sequence[str], include: Sequence[str],
              exclude: Sequence[str]) -> Patterns:
        inc = [p for p in DEFAULT_INCLUDES if p not in exclude] + list(include)
        exc = [p for p in DEFAULT_EXCLUDES if p not in include] + list(exclude)
        roots = tuple(os.path.abspath(d) for d in dirs)
        return cls(roots, tuple(dict.fromkeys(inc)), tuple(dict.fromkeys(exc)))

    def relative(self, path: str) -> str:
        """`path` relative to the deepest watched directory holding it."""
        path = os.path.abspath(path)
        best = ""
        for root in self.dirs:
            if (path == root or path.startswith(root.rstrip(os.sep) + os.sep)) \
                    and len(root) > len(best):
                best = root
        return os.path.relpath(path, best) if best else path

    def wanted(self, path: str) -> bool:
        """Does a change of `path` start a reload?"""
        rel = self.relative(path)
        parts = rel.split(os.sep)
        if any(_match(rel, parts, p, components=True) for p in self.exclude):
            return False
        return any(_match(rel, parts, p, components=False) for p in self.include)


def _match(rel: str, parts: list[str], pattern: str, components: bool) -> bool:
    if "/" in pattern:
        return fnmatchcase(rel, pattern.strip("/"))
    names = parts if components else parts[-1:]
    return any(fnmatchcase(name, pattern) for name in names)


def patterns_for(cfg: Config) -> Patterns:
    """The Patterns of a config: --reload-dir, else --chdir, else the current directory."""
    dirs = cfg.reload_dir or (cfg.chdir or os.getcwd(),)
    return Patterns.build(dirs, cfg.reload_include, cfg.reload_exclude)


def describe(paths: Iterable[str], patterns: Patterns) -> str:
    """'app.py, views/x.py and 2 more' for the log line."""
    rel = sorted(patterns.relative(p) for p in paths)
    shown = ", ".join(rel[:SHOWN])
    return shown + (f" and {len(rel) - SHOWN} more" if len(rel) > SHOWN else "")


class Reloader:
    """The watcher thread and its wakeup pipe; `take()` hands changes to the loop."""

    def __init__(self, patterns: Patterns) -> None:
        self.patterns = patterns
        self._changed: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rfd, self._wfd = os.pipe()
        for fd in (self._rfd, self._wfd):
            os.set_blocking(fd, False)

    def fileno(self) -> int:
        """Readable when changes are waiting (register it with the loop's selector)."""
        return self._rfd

    def start(self) -> None:
        """Start watching (watchfiles is imported here: config checked it is installed)."""
        import watchfiles

        def accept(change: Any, path: str) -> bool:
            return self.patterns.wanted(path)

        def run() -> None:
            watching = False
            try:
                # rust_timeout + yield_on_timeout: an empty set comes back once the
                # watches are in place, so "watching" is logged when it is true.
                for changes in watchfiles.watch(
                        *self.patterns.dirs, watch_filter=accept, debounce=DEBOUNCE_MS,
                        step=STEP_MS, stop_event=self._stop, raise_interrupt=False,
                        rust_timeout=READY_MS, yield_on_timeout=True):
                    if not watching:
                        watching = True
                        self._log_watching()
                    if not changes:
                        continue
                    with self._lock:
                        self._changed.update(path for _, path in changes)
                    try:
                        os.write(self._wfd, b"\0")
                    except OSError:
                        pass  # full: the loop has not drained yet and will see the set
                              # anyway; closed: stopping
            except Exception:
                log.exception("reload: the file watcher failed; --reload is off until "
                              "restart")

        self._thread = threading.Thread(target=run, name="reclusterd-reload", daemon=True)
        self._thread.start()

    def _log_watching(self) -> None:
        p = self.patterns
        log.info("reload: watching %s for %s (ignoring %s)", ", ".join(p.dirs),
                 " ".join(p.include), " ".join(p.exclude))

    def take(self) -> list[str]:
        """The paths changed since the last call (drains the pipe); [] if none."""
        try:
            while os.read(self._rfd, 4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        with self._lock:
            changed = sorted(self._changed)
            self._changed.clear()
        return changed

    def stop(self) -> None:
        """Stop the thread (watchfiles checks the event every STEP_MS) and close the pipe."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.close_in_child()

    def close_in_child(self) -> None:
        """Close the pipe (after fork the thread does not exist in the child)."""
        for fd in (self._rfd, self._wfd):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._rfd = self._wfd = -1
