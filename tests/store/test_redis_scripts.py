"""The Redis backend's Lua scripts: package data that an installed onlearn finds, each registered
by the one port module it belongs to, each compiling on a real Redis with its libraries."""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
import redis

from onlearn.store.redis import jobs, label_queue, log, predictions, registry, scripts, shapes

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "onlearn" / "store" / "redis"
LUA = resources.files("onlearn.store.redis").joinpath("lua")

# Each port module and the class that registers its scripts.
PORTS: dict[ModuleType, Callable[[Any], object]] = {
    log: log.RedisEventLog,
    predictions: predictions.RedisPredictionStore,
    registry: registry.RedisRegistry,
    label_queue: label_queue.RedisLabelQueue,
    jobs: jobs.RedisJobQueue,
    shapes: shapes.RedisShapes,  # not a port of base.py: the compact encoding's, shared by ports
}


def _port_name(module: ModuleType) -> str:
    return module.__name__.rpartition(".")[2]


def _registered(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[tuple[str, tuple[str, ...]]]]:
    """The scripts each port module registers when its port is built: (name, libraries)."""
    found: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    for module, port in PORTS.items():
        calls = found.setdefault(_port_name(module), [])

        def record(client: object, name: str, *libraries: str, calls: list = calls) -> None:
            calls.append((name, libraries))

        monkeypatch.setattr(module, "register", record)
        port(SimpleNamespace(client=None))  # a port's constructor talks to nobody
    return found


def _files(folder: Any) -> set[str]:
    return {f.name[: -len(".lua")] for f in folder.iterdir() if f.name.endswith(".lua")}


def test_every_script_and_library_is_package_data_with_a_header() -> None:
    names = [f"{name}.lua" for name in _files(LUA)]
    names += [f"lib/{name}.lua" for name in _files(LUA.joinpath("lib"))]
    assert len(names) > 20
    for name in names:
        text = LUA.joinpath(name).read_text(encoding="utf-8")
        assert text.strip(), f"{name} is empty"
        # What it does, then KEYS/ARGV (a script) or what it defines (a library).
        assert text.startswith("-- "), f"{name} does not open with its header comment"


def test_each_script_is_registered_by_exactly_its_own_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registered = _registered(monkeypatch)
    owners: dict[str, list[str]] = {}
    for port, calls in registered.items():
        for name, _ in calls:
            owners.setdefault(name, []).append(port)
            assert name.startswith(f"{port}_"), f"{port}.py registers {name}, another port's"
    assert {n: o for n, o in owners.items() if len(o) > 1} == {}, "a script registered twice"
    assert set(owners) == _files(LUA), "every script file is registered, and only those"
    libraries = {library for calls in registered.values() for _, libs in calls for library in libs}
    assert libraries == _files(LUA.joinpath("lib")), "every library is used, and exists"
    for calls in registered.values():
        for name, libs in calls:
            assert scripts.source(name, *libs).strip()


def test_only_the_port_modules_register_scripts() -> None:
    # The connection is shared by the ports: it must not register their scripts for them.
    ports = {f"{_port_name(module)}.py" for module in PORTS}
    for path in sorted(PACKAGE.glob("*.py")):
        if path.name in ports or path.name == "scripts.py":
            continue
        calls = [
            node
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None))
            in ("register", "register_script")
        ]
        assert not calls, f"{path.name} registers a script"


def test_the_wheel_carries_every_lua_file() -> None:
    # setuptools ships what [tool.setuptools.package-data] names; an editable install finds the
    # files in the tree anyway, so a pattern that misses one would only fail once installed.
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["onlearn.store.redis"]
    shipped = {path for pattern in patterns for path in PACKAGE.glob(pattern)}
    assert set(PACKAGE.rglob("*.lua")) - shipped == set()


def test_every_script_compiles_with_its_libraries(
    monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    for calls in _registered(monkeypatch).values():
        for name, libs in calls:
            client.script_load(scripts.source(name, *libs))  # a Lua syntax error raises here
