"""argv + environ + TOML file -> one frozen, validated Config.

Inputs are passed in (nothing is read at import time) so the arbiter can reload on HUP
with the same argv and a fresh environ, and tests need no monkeypatching.
Precedence: command line > RECLUSTERD_<NAME> environment > config file > default.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, NoReturn

from reclusterd import __version__, appenv, gunicorn_conf, logconfig
from reclusterd.settings import (
    BY_NAME,
    ENV_PREFIX,
    HOOK_SETTINGS,
    INTERNAL_ENV,
    SETTINGS,
    Setting,
    show_value,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


log = logging.getLogger("reclusterd.error")


class ConfigError(Exception):
    """A bad setting; str() is one line naming it, e.g. "--workers: must be ..."."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(setting, message)
        self.setting = setting
        self.message = message

    def __str__(self) -> str:
        return f"{self.setting}: {self.message}"


@dataclass(frozen=True)
class Config:
    """Every setting, typed; attribute names are the long flags with '-' -> '_'.

    Annotations only: defaults, flags and help live in the settings table, and
    tests/unit/test_settings.py checks these fields name-for-name and type-for-type
    against it (settings.Setting.python_type). Build one with load() or make().
    """

    app: str
    workers: int
    bind: tuple[str, ...]
    worker_class: str
    threads: int
    worker_connections: int
    http: str
    loop: str
    timeout: float
    boot_timeout: float
    graceful_timeout: float
    keep_alive: float
    header_timeout: float
    max_requests: int
    max_requests_jitter: int
    max_worker_memory: int
    backoff: float
    config: str | None
    check_config: bool
    chdir: str | None
    pid: str | None
    name: str | None
    access_logfile: str | None
    access_logformat: str
    error_logfile: str | None
    log_level: str
    certfile: str | None
    keyfile: str | None
    ca_certs: str | None
    ciphers: str | None
    keyfile_password: str | None
    ssl_min_version: str
    cert_reqs: str | None
    forwarded_allow_ips: tuple[str, ...]
    limit_request_line: int
    limit_request_fields: int
    limit_request_field_size: int
    limit_request_body: int
    status_bind: str | None
    shutdown_delay: float
    factory: bool
    lifespan: str
    ws: str
    post_fork: str | None
    pre_request: str | None
    post_request: str | None
    on_starting: str | None
    on_reload: str | None
    when_ready: str | None
    pre_fork: str | None
    post_worker_init: str | None
    worker_int: str | None
    worker_abort: str | None
    pre_exec: str | None
    child_exit: str | None
    worker_exit: str | None
    nworkers_changed: str | None
    on_exit: str | None
    env_file: str | None
    env: tuple[str, ...]
    reuse_port: bool
    backlog: int
    preload: bool
    user: str | None
    group: str | None
    umask: int | None
    reload: bool
    reload_dir: tuple[str, ...]
    reload_include: tuple[str, ...]
    reload_exclude: tuple[str, ...]
    log_config: str | None
    ws_max_size: int
    ws_ping_interval: float
    ws_ping_timeout: float
    ws_per_message_deflate: bool
    control_socket: str | None
    proxy_protocol: bool
    proxy_allow_ips: tuple[str, ...]
    root_path: str
    server_header: bool
    date_header: bool
    http_protocols: tuple[str, ...]
    http2_cleartext: str
    http2_max_concurrent_streams: int
    http2_initial_window_size: int
    http2_max_frame_size: int
    http2_max_header_list_size: int


CONFIG_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Config))


def hook_specs(cfg: Config) -> dict[str, str]:
    """Hook name -> module:func spec, for the server hooks `cfg` sets (hooks.HOOKS order)."""
    values = vars(cfg)
    return {name: values[name] for name in HOOK_SETTINGS if values[name]}


class _Parser(argparse.ArgumentParser):
    """argparse that raises ConfigError instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        m = re.match(r"argument ([^:]+): (.*)$", message)
        if m:
            flag = m.group(1).split("/")[-1]
            raise ConfigError(flag, m.group(2))
        m = re.match(r"unrecognized arguments: (.*)$", message)
        if m:
            word = m.group(1).split()[0]
            if word.startswith("--"):
                word = word.partition("=")[0]
                flags = [f for f in self._option_string_actions if f.startswith("--")]
                raise ConfigError(word, f"unknown option (see --help)"
                                        f"{did_you_mean(word, flags, '--')}")
            raise ConfigError(word, "unknown option (see --help)")
        raise ConfigError("reclusterd", message)


def build_parser() -> argparse.ArgumentParser:
    """The command line, generated from SETTINGS (values stay strings; checked later)."""
    p = _Parser(prog="reclusterd", allow_abbrev=False,
                description="A pre-fork HTTP application server for WSGI and ASGI apps.",
                epilog="Every option can also be set as RECLUSTERD_<NAME> in the environment "
                       "or as <name> in the -c TOML file.")
    p.add_argument("app", nargs="?", default=argparse.SUPPRESS, metavar="APP",
                   help=BY_NAME["app"].help)
    p.add_argument("-v", "--version", action="store_true", default=argparse.SUPPRESS,
                   help="print the version and exit (-v as in Gunicorn)")
    for s in SETTINGS:
        if "cli" not in s.sources or not s.flags:
            continue
        helptext = s.help.replace("%", "%%")
        kw: dict[str, Any] = {"dest": s.name, "default": argparse.SUPPRESS, "help": helptext}
        if s.kind == "bool" and s.takes_value:
            _add_valued_bool(p, s, kw)
            continue
        if s.kind == "bool":
            if s.name == "check_config":
                kw["action"] = "store_true"
            else:
                kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["metavar"] = s.metavar or s.name.upper()
            if s.choices:
                kw["metavar"] = "{" + ",".join(s.choices) + "}"
            default = s.default_doc or show_value(s.default)
            if default:
                kw["help"] = f"{helptext} Default: {default.replace('%', '%%')}."
            if s.kind == "list":
                kw["action"] = "append"
        p.add_argument(*s.flags, **kw)
    return p


def _add_valued_bool(p: argparse.ArgumentParser, s: Setting, kw: dict[str, Any]) -> None:
    """`--flag BOOL` (true/false, yes/no, on/off, 1/0) and `--no-flag`; both keep the raw
    string for Setting.from_string, so a bad word is the usual one-line error."""
    kw["help"] = f"{kw['help']} Default: {show_value(s.default)}."
    p.add_argument(*s.flags, metavar=s.metavar or "BOOL", **kw)
    negated = ["--no-" + f[2:] for f in s.flags if f.startswith("--")]
    p.add_argument(*negated, dest=s.name, action="store_const", const="false",
                   default=argparse.SUPPRESS, help=f"the same as {s.flag} false")


def version_requested(argv: Sequence[str]) -> bool:
    """True when --version is on the command line (then APP is not required)."""
    try:
        ns = build_parser().parse_args(list(argv))
    except ConfigError:
        return "--version" in argv or "-v" in argv
    return bool(getattr(ns, "version", False))


def version_text() -> str:
    return f"reclusterd {__version__}"


def _default_workers(environ: Mapping[str, str]) -> int:
    raw = environ.get("WEB_CONCURRENCY")
    if raw is None or raw.strip() == "":
        return os.cpu_count() or 1
    try:
        value = int(raw.strip())
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError("WEB_CONCURRENCY", f"must be a positive integer, got {raw!r}")
    return value


def _from_cli(ns: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, raw in vars(ns).items():
        if name == "version" or name not in BY_NAME:
            continue
        s = BY_NAME[name]
        label = "APP" if name == "app" else s.flag
        try:
            if s.kind == "bool" and not s.takes_value:
                out[name] = s.check(bool(raw))
            elif s.kind == "list":
                out[name] = s.from_string(s.separator.join(raw))
            else:
                out[name] = s.from_string(raw)
        except ValueError as e:
            raise ConfigError(label, str(e)) from None
    return out


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for s in SETTINGS:
        if "env" not in s.sources or s.env not in environ:
            continue
        try:
            out[s.name] = s.from_string(environ[s.env])
        except ValueError as e:
            raise ConfigError(s.env, str(e)) from None
    return out


ACCEPTED_FORMATS = ("use a TOML file (.toml, keys are setting names: workers = 4) or a "
                    "Gunicorn config file (.py)")
Warn = Callable[[str], None]


def _parse_config_file(path: str) -> dict[str, Any]:
    """The file's TOML table; any other format is refused in one line naming TOML."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise ConfigError("--config", f"cannot read {path!r}: {e.strerror or e}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        if path.endswith(".toml"):
            raise ConfigError("--config", f"invalid TOML in {path!r}: {e}") from None
        raise ConfigError("--config", f"{path!r} is not TOML ({e}); "
                                      f"{ACCEPTED_FORMATS}") from None


def read_toml(path: str) -> dict[str, Any]:
    """Typed values from a TOML file; unknown keys and wrong types are errors."""
    data = _parse_config_file(path)
    out: dict[str, Any] = {}
    for key, raw in data.items():
        s = BY_NAME.get(key)
        if s is None or "file" not in s.sources:
            why = "cannot be set in a config file" if s else "unknown setting"
            hint = _suggest(key)
            raise ConfigError(key, f"{why} (in {path}){hint}")
        try:
            out[key] = s.from_toml(raw)
        except ValueError as e:
            raise ConfigError(key, f"{e} (in {path})") from None
    return out


def read_gunicorn(path: str, warn: Warn) -> dict[str, Any]:
    """Typed values from a Gunicorn .py file (executed, as Gunicorn does), hooks included.

    Errors name the Gunicorn setting (or file:line for an exception in the file);
    Gunicorn settings that are harmless to ignore are passed to `warn`.
    """
    try:
        conf = gunicorn_conf.read(path, frozenset(BY_NAME))
    except gunicorn_conf.GunicornConfigError as e:
        raise ConfigError(e.setting, e.message) from None
    for warning in conf.warnings:
        warn(warning)
    out: dict[str, Any] = {}
    for gname, name, raw in conf.settings:
        try:
            out[name] = BY_NAME[name].from_toml(raw)
        except ValueError as e:
            raise ConfigError(gname, f"{e} (in {path})") from None
    out.update(conf.hooks)
    return out


def read_config_file(path: str, warn: Warn) -> dict[str, Any]:
    """The -c file: Gunicorn's Python format for .py, else TOML."""
    return read_gunicorn(path, warn) if path.endswith(".py") else read_toml(path)


def did_you_mean(word: str, known: Sequence[str], prefix: str = "") -> str:
    """"; did you mean X?" for the closest known name, or "" (flags, env vars, TOML keys).

    A prefix every name shares ("--", "RECLUSTERD_") is left out of the comparison, or
    it alone would make any word look close.
    """
    bare = {k.removeprefix(prefix): k for k in known}
    close = difflib.get_close_matches(word.removeprefix(prefix), list(bare), n=1)
    return f"; did you mean {bare[close[0]]}?" if close else ""


def _suggest(key: str) -> str:
    names = [s.name for s in SETTINGS if "file" in s.sources]
    return did_you_mean(key.replace("-", "_"), names)


def unknown_env(environ: Mapping[str, str]) -> list[str]:
    """A warning per RECLUSTERD_* variable that names no setting (a typo is ignored, so say
    so); not an error, because the environment is shared with other programs."""
    known = [s.env for s in SETTINGS if "env" in s.sources]
    return [f"{name}: unknown setting (ignored){did_you_mean(name, known, ENV_PREFIX)}"
            for name in sorted(environ)
            if name.startswith(ENV_PREFIX) and name not in known and name not in INTERNAL_ENV]


def load(argv: Sequence[str], environ: Mapping[str, str],
         toml_path: str | None = None, warn: Warn | None = None) -> Config:
    """Build the Config; toml_path (HUP reload) overrides the -c found in argv/env.

    `warn` gets one line per ignored Gunicorn setting (default: the error log).
    """
    cli = _from_cli(build_parser().parse_args(list(argv)))
    env = _from_env(environ)
    path = toml_path or cli.get("config") or env.get("config")
    values = _table_defaults()
    if path:
        values.update(read_config_file(path, warn or log.warning))
    values.update(env)
    values.update(cli)
    values["config"] = path
    _cross_check(values)
    return _build(values, environ)


def make(**values: Any) -> Config:
    """A Config from the table's defaults plus `values`, unchecked: for tests and tools
    that need one without a command line (workers defaults as in load, from os.environ)."""
    merged = _table_defaults()
    merged.update(values)
    return _build(merged, os.environ)


def _table_defaults() -> dict[str, Any]:
    return {s.name: s.default for s in SETTINGS}


def _build(values: dict[str, Any], environ: Mapping[str, str]) -> Config:
    if values["workers"] is None:
        values["workers"] = _default_workers(environ)
    return Config(**values)


def _cross_check(values: dict[str, Any]) -> None:
    if not values.get("app"):
        raise ConfigError("APP", "missing: give the application as module:attr "
                                 "(e.g. reclusterd myapp:app)")
    if values["keyfile"] and not values["certfile"]:
        raise ConfigError("--keyfile", "needs --certfile")
    if values["cert_reqs"] in ("optional", "required") and not values["ca_certs"]:
        raise ConfigError("--cert-reqs", f"{values['cert_reqs']} needs --ca-certs (the CAs "
                                         "client certificates are checked against)")
    chdir = values["chdir"]
    if chdir and not os.path.isdir(chdir):
        raise ConfigError("--chdir", f"not a directory: {chdir!r}")
    if chdir:
        # Absolute once, here: a worker that chdirs and then puts the relative path on
        # sys.path would look for the app in DIR/DIR (issue 14 item 12).
        values["chdir"] = os.path.abspath(chdir)
    if values["env_file"]:
        try:
            appenv.read_env_file(values["env_file"])
        except appenv.EnvError as e:
            raise ConfigError("--env-file", str(e)) from None
    if values["reload"]:
        _check_reload(values)
    if values["log_config"]:
        # Absolute once: workers read it again after changing to --chdir.
        values["log_config"] = os.path.abspath(values["log_config"])
        try:
            logconfig.read(values["log_config"])
        except logconfig.LogConfigError as e:
            raise ConfigError("--log-config", str(e)) from None


def _check_reload(values: dict[str, Any]) -> None:
    """--reload: watchfiles importable, no --preload, watched directories that exist."""
    if values["preload"]:
        raise ConfigError("--reload", "cannot be used with --preload (the master would keep "
                                      "the old code imported); drop --preload for development")
    try:
        import watchfiles  # noqa: F401
    except ImportError:
        raise ConfigError("--reload", "needs watchfiles: pip install 'reclusterd[reload]' "
                                      "(or pip install watchfiles)") from None
    dirs = values["reload_dir"]
    for d in dirs:
        if not os.path.isdir(d):
            raise ConfigError("--reload-dir", f"not a directory: {d!r}")
    values["reload_dir"] = tuple(os.path.abspath(d) for d in dirs)


def reload_ignored(old: Config, new: Config) -> list[str]:
    """Settings that differ after a HUP reload but only take effect on restart."""
    return [s.name for s in SETTINGS
            if not s.reloadable and getattr(old, s.name) != getattr(new, s.name)]
