"""What a setting is (`Setting`): its spellings on each input, its type, and how a raw
string from the command line, environment or TOML file becomes a checked value."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from reclusterd.settings.checks import parse_umask

Kind = Literal["int", "float", "str", "bool", "list", "umask"]
Source = Literal["cli", "env", "file"]
ALL_SOURCES: frozenset[Source] = frozenset(("cli", "env", "file"))
ENV_PREFIX = "RECLUSTERD_"
AUTO = 0  # the value of an `auto=True` int setting given as "auto"

_PY_TYPES: dict[Kind, Any] = {"int": int, "float": float, "str": str, "bool": bool,
                              "list": tuple[str, ...], "umask": int}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


# --------------------------------------------------------------------------- the table

@dataclass(frozen=True)
class Setting:
    """One setting: how it is spelt on each input and how its value is checked."""

    name: str
    kind: Kind
    default: Any
    help: str
    flags: tuple[str, ...] = ()
    minimum: float | None = None
    choices: tuple[str, ...] = ()
    validator: Callable[[Any], Any] | None = None
    reloadable: bool = True
    sources: frozenset[Source] = ALL_SOURCES
    metavar: str | None = None
    example: Any = None          # for conf/reclusterd.toml when the default is None
    default_doc: str | None = None
    required: bool = False       # config.load always gives a value (never None)
    separator: str = ","         # between list items in one string (env var, TOML string)
    # A bool whose flag takes a value (`--ws-per-message-deflate false`, Uvicorn's
    # spelling) besides `--no-...`. Opt-in: a bare bool flag never eats the next word
    # (`--factory myapp:app` keeps myapp:app as APP).
    takes_value: bool = False
    # An int setting that also takes the word "auto" (stored as AUTO = 0, which an
    # explicit number can never be: the minimum stays 1).
    auto: bool = False
    # Other spellings of a choice, mapped before the choices are checked (Gunicorn's
    # `--cert-reqs 2`, i.e. ssl.CERT_REQUIRED, is our `required`).
    aliases: tuple[tuple[str, str], ...] = ()

    @property
    def python_type(self) -> object:
        """The type of this setting's attribute on Config (a unit test checks they agree)."""
        base = _PY_TYPES[self.kind]
        return base if self.required or self.default is not None else base | None

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def flag(self) -> str:
        """The name used in messages: the long CLI flag, or the TOML key."""
        longs = [f for f in self.flags if f.startswith("--")]
        return longs[0] if longs else self.name

    @property
    def expect(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.kind == "int":
            if self.auto:
                return "auto or a positive integer"
            if self.minimum == 1:
                return "a positive integer"
            return "a non-negative integer" if self.minimum == 0 else "an integer"
        if self.kind == "float":
            return "a non-negative number" if self.minimum == 0 else "a number"
        if self.kind == "bool":
            return "true or false"
        if self.kind == "umask":
            return "an octal umask like 022"
        if self.kind == "list":
            return "a list of strings"
        return "a string"

    def bad(self, raw: object) -> ValueError:
        return ValueError(f"must be {self.expect}, got {raw!r}")

    def from_string(self, raw: str) -> Any:
        """Convert a CLI/env string, then check."""
        value: Any
        if self.auto and raw.strip().lower() == "auto":
            return AUTO
        try:
            if self.kind == "int":
                value = int(raw.strip())
            elif self.kind == "float":
                value = float(raw.strip())
                if value != value or value in (float("inf"), float("-inf")):
                    raise ValueError
            elif self.kind == "bool":
                low = raw.strip().lower()
                if low not in _TRUE | _FALSE:
                    raise ValueError
                value = low in _TRUE
            elif self.kind == "umask":
                value = parse_umask(raw)
            elif self.kind == "list":
                value = tuple(p.strip() for p in raw.split(self.separator) if p.strip())
            else:
                value = raw
        except ValueError:
            raise self.bad(raw) from None
        if self.auto and value == AUTO:     # only the word means auto
            raise self.bad(raw)
        return self.check(value)

    def from_toml(self, raw: object) -> Any:
        """Type-check a value read from TOML (no string coercion except lists/umask), then check."""
        value: Any = raw
        if self.auto and isinstance(raw, str):
            return self.from_string(raw)
        if self.kind == "int" and (not isinstance(raw, int) or isinstance(raw, bool)
                                   or (self.auto and raw == AUTO)):
            raise self.bad(raw)
        if self.kind == "float":
            if not isinstance(raw, (int, float)) or isinstance(raw, bool):
                raise self.bad(raw)
            value = float(raw)
        if self.kind == "bool" and not isinstance(raw, bool):
            raise self.bad(raw)
        if self.kind == "str" and not isinstance(raw, str):
            raise self.bad(raw)
        if self.kind in ("list", "umask") and isinstance(raw, str):
            return self.from_string(raw)
        if self.kind == "list":
            if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
                raise self.bad(raw)
            value = tuple(raw)
        if self.kind == "umask" and (not isinstance(raw, int) or isinstance(raw, bool)):
            raise self.bad(raw)
        return self.check(value)

    def check(self, value: Any) -> Any:
        if self.auto and value == AUTO and not isinstance(value, bool):
            return value
        if self.minimum is not None and value < self.minimum:
            raise self.bad(value)
        if self.aliases and isinstance(value, str):
            value = dict(self.aliases).get(value, value)
        if self.choices and value not in self.choices:
            raise self.bad(value)
        if self.kind == "umask" and not 0 <= value <= 0o777:
            raise self.bad(value)
        return self.validator(value) if self.validator else value



def show_value(value: Any) -> str:
    """A default as users write it (docs, --help)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
