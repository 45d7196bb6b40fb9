"""Contract checks for storage backends, shipped with the library like river's estimator checks.

Every check takes a fresh, empty :class:`~onlearn.store.base.Store` and raises
``AssertionError`` when the backend breaks the contract of the ports in ``onlearn.store.base``.
A user writing a backend runs them all with :func:`check_store`, or one by one from pytest:

.. code-block:: python

    @pytest.mark.parametrize("check", all_store_checks(), ids=lambda c: c.__name__)
    def test_my_backend(check, tmp_path):
        with open_my_store(tmp_path) as store:
            check(store)

>>> from onlearn.store.base import open_store
>>> check_store(lambda: open_store("memory://"))
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from onlearn.records import Event, EventKind, PredictionRecord, Snapshot
from onlearn.store.base import Store

__all__ = ["StoreCheck", "all_store_checks", "check_store"]

StoreCheck = Callable[[Store], None]

_CHECKS: list[StoreCheck] = []


def _check(func: StoreCheck) -> StoreCheck:
    _CHECKS.append(func)
    return func


def all_store_checks() -> Iterator[StoreCheck]:
    """Every store check, in a stable order. Each needs its own fresh, empty store."""
    yield from _CHECKS


def check_store(open_fresh: Callable[[], Store]) -> None:
    """Run every check, each on a new store from ``open_fresh``, closing it afterwards."""
    for check in all_store_checks():
        with open_fresh() as store:
            check(store)


def _label(i: int, key: str | None = None, label: Any = None) -> Event:
    return Event(
        kind=EventKind.LABEL,
        payload={"features": {"x": float(i)}, "label": i % 2 == 0 if label is None else label},
        at=1_700_000_000.0 + i / 8,
        key=key,
    )


def _seqs(events: list[Event]) -> list[int | None]:
    return [e.seq for e in events]


# --- event log -------------------------------------------------------------------------------


@_check
def check_log_is_ordered_and_gapless(store: Store) -> None:
    log = store.log
    assert log.head("m") == 0, "an empty log has head 0"
    events = [_label(i) for i in range(100)]
    seqs = (
        log.append("m", events[:1]) + log.append("m", events[1:10]) + log.append("m", events[10:])
    )
    assert seqs == list(range(1, 101)), f"seqs must start at 1 with no gap, got {seqs[:12]}..."
    assert log.head("m") == 100
    read = log.read("m", after=0, limit=1000)
    assert _seqs(read) == seqs
    assert [e.payload for e in read] == [e.payload for e in events]


@_check
def check_log_models_are_independent(store: Store) -> None:
    log = store.log
    a1 = log.append("a", [_label(0), _label(1)])
    b1 = log.append("b", [_label(2)])
    a2 = log.append("a", [_label(3)])
    assert (a1, b1, a2) == ([1, 2], [1], [3]), "each model numbers its own log from 1"
    assert (log.head("a"), log.head("b"), log.head("c")) == (3, 1, 0)
    assert [e.payload for e in log.read("b", after=0)] == [_label(2).payload]
    assert log.read("c", after=0) == []


@_check
def check_log_read_pages_in_order(store: Store) -> None:
    log = store.log
    log.append("m", [_label(i) for i in range(25)])
    assert _seqs(log.read("m", after=10, limit=5)) == [11, 12, 13, 14, 15]
    assert _seqs(log.read("m", after=20)) == [21, 22, 23, 24, 25], "limit defaults to 1000"
    assert log.read("m", after=25) == [] and log.read("m", after=99) == []
    pages, after = [], 0
    while page := log.read("m", after=after, limit=7):
        assert len(page) <= 7
        pages.extend(page)
        after = page[-1].seq
    assert _seqs(pages) == list(range(1, 26))


@_check
def check_log_append_nothing(store: Store) -> None:
    assert store.log.append("m", []) == []
    assert store.log.head("m") == 0


@_check
def check_log_dedupes_keys_across_calls(store: Store) -> None:
    log = store.log
    first = log.append("m", [_label(0, key="p-1"), _label(1)])
    again = log.append("m", [_label(7, key="p-1")])
    assert again == [first[0]], "a known key returns the existing seq"
    assert first.new == [True, True] and again.new == [False], "new flags tell appended events"
    assert log.head("m") == 2, "a known key appends nothing"
    assert log.read("m", after=0)[0].payload == _label(0).payload, "the first event is kept"
    assert log.append("m", [_label(1), _label(1)]) == [3, 4], "events without a key never dedupe"
    assert log.append("other", [_label(0, key="p-1")]) == [1], "keys are per model"


@_check
def check_log_dedupes_keys_within_one_call(store: Store) -> None:
    log = store.log
    seqs = log.append(
        "m", [_label(0, key="a"), _label(1, key="b"), _label(2, key="a"), _label(3), _label(4, "b")]
    )
    assert seqs == [1, 2, 1, 3, 2], f"duplicates in one call get the first one's seq, got {seqs}"
    assert seqs.new == [True, True, False, True, False], f"new flags, got {seqs.new}"
    assert log.head("m") == 3
    assert [e.key for e in log.read("m", after=0)] == ["a", "b", None]


@_check
def check_log_round_trips_events(store: Store) -> None:
    payload = {
        "features": {"age": 42, "income": 1234.5, "city": "Zürich", "tags": ["a", "b"]},
        "proba": [[True, 0.75], [False, 0.25]],
        "nested": {"lists": [[1, [2, [3.5, None]]], []], "empty": {}},
        "flag": False,
        "none": None,
    }
    labels: list[Any] = [True, False, 0, 1, 7, "cat", "1", 2.5, 1.0]
    events = [
        Event(kind, {**payload, "label": label}, at=1_700_000_000.123456 + n, key=f"k{n}")
        for n, (kind, label) in enumerate(zip(list(EventKind) * 3, labels, strict=False))
    ]
    seqs = store.log.append("m", events)
    read = store.log.read("m", after=0)
    assert read == [dataclasses.replace(e, seq=s) for e, s in zip(events, seqs, strict=True)]
    for event, back in zip(events, read, strict=True):
        assert isinstance(back.kind, EventKind), "kind comes back as the enum"
        label = back.payload["label"]
        # True == 1 and 1 == 1.0 in Python: equality alone does not prove the type survived.
        assert type(label) is type(event.payload["label"]), f"label {label!r} changed type"
        proba_label = back.payload["proba"][0][0]
        assert type(proba_label) is bool, "labels inside lists keep their type"


@_check
def check_log_trim(store: Store) -> None:
    log = store.log
    log.append("m", [_label(i) for i in range(10)])
    log.append("n", [_label(i) for i in range(3)])
    assert log.trim("m", upto=4) == 4
    assert _seqs(log.read("m", after=0)) == [5, 6, 7, 8, 9, 10]
    assert log.head("m") == 10, "trim keeps the head"
    assert log.trim("m", upto=4) == 0, "trimming again forgets nothing more"
    assert log.trim("m", upto=100) == 6
    assert log.read("m", after=0) == [] and log.head("m") == 10
    assert log.append("m", [_label(10)]) == [11], "numbering continues after a full trim"
    assert log.head("n") == 3 and len(log.read("n", after=0)) == 3, "other models are untouched"
    assert log.trim("unknown", upto=5) == 0


@_check
def check_log_concurrent_appends(store: Store) -> None:
    threads_n, rounds = 6, 15
    results: list[list[int]] = [[] for _ in range(threads_n)]
    errors: list[BaseException] = []
    start = threading.Barrier(threads_n)

    def writer(t: int) -> None:
        try:
            start.wait()
            for r in range(rounds):
                size = 1 + r % 3
                batch = [
                    Event(EventKind.LABEL, {"t": t, "r": r, "i": i}, at=float(r))
                    for i in range(size)
                ]
                results[t].extend(store.log.append("m", batch))
        except BaseException as exc:  # surfaced in the calling thread below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, f"concurrent appends failed: {errors[0]!r}"
    total = threads_n * sum(1 + r % 3 for r in range(rounds))
    seqs = sorted(s for per_thread in results for s in per_thread)
    assert seqs == list(range(1, total + 1)), "concurrent appends give unique, gapless seqs"
    for per_thread in results:
        assert per_thread == sorted(per_thread), "one writer's seqs increase"
    read = store.log.read("m", after=0, limit=total + 10)
    assert _seqs(read) == list(range(1, total + 1))
    written = {(t, r, i) for t in range(threads_n) for r in range(rounds) for i in range(1 + r % 3)}
    assert {(e.payload["t"], e.payload["r"], e.payload["i"]) for e in read} == written
    assert store.log.head("m") == total


# --- prediction records ----------------------------------------------------------------------


def _record(rid: str, expires_at: float, **changes: Any) -> PredictionRecord:
    record = PredictionRecord(
        id=rid,
        model="m",
        at=1_700_000_000.5,
        features={"age": 42, "city": "Zürich", "tags": ["a", "b"], "score": 0.125, "ok": True},
        version="v2",
        outputs={
            "v2": {"label": True, "proba": [[True, 0.875], [False, 0.125]]},
            "v3": {"label": 3, "proba": None},
        },
        uncertainty=0.25,
        queued=True,
        expires_at=expires_at,
    )
    return dataclasses.replace(record, **changes)


@_check
def check_predictions_round_trip(store: Store) -> None:
    later = time.time() + 3600
    records = [
        _record("p-1", later),
        _record("p-2", later, uncertainty=None, queued=False, outputs={"v1": {"label": "cat"}}),
    ]
    store.predictions.put_many(records)
    store.predictions.put_many([])
    for record in records:
        back = store.predictions.get(record.id)
        assert back == record, f"{back!r} != {record!r}"
    back = store.predictions.get("p-1")
    assert back is not None
    assert type(back.outputs["v2"]["label"]) is bool and type(back.outputs["v3"]["label"]) is int
    assert type(back.outputs["v2"]["proba"][0][0]) is bool
    replaced = _record("p-1", later, version="v3")
    store.predictions.put_many([replaced])
    assert store.predictions.get("p-1") == replaced, "putting an id again replaces its record"


@_check
def check_predictions_unknown_is_none(store: Store) -> None:
    assert store.predictions.get("no-such-id") is None


@_check
def check_predictions_expire(store: Store) -> None:
    now = time.time()
    live = [_record(f"live-{i}", now + 3600) for i in range(3)]
    expired = [_record(f"old-{i}", now - 10) for i in range(2)]
    store.predictions.put_many(live + expired)
    assert store.predictions.get("old-0") is None, "an expired record is gone before any purge"
    assert store.predictions.get("live-0") == live[0]
    assert store.predictions.purge_expired(now) == 2
    assert store.predictions.purge_expired(now) == 0
    assert store.predictions.get("live-1") == live[1]
    assert store.predictions.purge_expired(now + 7200) == 3
    assert store.predictions.get("live-1") is None


# --- registry --------------------------------------------------------------------------------


@_check
def check_registry_versions(store: Store) -> None:
    reg = store.registry
    spec = {"pipeline": "logistic", "params": {"l2": 0.01, "classes": [True, False]}, "seed": 42}
    v1 = reg.create_version("m", spec, {"trained_on": [0, 100]}, at=10.0)
    v2 = reg.create_version("m", {"pipeline": "forest"}, {}, at=20.0)
    other = reg.create_version("n", {"pipeline": "tree"}, {}, at=30.0)
    assert (v1.version, v2.version, other.version) == ("v1", "v2", "v1"), "numbered per model"
    assert (v1.model, v1.created_at, v1.spec, v1.meta) == (
        "m",
        10.0,
        spec,
        {"trained_on": [0, 100]},
    )
    assert reg.get_version("m", "v1") == v1 and reg.get_version("m", "v2") == v2
    assert reg.get_version("n", "v1") == other
    for missing in ("v3", "v0", "latest", "1", ""):
        assert reg.get_version("m", missing) is None, f"{missing!r} is not a version of m"
    assert reg.get_version("unknown", "v1") is None
    assert reg.list_versions("m") == [v1, v2], "oldest first"
    assert reg.list_versions("unknown") == []


@_check
def check_registry_roles_and_history(store: Store) -> None:
    reg = store.registry
    for at in (1.0, 2.0, 3.0):
        reg.create_version("m", {"n": at}, {}, at=at)
    assert reg.roles("m") == {}
    reg.set_role("m", "champion", "v1", actor="alice", reason="first", at=10.0)
    reg.set_role("m", "shadow", "v2", actor="alice", reason="try", at=11.0)
    reg.set_role("m", "champion", "v2", actor="bob", reason="better", at=12.0)
    assert reg.roles("m") == {"champion": "v2", "shadow": "v2"}
    reg.set_role("m", "shadow", None, actor="bob", reason="done", at=13.0)
    assert reg.roles("m") == {"champion": "v2"}
    assert reg.roles("other") == {}
    try:
        reg.set_role("m", "champion", "v9", actor="eve", reason="typo", at=14.0)
    except LookupError:
        pass
    else:
        raise AssertionError("a role cannot be given to a version that does not exist")
    assert reg.roles("m") == {"champion": "v2"}, "a refused change changes nothing"
    history = reg.role_history("m")
    expected = [
        ("champion", "v1", None, "alice", "first", 10.0),
        ("shadow", "v2", None, "alice", "try", 11.0),
        ("champion", "v2", "v1", "bob", "better", 12.0),
        ("shadow", None, "v2", "bob", "done", 13.0),
    ]
    keys = ("role", "version", "previous", "actor", "reason", "at")
    assert [tuple(row[k] for k in keys) for row in history] == expected
    assert reg.role_history("other") == []


@_check
def check_registry_snapshots(store: Store) -> None:
    reg = store.registry
    artifact = bytes(range(256)) * 3
    for seq in (10, 30, 20):
        reg.put_snapshot(Snapshot("m", "v1", seq, at=float(seq), artifact=artifact + bytes([seq])))
    reg.put_snapshot(Snapshot("m", "v2", 5, at=5.0, artifact=b""))
    latest = reg.latest_snapshot("m", "v1")
    assert latest == Snapshot("m", "v1", 30, 30.0, artifact + bytes([30]))
    assert type(latest.artifact) is bytes
    assert reg.latest_snapshot("m", "v1", max_seq=29).seq == 20  # type: ignore[union-attr]
    assert reg.latest_snapshot("m", "v1", max_seq=20).seq == 20  # type: ignore[union-attr]
    assert reg.latest_snapshot("m", "v1", max_seq=9) is None
    assert reg.latest_snapshot("m", "v2") == Snapshot("m", "v2", 5, 5.0, b"")
    assert reg.latest_snapshot("m", "v3") is None and reg.latest_snapshot("n", "v1") is None
    reg.put_snapshot(Snapshot("m", "v1", 30, at=31.0, artifact=b"again"))
    assert reg.latest_snapshot("m", "v1") == Snapshot("m", "v1", 30, 31.0, b"again")


@_check
def check_registry_concurrent_versions(store: Store) -> None:
    threads_n, each = 4, 5
    names: list[str] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def create(t: int) -> None:
        try:
            for i in range(each):
                info = store.registry.create_version("m", {"t": t, "i": i}, {}, at=float(i))
                with lock:
                    names.append(info.version)
        except BaseException as exc:  # surfaced in the calling thread below
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(t,)) for t in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, f"concurrent create_version failed: {errors[0]!r}"
    expected = [f"v{n}" for n in range(1, threads_n * each + 1)]
    assert sorted(names, key=lambda v: int(v[1:])) == expected, "versions are unique and gapless"
    assert [v.version for v in store.registry.list_versions("m")] == expected


@_check
def check_ping(store: Store) -> None:
    store.ping()
