"""The app's environment: --env-file (dotenv format, read by python-dotenv) and -e KEY=VALUE.

Applied to os.environ in the arbiter before workers fork, so the app's os.environ sees
it; on HUP the arbiter applies the re-read values, and keys a previous apply set that
are gone now get their original value back (or are removed).
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, MutableMapping
from typing import Protocol

# key -> the value it had before we first set it (None: it was not set)
_originals: dict[str, str | None] = {}


class EnvError(ValueError):
    """A bad env file; str() is one line naming the file (and line)."""


class _EnvSettings(Protocol):
    @property
    def env_file(self) -> str | None: ...
    @property
    def env(self) -> tuple[str, ...]: ...


def read_env_file(path: str) -> dict[str, str]:
    """KEY=VALUE pairs of a dotenv file (quotes, `export`, comments, ${VAR} expansion).

    A line python-dotenv cannot parse is an error naming it, not skipped with a log
    line as load_dotenv would; a bare `KEY` (no value) is left out.
    """
    from dotenv import dotenv_values
    from dotenv.parser import parse_stream

    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise EnvError(f"cannot read {path!r}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise EnvError(f"{path!r} is not UTF-8 text: {e.reason}") from None
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            line = binding.original.line
            raise EnvError(f"{path}:{line}: cannot parse {binding.original.string.strip()!r}")
    values = dotenv_values(stream=io.StringIO(text))
    return {k: v for k, v in values.items() if v is not None}


def app_environ(cfg: _EnvSettings) -> dict[str, str]:
    """--env-file's values, then -e KEY=VALUE items (which win)."""
    out = read_env_file(cfg.env_file) if cfg.env_file else {}
    for item in cfg.env:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def apply(values: Mapping[str, str],
          target: MutableMapping[str, str] | None = None) -> None:
    """Set `values` in os.environ (or target), undoing keys set by an earlier apply."""
    env = os.environ if target is None else target
    for key in list(_originals):
        if key not in values:
            original = _originals.pop(key)
            if original is None:
                env.pop(key, None)
            else:
                env[key] = original
    for key, value in values.items():
        if key not in _originals:
            _originals[key] = env.get(key)
        env[key] = value
