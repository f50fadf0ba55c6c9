"""The import direction DESIGN.md promises, checked on the source with ast.

Only run-time imports count: imports under `if TYPE_CHECKING:` are for annotations.
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


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    out: list[ast.AST] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        out.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return out


def imports_of(path: Path) -> set[str]:
    return imports_in(path.read_text(), module_name(path), path.name == "__init__.py")


def imports_in(source: str, name: str, is_package: bool = False) -> set[str]:
    """Fully qualified names imported by a module (relative imports resolved)."""
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base = ".".join(base_parts[: len(base_parts) - node.level + 1])
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            found.add(mod)
            # `from reclusterd import arbiter` imports a submodule
            found.update(f"{mod}.{a.name}" for a in node.names if mod.startswith("reclusterd"))
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
        ok = top in STDLIB or top in ("httptools", "h11") or _hits({imp}, "reclusterd.http")
        ok = ok or imp == "reclusterd"  # `from reclusterd import http` style is resolved above
        assert ok, f"{mod} imports {imp}: http/ may use only the stdlib, httptools, h11"
        assert top not in ("socket", "selectors", "asyncio", "multiprocessing", "subprocess"), (
            f"{mod} imports {imp}: http/ never touches a socket or a process")


PROTOCOL_MODULES = sorted(
    m for m in MODULES
    if m.startswith(("reclusterd.wsgi", "reclusterd.asgi"))
    or m in ("reclusterd.lifespan", "reclusterd.websocket")
) or ["reclusterd.wsgi", "reclusterd.asgi"]


@pytest.mark.parametrize("mod", PROTOCOL_MODULES)
def test_protocols_do_not_import_workers_or_arbiter(mod: str) -> None:
    if mod not in MODULES:
        pytest.skip(f"{mod} not written yet")
    for target in ("reclusterd.workers", "reclusterd.arbiter", "reclusterd.cli"):
        assert not _hits(MODULES[mod], target), f"{mod} imports {target}"


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
    Gunicorn config reader, its table, the hook table and the --log-config reader."""
    bottom = ("reclusterd.sockets", "reclusterd.systemd", "reclusterd.tls",
              "reclusterd.hooks", "reclusterd.gunicorn_conf", "reclusterd.gunicorn_map",
              "reclusterd.appenv", "reclusterd.logconfig")
    for mod in ("reclusterd.settings", *bottom):
        for imp in MODULES[mod]:
            if imp.startswith("reclusterd") and imp != "reclusterd":
                assert any(_hits({imp}, b) for b in bottom), f"{mod} imports {imp}"
    allowed = {"reclusterd", "reclusterd.__version__", "reclusterd.settings",
               "reclusterd.gunicorn_conf", "reclusterd.appenv", "reclusterd.logconfig"}
    for imp in MODULES["reclusterd.config"]:
        if imp.startswith("reclusterd"):
            assert imp in allowed or imp.startswith("reclusterd.settings."), imp


def test_resolver() -> None:
    src = ("from . import events\nfrom .rules import x\nfrom .. import arbiter\n"
           "import os.path\nfrom typing import TYPE_CHECKING\n"
           "if TYPE_CHECKING:\n    from reclusterd.config import Config\n")
    got = imports_in(src, "reclusterd.http.parser")
    assert {"reclusterd.http", "reclusterd.http.events", "reclusterd.http.rules",
            "reclusterd.arbiter", "os.path"} <= got
    assert "reclusterd.config" not in got
    assert _hits(got, "reclusterd.arbiter")
