"""The other inputs: RECLUSTERD_* environment variables and the -c file (TOML, or a
Gunicorn .py config), each read into checked values keyed by setting name."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any

from reclusterd import gunicorn_conf
from reclusterd.config.errors import ConfigError, did_you_mean
from reclusterd.settings import BY_NAME, ENV_PREFIX, INTERNAL_ENV, SETTINGS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def from_env(environ: Mapping[str, str]) -> dict[str, Any]:
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
        if isinstance(raw, dict):
            # An INI file ([server] ...) often parses as TOML; no setting is a table.
            raise ConfigError(key, f"[{key}] is a section (TOML table) in {path}, but "
                                   f"settings are top-level keys; {ACCEPTED_FORMATS}")
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
