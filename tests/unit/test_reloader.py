"""--reload's file patterns: which changes start a reload (pure, no watcher)."""

from __future__ import annotations

import pytest

from reclusterd import config
from reclusterd.arbiter.reloader import Patterns, describe, patterns_for

ROOT = "/srv/app"


def wanted(rel: str, include: tuple[str, ...] = (), exclude: tuple[str, ...] = ()) -> bool:
    return Patterns.build([ROOT], include, exclude).wanted(f"{ROOT}/{rel}")


@pytest.mark.parametrize("rel", ["app.py", "pkg/views.py", "a/b/c/models.py"])
def test_python_files_are_watched(rel: str) -> None:
    assert wanted(rel)


@pytest.mark.parametrize("rel", [
    ".venv/lib/python3.11/site-packages/x.py", "venv/x.py", "pkg/__pycache__/views.py",
    ".git/hooks/pre-commit.py", "node_modules/x/y.py", "app.pyc", "notes.txt",
    ".app.py.swp", "app.py~", ".#app.py", "#app.py#", "4913", "templates/index.html",
])
def test_defaults_ignore_tools_editors_and_other_files(rel: str) -> None:
    assert not wanted(rel)


def test_given_patterns_add_to_the_defaults() -> None:
    assert wanted("templates/index.html", include=("*.html",))
    assert wanted("app.py", include=("*.html",))
    assert not wanted("migrations/0001.py", exclude=("migrations",))
    assert not wanted("pkg/generated/x.py", exclude=("pkg/generated/*",))
    assert wanted("other/generated/x.py", exclude=("pkg/generated/*",))
    assert not wanted(".venv/x.py", exclude=("migrations",))


def test_a_default_named_on_the_other_list_is_dropped() -> None:
    assert not wanted("app.py", exclude=("*.py",))
    assert wanted("app.py", include=("*.html",), exclude=("*.py",)) is False
    assert wanted("venv/tool.py", include=("venv",))


def test_the_deepest_watched_directory_names_the_path() -> None:
    p = Patterns.build(["/srv", "/srv/app"], (), ())
    assert p.relative("/srv/app/x.py") == "x.py"
    assert p.relative("/srv/other/y.py") == "other/y.py"
    assert p.relative("/elsewhere/z.py") == "/elsewhere/z.py"
    assert p.relative("/srvx/z.py") == "/srvx/z.py"


def test_describe_names_a_few_files() -> None:
    p = Patterns.build([ROOT], (), ())
    paths = [f"{ROOT}/m{i}.py" for i in range(5)]
    assert describe(paths[:1], p) == "m0.py"
    assert describe(paths, p) == "m0.py, m1.py, m2.py and 2 more"


def test_watched_directory_defaults_to_chdir_then_cwd(tmp_path: object) -> None:
    cfg = config.make(app="x:y", workers=1, chdir="/srv/app")
    assert patterns_for(cfg).dirs == ("/srv/app",)
    cfg = config.make(app="x:y", workers=1, chdir="/srv/app", reload_dir=("/data", "/lib"))
    assert patterns_for(cfg).dirs == ("/data", "/lib")


def test_config_checks_reload(tmp_path: object) -> None:
    with pytest.raises(config.ConfigError, match="--reload: cannot be used with --preload"):
        config.load(["x:y", "--reload", "--preload"], {})
    with pytest.raises(config.ConfigError, match="--reload-dir: not a directory"):
        config.load(["x:y", "--reload", "--reload-dir", "/no/such/dir"], {})
    cfg = config.load(["x:y", "--reload", "--reload-dir", ".", "--reload-include", "*.html",
                       "--reload-include", "*.css"], {})
    assert cfg.reload and cfg.reload_dir[0].startswith("/")
    assert cfg.reload_include == ("*.html", "*.css")
