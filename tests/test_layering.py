"""The design's layering rules, checked on the source: the core never imports the web framework,
only ``onlearn/store/`` talks to SQLite or Redis, the rest of the code uses the store through
its public modules alone, ``serving/`` runs no background process itself, and the engine and
labelling sit in no import cycle, and the tiers (core, background, tools) depend one way."""

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


def tier_of(module: str) -> str:
    """``background``, ``tools`` or ``core``: the tier of an ``onlearn`` module."""
    for tier in ("background", "tools"):
        if module == f"onlearn.{tier}" or module.startswith(f"onlearn.{tier}."):
            return tier
    return "core"


# The one module of the core that reaches into the background: it decides where the worker and
# the monitor run and hands the app the threads to start (onlearn/topology.py).
HAND_OFF = ROOT / "onlearn" / "topology.py"


@pytest.mark.parametrize(
    "path", sources("onlearn") + sources("serving"), ids=lambda p: str(p.relative_to(ROOT))
)
def test_the_tiers_depend_one_way(path):
    # The tools (cli, client, labeller, demo) use everything and nothing uses them; the
    # background (worker, refit, promotion, monitor) uses the core, never the reverse; serving
    # imports neither: what runs beside it comes from the hand-off.
    here = (
        tier_of(module_name(path)) if "onlearn" in path.relative_to(ROOT).parts[:1] else "serving"
    )
    reached = {tier_of(m) for m in imported_modules(path) if m.startswith("onlearn.")}
    allowed = {"tools": {"core", "background", "tools"}, "background": {"core", "background"}}
    allowed = allowed.get(here, {"core"}) | ({"background"} if path == HAND_OFF else set())
    assert reached <= allowed, f"{path} ({here}) imports the {sorted(reached - allowed)} tier"


def test_the_tier_check_sees_imports():
    assert tier_of("onlearn.background.worker") == "background"
    assert tier_of("onlearn.tools.cli") == "tools" and tier_of("onlearn.engine.engine") == "core"
    assert "onlearn.background.worker" in imported_modules(HAND_OFF)
    assert "onlearn.jobs" in imported_modules(ROOT / "serving" / "routes" / "versions.py")
    assert "onlearn.background.worker" in imported_modules(ROOT / "onlearn" / "tools" / "cli.py")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: str) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports, at any depth in the file (function-level
    and ``TYPE_CHECKING`` imports too: a cycle dodged by a late import is still a cycle).

    ``from a import b`` counts as an import of the module ``a.b`` when there is one, else of
    ``a``. Importing ``a.b`` also runs ``a/__init__.py``; that edge is left out, or every package
    whose ``__init__`` re-exports its modules would be a cycle.
    """
    paths = {module_name(p): p for p in sources(package)}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = here.split(".")[: len(here.split(".")) - node.level + 1]
                    base = ".".join([*parent, base] if base else parent)
                for alias in node.names:
                    found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in paths else base)
        graph[name] = {m for m in found if m in paths and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_engine_and_labelling_are_in_no_import_cycle():
    # Other cycles among onlearn modules exist (store backends and their ports, config and
    # refit_options); the issues that restructure those modules break them.
    graph = import_graph("onlearn")
    ours = {m for m in graph if m == "onlearn.labelling" or m.startswith("onlearn.engine")}
    caught = [sorted(c) for c in cycles(graph) if c & ours]
    assert not caught, f"import cycles through the engine or labelling: {caught}"


def test_the_cycle_check_sees_imports_and_cycles():
    # Guards the check against finding nothing: known edges, and a cycle in a made-up graph.
    graph = import_graph("onlearn")
    assert "onlearn.labelling" in graph["onlearn.engine.engine"]
    assert "onlearn.engine.follower" in graph["onlearn.engine.feedback"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]


def test_the_module_map_of_the_architecture_notes_matches_the_tree():
    # docs/architecture.md, "The pieces": every module and package a new engineer meets in
    # onlearn/ (and in its engine, background and tools packages) is on the map.
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = text.split("## The pieces", 1)[1].split("```", 2)[1]
    words = set(block.replace("(", " ").replace(")", " ").replace(",", " ").split())
    expected = set()
    for package in ("onlearn", "onlearn/engine", "onlearn/background", "onlearn/tools"):
        for entry in (ROOT / package).iterdir():
            if entry.name.startswith(("_", ".")):
                continue
            if entry.suffix == ".py":
                expected.add(entry.name)
            elif (entry / "__init__.py").is_file():
                expected.add(f"{entry.name}/")
    missing = sorted(expected - words)
    assert not missing, f"docs/architecture.md's module map lacks {missing}"
    assert {"engine.py", "worker.py", "cli.py", "store/"} <= expected  # the walk found the tree
