"""The scheme table of ``onlearn.store``: a URL's scheme selects a backend, whose entry declares
what it can do; callers ask that instead of reading the URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from onlearn.errors import ConfigError
from onlearn.store import BACKENDS, Capabilities, capabilities_of, open_store, serve_lock
from onlearn.store import base as ports


def test_every_scheme_of_the_table_names_an_opener_and_its_capabilities():
    assert sorted(BACKENDS) == ["memory", "redis", "rediss", "sqlite", "unix"]
    for backend in BACKENDS.values():
        assert backend.opener.__module__ == "onlearn.store.schemes"
        assert backend.opener.__name__.startswith("_open_")
        assert isinstance(backend.capabilities, Capabilities)


@pytest.mark.parametrize(
    ("url", "shared", "networked", "local_file"),
    [
        ("memory://", False, False, False),
        ("sqlite:///.data/onlearn.db", True, False, True),
        ("redis://127.0.0.1:6379/0", True, True, False),
        ("rediss://127.0.0.1:6380/0", True, True, False),
        ("unix:///run/redis.sock", True, True, False),
    ],
)
def test_each_backend_declares_what_it_can_do(url, shared, networked, local_file):
    # Asked without opening: nothing listens at these addresses.
    assert capabilities_of(url) == Capabilities(
        shared=shared, networked=networked, local_file=local_file
    )


def test_an_opened_store_carries_its_backends_capabilities(tmp_path: Path):
    with open_store("memory://") as memory:
        assert memory.capabilities == BACKENDS["memory"].capabilities
        assert not memory.shared and not memory.networked
    with open_store(f"sqlite:///{tmp_path}/t.db") as sqlite:
        assert sqlite.capabilities == BACKENDS["sqlite"].capabilities
        assert sqlite.shared and not sqlite.networked


def test_a_backend_opened_outside_the_table_may_declare_its_own(tmp_path: Path):
    with open_store("memory://") as memory:
        own = Capabilities(shared=True, networked=True, local_file=False)
        store = ports.Store(
            "custom://x", memory.log, memory.predictions, memory.registry, capabilities=own
        )
        assert store.shared and store.networked


@pytest.mark.parametrize("url", ["postgres://db/onlearn", "onlearn.db", ""])
def test_an_unknown_scheme_is_refused_naming_the_supported_ones(url):
    for ask in (open_store, capabilities_of, serve_lock):
        with pytest.raises(ConfigError, match="memory, redis, rediss, sqlite, unix"):
            ask(url)


def test_only_the_sqlite_backend_has_a_serve_lock():
    assert {s for s, b in BACKENDS.items() if b.serve_lock} == {"sqlite"}
