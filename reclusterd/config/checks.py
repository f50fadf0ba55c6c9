"""Checks across settings (and against the file system) once every input is merged, and
the --workers default from WEB_CONCURRENCY or the CPU count."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from reclusterd import appenv, logconfig
from reclusterd.config.errors import ConfigError


def default_workers(environ: Mapping[str, str]) -> int:
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


def cross_check(values: dict[str, Any]) -> None:
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



def h2c_warnings(values: Mapping[str, Any]) -> list[str]:
    """h2c asked of a server that cannot speak it is served as HTTP/1 (as the issue's
    "everyone else gets HTTP/1" says), but an Envoy upstream would then fail with no hint
    in the log: one warning line at start."""
    mode = values["http2_cleartext"]
    if mode == "off":
        return []
    if "h2" not in values["http_protocols"]:
        return [f"--http2-cleartext {mode} has no effect: h2 is not in --http-protocols "
                "(plain binds speak HTTP/1 only)"]
    if values["worker_class"] == "sync":
        return [f"--http2-cleartext {mode} has no effect on the sync worker (HTTP/1 only); "
                "use -k thread (WSGI) or -k asyncio (ASGI) for h2c"]
    return []
