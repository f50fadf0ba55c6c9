"""--log-config FILE: the user's stdlib logging configuration, read and applied.

`.json` and `.toml` hold a `logging.config.dictConfig` schema, `.ini`/`.conf`/`.cfg`
a `fileConfig` one. `read` parses and checks the shape (config load and HUP call it,
so a bad file is a one-line error naming it); `apply` hands it to the stdlib. As in
Gunicorn and Uvicorn, it is applied on top of the built-in setup (reclusterd/logging.py)
with `disable_existing_loggers` False unless the file says otherwise: a logger the
file names (`reclusterd.error`, `reclusterd.access`, `root`...) gets its handlers,
the others keep theirs. Standard library only: the config layer imports it.
"""

from __future__ import annotations

import configparser
import copy
import json
import logging.config
import os
import sys
from dataclasses import dataclass
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DICT_SUFFIXES = (".json", ".toml")
FILE_SUFFIXES = (".ini", ".conf", ".cfg")
FILE_SECTIONS = ("loggers", "handlers", "formatters")   # what fileConfig requires


class LogConfigError(Exception):
    """The file cannot be read, parsed or applied; str() is one line naming the file."""


@dataclass(frozen=True)
class LogConfig:
    """A parsed logging config: a dictConfig mapping, or a fileConfig parser."""

    path: str
    schema: dict[str, Any] | None = None
    parser: configparser.ConfigParser | None = None

    @property
    def kind(self) -> str:
        return "dictConfig" if self.schema is not None else "fileConfig"


def read(path: str) -> LogConfig:
    """Parse `path` by its suffix; LogConfigError says what is wrong and where."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in DICT_SUFFIXES + FILE_SUFFIXES:
        raise LogConfigError(f"{path}: unknown format {suffix or '(no suffix)'!r}: use .json "
                             "or .toml (logging dictConfig) or .ini/.conf (fileConfig)")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise LogConfigError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise LogConfigError(f"{path}: not UTF-8 text ({e.reason})") from None
    if suffix in FILE_SUFFIXES:
        return LogConfig(path, parser=_read_ini(path, text))
    return LogConfig(path, schema=_read_dict(path, suffix, text))


def _read_dict(path: str, suffix: str, text: str) -> dict[str, Any]:
    try:
        data = json.loads(text) if suffix == ".json" else tomllib.loads(text)
    except json.JSONDecodeError as e:
        raise LogConfigError(f"{path}: invalid JSON: {e.msg} at line {e.lineno} "
                             f"column {e.colno}") from None
    except tomllib.TOMLDecodeError as e:
        raise LogConfigError(f"{path}: invalid TOML: {e}") from None
    if not isinstance(data, dict):
        raise LogConfigError(f"{path}: expected an object (the dictConfig schema), "
                             f"got {type(data).__name__}")
    version = data.setdefault("version", 1)
    if version != 1:
        raise LogConfigError(f"{path}: dictConfig \"version\" must be 1, got {version!r}")
    for key in ("formatters", "filters", "handlers", "loggers", "root"):
        if key in data and not isinstance(data[key], dict):
            raise LogConfigError(f"{path}: {key!r} must be an object, "
                                 f"got {type(data[key]).__name__}")
    return data


def _read_ini(path: str, text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    try:
        parser.read_string(text, source=path)
    except configparser.Error as e:
        first = str(e).strip().splitlines()[0]
        raise LogConfigError(f"{path}: invalid INI: {first}") from None
    missing = [s for s in FILE_SECTIONS if not parser.has_section(s)]
    if missing:
        raise LogConfigError(f"{path}: fileConfig needs the sections "
                             f"{', '.join(f'[{s}]' for s in missing)}")
    if not parser.get("loggers", "keys", fallback="").strip():
        raise LogConfigError(f"{path}: [loggers] needs keys = (e.g. keys = root)")
    return parser


def apply(config: LogConfig) -> None:
    """Configure the stdlib logging from `config`; LogConfigError names what failed.

    A failure can leave logging half configured: the caller re-applies what it had.
    """
    try:
        if config.schema is not None:
            schema = copy.deepcopy(config.schema)   # dictConfig converts it in place
            schema.setdefault("disable_existing_loggers", False)
            logging.config.dictConfig(schema)
        elif config.parser is not None:
            logging.config.fileConfig(config.parser, disable_existing_loggers=False)
    except (ValueError, TypeError, KeyError, AttributeError, ImportError, OSError,
            configparser.Error) as e:
        raise LogConfigError(f"{config.path}: {describe(e)}") from None


def describe(e: BaseException) -> str:
    """One line for an error dictConfig/fileConfig raised (they chain the real cause)."""
    parts = [str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__]
    cause = e.__cause__ or e.__context__
    if cause is not None and str(cause) and str(cause) not in parts[0]:
        parts.append(f"{type(cause).__name__}: {str(cause).splitlines()[0]}")
    return ": ".join(parts)
