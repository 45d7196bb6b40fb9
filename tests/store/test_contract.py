"""Every store check against every backend. A new backend is one more entry in BACKENDS."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import pytest

from onlearn.checks.stores import (
    all_store_checks,
    check_log_is_ordered_and_gapless,
    check_registry_change_roles_appends_the_event_and_changes_roles_together,
    check_registry_change_roles_with_a_known_key_changes_nothing,
    check_store,
)
from onlearn.records import Event
from onlearn.store.base import EventLog, PredictionStore, Registry, Store, open_store
from onlearn.store.memory import MemoryEventLog, MemoryRegistry

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


class _TwoStepRegistry(MemoryRegistry):
    """Appends the control event, then changes roles with set_role: not one step, no seq in
    the audit rows, and a retried change changes the roles again."""

    def change_roles(self, model, changes, event, *, actor, reason, at, canary_share=None):  # type: ignore[no-untyped-def]
        (seq,) = self._log.append(model, [event])
        for role, version in changes.items():
            self.set_role(model, role, version, actor=actor, reason=reason, at=at)
        return seq


@pytest.mark.parametrize(
    "check",
    [
        check_registry_change_roles_appends_the_event_and_changes_roles_together,
        check_registry_change_roles_with_a_known_key_changes_nothing,
    ],
)
def test_a_registry_that_changes_roles_in_two_steps_fails_the_checks(
    check: Callable[[Store], None],
) -> None:
    store = open_store("memory://")
    store.registry = _TwoStepRegistry(store.log)  # type: ignore[arg-type]
    with pytest.raises(AssertionError):
        check(store)
