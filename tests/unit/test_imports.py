"""The import direction DESIGN.md promises, checked on the source with ast.

Every import counts, type-only ones (under `if TYPE_CHECKING:`) included: a cycle
through annotations is still a cycle for a reader, and a protocol layer that names
the Worker in a signature still depends on it.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "reclusterd"
STDLIB = set(sys.stdlib_module_names)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)




def imports_of(path: Path) -> set[str]:
    return imports_in(path.read_text(), module_name(path), path.name == "__init__.py")


def _is_module(name: str) -> bool:
    """Is `name` (dotted) a module or package of reclusterd on disk?"""
    path = PKG.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports_in(source: str, name: str, is_package: bool = False) -> set[str]:
    """Fully qualified names imported by a module (relative imports resolved).

    `from P import a` counts as an import of P.a when a is a submodule of reclusterd,
    and as an import of P itself when a is a name P defines: then the importing module
    needs P's __init__ to have run to its end, a real edge (a cycle if P imports it)."""
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base = ".".join(base_parts[: len(base_parts) - node.level + 1])
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            if not mod.startswith("reclusterd"):
                found.add(mod)
                continue
            subs = {f"{mod}.{a.name}" for a in node.names}
            found.update(x for x in subs if _is_module(x))
            if not all(_is_module(x) for x in subs):
                found.add(mod)
    return found


MODULES = {module_name(p): imports_of(p) for p in sorted(PKG.rglob("*.py"))}


def _hits(imports: set[str], target: str) -> bool:
    return any(i == target or i.startswith(target + ".") for i in imports)


def test_found_modules() -> None:
    assert "reclusterd.config" in MODULES and "reclusterd.cli" in MODULES


@pytest.mark.parametrize("mod", sorted(m for m in MODULES if m.startswith("reclusterd.http")))
def test_http_is_sans_io(mod: str) -> None:
    for imp in MODULES[mod]:
        top = imp.split(".")[0]
        ok = top in STDLIB or top in ("httptools", "h11", "h2", "hpack", "hyperframe") \
            or _hits({imp}, "reclusterd.http")
        ok = ok or imp == "reclusterd"  # `from reclusterd import http` style is resolved above
        assert ok, f"{mod} imports {imp}: http/ may use only the stdlib, httptools, h11, h2"
        assert top not in ("socket", "selectors", "asyncio", "multiprocessing", "subprocess"), (
            f"{mod} imports {imp}: http/ never touches a socket or a process")


PROTOCOL_MODULES = sorted(m for m in MODULES if m.startswith(("reclusterd.wsgi",
                                                              "reclusterd.asgi")))
# What the serving half may use besides the stdlib and its libraries (DESIGN.md "Layout").
PROTOCOL_ALLOWED = ("reclusterd.http", "reclusterd.meter", "reclusterd.logging",
                    "reclusterd.config", "reclusterd.settings", "reclusterd.__version__")


def test_protocol_packages_exist() -> None:
    assert {"reclusterd.wsgi.handler", "reclusterd.asgi.protocol"} <= set(PROTOCOL_MODULES)
    for old in ("reclusterd.wsgi_conn", "reclusterd.asgi_cycle", "reclusterd.websocket",
                "reclusterd.lifespan", "reclusterd.proxy"):
        assert old not in MODULES, f"{old} is gone: see DESIGN.md's layout"


@pytest.mark.parametrize("mod", PROTOCOL_MODULES)
def test_protocols_do_not_import_workers_or_arbiter(mod: str) -> None:
    for target in ("reclusterd.workers", "reclusterd.arbiter", "reclusterd.cli",
                   "reclusterd.sockets"):
        assert not _hits(MODULES[mod], target), f"{mod} imports {target}"
    own = "reclusterd.wsgi" if mod.startswith("reclusterd.wsgi") else "reclusterd.asgi"
    for imp in MODULES[mod]:
        if imp.startswith("reclusterd.") and not _hits({imp}, own):
            assert imp.startswith(PROTOCOL_ALLOWED), f"{mod} imports {imp}"


def test_meter_is_a_leaf() -> None:
    assert not any(i.startswith("reclusterd") for i in MODULES["reclusterd.meter"])


def _cycle_from(start: str, graph: dict[str, set[str]]) -> list[str] | None:
    """A path start -> ... -> start through reclusterd modules, if there is one."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        mod, path = stack.pop()
        for nxt in graph.get(mod, ()):
            if nxt == start:
                return [*path, start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None


def _graph(modules: dict[str, set[str]]) -> dict[str, set[str]]:
    """Module -> the reclusterd modules it imports. An edge from a submodule to its own
    package (a name taken from the package's __init__) is kept: it is a cycle exactly when
    that __init__ imports the submodule, directly or not."""
    return {mod: {i for i in imps if i in modules and i != mod}
            for mod, imps in modules.items()}


@pytest.mark.parametrize("mod", sorted(MODULES))
def test_no_import_cycles(mod: str) -> None:
    cycle = _cycle_from(mod, _graph(MODULES))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


# DESIGN.md: "arbiter/ uses workers/boot, sockets, systemd, backoff, signals, config"
# (plus control, the worker channel). Also allowed: what a master process needs besides
# (logging and --log-config, the app loader and hooks for --preload/--check-config, the
# app environment, TLS for the status server, the meter's bucket names for /metrics).
ARBITER_ALLOWED = ("reclusterd.arbiter", "reclusterd.workers.boot", "reclusterd.sockets",
                   "reclusterd.systemd", "reclusterd.backoff", "reclusterd.signals",
                   "reclusterd.config", "reclusterd.control", "reclusterd.logging",
                   "reclusterd.logconfig", "reclusterd.apploader", "reclusterd.hooks",
                   "reclusterd.appenv", "reclusterd.tls", "reclusterd.meter",
                   "reclusterd.settings")


@pytest.mark.parametrize("mod", sorted(m for m in MODULES if _hits({m}, "reclusterd.arbiter")))
def test_arbiter_imports_only_its_allowed_set(mod: str) -> None:
    for imp in MODULES[mod]:
        if imp.startswith("reclusterd.") and imp != "reclusterd.__version__":
            assert imp.startswith(ARBITER_ALLOWED), f"{mod} imports {imp}"


# DESIGN.md: "workers/ use those [http/, wsgi/, asgi/, meter] plus control". Also allowed:
# what a worker process needs besides (logging, its config and listeners' types, TLS, the
# app loader, hooks, the one child signal reset, the worker-class registry).
WORKERS_ALLOWED = ("reclusterd.workers", "reclusterd.http", "reclusterd.wsgi",
                   "reclusterd.asgi", "reclusterd.meter", "reclusterd.control",
                   "reclusterd.logging", "reclusterd.config", "reclusterd.sockets",
                   "reclusterd.tls", "reclusterd.apploader", "reclusterd.hooks",
                   "reclusterd.signals", "reclusterd.workerclasses",
                   "reclusterd.settings")


@pytest.mark.parametrize("mod", sorted(m for m in MODULES if _hits({m}, "reclusterd.workers")))
def test_workers_import_only_their_allowed_set(mod: str) -> None:
    for target in ("reclusterd.arbiter", "reclusterd.cli"):
        assert not _hits(MODULES[mod], target), f"{mod} imports {target}"
    for imp in MODULES[mod]:
        if imp.startswith("reclusterd.") and imp != "reclusterd.__version__":
            assert imp.startswith(WORKERS_ALLOWED), f"{mod} imports {imp}"


def test_only_cli_imports_arbiter() -> None:
    for mod, imps in MODULES.items():
        if mod == "reclusterd.cli" or _hits({mod}, "reclusterd.arbiter"):
            continue
        assert not _hits(imps, "reclusterd.arbiter"), f"{mod} imports reclusterd.arbiter"


def test_only_main_imports_cli() -> None:
    for mod, imps in MODULES.items():
        if mod in ("reclusterd.__main__", "reclusterd.cli"):
            continue
        assert not _hits(imps, "reclusterd.cli"), f"{mod} imports reclusterd.cli"


def test_config_layer_is_self_contained() -> None:
    """settings/config sit at the bottom: they import no other part of reclusterd, except
    the bind-address grammar in sockets (one parser for validation and binding), which
    itself imports only the stdlib-only systemd and tls modules, and the stdlib-only
    Gunicorn config reader, its table, the hook table, the --log-config reader and the
    worker-class registry."""
    bottom = ("reclusterd.sockets", "reclusterd.systemd", "reclusterd.tls",
              "reclusterd.workerclasses",
              "reclusterd.hooks", "reclusterd.gunicorn_conf", "reclusterd.gunicorn_map",
              "reclusterd.appenv", "reclusterd.logconfig")
    own = sorted(m for m in MODULES if _hits({m}, "reclusterd.settings"))  # the package
    for mod in (*own, *bottom):
        for imp in MODULES[mod]:
            if imp.startswith("reclusterd") and imp != "reclusterd":
                ok = any(_hits({imp}, b) for b in bottom) or (
                    mod in own and _hits({imp}, "reclusterd.settings"))
                assert ok, f"{mod} imports {imp}"
    allowed = {"reclusterd", "reclusterd.__version__", "reclusterd.settings",
               "reclusterd.gunicorn_conf", "reclusterd.gunicorn_map",
               "reclusterd.appenv", "reclusterd.logconfig"}
    for mod in (m for m in MODULES if _hits({m}, "reclusterd.config")):   # the package
        for imp in MODULES[mod]:
            if imp.startswith("reclusterd"):
                assert imp in allowed or imp.startswith(("reclusterd.settings.",
                                                         "reclusterd.config.")), imp


def test_resolver() -> None:
    src = ("from . import events\nfrom .rules import x\nfrom .. import arbiter\n"
           "import os.path\nfrom typing import TYPE_CHECKING\n"
           "if TYPE_CHECKING:\n    from reclusterd.config import Config\n")
    got = imports_in(src, "reclusterd.http.parser")
    assert {"reclusterd.http.events", "reclusterd.http.rules",
            "reclusterd.arbiter", "os.path", "reclusterd.config"} <= got
    assert "reclusterd.http" not in got, "`from . import events` needs only the submodule"
    assert _hits(got, "reclusterd.arbiter")


def test_a_name_from_the_own_package_is_a_cycle_when_the_package_imports_the_module() -> None:
    """The blind spot of a checker that drops submodule -> package edges: `from
    reclusterd.http import X` inside http/response.py, while http/__init__ imports
    response, is a cycle (the __init__ has not finished when response runs)."""
    got = imports_in("from reclusterd.http import Request\n", "reclusterd.http.response")
    assert "reclusterd.http" in got
    modules = {"reclusterd.http": {"reclusterd.http.response"},
               "reclusterd.http.response": got}
    assert _cycle_from("reclusterd.http.response", _graph(modules)) == [
        "reclusterd.http.response", "reclusterd.http", "reclusterd.http.response"]
    modules["reclusterd.http"] = set()      # the package does not import it: no cycle
    assert _cycle_from("reclusterd.http.response", _graph(modules)) is None


def test_cycle_finder() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycle_from("a", graph) == ["a", "b", "c", "a"]
    assert _cycle_from("d", graph) is None
