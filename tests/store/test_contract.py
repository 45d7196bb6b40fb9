"""Every store check against every backend. A new backend is one more entry in BACKENDS."""

from __future__ import annotations

import dataclasses
import json
import math
import struct
import time
from collections.abc import Callable, Iterator, Sequence

import pytest

from onlearn.records import Event, PredictionRecord
from onlearn.store import open_store
from onlearn.store.base import EventLog, PredictionStore, Registry, Store
from onlearn.store.checks.stores import (
    all_store_checks,
    check_log_is_ordered_and_gapless,
    check_log_round_trips_hostile_values,
    check_predictions_round_trip_hostile_values,
    check_predictions_scan_follows_a_record_put_again,
    check_predictions_scan_limit_defaults_to_1000,
    check_predictions_scan_pages_in_id_order_per_model,
    check_predictions_scan_skips_expired_records,
    check_predictions_scan_skips_records_that_expired_after_their_put,
    check_registry_change_roles_appends_the_event_and_changes_roles_together,
    check_registry_change_roles_with_a_known_key_changes_nothing,
    check_registry_create_version_with_a_known_key_keeps_the_stored_signature,
    check_registry_documents,
    check_registry_set_spec_signature,
    check_registry_spec_signature_round_trips,
    check_store,
)
from onlearn.store.memory import MemoryEventLog, MemoryPredictionStore, MemoryRegistry

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


def _through(value: object, change: Callable[[object], object]) -> object:
    """``value`` with ``change`` applied to every leaf, dicts and lists rebuilt."""
    if isinstance(value, dict):
        return {k: _through(v, change) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_through(v, change) for v in value]
    return change(value)


class _SortingLog(MemoryEventLog):
    """Reads payloads back with their keys sorted (JSON with sort_keys): the order is lost."""

    def read(self, model: str, after: int, limit: int = 1000) -> list[Event]:
        return [
            dataclasses.replace(e, payload=json.loads(json.dumps(e.payload, sort_keys=True)))
            for e in super().read(model, after, limit)
        ]


class _FloatingLog(MemoryEventLog):
    """Reads ints beyond 53 bits back as floats (as a JSON parser of doubles would)."""

    def read(self, model: str, after: int, limit: int = 1000) -> list[Event]:
        def change(v: object) -> object:
            return float(v) if type(v) is int and abs(v) > 2**53 else v

        return [
            dataclasses.replace(e, payload=_through(e.payload, change))
            for e in super().read(model, after, limit)
        ]


class _NarrowingPredictions(MemoryPredictionStore):
    """Keeps floats in 32 bits."""

    def put_many(self, records: Sequence[PredictionRecord]) -> None:
        def change(v: object) -> object:
            return (
                struct.unpack("f", struct.pack("f", v))[0]
                if type(v) is float and math.isfinite(v) and abs(v) < 3e38
                else v
            )

        super().put_many(
            [dataclasses.replace(r, features=_through(r.features, change)) for r in records]
        )


@pytest.mark.parametrize("broken", [_SortingLog, _FloatingLog])
def test_a_log_that_changes_values_fails_the_checks(broken: type[MemoryEventLog]) -> None:
    store = open_store("memory://")
    store.log = broken()
    with pytest.raises(AssertionError):
        check_log_round_trips_hostile_values(store)


def test_a_prediction_store_that_narrows_floats_fails_the_checks() -> None:
    store = open_store("memory://")
    store.predictions = _NarrowingPredictions()
    with pytest.raises(AssertionError):
        check_predictions_round_trip_hostile_values(store)


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


class _UnsortedScan(MemoryPredictionStore):
    """Scans in the order records were put, not by id."""

    def scan(self, model: str, after: str | None, limit: int = 1000) -> list[PredictionRecord]:
        with self._lock:
            found = [r for r in self._records.values() if r.model == model]
        found = [r for r in found if after is None or r.id > after]
        return [r for r in found if r.expires_at > time.time()][:limit]


class _ScanWithExpired(MemoryPredictionStore):
    """Scans records that expired but were not purged yet."""

    def scan(self, model: str, after: str | None, limit: int = 1000) -> list[PredictionRecord]:
        with self._lock:
            ids = sorted(rid for rid, r in self._records.items() if r.model == model)
        return [self._records[i] for i in ids if after is None or i > after][:limit]


class _ScanIgnoringModel(MemoryPredictionStore):
    """Scans every model's records."""

    def scan(self, model: str, after: str | None, limit: int = 1000) -> list[PredictionRecord]:
        with self._lock:
            ids = sorted(self._records)
        found = [self._records[i] for i in ids if after is None or i > after]
        return [r for r in found if r.expires_at > time.time()][:limit]


class _ScanWithoutDefaultLimit(MemoryPredictionStore):
    def scan(self, model: str, after: str | None, limit: int = 1_000_000) -> list[PredictionRecord]:
        return super().scan(model, after, limit)


@pytest.mark.parametrize(
    ("broken", "check"),
    [
        (_UnsortedScan, check_predictions_scan_pages_in_id_order_per_model),
        (_ScanWithExpired, check_predictions_scan_skips_expired_records),
        (_ScanWithExpired, check_predictions_scan_skips_records_that_expired_after_their_put),
        (_ScanIgnoringModel, check_predictions_scan_pages_in_id_order_per_model),
        (_ScanIgnoringModel, check_predictions_scan_follows_a_record_put_again),
        (_ScanWithoutDefaultLimit, check_predictions_scan_limit_defaults_to_1000),
    ],
    ids=lambda x: getattr(x, "__name__", None),
)
def test_a_broken_scan_fails_the_checks(
    broken: type[MemoryPredictionStore], check: Callable[[Store], None]
) -> None:
    store = open_store("memory://")
    store.predictions = broken()
    with pytest.raises(AssertionError):
        check(store)


class _SharedDocuments(MemoryRegistry):
    """Keeps and returns the caller's own dict: a change by either side changes the store."""

    def __init__(self) -> None:
        super().__init__()
        self._docs: dict[tuple[str, str], dict] = {}

    def put_document(self, model, name, document):  # type: ignore[no-untyped-def]
        self._docs[(model, name)] = document

    def get_document(self, model, name):  # type: ignore[no-untyped-def]
        return self._docs.get((model, name))


class _MergingDocuments(MemoryRegistry):
    """Merges a put into the document before instead of replacing it."""

    def put_document(self, model, name, document):  # type: ignore[no-untyped-def]
        super().put_document(model, name, {**(self.get_document(model, name) or {}), **document})


@pytest.mark.parametrize("broken", [_SharedDocuments, _MergingDocuments])
def test_a_broken_document_store_fails_the_checks(broken: type[MemoryRegistry]) -> None:
    store = open_store("memory://")
    store.registry = broken()
    with pytest.raises(AssertionError):
        check_registry_documents(store)


class _DropsSignatures(MemoryRegistry):
    """Stores versions without their signature."""

    def create_version(self, model, spec, meta, at, key=None, *, spec_signature=None):  # type: ignore[no-untyped-def]
        return super().create_version(model, spec, meta, at, key)


class _KeyAnswersTheFirstCopy(MemoryRegistry):
    """Answers a known key with the version as first registered, not as it is now."""

    def __init__(self) -> None:
        super().__init__()
        self._first: dict[tuple[str, str], object] = {}

    def create_version(self, model, spec, meta, at, key=None, *, spec_signature=None):  # type: ignore[no-untyped-def]
        if key is not None and (model, key) in self._first:
            return self._first[(model, key)]
        info = super().create_version(model, spec, meta, at, key, spec_signature=spec_signature)
        if key is not None:
            self._first[(model, key)] = info
        return info


class _SigningRewritesTheVersion(MemoryRegistry):
    """Signing a version also stamps its meta (a spec and meta must stay as they are)."""

    def set_spec_signature(self, model, version, signature):  # type: ignore[no-untyped-def]
        info = super().set_spec_signature(model, version, signature)
        if info is None:
            return None
        info = dataclasses.replace(info, meta={**info.meta, "signed": True})
        self._versions[model][int(version[1:]) - 1] = info
        return info


class _SigningCreatesVersions(MemoryRegistry):
    """Signing an unknown version registers one."""

    def set_spec_signature(self, model, version, signature):  # type: ignore[no-untyped-def]
        info = super().set_spec_signature(model, version, signature)
        if info is None:
            return self.create_version(model, {}, {}, 0.0, spec_signature=signature)
        return info


@pytest.mark.parametrize(
    ("broken", "check"),
    [
        (_DropsSignatures, check_registry_spec_signature_round_trips),
        (
            _KeyAnswersTheFirstCopy,
            check_registry_create_version_with_a_known_key_keeps_the_stored_signature,
        ),
        (_SigningRewritesTheVersion, check_registry_set_spec_signature),
        (_SigningCreatesVersions, check_registry_set_spec_signature),
    ],
    ids=lambda x: getattr(x, "__name__", None),
)
def test_a_registry_that_mishandles_signatures_fails_the_checks(
    broken: type[MemoryRegistry], check: Callable[[Store], None]
) -> None:
    store = open_store("memory://")
    store.registry = broken()
    with pytest.raises(AssertionError):
        check(store)
