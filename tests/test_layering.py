"""The design's layering rules, checked on the source: the core never imports the web framework,
only ``onlearn/store/`` talks to SQLite or Redis, and the rest of the code uses the store through
its public modules alone."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WEB = {"fastapi", "starlette", "uvicorn"}
STORAGE = {"sqlite3", "redis"}
# What code outside the store may import of it: the opener and its scheme table, the ports, the
# capabilities, the contract checks (and their modules).
STORE_API = ("onlearn.store", "onlearn.store.base", "onlearn.store.capabilities")
STORE_API_PACKAGES = ("onlearn.store.checks",)
# Tests that must write what an earlier onlearn stored, in a backend's own format.
STORE_INTERNALS_ALLOWED = {"tests/core/test_no_code_from_store.py"}


def imported(path: Path) -> set[str]:
    """The top-level packages ``path`` imports, at any depth in the file (lazy imports too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def imported_modules(path: Path) -> set[str]:
    """The full names of the modules ``path`` imports, lazy imports too; ``from a import b``
    counts ``a.b`` when ``b`` is a module of this repository (``from onlearn.store import
    sqlite``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            for alias in node.names:
                inner = ROOT.joinpath(*node.module.split("."), alias.name)
                if inner.with_suffix(".py").is_file() or (inner / "__init__.py").is_file():
                    names.add(f"{node.module}.{alias.name}")
    return names


def store_internals(path: Path) -> set[str]:
    """The modules of ``onlearn.store`` that ``path`` imports beyond its public ones."""
    return {
        name
        for name in imported_modules(path)
        if name.startswith("onlearn.store.")
        and name not in STORE_API
        and not any(name == p or name.startswith(p + ".") for p in STORE_API_PACKAGES)
    }


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", sources("onlearn"), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_core_never_imports_the_web_framework(path):
    assert not imported(path) & WEB, f"{path}: the core must not import {imported(path) & WEB}"


@pytest.mark.parametrize(
    "path", sources("onlearn") + sources("serving"), ids=lambda p: str(p.relative_to(ROOT))
)
def test_only_the_store_package_talks_to_sqlite_or_redis(path):
    if (ROOT / "onlearn" / "store") in path.parents:
        return
    assert not imported(path) & STORAGE, f"{path} imports {imported(path) & STORAGE}"


def test_the_checks_see_the_imports_they_forbid():
    # Guards the parser against checking nothing: these modules do import what is forbidden.
    assert "sqlite3" in imported(ROOT / "onlearn" / "store" / "sqlite" / "connection.py")
    assert "redis" in imported(ROOT / "onlearn" / "store" / "redis" / "connection.py")
    assert "fastapi" in imported(ROOT / "serving" / "app.py")


BACKGROUND = {"onlearn.worker", "onlearn.monitor", "onlearn.refit", "onlearn.promotion"}


@pytest.mark.parametrize("path", sources("serving"), ids=lambda p: str(p.relative_to(ROOT)))
def test_serving_runs_no_background_process_itself(path):
    # What runs beside the server (threads or processes) is decided in onlearn/topology.py and
    # handed to the app; the HTTP layer reaches jobs through onlearn.jobs only.
    assert not imported_modules(path) & BACKGROUND, (path, imported_modules(path) & BACKGROUND)


def test_the_background_check_sees_imports():
    assert "onlearn.worker" in imported_modules(ROOT / "onlearn" / "topology.py")
    assert "onlearn.jobs" in imported_modules(ROOT / "serving" / "routes" / "versions.py")
