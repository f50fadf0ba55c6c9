"""argv + environ + TOML file -> one frozen, validated Config.

Inputs are passed in (nothing is read at import time) so the arbiter can reload on HUP
with the same argv and a fresh environ, and tests need no monkeypatching.
Precedence: command line > RECLUSTERD_<NAME> environment > config file > default.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, NoReturn

from reclusterd import __version__
from reclusterd.settings import BY_NAME, DEFAULT_ACCESS_FORMAT, SETTINGS, show_value

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


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
    """Every setting, typed. Attribute names are the long flags with '-' -> '_'."""

    app: str
    workers: int = 1
    bind: tuple[str, ...] = ("127.0.0.1:8000",)
    worker_class: str = "auto"
    threads: int = 4
    worker_connections: int = 1000
    http: str = "httptools"
    loop: str = "auto"
    timeout: float = 30.0
    boot_timeout: float = 60.0
    graceful_timeout: float = 30.0
    keep_alive: float = 5.0
    header_timeout: float = 20.0
    max_requests: int = 0
    max_requests_jitter: int = 0
    max_worker_memory: int = 0
    backoff: float = 10.0
    config: str | None = None
    check_config: bool = False
    chdir: str | None = None
    pid: str | None = None
    name: str | None = None
    access_logfile: str | None = None
    access_logformat: str = DEFAULT_ACCESS_FORMAT
    error_logfile: str | None = None
    log_level: str = "info"
    certfile: str | None = None
    keyfile: str | None = None
    ca_certs: str | None = None
    ciphers: str | None = None
    forwarded_allow_ips: tuple[str, ...] = ("127.0.0.1",)
    limit_request_line: int = 8190
    limit_request_fields: int = 100
    limit_request_field_size: int = 8190
    limit_request_body: int = 0
    status_bind: str | None = None
    shutdown_delay: float = 0.0
    factory: bool = False
    lifespan: str = "auto"
    ws: str = "auto"
    post_fork: str | None = None
    pre_request: str | None = None
    post_request: str | None = None
    reuse_port: bool = False
    backlog: int = 2048
    preload: bool = False
    user: str | None = None
    group: str | None = None
    umask: int | None = None
    ws_max_size: int = 16 * 1024 * 1024
    ws_ping_interval: float = 20.0
    ws_ping_timeout: float = 20.0
    ws_per_message_deflate: bool = True


CONFIG_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Config))


class _Parser(argparse.ArgumentParser):
    """argparse that raises ConfigError instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        m = re.match(r"argument ([^:]+): (.*)$", message)
        if m:
            flag = m.group(1).split("/")[-1]
            raise ConfigError(flag, m.group(2))
        m = re.match(r"unrecognized arguments: (.*)$", message)
        if m:
            raise ConfigError(m.group(1).split()[0], "unknown option (see --help)")
        raise ConfigError("reclusterd", message)


def build_parser() -> argparse.ArgumentParser:
    """The command line, generated from SETTINGS (values stay strings; checked later)."""
    p = _Parser(prog="reclusterd", allow_abbrev=False,
                description="A pre-fork HTTP application server for WSGI and ASGI apps.",
                epilog="Every option can also be set as RECLUSTERD_<NAME> in the environment "
                       "or as <name> in the -c TOML file.")
    p.add_argument("app", nargs="?", default=argparse.SUPPRESS, metavar="APP",
                   help=BY_NAME["app"].help)
    p.add_argument("--version", action="store_true", default=argparse.SUPPRESS,
                   help="print the version and exit")
    for s in SETTINGS:
        if "cli" not in s.sources or not s.flags:
            continue
        helptext = s.help.replace("%", "%%")
        kw: dict[str, Any] = {"dest": s.name, "default": argparse.SUPPRESS, "help": helptext}
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


def version_requested(argv: Sequence[str]) -> bool:
    """True when --version is on the command line (then APP is not required)."""
    try:
        ns = build_parser().parse_args(list(argv))
    except ConfigError:
        return "--version" in argv
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
            if s.kind == "bool":
                out[name] = s.check(bool(raw))
            elif s.kind == "list":
                out[name] = s.from_string(",".join(raw))
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


def read_toml(path: str) -> dict[str, Any]:
    """Typed values from a TOML file; unknown keys and wrong types are errors."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError("--config", f"cannot read {path!r}: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("--config", f"invalid TOML in {path!r}: {e}") from None
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


def _suggest(key: str) -> str:
    import difflib

    names = [s.name for s in SETTINGS if "file" in s.sources]
    close = difflib.get_close_matches(key.replace("-", "_"), names, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def load(argv: Sequence[str], environ: Mapping[str, str],
         toml_path: str | None = None) -> Config:
    """Build the Config; toml_path (HUP reload) overrides the -c found in argv/env."""
    cli = _from_cli(build_parser().parse_args(list(argv)))
    env = _from_env(environ)
    path = toml_path or cli.get("config") or env.get("config")
    values: dict[str, Any] = {s.name: s.default for s in SETTINGS if s.name in CONFIG_FIELDS}
    if path:
        values.update(read_toml(path))
    values.update(env)
    values.update(cli)
    if values["workers"] is None:
        values["workers"] = _default_workers(environ)
    values["config"] = path
    _cross_check(values)
    return Config(**values)


def _cross_check(values: dict[str, Any]) -> None:
    if not values.get("app"):
        raise ConfigError("APP", "missing: give the application as module:attr "
                                 "(e.g. reclusterd myapp:app)")
    if values["keyfile"] and not values["certfile"]:
        raise ConfigError("--keyfile", "needs --certfile")
    chdir = values["chdir"]
    if chdir and not os.path.isdir(chdir):
        raise ConfigError("--chdir", f"not a directory: {chdir!r}")


def reload_ignored(old: Config, new: Config) -> list[str]:
    """Settings that differ after a HUP reload but only take effect on restart."""
    return [s.name for s in SETTINGS if not s.reloadable and s.name in CONFIG_FIELDS
            and getattr(old, s.name) != getattr(new, s.name)]
