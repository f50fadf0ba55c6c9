"""argv + environ + TOML file -> one frozen, validated Config.

The command line is config/argv.py, the environment and -c file config/sources.py,
the cross-setting checks config/checks.py. Inputs are passed in (nothing is read at
import time) so the arbiter can reload on HUP with the same argv and a fresh environ,
and tests need no monkeypatching.
Precedence: command line > RECLUSTERD_<NAME> environment > config file > default.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from reclusterd.config.argv import build_parser, from_cli, version_requested, version_text
from reclusterd.config.checks import cross_check, default_workers, h2c_warnings
from reclusterd.config.errors import ConfigError, did_you_mean
from reclusterd.config.peerflags import strip_peer_flags
from reclusterd.config.sources import (
    Warn,
    from_env,
    read_config_file,
    read_gunicorn,
    read_toml,
    unknown_env,
)
from reclusterd.settings import HOOK_SETTINGS, SETTINGS

__all__ = ["CONFIG_FIELDS", "Config", "ConfigError", "build_parser", "did_you_mean",
           "hook_specs", "load", "make", "read_config_file", "read_gunicorn", "read_toml",
           "reload_ignored", "unknown_env", "version_requested", "version_text"]


log = logging.getLogger("reclusterd.error")


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


def load(argv: Sequence[str], environ: Mapping[str, str],
         toml_path: str | None = None, warn: Warn | None = None) -> Config:
    """Build the Config; toml_path (HUP reload) overrides the -c found in argv/env.

    `warn` gets one line per ignored Gunicorn setting (default: the error log).
    """
    argv, dropped = strip_peer_flags(argv)
    for line in dropped:
        (warn or log.warning)(line)
    cli = from_cli(build_parser().parse_args(argv))
    env = from_env(environ)
    path = toml_path or cli.get("config") or env.get("config")
    values = _table_defaults()
    if path:
        values.update(read_config_file(path, warn or log.warning))
    values.update(env)
    values.update(cli)
    values["config"] = path
    cross_check(values)
    for line in h2c_warnings(values):
        (warn or log.warning)(line)
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
        values["workers"] = default_workers(environ)
    return Config(**values)


def reload_ignored(old: Config, new: Config) -> list[str]:
    """Settings that differ after a HUP reload but only take effect on restart."""
    return [s.name for s in SETTINGS
            if not s.reloadable and getattr(old, s.name) != getattr(new, s.name)]
