"""Write test apps from their templates in tests/apps/ into a test's own directory, for the
tests that edit an app on disk (reload, HUP with a new version, an import that fails)."""

from __future__ import annotations

from pathlib import Path

APPS = Path(__file__).resolve().parent.parent / "apps"
_VERSION_LINE = 'VERSION = "v1"\n'
_EXTRA_LINE = "# EXTRA: write_app puts import-time code here (e.g. a raise)\n"


def versioned_source(version: str = "v1", extra: str = "", template: str = "versioned") -> str:
    """The source of tests/apps/`template`.py (an app answering 'VERSION PID') with another
    VERSION; `extra` is module-level code run at import (e.g. `raise RuntimeError(...)`)."""
    text = (APPS / f"{template}.py").read_text()
    text = text.replace(_VERSION_LINE, f"VERSION = {version!r}\n", 1)
    return text.replace(_EXTRA_LINE, extra + "\n", 1)


def write_app(directory: Path, version: str = "v1", extra: str = "",
              name: str = "app", template: str = "versioned") -> Path:
    """versioned_source() as `directory/name.py` (serve `name:app`): 'VERSION PID' and
    /slow?S, /hang, /hog?MB (see tests/apps/versioned.py); or `template` (asgi_versioned)."""
    path = directory / f"{name}.py"
    path.write_text(versioned_source(version, extra, template))
    return path


# The static apps, as `python -m reclusterd APP` names them (PYTHONPATH has the repo root).
ASGI_ROUTES = "tests.apps.asgi_routes:app"
OPS_ECHO = "tests.apps.ops_echo:app"
