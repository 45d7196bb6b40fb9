"""Every store check against every backend. A new backend is one more entry in BACKENDS."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import pytest

from onlearn.checks.stores import all_store_checks, check_log_is_ordered_and_gapless, check_store
from onlearn.records import Event
from onlearn.store.base import EventLog, PredictionStore, Registry, Store, open_store
from onlearn.store.memory import MemoryEventLog

# Backend name -> the URL of a fresh, empty store, given the requesting test (for its fixtures).
BACKENDS: dict[str, Callable[[pytest.FixtureRequest], str]] = {
    "memory": lambda request: "memory://",
    "sqlite": lambda request: f"sqlite:///{request.getfixturevalue('tmp_path')}/contract.db",
    "redis": lambda request: request.getfixturevalue("redis_url"),
}


@pytest.fixture(params=sorted(BACKENDS))
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    with open_store(BACKENDS[request.param](request)) as opened:
        yield opened


@pytest.mark.parametrize("check", list(all_store_checks()), ids=lambda check: check.__name__)
def test_store_contract(store: Store, check: Callable[[Store], None]) -> None:
    check(store)


def test_store_implements_the_ports(store: Store) -> None:
    assert isinstance(store.log, EventLog)
    assert isinstance(store.predictions, PredictionStore)
    assert isinstance(store.registry, Registry)


def test_check_store_runs_every_check_on_a_fresh_store() -> None:
    opened: list[Store] = []

    def open_fresh() -> Store:
        opened.append(open_store("memory://"))
        return opened[-1]

    check_store(open_fresh)
    assert len(opened) == len(list(all_store_checks())) > 10
    assert len({id(s) for s in opened}) == len(opened)


class _LossyLog(MemoryEventLog):
    """A log that keeps only the first event of each batch: a backend bug the checks must see."""

    def append(self, model: str, events: Sequence[Event]) -> list[int]:
        kept = super().append(model, events[:1])
        return kept + [kept[-1] + n for n in range(1, len(events))] if kept else []


def test_a_broken_backend_fails_the_checks() -> None:
    store = open_store("memory://")
    store.log = _LossyLog()
    with pytest.raises(AssertionError):
        check_log_is_ordered_and_gapless(store)
