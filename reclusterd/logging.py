"""Error log and access log, both reopenable on USR1 (logrotate renames, then signals).

Everyone logs through `logging.getLogger("reclusterd.error")`; `setup_logging`
only decides where it goes. Both logs write whole lines to an O_APPEND fd through
reclusterd.logsink (a bounded buffer and a writer thread: a stalled reader costs
dropped, counted lines, never a blocked request or master loop), and reopen swaps
the fd in place with dup2 so writers never see a closed file. With --log-config the
access lines go to the `reclusterd.access` logger instead, and the user's file
(reclusterd/logconfig.py) is applied on top of the built-in handlers, in the
master and again in each worker after fork.
"""

from __future__ import annotations

import base64
import errno
import json
import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from reclusterd import logconfig, logsink

if TYPE_CHECKING:
    from reclusterd.config import Config

ERROR_LOGGER = "reclusterd.error"
ACCESS_LOGGER = "reclusterd.access"
ERROR_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S %z"
DEFAULT_ACCESS_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "warn": logging.WARNING, "error": logging.ERROR, "critical": logging.CRITICAL}

_handlers: list[tuple[logging.Logger, logging.Handler]] = []   # what setup_logging added
_last_good: logconfig.LogConfig | None = None   # the --log-config applied last, kept on failure
_access_logs: weakref.WeakSet[AccessLog] = weakref.WeakSet()
_lock = threading.Lock()


class _SinkHandler(logging.Handler):
    """A log handler that never blocks: records go to the fd's bounded buffer
    (reclusterd.logsink), written by a thread; reopenable in place (USR1)."""

    def __init__(self, path: str | None, std_fd: int) -> None:
        super().__init__()
        self.path = path            # None: the process's stdout/stderr (`std_fd`)
        self.fd, self.unread = (std_fd, False) if path is None else open_log(path)
        self.sink = logsink.sink_for(self.fd)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
            self.sink.write(line.encode("utf-8", "replace"))
        except Exception:  # noqa: BLE001 - logging.Handler's own contract
            self.handleError(record)

    def flush(self) -> None:
        self.sink.flush()

    def reopen(self) -> None:
        """Open the path afresh (logrotate renamed it) and swap the fd in place."""
        if self.path is not None:
            _reopen_in_place(self.path, self.fd)

    def close(self) -> None:
        if self.path is not None and self.fd >= 0:
            logsink.forget(self.fd)
            os.close(self.fd)
            self.fd = -1
        super().close()


def open_log(path: str) -> tuple[int, bool]:
    """Open a log path for appending (created 0644 if missing) without ever blocking:
    (fd, unread), `unread` True for a FIFO no process reads yet.

    open(O_WRONLY) of such a FIFO waits for a reader, which would hang the master (or a
    worker); with O_NONBLOCK it fails with ENXIO instead, and the FIFO is then opened
    read-write, which Linux never blocks. Its lines wait in the pipe, then in the
    process's log buffer (logsink), and then are dropped and counted like any stalled
    reader's, until a reader opens it. The fd itself blocks: only the writer thread
    writes to it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
                     | os.O_NONBLOCK, 0o644)
        unread = False
    except OSError as e:
        if e.errno != errno.ENXIO:
            raise
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK)
        unread = True
    os.set_blocking(fd, True)
    return fd, unread


def _open_append(path: str) -> int:
    return open_log(path)[0]


def warn_unread_fifo(setting: str, path: str) -> None:
    """The one warning line for a log FIFO that nobody reads (see open_log)."""
    logging.getLogger(ERROR_LOGGER).warning(
        "%s: %s is a FIFO with no reader: its lines are dropped and counted "
        "(reclusterd_log_lines_dropped_total) once the buffers are full, until a reader "
        "opens it", setting, path)


def _reopen_in_place(path: str, fd: int) -> None:
    """USR1: what was logged before goes to the old file (bounded wait), then swap."""
    logsink.sink_for(fd).flush()
    try:
        new = _open_append(path)
    except OSError:
        logging.getLogger(ERROR_LOGGER).exception("cannot reopen log file %s", path)
        return
    os.dup2(new, fd, inheritable=False)
    os.close(new)


def _stream_or_file(path: str | None, std_fd: int) -> logging.Handler:
    """A handler for `path`; None, "" or "-" mean `std_fd` (1 = stdout, 2 = stderr)."""
    return _SinkHandler(None if path in (None, "", "-") else str(path), std_fd)


def _builtin(cfg: Config) -> None:
    """The built-in setup: error log to cfg.error_logfile ('-'/None = stderr) at
    cfg.log_level; with --log-config, access lines to the `reclusterd.access` logger,
    which writes them to --access-logfile (if any) unless the user's file says else."""
    with _lock:
        for logger, h in _handlers:
            logger.removeHandler(h)
            h.close()
        _handlers.clear()
        logger = logging.getLogger(ERROR_LOGGER)
        handler = _stream_or_file(cfg.error_logfile, 2)
        handler.setFormatter(logging.Formatter(ERROR_FORMAT, DATE_FORMAT))
        logger.addHandler(handler)
        _handlers.append((logger, handler))
        logger.setLevel(_LEVELS.get(cfg.log_level.lower(),
                                    logging.INFO))
        logger.propagate = False
        access_path = cfg.access_logfile
        if cfg.log_config:
            access = logging.getLogger(ACCESS_LOGGER)
            access.setLevel(logging.INFO)
            access.propagate = False
            if access_path:
                handler = _stream_or_file(access_path, 1)
                handler.setFormatter(logging.Formatter("%(message)s"))
                access.addHandler(handler)
                _handlers.append((access, handler))
    for (_, h), setting in zip(_handlers, ("error-logfile", "access-logfile"), strict=False):
        if isinstance(h, _SinkHandler) and h.unread and h.path is not None:
            warn_unread_fifo(setting, h.path)     # now that the error log is in place


def setup_logging(cfg: Config) -> None:
    """The built-in setup, then --log-config on top of it (if set).

    A --log-config that fails to apply (HUP, or a worker forked after it) is logged
    and the last one that worked stays in force (the built-in one if none did);
    it is never raised: the CLI applies it once before start to refuse a bad file.
    """
    global _last_good
    _builtin(cfg)
    path = cfg.log_config
    if not path:
        return
    try:
        applied = logconfig.read(path)
        logconfig.apply(applied)
    except logconfig.LogConfigError as e:
        _builtin(cfg)
        kept = "the built-in logging"
        if _last_good is not None:
            try:
                logconfig.apply(_last_good)
                kept = f"the previous logging config ({_last_good.path} as it was read)"
            except logconfig.LogConfigError:
                _builtin(cfg)
        logging.getLogger(ERROR_LOGGER).error("log-config: %s; keeping %s", e, kept)
        return
    _last_good = applied


def lines_dropped() -> int:
    """Log lines this process dropped because its output could not keep up (logsink)."""
    return logsink.lines_dropped()


def flush_output(timeout: float = logsink.FLUSH_WAIT) -> None:
    """Before os._exit: write what is queued, waiting at most `timeout` s in all."""
    logsink.flush_all(timeout)


def reopen_logs() -> None:
    """USR1: reopen the error log file and every access log file of this process."""
    with _lock:
        for _, h in _handlers:
            if isinstance(h, _SinkHandler):
                h.reopen()
    if _last_good is not None:
        _reopen_configured()
    for access in list(_access_logs):
        access.reopen()


def _reopen_configured() -> None:
    """USR1 with --log-config: reopen the plain FileHandlers the user's file created
    (WatchedFileHandler reopens by itself; rotating ones rotate by themselves)."""
    loggers = [logging.getLogger()] + [
        v for v in logging.Logger.manager.loggerDict.values() if isinstance(v, logging.Logger)]
    seen: set[int] = set()
    for logger in loggers:
        for h in logger.handlers:
            if type(h) is logging.FileHandler and id(h) not in seen:
                seen.add(id(h))
                h.acquire()
                try:
                    if h.stream:
                        h.stream.close()
                    h.stream = h._open()
                finally:
                    h.release()


# ---------------------------------------------------------------- access log


@dataclass(slots=True)
class AccessInfo:
    """What a worker knows about one finished request (bytes or str both accepted)."""

    remote_addr: str
    method: str | bytes
    target: str | bytes
    http_version: str
    status: int
    response_length: int
    request_time: float
    request_headers: Sequence[tuple[bytes, bytes]] = ()
    response_headers: Sequence[tuple[str | bytes, str | bytes]] = ()
    extra: Mapping[str, object] = field(default_factory=dict)   # the environ / the scope


def _s(v: str | bytes) -> str:
    return v.decode("latin-1") if isinstance(v, bytes) else v


def _header(headers: Sequence[tuple[str | bytes, str | bytes]], name: str) -> str | None:
    """The first value of header `name` (any case); WSGI apps give str, ASGI apps bytes."""
    key = name.lower()
    for k, v in headers:
        if _s(k).lower() == key:
            return _s(v)
    return None


def _extra(extra: Mapping[str, object], name: str) -> str:
    """%({name}e)s: an environ key (WSGI) or scope key (ASGI) as text; '-' if absent.
    The name is case-insensitive, as Gunicorn's (`{request_method}e` = `REQUEST_METHOD`):
    an exact match first, else the first key equal ignoring case."""
    v = extra.get(name)
    if v is None:
        low = name.lower()
        v = next((val for k, val in extra.items() if k.lower() == low), None)
        if v is None:
            return "-"
    return _s(v) if isinstance(v, (str, bytes)) else str(v)


def _basic_user(info: AccessInfo) -> str:
    auth = _header(info.request_headers, "authorization")
    if not auth or not auth[:6].lower() == "basic ":
        return "-"
    try:
        return base64.b64decode(auth[6:].strip()).decode("utf-8").split(":", 1)[0] or "-"
    except (ValueError, UnicodeDecodeError):
        return "-"


def _clf_time(ts: float) -> str:
    return time.strftime("[%d/%b/%Y:%H:%M:%S %z]", time.localtime(ts))


class _Atoms:
    """Lazy mapping for `format % atoms`: only the atoms the format uses are computed."""

    __slots__ = ("info", "now")

    def __init__(self, info: AccessInfo, now: float) -> None:
        self.info = info
        self.now = now

    def __getitem__(self, key: str) -> str:
        i = self.info
        if len(key) > 2 and key[0] == "{" and key[-2] == "}":
            name, kind = key[1:-2], key[-1]
            if kind == "i":
                return _header(i.request_headers, name) or "-"
            if kind == "o":
                return _header(i.response_headers, name) or "-"
            if kind == "e":
                return _extra(i.extra, name)
            return "-"
        target = _s(i.target)
        if key == "h":
            return i.remote_addr or "-"
        if key == "l":
            return "-"
        if key == "u":
            return _basic_user(i)
        if key == "t":
            return _clf_time(self.now - i.request_time)
        if key == "r":
            return f"{_s(i.method)} {target} HTTP/{i.http_version}"
        if key == "m":
            return _s(i.method)
        if key == "U":
            return target.split("?", 1)[0]
        if key == "q":
            return target.split("?", 1)[1] if "?" in target else ""
        if key == "H":
            return f"HTTP/{i.http_version}"
        if key == "s":
            return str(i.status)
        if key == "B":
            return str(i.response_length)
        if key == "b":
            return str(i.response_length) if i.response_length else "-"
        if key == "f":
            return _header(i.request_headers, "referer") or "-"
        if key == "a":
            return _header(i.request_headers, "user-agent") or "-"
        if key == "T":
            return str(int(i.request_time))
        if key == "D":
            return str(int(i.request_time * 1_000_000))
        if key == "M":
            return str(int(i.request_time * 1000))
        if key == "L":
            return f"{i.request_time:.6f}"
        if key == "p":
            return f"<{os.getpid()}>"
        return "-"


def json_line(info: AccessInfo, now: float | None = None) -> str:
    """The "json" access log format: one object per line, stable keys."""
    now = time.time() if now is None else now
    target = _s(info.target)
    path, _, query = target.partition("?")
    rec: dict[str, Any] = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now - info.request_time)),
        "remote_addr": info.remote_addr,
        "method": _s(info.method),
        "path": path,
        "query": query,
        "protocol": f"HTTP/{info.http_version}",
        "status": info.status,
        "bytes": info.response_length,
        "duration": round(info.request_time, 6),
        "referer": _header(info.request_headers, "referer"),
        "user_agent": _header(info.request_headers, "user-agent"),
        "pid": os.getpid(),
    }
    return json.dumps(rec, separators=(",", ":"))


def format_line(fmt: str, info: AccessInfo, now: float | None = None) -> str:
    """Render one access line; a broken format string never raises (logs the raw request)."""
    now = time.time() if now is None else now
    if fmt == "json":
        return json_line(info, now)
    try:
        return fmt % _Atoms(info, now)
    except (TypeError, ValueError, KeyError):
        return DEFAULT_ACCESS_FORMAT % _Atoms(info, now)


class AccessLog:
    """Access log of one process: `path` is --access-logfile ('-' = stdout; None/"" = off,
    then `enabled` is False), `fmt` --access-logformat (None = the default); `to_logger`
    (--log-config given) sends the lines through the `reclusterd.access` logger."""

    def __init__(self, path: str | None, fmt: str | None = None,
                 to_logger: bool = False) -> None:
        self.path: str | None = path or None
        self.format: str = fmt or DEFAULT_ACCESS_FORMAT
        self.enabled = self.path is not None
        self._fd = -1
        self._owns_fd = False
        # --log-config: lines go to the `reclusterd.access` logger (setup_logging gave
        # it --access-logfile as a handler; the user's file may route them elsewhere).
        self.logger: logging.Logger | None = None
        if to_logger:
            self.logger = logging.getLogger(ACCESS_LOGGER)
            self.enabled = True
        elif self.path == "-":
            self._fd = sys.stdout.fileno() if sys.stdout is not None else 1
        elif self.path is not None:
            self._fd = self._open(self.path)
            self._owns_fd = True
            _access_logs.add(self)
        self._sink = logsink.sink_for(self._fd) if self._fd >= 0 else None

    @staticmethod
    def _open(path: str) -> int:
        return _open_append(path)

    def log(self, info: AccessInfo) -> None:
        """Write one line; never raises into the request path."""
        if not self.enabled:
            return
        if self.logger is not None:
            if self.logger.isEnabledFor(logging.INFO):
                self.logger.info("%s", format_line(self.format, info))
            return
        try:
            line = format_line(self.format, info) + "\n"
            if self._sink is not None:
                self._sink.write(line.encode("utf-8", "replace"))
        except Exception:  # noqa: BLE001 - logging must not fail a request
            logging.getLogger(ERROR_LOGGER).debug("access log write failed", exc_info=True)

    def reopen(self) -> None:
        """Open the path afresh (after logrotate renamed it) and swap the fd in place."""
        if self._owns_fd and self.path is not None:
            _reopen_in_place(self.path, self._fd)

    def close(self) -> None:
        if self._owns_fd and self._fd >= 0:
            logsink.forget(self._fd)
            os.close(self._fd)
            self._fd = -1
        self.enabled = False
        _access_logs.discard(self)
