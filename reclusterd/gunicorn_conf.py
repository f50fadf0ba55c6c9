"""Read a Gunicorn `.py` config file: run it as Gunicorn does, keep what maps to our settings.

Gunicorn executes the file as a module named `__config__` and reads its module-level
names: those that are Gunicorn settings count, everything else (imports, helpers,
`multiprocessing`) is ignored. We do the same, then translate the settings through
gunicorn_map's one table, and collect the server hooks the file defines (checked for
Gunicorn's arity) as "__config__:name" specs, so the hooks travel on the Config like
any `module:func` hook and resolve through apploader in the arbiter and the forked
workers, which inherit the module.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import traceback
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from reclusterd import hooks
from reclusterd.gunicorn_map import BY_GUNICORN

MODULE = "__config__"   # Gunicorn's module name for the file, kept for familiar tracebacks
_ADAPTED = "_reclusterd_{}"


class GunicornConfigError(ValueError):
    """One line: `setting` is the Gunicorn name (or "--config" for the file itself),
    `message` says what is wrong and where (file:line, or "in FILE")."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting
        self.message = message


@dataclass
class GunicornConfig:
    """What a .py file asks for: (gunicorn name, our name, value) rows, hooks, warnings."""

    path: str
    settings: list[tuple[str, str, Any]] = field(default_factory=list)
    hooks: dict[str, str] = field(default_factory=dict)     # hook name -> spec
    warnings: list[str] = field(default_factory=list)


def _where(path: str, exc: BaseException) -> str:
    """"file:line" of the innermost frame in the config file (or of a SyntaxError)."""
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f"{path}:{exc.lineno}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if os.path.abspath(f.filename) == os.path.abspath(path)]
    return f"{path}:{frames[-1].lineno}" if frames else path


def execute(path: str) -> ModuleType:
    """Run the file as module __config__ (registered in sys.modules for the hooks)."""
    if not os.path.isfile(path):
        raise GunicornConfigError("--config", f"cannot read {path!r}: no such file")
    spec = importlib.util.spec_from_file_location(MODULE, path)
    if spec is None or spec.loader is None:  # pragma: no cover - a .py path always loads
        raise GunicornConfigError("--config", f"cannot load {path!r} as Python")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise GunicornConfigError("--config", f"{_where(path, e)}: SyntaxError: {e.msg}") from None
    except (Exception, SystemExit) as e:  # noqa: BLE001 - any error in the user's file
        text = traceback.format_exception_only(type(e), e)[-1].strip().splitlines()[0]
        raise GunicornConfigError("--config", f"{_where(path, e)}: {text}") from None
    sys.modules[MODULE] = module
    return module


def _setting(out: GunicornConfig, name: str, value: Any, known: frozenset[str]) -> None:
    eq = BY_GUNICORN[name]
    where = f"(in {out.path})"
    if eq.ours is None or eq.ours not in known:
        if eq.is_default(value):
            return
        if eq.harmless:
            out.warnings.append(f"{name}: Gunicorn setting ignored ({eq.note}) {where}")
            return
        why = eq.note or "this version has no such setting"
        raise GunicornConfigError(name, f"Gunicorn setting not supported: {why} {where}")
    try:
        value = eq.convert(value) if eq.convert else value
    except ValueError as e:
        raise GunicornConfigError(name, f"{e} {where}") from None
    if isinstance(value, tuple):
        value = list(value)
    out.settings.append((name, eq.ours, value))


def _hook(out: GunicornConfig, module: ModuleType, name: str) -> None:
    fn = getattr(module, name)
    if fn is None:
        return
    why = hooks.check_arity(fn, name, hooks.BY_NAME[name].gunicorn_args)
    if why:
        raise GunicornConfigError(name, f"{why} (in {out.path})")
    adapted = hooks.adapt(name, fn)
    attr = name
    if adapted is not fn:
        attr = _ADAPTED.format(name)
        setattr(module, attr, adapted)
    out.hooks[name] = f"{MODULE}:{attr}"


def read(path: str, known: frozenset[str]) -> GunicornConfig:
    """Execute `path` and map it; `known` are the setting names this build has."""
    module = execute(path)
    out = GunicornConfig(path)
    for name in list(vars(module)):
        if name in hooks.BY_NAME:
            _hook(out, module, name)
        elif name in BY_GUNICORN:
            _setting(out, name, getattr(module, name), known)
    return out
