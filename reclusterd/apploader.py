"""Import the user's application from "module:attr" and tell WSGI from ASGI.

This is the one "module:attr" resolver: apps (load_app), hooks (import_callable) and
plug-in worker classes (import_class) all go through resolve().

Errors the user can fix by typing a different APP (no such module, no such attribute,
not an application) are one line; an exception raised by the user's own code keeps
its traceback (with importlib's frames removed), because that is what they need to see.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
import os
import sys
import traceback as tb
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from reclusterd.config import Config

AppKind = Literal["wsgi", "asgi"]
log = logging.getLogger("reclusterd.error")


class AppLoadError(Exception):
    """The app could not be loaded; traceback is set when the user's code raised."""

    def __init__(self, message: str, traceback: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.traceback = traceback

    def __str__(self) -> str:
        return self.message

    def text(self) -> str:
        """Everything to show the user: the traceback (if any), then the message."""
        if self.traceback:
            return f"{self.traceback.rstrip()}\n{self.message}"
        return self.message


@dataclass(frozen=True)
class LoadedApp:
    app: object
    kind: AppKind
    asgi2: bool = False   # an ASGI 2 app, served through ASGI2Adapter


class ASGI2Adapter:
    """ASGI 3 in front of an ASGI 2 app ("double callable", ASGI spec: Legacy Applications):
    the app is called with the scope alone and returns an instance that is awaited with
    (receive, send). One instance per connection scope, as the ASGI 2 contract says."""

    def __init__(self, app2: Callable[[object], object]) -> None:
        self.app2 = app2

    async def __call__(self, scope: object, receive: object, send: object) -> None:
        instance = self.app2(scope)
        if not callable(instance):
            raise TypeError(f"ASGI 2 app {self.app2!r} returned {type(instance).__name__}, "
                            "not a callable taking (receive, send)")
        await instance(receive, send)


def split_spec(spec: str) -> tuple[str, str]:
    """ "pkg.mod:obj.attr" -> ("pkg.mod", "obj.attr"); "pkg.mod" -> ("pkg.mod", "app")."""
    module, sep, attr = spec.partition(":")
    if not module or (sep and not attr):
        raise AppLoadError(f"bad application spec {spec!r}: expected module:attr")
    return module, attr or "app"


def put_on_path(directory: str) -> None:
    """Make `directory` the first entry of sys.path (as Gunicorn and Uvicorn do)."""
    path = os.path.abspath(directory)
    if path in sys.path:
        sys.path.remove(path)
    sys.path.insert(0, path)


def _user_traceback(exc: BaseException) -> str:
    """The formatted exception without importlib's and this module's frames."""
    te = tb.TracebackException.from_exception(exc)
    here = os.path.abspath(__file__)
    te.stack = tb.StackSummary.from_list([
        f for f in te.stack
        if "importlib" not in f.filename and os.path.abspath(f.filename) != here])
    return "".join(te.format())


def _one_line(exc: BaseException) -> str:
    text = tb.format_exception_only(type(exc), exc)[-1].strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _is_missing(exc: ModuleNotFoundError, module: str) -> bool:
    """True if the missing module is the one asked for (or a parent package of it)."""
    name = exc.name or ""
    return bool(name) and (module == name or module.startswith(name + "."))


def import_module(module: str) -> object:
    """Import the user's module; errors become AppLoadError."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if _is_missing(e, module):
            raise AppLoadError(f"could not import module {module!r}") from None
        raise AppLoadError(f"error while importing module {module!r}: {_one_line(e)}",
                           _user_traceback(e)) from None
    except (Exception, SystemExit) as e:  # noqa: BLE001 - any error in user code
        raise AppLoadError(f"error while importing module {module!r}: {_one_line(e)}",
                           _user_traceback(e)) from None


def resolve(spec: str) -> object:
    """The object named by "module:attr" (dotted attr allowed)."""
    module, attr = split_spec(spec)
    obj = import_module(module)
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppLoadError(f"module {module!r} has no attribute {attr!r}") from None
        except Exception as e:  # noqa: BLE001 - a property in user code raised
            raise AppLoadError(f"error while getting {spec!r}: {_one_line(e)}",
                               _user_traceback(e)) from None
    return obj


def import_object(spec: str, what: str) -> object:
    """The object a hook or plug-in spec names ("module:attr", dotted attr allowed).

    `what` names the setting in messages (e.g. "--post-fork"); every failure is an
    AppLoadError whose message is one line starting with it (the user's traceback, if
    their module raised, is kept apart in .traceback).
    """
    module, sep, attr = spec.partition(":")
    if not module or not sep or not attr:
        raise AppLoadError(f"{what}: expected module:attr, got {spec!r}")
    try:
        return resolve(spec)
    except AppLoadError as e:
        raise AppLoadError(f"{what}: {e.message}", e.traceback) from None


def import_callable(spec: str, what: str) -> Callable[..., object]:
    """import_object for hooks: the object must be callable."""
    obj = import_object(spec, what)
    if not callable(obj):
        raise AppLoadError(f"{what}: {spec!r} is not callable (got {type(obj).__name__})")
    return obj


def import_class(spec: str, what: str) -> type:
    """import_object for plug-in classes (worker classes): the object must be a class."""
    obj = import_object(spec, what)
    if not isinstance(obj, type):
        raise AppLoadError(f"{what}: {spec!r} is not a class (got {type(obj).__name__})")
    return obj


def _call_factory(factory: object, spec: str) -> object:
    if not callable(factory):
        raise AppLoadError(f"--factory: {spec!r} is not callable "
                           f"(got {type(factory).__name__})")
    try:
        inspect.signature(factory).bind()
    except TypeError as e:
        raise AppLoadError(f"--factory: {spec!r} must be callable without arguments ({e})") \
            from None
    except ValueError:
        pass
    try:
        app = factory()
    except Exception as e:  # noqa: BLE001 - user code
        raise AppLoadError(f"app factory {spec!r} raised {_one_line(e)}",
                           _user_traceback(e)) from None
    if inspect.iscoroutine(app):
        app.close()
        raise AppLoadError(f"--factory: {spec!r} is async; the factory must be a plain "
                           "function returning the app")
    return app


def _unwrap(obj: object) -> object:
    while isinstance(obj, functools.partial):
        obj = obj.func
    return obj


def _is_async(obj: object) -> bool:
    """async def function/method, partial of one, or an object whose __call__ is one."""
    target = _unwrap(obj)
    if inspect.iscoroutinefunction(target):
        return True
    if inspect.isclass(target) or inspect.isroutine(target):
        return False
    call = next(
        (k.__dict__["__call__"] for k in type(target).__mro__ if "__call__" in k.__dict__), None)
    return call is not None and inspect.iscoroutinefunction(_unwrap(call))


def _binds(sig: inspect.Signature, n: int) -> bool:
    try:
        sig.bind(*range(n))
    except TypeError:
        return False
    return True


def is_asgi2(app: object) -> bool:
    """A class whose constructor takes the scope alone: ASGI 2 (a "double callable").

    Only classes: a class is never a WSGI app taking one argument, while a plain function
    of one argument is more likely a factory given without --factory. A class taking
    (environ, start_response) stays WSGI (PEP 3333 allows class applications).
    """
    if not inspect.isclass(app) or hasattr(app, "__await__"):
        return False
    try:
        sig = inspect.signature(app)
    except (TypeError, ValueError):
        return False
    if not _binds(sig, 1):
        return False
    if not _binds(sig, 2):
        return True
    # The constructor also takes more (optional or **kw, e.g. a framework base class): it
    # is ASGI 2 when its instances are awaited with (receive, send), as asgiref treats it.
    call = app.__call__          # the class's own, or type.__call__ (not a coroutine)
    if not inspect.iscoroutinefunction(call):
        return False
    try:
        return _binds(inspect.signature(call), 3)     # (self, receive, send)
    except (TypeError, ValueError):
        return False


def detect_kind(app: object, spec: str = "app") -> AppKind:
    """ASGI 3 = async (scope, receive, send); WSGI = callable(environ, start_response)."""
    if not callable(app):
        raise AppLoadError(f"{spec!r} is not callable (got {type(app).__name__}): "
                           "not a WSGI or ASGI application")
    try:
        sig = inspect.signature(app)
    except (TypeError, ValueError):
        return "asgi" if _is_async(app) else "wsgi"
    if _is_async(app):
        if _binds(sig, 3):
            return "asgi"
        raise AppLoadError(f"{spec!r} is async but takes {sig}; ASGI 3 applications take "
                           "(scope, receive, send): not a WSGI or ASGI application")
    if _binds(sig, 2):
        return "wsgi"
    if _binds(sig, 3):
        return "asgi"  # a plain callable returning an awaitable
    hint = ""
    if _binds(sig, 0):
        hint = " (if it is an application factory, add --factory)"
    elif _binds(sig, 1):
        hint = (" (an ASGI 2 function taking the scope: wrap it with asgiref.compatibility."
                "guarantee_single_callable, or make it a class)")
    raise AppLoadError(f"{spec!r} takes {sig}: not a WSGI or ASGI application; WSGI apps "
                       "take (environ, start_response), ASGI 3 apps are "
                       f"async (scope, receive, send){hint}")


def load_app(cfg: Config) -> LoadedApp:
    """Import cfg.app (calling it if cfg.factory) with cfg.chdir or cwd first on sys.path."""
    put_on_path(cfg.chdir or os.getcwd())
    obj = resolve(cfg.app)
    if cfg.factory:
        obj = _call_factory(obj, cfg.app)
    if is_asgi2(obj):
        assert callable(obj)
        log.info("%s is an ASGI 2 application (a class taking the scope): serving it "
                 "through an ASGI 3 adapter", cfg.app)
        return LoadedApp(ASGI2Adapter(obj), "asgi", asgi2=True)
    return LoadedApp(obj, detect_kind(obj, cfg.app))



def load_hooks(cfg: Config) -> dict[str, Callable[..., object]]:
    """Import and check every configured server hook (hooks.HOOKS); AppLoadError (one
    line naming the flag) on the first bad one.

    Call it where the hooks run (the arbiter after chdir, a worker after fork): the
    same sys.path as the app. Gunicorn-style hooks from a .py config are already
    adapted to reclusterd's calls (hooks.adapt).
    """
    from reclusterd import hooks
    from reclusterd.config import hook_specs

    out: dict[str, Callable[..., object]] = {}
    for name, spec in hook_specs(cfg).items():
        flag = "--" + name.replace("_", "-")
        fn = import_callable(spec, flag)
        why = hooks.check_arity(fn, name, hooks.BY_NAME[name].args)
        if why:
            raise AppLoadError(f"{flag}: {spec}: {why}")
        out[name] = fn
    return out
