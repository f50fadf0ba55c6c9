"""Server hooks: Gunicorn's names and arguments, checked once, resolved through apploader.

Every hook is a setting holding a "module:func" spec (TOML, CLI, environment); a
Gunicorn `.py` config file fills the same settings with the functions it defines
(see gunicorn_conf). apploader.load_hooks(cfg) imports them all and checks each one
can be called with the arguments its caller passes (check_arity), so a wrong
signature is an error at start (or in --check-config), never when the hook fires.
Standard library only: the config layer (settings, gunicorn_conf) uses this table.

Three hooks predate Gunicorn compatibility and keep reclusterd's own arguments when
given as specs: post_fork(info), pre_request(worker, environ), post_request(worker,
environ, status). The same hooks written Gunicorn's way in a `.py` file are adapted
to them (adapt()).
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("reclusterd.error")
Hook = Callable[..., object]


@dataclass(frozen=True)
class HookSpec:
    """One hook: Gunicorn's arguments, and ours where they differ (the three natives)."""

    name: str
    gunicorn_args: tuple[str, ...]
    when: str
    native_args: tuple[str, ...] | None = None   # reclusterd's call, when not Gunicorn's

    @property
    def args(self) -> tuple[str, ...]:
        """The arguments the caller passes to a hook given as a module:func spec."""
        return self.native_args if self.native_args is not None else self.gunicorn_args


HOOKS: tuple[HookSpec, ...] = (
    HookSpec("on_starting", ("server",), "in the arbiter, before the listeners are bound"),
    HookSpec("on_reload", ("server",), "in the arbiter, on HUP before the new generation"),
    HookSpec("when_ready", ("server",), "in the arbiter, once the first workers are ready"),
    HookSpec("pre_fork", ("server", "worker"), "in the arbiter, just before a worker forks"),
    HookSpec("post_fork", ("server", "worker"), "in the worker, after fork, before the app "
             "is loaded", native_args=("info",)),
    HookSpec("post_worker_init", ("worker",), "in the worker, after the app is loaded"),
    HookSpec("worker_int", ("worker",), "in the worker, on INT or QUIT"),
    HookSpec("worker_abort", ("worker",), "in the worker, on ABRT (a --timeout kill)"),
    HookSpec("pre_exec", ("server",), "in the arbiter, before a USR2 re-exec"),
    HookSpec("pre_request", ("worker", "req"), "in the worker, before each request",
             native_args=("worker", "environ")),
    HookSpec("post_request", ("worker", "req", "environ", "resp"), "in the worker, after "
             "each response", native_args=("worker", "environ", "status")),
    HookSpec("child_exit", ("server", "worker"), "in the arbiter, after a worker is reaped"),
    HookSpec("worker_exit", ("server", "worker"), "in the worker, as it exits"),
    HookSpec("nworkers_changed", ("server", "new_value", "old_value"), "in the arbiter, when "
             "the worker count changes (TTIN/TTOU, ctl workers N, reload)"),
    HookSpec("on_exit", ("server",), "in the arbiter, just before it exits"),
)
BY_NAME: dict[str, HookSpec] = {h.name: h for h in HOOKS}


def takes(fn: Hook, n: int) -> bool:
    """True when fn can be called with n positional arguments (defaults and *args count)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return True  # a builtin without a signature: let the call decide
    try:
        sig.bind(*range(n))
    except TypeError:
        return False
    return True


def check_arity(fn: Hook, name: str, args: tuple[str, ...]) -> str | None:
    """None, or why fn cannot be this hook (one line, naming the expected arguments)."""
    if not callable(fn):
        return f"{name} must be a function, got {type(fn).__name__}"
    if not takes(fn, len(args)):
        return f"{name} must take {len(args)} argument(s) ({', '.join(args)})"
    return None


def call(hooks: Mapping[str, Hook], name: str, *args: Any) -> bool:
    """Run a hook if set; an exception is logged with its traceback, not raised.

    Returns False when the hook raised, for the callers that treat that as fatal
    (post_fork: a boot error).
    """
    fn = hooks.get(name)
    if fn is None:
        return True
    try:
        fn(*args)
    except Exception:
        log.exception("%s hook failed", name)
        return False
    return True


# ------------------------------------------------------------ Gunicorn-style adapters

@dataclass(frozen=True)
class ServerView:
    """What a Gunicorn-style hook gets as `server` where reclusterd passes none:
    the config, the error logger and the arbiter's pid."""

    cfg: object
    log: logging.Logger
    pid: int


@dataclass(frozen=True)
class RequestView:
    """Gunicorn's `req` (method, path, query, uri, version, headers) over a WSGI environ
    or an ASGI scope; header names upper-cased as Gunicorn gives them."""

    method: str
    path: str
    query: str
    version: tuple[int, int]
    headers: list[tuple[str, str]]

    @property
    def uri(self) -> str:
        return f"{self.path}?{self.query}" if self.query else self.path

    @classmethod
    def of(cls, info: Mapping[str, Any]) -> RequestView:
        if "type" in info and "REQUEST_METHOD" not in info:   # an ASGI scope
            headers = [(k.decode("latin-1").upper(), v.decode("latin-1"))
                       for k, v in info.get("headers", ())]
            major, _, minor = str(info.get("http_version", "1.1")).partition(".")
            return cls(str(info.get("method", "GET")), str(info.get("path", "")),
                       bytes(info.get("query_string", b"")).decode("latin-1"),
                       (int(major), int(minor or 0)), headers)
        headers = [(k[5:].replace("_", "-"), str(v)) for k, v in info.items()
                   if k.startswith("HTTP_")]
        for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if info.get(key):
                headers.append((key.replace("_", "-"), str(info[key])))
        proto = str(info.get("SERVER_PROTOCOL", "HTTP/1.1")).removeprefix("HTTP/")
        major, _, minor = proto.partition(".")
        return cls(str(info.get("REQUEST_METHOD", "GET")), str(info.get("PATH_INFO", "")),
                   str(info.get("QUERY_STRING", "")), (int(major), int(minor or 0)), headers)


@dataclass(frozen=True)
class ResponseView:
    """Gunicorn's `resp` as far as a post_request hook reads it: the status."""

    status_code: int

    @property
    def status(self) -> str:
        return str(self.status_code)


def adapt(name: str, fn: Hook) -> Hook:
    """A Gunicorn-style hook from a .py config, callable the way reclusterd calls `name`."""
    if name == "post_fork":
        def post_fork(info: Any) -> object:
            return fn(ServerView(info.cfg, log, os.getppid()), info)
        return post_fork
    if name == "pre_request":
        def pre_request(worker: Any, environ: Mapping[str, Any]) -> object:
            return fn(worker, RequestView.of(environ))
        return pre_request
    if name == "post_request":
        def post_request(worker: Any, environ: Mapping[str, Any], status: int) -> object:
            return fn(worker, RequestView.of(environ), environ, ResponseView(status))
        return post_request
    return fn
