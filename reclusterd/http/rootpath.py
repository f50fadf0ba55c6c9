"""--root-path: the prefix an app is mounted at, and the request paths under it.

One rule for WSGI and ASGI. A request path under the prefix (`/api` or `/api/...`, on a
segment boundary: `/apiary` is not under `/api`) keeps the prefix out of PATH_INFO
(SCRIPT_NAME is the prefix, PEP 3333) and in ASGI's `path` (the ASGI spec: `path` is the
full path, `root_path` the part of it the app is mounted at). A path not under it is
taken as one a proxy already stripped (Uvicorn's reading): PATH_INFO is the path as
received, and ASGI's `path` gets the prefix in front. Gunicorn answers such a request
with a 500 (its "ConfigurationProblem"); serving it is the more useful of the two.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["asgi_path", "mount_prefix", "under_root"]


def under_root(path: str, root: str) -> bool:
    """Is the (decoded) request path `path` under the mount prefix `root` ("" = none)?"""
    if not path.startswith(root):
        return False
    return len(path) == len(root) or path[len(root)] == "/"


def asgi_path(path: str, root: str) -> str:
    """ASGI `path` for a request path: the full path, the prefix included (see above)."""
    return path if not root or under_root(path, root) else root + path


def mount_prefix(setting: str, environ: Mapping[str, str]) -> str:
    """--root-path, else the SCRIPT_NAME environment variable (as Gunicorn reads it),
    without a trailing slash."""
    return (setting or environ.get("SCRIPT_NAME", "")).rstrip("/")
