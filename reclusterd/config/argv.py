"""The command line, generated from the settings table: argparse built from SETTINGS,
its errors as ConfigError, and the parsed namespace as checked values."""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from typing import Any, NoReturn

from reclusterd import __version__
from reclusterd.config.errors import ConfigError, did_you_mean
from reclusterd.settings import BY_NAME, SETTINGS, Setting, show_value


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


def from_cli(ns: argparse.Namespace) -> dict[str, Any]:
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
