"""apploader: import errors, attribute lookup, factories, WSGI/ASGI detection."""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reclusterd.apploader import (
    AppLoadError,
    ASGI2Adapter,
    detect_kind,
    import_callable,
    import_class,
    import_object,
    is_asgi2,
    load_app,
    put_on_path,
    split_spec,
)
from reclusterd.config import Config, make


@pytest.fixture
def appdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A temp dir as cwd; modules written there are forgotten afterwards."""
    monkeypatch.chdir(tmp_path)
    before = set(sys.modules)
    saved_path = list(sys.path)
    yield tmp_path
    for name in set(sys.modules) - before:
        del sys.modules[name]
    sys.path[:] = saved_path


def write(d: Path, name: str, src: str) -> None:
    path = d / (name.replace(".", "/") + ".py")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(src))


WSGI = """
def app(environ, start_response):
    start_response("200 OK", [])
    return [b"ok"]
"""

ASGI = """
async def app(scope, receive, send):
    pass
"""


def cfg(app: str, **kw: Any) -> Config:
    return make(app=app, **kw)


def test_wsgi_function(appdir: Path) -> None:
    write(appdir, "wmod1", WSGI)
    loaded = load_app(cfg("wmod1:app"))
    assert loaded.kind == "wsgi"
    assert callable(loaded.app)


def test_module_alone_means_app(appdir: Path) -> None:
    write(appdir, "wmod2", WSGI)
    assert load_app(cfg("wmod2")).kind == "wsgi"


def test_asgi_function(appdir: Path) -> None:
    write(appdir, "amod1", ASGI)
    assert load_app(cfg("amod1:app")).kind == "asgi"


def test_dotted_attr_and_package(appdir: Path) -> None:
    write(appdir, "pkg.__init__", "")
    write(appdir, "pkg.sub", """
        class Holder:
            class Inner:
                async def __call__(self, scope, receive, send):
                    pass
        holder = Holder()
        holder.app = Holder.Inner()
    """)
    assert load_app(cfg("pkg.sub:holder.app")).kind == "asgi"


def test_missing_module_one_line(appdir: Path) -> None:
    with pytest.raises(AppLoadError) as ei:
        load_app(cfg("nosuchmodule:app"))
    assert ei.value.message == "could not import module 'nosuchmodule'"
    assert ei.value.traceback is None


def test_missing_submodule_one_line(appdir: Path) -> None:
    write(appdir, "pkg2.__init__", "")
    with pytest.raises(AppLoadError) as ei:
        load_app(cfg("pkg2.nosuch:app"))
    assert ei.value.message == "could not import module 'pkg2.nosuch'"
    assert ei.value.traceback is None


def test_missing_attr(appdir: Path) -> None:
    write(appdir, "wmod3", WSGI)
    with pytest.raises(AppLoadError) as ei:
        load_app(cfg("wmod3:nosuchattr"))
    assert ei.value.message == "module 'wmod3' has no attribute 'nosuchattr'"
    assert ei.value.traceback is None


def test_import_error_inside_user_module_keeps_traceback(appdir: Path) -> None:
    write(appdir, "broken1", "import not_installed_lib_xyz\napp = None\n")
    with pytest.raises(AppLoadError) as ei:
        load_app(cfg("broken1:app"))
    assert "broken1" in ei.value.message
    assert "not_installed_lib_xyz" in ei.value.message
    tb = ei.value.traceback or ""
    assert "Traceback" in tb and "broken1.py" in tb
    assert "importlib" not in tb and "apploader" not in tb


def test_exception_in_user_module(appdir: Path) -> None:
    write(appdir, "broken2", "def f():\n    raise RuntimeError('boom')\nf()\n")
    with pytest.raises(AppLoadError) as ei:
        load_app(cfg("broken2:app"))
    assert "RuntimeError: boom" in ei.value.message
    assert "\n" not in ei.value.message
    assert "line 2, in f" in (ei.value.traceback or "")
    assert "RuntimeError: boom" in ei.value.text()


def test_syntax_error_in_user_module(appdir: Path) -> None:
    write(appdir, "broken3", "def app(:\n")
    with pytest.raises(AppLoadError) as ei:
        load_app(cfg("broken3:app"))
    assert "SyntaxError" in ei.value.message
    assert ei.value.traceback


def test_sys_exit_in_user_module(appdir: Path) -> None:
    write(appdir, "broken4", "import sys\nsys.exit(3)\n")
    with pytest.raises(AppLoadError):
        load_app(cfg("broken4:app"))


def test_not_callable(appdir: Path) -> None:
    write(appdir, "nc", "app = 42\n")
    with pytest.raises(AppLoadError, match="not a WSGI or ASGI application"):
        load_app(cfg("nc:app"))


def test_wrong_signature_suggests_factory(appdir: Path) -> None:
    write(appdir, "fac0", "def create_app():\n    pass\n")
    with pytest.raises(AppLoadError, match="not a WSGI or ASGI application.*--factory"):
        load_app(cfg("fac0:create_app"))


def test_factory(appdir: Path) -> None:
    write(appdir, "fac1", ASGI + "\ndef create_app():\n    return app\n")
    assert load_app(cfg("fac1:create_app", factory=True)).kind == "asgi"


def test_factory_with_required_args(appdir: Path) -> None:
    write(appdir, "fac2", "def create_app(settings):\n    pass\n")
    with pytest.raises(AppLoadError, match="must be callable without arguments") as ei:
        load_app(cfg("fac2:create_app", factory=True))
    assert ei.value.traceback is None


def test_factory_raises(appdir: Path) -> None:
    write(appdir, "fac3", "def create_app():\n    raise ValueError('no db')\n")
    with pytest.raises(AppLoadError, match="no db") as ei:
        load_app(cfg("fac3:create_app", factory=True))
    assert "fac3.py" in (ei.value.traceback or "")


def test_async_factory_rejected(appdir: Path) -> None:
    write(appdir, "fac4", "async def create_app():\n    pass\n")
    with pytest.raises(AppLoadError, match="factory must be a plain function"):
        load_app(cfg("fac4:create_app", factory=True))


def test_chdir_first_on_path(tmp_path: Path, appdir: Path) -> None:
    other = tmp_path / "elsewhere"
    other.mkdir()
    write(other, "chmod1", WSGI)
    assert load_app(cfg("chmod1:app", chdir=str(other))).kind == "wsgi"
    assert sys.path[0] == str(other)


def test_cwd_first_on_path(appdir: Path) -> None:
    write(appdir, "cwdmod", WSGI)
    load_app(cfg("cwdmod:app"))
    assert sys.path[0] == str(appdir)


def test_split_spec() -> None:
    assert split_spec("a.b:c.d") == ("a.b", "c.d")
    assert split_spec("a") == ("a", "app")
    with pytest.raises(AppLoadError):
        split_spec("a:")


# --- detection on in-memory objects -------------------------------------------------

def wsgi_fn(environ: Any, start_response: Any) -> list[bytes]:
    return []


async def asgi_fn(scope: Any, receive: Any, send: Any) -> None:
    pass


class AsyncCallable:
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        pass


class SubAsync(AsyncCallable):
    pass


class SyncCallable:
    def __call__(self, environ: Any, start_response: Any) -> list[bytes]:
        return []


class WsgiClass:
    """PEP 3333 allows a class: calling it with (environ, start_response) gives the iterable."""

    def __init__(self, environ: Any, start_response: Any) -> None:
        pass

    def __iter__(self) -> Iterator[bytes]:
        return iter([])


class Methods:
    async def asgi(self, scope: Any, receive: Any, send: Any) -> None:
        pass

    def wsgi(self, environ: Any, start_response: Any) -> list[bytes]:
        return []


async def asgi_with_extra(config: Any, scope: Any, receive: Any, send: Any) -> None:
    pass


def sync_returning_awaitable(scope: Any, receive: Any, send: Any) -> Any:
    return asgi_fn(scope, receive, send)


@pytest.mark.parametrize(("obj", "kind"), [
    (wsgi_fn, "wsgi"),
    (asgi_fn, "asgi"),
    (AsyncCallable(), "asgi"),
    (SubAsync(), "asgi"),
    (SyncCallable(), "wsgi"),
    (WsgiClass, "wsgi"),
    (Methods().asgi, "asgi"),
    (Methods().wsgi, "wsgi"),
    (functools.partial(asgi_with_extra, None), "asgi"),
    (functools.partial(AsyncCallable()), "asgi"),
    (functools.partial(wsgi_fn), "wsgi"),
    (sync_returning_awaitable, "asgi"),
])
def test_detect_kind(obj: object, kind: str) -> None:
    assert detect_kind(obj) == kind


@pytest.mark.parametrize("obj", [
    42, "app", AsyncCallable, lambda: None, lambda a: None,
    functools.partial(asgi_fn, None, None, None),
])
def test_detect_rejects(obj: object) -> None:
    with pytest.raises(AppLoadError, match="not a WSGI or ASGI application"):
        detect_kind(obj)


def test_real_frameworks() -> None:
    flask = pytest.importorskip("flask")
    starlette_apps = pytest.importorskip("starlette.applications")
    fastapi = pytest.importorskip("fastapi")
    assert detect_kind(flask.Flask("x")) == "wsgi"
    assert detect_kind(starlette_apps.Starlette()) == "asgi"
    assert detect_kind(fastapi.FastAPI()) == "asgi"
    assert detect_kind(flask.Flask("y").wsgi_app) == "wsgi"


# ---------------------------------------------------------------- hooks and plug-in classes

HOOKS = """
def post_fork(info):
    pass

class Plugin:
    pass

NOT_CALLABLE = 3
"""


@pytest.fixture
def hookdir(appdir: Path) -> Path:
    """appdir on sys.path, as the worker puts the app directory before importing hooks."""
    put_on_path(str(appdir))
    return appdir


def test_import_object_finds_hooks_and_classes(hookdir: Path) -> None:
    write(hookdir, "hooks1", HOOKS)
    assert callable(import_callable("hooks1:post_fork", "--post-fork"))
    assert import_class("hooks1:Plugin", "--worker-class").__name__ == "Plugin"
    assert import_object("hooks1:Plugin.__name__", "--x") == "Plugin"


@pytest.mark.parametrize(("spec", "message"), [
    ("hooks2", "--post-fork: expected module:attr, got 'hooks2'"),
    ("hooks2:", "--post-fork: expected module:attr, got 'hooks2:'"),
    ("nosuchhooks:pf", "--post-fork: could not import module 'nosuchhooks'"),
    ("hooks2:nope", "--post-fork: module 'hooks2' has no attribute 'nope'"),
    ("hooks2:NOT_CALLABLE", "--post-fork: 'hooks2:NOT_CALLABLE' is not callable (got int)"),
])
def test_import_callable_errors_are_one_line(hookdir: Path, spec: str, message: str) -> None:
    write(hookdir, "hooks2", HOOKS)
    with pytest.raises(AppLoadError) as ei:
        import_callable(spec, "--post-fork")
    assert str(ei.value) == message
    assert ei.value.traceback is None


def test_import_class_refuses_a_function(hookdir: Path) -> None:
    write(hookdir, "hooks3", HOOKS)
    with pytest.raises(AppLoadError, match=r"^--worker-class: 'hooks3:post_fork' is not a "
                       r"class \(got function\)$"):
        import_class("hooks3:post_fork", "--worker-class")


def test_import_object_keeps_the_users_traceback(hookdir: Path) -> None:
    write(hookdir, "hooks4", "raise ValueError('bad hook module')\n")
    with pytest.raises(AppLoadError) as ei:
        import_object("hooks4:pf", "--pre-request")
    assert str(ei.value) == ("--pre-request: error while importing module 'hooks4': "
                             "ValueError: bad hook module")
    assert ei.value.traceback is not None and "hooks4.py" in ei.value.traceback


# ---------------------------------------------------------------- ASGI 2 (double callable)

ASGI2 = """
class App:
    def __init__(self, scope):
        self.scope = scope

    async def __call__(self, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": self.scope["path"].encode()})
"""


class Asgi2:
    def __init__(self, scope: Any) -> None:
        self.scope = scope

    async def __call__(self, receive: Any, send: Any) -> None:
        await send({"type": "seen", "scope": self.scope, "got": await receive()})


class NotAsgi2WithAwait:
    def __init__(self, scope: Any) -> None:
        pass

    def __await__(self) -> Iterator[None]:
        yield None


class Asgi2KwInit:
    """A constructor that also takes options (a framework base class): still ASGI 2."""

    def __init__(self, scope: Any, extra: Any = None, **kw: Any) -> None:
        self.scope = scope

    async def __call__(self, receive: Any, send: Any) -> None:
        pass


def test_is_asgi2() -> None:
    assert is_asgi2(Asgi2) and is_asgi2(Asgi2KwInit)
    for obj in (Asgi2({}), WsgiClass, AsyncCallable, asgi_fn, wsgi_fn, NotAsgi2WithAwait, 3):
        assert not is_asgi2(obj), obj


def test_asgi2_class_is_loaded_wrapped_and_logged(appdir: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    write(appdir, "asgi2mod", ASGI2)
    with caplog.at_level(logging.INFO, logger="reclusterd.error"):
        loaded = load_app(cfg("asgi2mod:App"))
    assert loaded.kind == "asgi" and loaded.asgi2
    assert isinstance(loaded.app, ASGI2Adapter)
    assert detect_kind(loaded.app) == "asgi"
    assert "asgi2mod:App is an ASGI 2 application" in caplog.text
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(loaded.app({"type": "http", "path": "/p"}, receive, send))  # type: ignore[operator]
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[1]["body"] == b"/p"


def test_asgi2_adapter_makes_one_instance_per_scope() -> None:
    got: list[dict[str, Any]] = []

    async def receive() -> str:
        return "event"

    async def send(message: dict[str, Any]) -> None:
        got.append(message)

    adapter = ASGI2Adapter(Asgi2)
    asyncio.run(adapter({"n": 1}, receive, send))
    asyncio.run(adapter({"n": 2}, receive, send))
    assert [(m["scope"]["n"], m["got"]) for m in got] == [(1, "event"), (2, "event")]


def test_asgi2_function_is_refused_with_how_to_wrap() -> None:
    def app(scope: Any) -> Any:
        return asgi_fn

    with pytest.raises(AppLoadError, match="guarantee_single_callable"):
        detect_kind(app)
