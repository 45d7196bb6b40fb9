"""Contract checks for storage backends, shipped with the library like river's estimator checks.

Every check takes a fresh, empty :class:`~onlearn.store.base.Store` and raises
``AssertionError`` when the backend breaks the contract of the ports in ``onlearn.store.base``.
A user writing a backend runs them all with :func:`check_store`, or one by one from pytest:

.. code-block:: python

    @pytest.mark.parametrize("check", all_store_checks(), ids=lambda c: c.__name__)
    def test_my_backend(check, tmp_path):
        with open_my_store(tmp_path) as store:
            check(store)

>>> from onlearn.store import open_store
>>> check_store(lambda: open_store("memory://"))
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from onlearn.errors import StoreReplaced
from onlearn.records import Event, EventKind, PredictionRecord, Snapshot
from onlearn.store.base import RolesState, Store

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
def check_log_reads_events_by_key(store: Store) -> None:
    log = store.log
    pid = "0192f3c4a1b2c3d4e5f60718293a4b5c"  # a prediction id: stored compactly by some backends
    keys = [f"prediction:{pid}", "event:e-1", f"correction:prediction:{pid}:1"]
    log.append("m", [_label(0, key=keys[0], label="a"), _label(1), _label(2, key=keys[1])])
    log.append("m", [_label(3, key=keys[2], label="b"), _label(4, key=keys[0], label="c")])
    log.append("other", [_label(9, key="event:e-1")])
    found = log.by_keys("m", [*keys, "event:unknown", keys[1]])
    assert sorted(found) == sorted(keys), f"every known key once, got {sorted(found)}"
    assert {k: e.seq for k, e in found.items()} == {keys[0]: 1, keys[1]: 3, keys[2]: 4}
    assert found[keys[0]].payload["label"] == "a", "a key's event is the first one appended"
    assert found[keys[2]].key == keys[2] and found[keys[2]].kind is EventKind.LABEL
    assert found[keys[2]].payload == _label(3, label="b").payload
    assert log.by_keys("m", []) == {} and log.by_keys("unknown", keys) == {}
    assert log.by_keys("other", [keys[1]])[keys[1]].seq == 1, "keys are per model"
    log.trim("m", upto=3)
    assert set(log.by_keys("m", keys)) == {keys[2]}, "trimmed events are not found by key"


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


def _same(a: Any, b: Any, where: str = "value") -> None:
    """``a`` and ``b`` are the same JSON-safe value: equal, of the same types all the way down
    (``True``, ``1`` and ``1.0`` differ), NaN where NaN was, the sign of a zero kept, dict keys in
    the same order. A tuple and a list compare alike (JSON has one kind of array)."""
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a):
            assert math.isnan(b), f"{where}: {b!r} came back for NaN"
        else:
            assert a == b and math.copysign(1.0, a) == math.copysign(1.0, b), (
                f"{where}: {b!r} came back for {a!r}"
            )
        return
    if isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), f"{where}: {b!r} for {a!r}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]")
        return
    assert type(a) is type(b), f"{where}: {b!r} ({type(b).__name__}) came back for {a!r}"
    if isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys {list(b)!r} came back for {list(a)!r}"
        for k in a:
            _same(a[k], b[k], f"{where}[{k!r}]")
        return
    assert a == b, f"{where}: {b!r} came back for {a!r}"


_PID = "01a2508963002ed204eb0300a897eebb"

# Values a backend must store and read back exactly, wherever a JSON-safe value goes.
_HOSTILE_VALUES: dict[str, Any] = {
    "名前": "Zürich ✓ — 🎉 e\u0301",  # a name and a value in several scripts, a combining accent
    "": "",
    "none": None,
    "big": 2**64,  # beyond 64 bits, and around their edges
    "bigger": -(2**200),
    "u64": 2**64 - 1,
    "i64": -(2**63),
    "below": -(2**63) - 1,
    "nan": float("nan"),
    "inf": float("inf"),
    "-inf": float("-inf"),
    "-0": -0.0,
    "half": 0.5,
    "tenth": 0.1,
    "tiny": 5e-324,
    "huge": 1.7976931348623157e308,
    "f32max": 3.4028234663852886e38,
    "past_f32": 3.4028235677973366e38,
    "nested": [[1, [2.5, None, [True, [[]]]]], [], [{"k": [False, "x"]}, {}]],
    "hex": _PID,
    "HEX": _PID.upper(),
    "odd_hex": _PID[:-1],
    "short_hex": "00ff",
    "empty": {},
    "deep": {"a": {"b": {"c": {"d": [1.5, {"e": None}]}}}},
}


@_check
def check_log_round_trips_hostile_values(store: Store) -> None:
    label = {
        "label": True,
        "source": "app",
        "labeller": None,
        "prediction_id": _PID,
        "features": {"x": 0.5, "y": 1, "z": "a"},
        "predicted_at": 1_700_000_000.123456,
        "outputs": {"v1": {"label": True, "proba": [[True, 0.75], [False, 0.25]]}},
        "answered_by": "v1",
        "sampled": None,
    }
    payloads: list[dict[str, Any]] = [
        label,
        {**label, "features": dict(_HOSTILE_VALUES)},
        {**label, "features": {"y": 1, "x": 0.5, "z": "a"}},  # the same names in another order
        {k: v for k, v in label.items() if k != "features"},  # a field missing
        {**label, "corrects": 7, "sample_p": 0.25, "extra": _HOSTILE_VALUES},  # fields added
        {**label, "prediction_id": _PID.upper()},  # not the key's id
        {**label, "answered_by": _PID},  # the key's id twice
        dict(_HOSTILE_VALUES),
        {},
        {"label": 2**70, "features": {"x": float("nan")}},
    ]
    keys = [f"prediction:{_PID}", f"prediction:{_PID.upper()}", "prediction:", "é:" + _PID]
    events = [
        Event(
            EventKind.LABEL, p, at=1_700_000_000.0 + i / 3, key=None if i >= len(keys) else keys[i]
        )
        for i, p in enumerate(payloads)
    ]
    events.append(Event(EventKind.PROMOTE, {"changes": {"champion": "v2"}}, at=5e-324, key=_PID))
    for pair in ([events[0], events[1]], events[2:]):  # a batch, and alone
        store.log.append("m", pair)
    read = store.log.read("m", after=0)
    assert [e.seq for e in read] == list(range(1, len(events) + 1))
    for event, back in zip(events, read, strict=True):
        assert (back.kind, back.key) == (event.kind, event.key)
        _same(event.at, back.at, f"event {back.seq}: at")
        _same(dict(event.payload), dict(back.payload), f"event {back.seq}: payload")
    again = store.log.append("m", [dataclasses.replace(events[0], payload={})])
    assert again == [1] and again.new == [False], "a key read back still dedupes"


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
def check_log_heads_of_many_models(store: Store) -> None:
    log = store.log
    log.append("a", [_label(i) for i in range(4)])
    log.append("b", [_label(0)])
    log.append("c", [_label(i) for i in range(3)])
    log.trim("c", upto=3)
    assert log.heads(["a", "b", "c", "never"]) == {"a": 4, "b": 1, "c": 3, "never": 0}, (
        "heads gives each model's head, a trimmed log keeps it, an unknown model has 0"
    )
    assert log.heads([]) == {}
    models = [f"m{i}" for i in range(300)]
    for i, model in enumerate(models[::7]):
        log.append(model, [_label(j) for j in range(i % 3 + 1)])
    heads = log.heads(models)
    assert heads == {m: log.head(m) for m in models}, "heads agrees with head for every model"


@_check
def check_log_follow_many_models(store: Store) -> None:
    log = store.log
    log.append("a", [_label(i) for i in range(5)])
    log.append("b", [_label(i) for i in range(2)])
    found = log.follow({"a": 2, "b": 2, "c": 0}, limit=1000)
    assert set(found) == {"a"}, "only models with events after their position are given"
    assert _seqs(found["a"]) == [3, 4, 5]
    assert [e.payload for e in found["a"]] == [_label(i).payload for i in (2, 3, 4)]
    assert log.follow({"a": 5, "b": 2}, limit=1000) == {}, "nothing new: nothing given"
    log.append("b", [_label(9)])
    log.append("c", [_label(7)])
    found = log.follow({"a": 5, "b": 2, "c": 0}, limit=1000)
    assert {m: _seqs(e) for m, e in found.items()} == {"b": [3], "c": [1]}
    assert found["c"][0].payload == _label(7).payload
    # A page per model: the rest comes at the next call, from the new position.
    log.append("a", [_label(i) for i in range(10)])
    first = log.follow({"a": 5}, limit=4)
    assert _seqs(first["a"]) == [6, 7, 8, 9]
    assert _seqs(log.follow({"a": 9}, limit=100)["a"]) == list(range(10, 16))
    # A trimmed model is followed from the first event it still has.
    log.trim("a", upto=12)
    assert _seqs(log.follow({"a": 0}, limit=100)["a"]) == [13, 14, 15]
    if getattr(log, "follow_blocks", False):
        started = time.monotonic()
        assert log.follow({"a": 15}, block_s=0.2) == {}
        assert time.monotonic() - started >= 0.15, "a blocking follow waits for block_s"


@_check
def check_log_follow_sees_appends_of_another_thread(store: Store) -> None:
    log = store.log
    log.append("m", [_label(0)])
    assert _seqs(log.follow({"m": 0})["m"]) == [1]
    assert log.follow({"m": 1}) == {}
    done = threading.Event()

    def append_later() -> None:
        time.sleep(0.05)
        log.append("m", [_label(1), _label(2)])
        done.set()

    thread = threading.Thread(target=append_later)
    thread.start()
    deadline = time.monotonic() + 5
    found: dict = {}
    while not found and time.monotonic() < deadline:
        found = log.follow({"m": 1}, block_s=0.5)
        if not found:
            time.sleep(0.01)
    thread.join()
    assert done.is_set() and _seqs(found.get("m", [])) == [2, 3], found


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


@_check
def check_generation_is_read_at_open_and_stays(store: Store) -> None:
    generation = store.generation
    assert isinstance(generation.id, str) and generation.id, "a store has a generation id"
    assert generation.lost is None
    store.log.append("m", [_label(1)])
    generation.check()  # the store is the one opened: no error
    assert generation.lost is None, "appends do not change a store's generation"


@_check
def check_log_refuses_appends_once_the_store_was_found_changed(store: Store) -> None:
    # Once a process saw its store go back (a log head below what it applied; or, on a shared
    # backend, another generation id), no append of it may land: not a label, not a control
    # event. onlearn.store.generation says why.
    reg, log = store.registry, store.log
    reg.create_version("m", {"n": 0}, {}, at=0.0)
    assert log.append("m", [_label(0), _label(1)]) == [1, 2]
    store.generation.went_back("m", applied=7, head=2)
    for attempt in (
        lambda: log.append("m", [_label(2)]),
        lambda: reg.change_roles(
            "m", {"champion": "v1"}, _control({"champion": "v1"}), actor="a", reason="r", at=1.0
        ),
    ):
        try:
            attempt()
        except StoreReplaced as e:
            assert "restart" in str(e).lower(), "the error says what to do"
        else:
            raise AssertionError("an append was taken by a process that found its store changed")
    assert log.head("m") == 2, "nothing appended"
    assert reg.roles("m") == {}, "no role changed"


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
        # the sampler's probability of asking (importance weights): an exact float back
        _record("p-3", later, reason="uncertain", sample_p=0.1234567890123),
        _record("p-4", later, reason="random", sample_p=1.0),
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
def check_predictions_round_trip_hostile_values(store: Store) -> None:
    later = time.time() + 3600
    records = [
        _record(_PID, later, features=dict(_HOSTILE_VALUES)),
        _record("p-ünï", later, features={"y": 1, "x": None}, reason="random"),
        _record("p-order", later, features={"x": None, "y": 1}, uncertainty=float("nan")),
        _record("p-missing", later, features={}, outputs={}, version="", uncertainty=0.0),
        _record(
            "p-labels",
            later,
            outputs={
                _PID: {"label": 2**70, "proba": [[2**70, 0.5], [-0.0, float("nan")]]},
                "v名": {"label": None, "proba": []},
                "v3": {"label": "cat", "proba": [["cat", 1.0]], "extra": {"k": [1, "x"]}},
            },
        ),
    ]
    store.predictions.put_many(records)
    for record in records:
        back = store.predictions.get(record.id)
        assert back is not None, f"record {record.id!r} is gone"
        for name in ("id", "model", "version", "queued", "reason"):
            _same(getattr(record, name), getattr(back, name), f"{record.id}: {name}")
        for name in ("at", "expires_at", "uncertainty", "sample_p"):
            a, b = getattr(record, name), getattr(back, name)
            if a is None:
                assert b is None, f"{record.id}: {name} {b!r} came back for None"
            else:
                _same(float(a), b, f"{record.id}: {name}")
        _same(dict(record.features), dict(back.features), f"{record.id}: features")
        _same(dict(record.outputs), dict(back.outputs), f"{record.id}: outputs")
    scanned = store.predictions.scan("m", None)
    assert sorted(r.id for r in scanned) == sorted(r.id for r in records)


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


def _pid(ms: int, n: int = 0) -> str:
    """A prediction id as onlearn makes them: 32 hex digits, the creation time in ms first."""
    return f"{ms:012x}{n:020x}"


def _ids(records: list[PredictionRecord]) -> list[str]:
    return [r.id for r in records]


def _scan_all(store: Store, model: str, page: int) -> list[PredictionRecord]:
    """Every record ``scan`` gives for ``model``, read in pages with the last id as cursor."""
    seen: list[PredictionRecord] = []
    after = None
    while batch := store.predictions.scan(model, after, limit=page):
        assert len(batch) <= page, f"scan gave {len(batch)} records for limit={page}"
        seen.extend(batch)
        after = batch[-1].id
    return seen


@_check
def check_predictions_scan_pages_in_id_order_per_model(store: Store) -> None:
    later = time.time() + 3600
    base = 1_700_000_000_000
    records = {
        model: [
            _record(_pid(base + 7 * i + m, i), later, model=model, features={"i": i})
            for i in range(23)
        ]
        for m, model in enumerate(("a", "b", "a:b/é"))
    }
    # Several batches, each mixing models and out of id order.
    mixed = [r for group in zip(*records.values(), strict=True) for r in group]
    for batch in (mixed[40:], mixed[:5], mixed[20:40][::-1], mixed[5:20]):
        store.predictions.put_many(batch[::2] + batch[1::2])
    for model, expected in records.items():
        expected_ids = sorted(_ids(expected))
        whole = store.predictions.scan(model, None)
        assert _ids(whole) == expected_ids, f"scan({model!r}) is in id order, its records only"
        assert whole == sorted(expected, key=lambda r: r.id), "records come back whole"
        for page in (1, 4, 23, 50):
            assert _ids(_scan_all(store, model, page)) == expected_ids, f"pages of {page}"
        third = expected_ids[3]
        assert _ids(store.predictions.scan(model, third, limit=2)) == expected_ids[4:6]
        # A cursor need not be an id: a time prefix reads from that millisecond on.
        assert _ids(store.predictions.scan(model, third[:12], limit=2)) == expected_ids[3:5]
        assert store.predictions.scan(model, expected_ids[-1]) == [], "nothing after the last"
        assert store.predictions.scan(model, "g") == [], "a cursor above every id"
        assert _ids(store.predictions.scan(model, "", limit=1)) == expected_ids[:1]
        assert store.predictions.scan(model, None, limit=0) == []
        # An upper bound, inclusive: ids up to it, and a time prefix + "g" bounds a millisecond.
        scan = store.predictions.scan
        assert _ids(scan(model, None, upto=expected_ids[5])) == expected_ids[:6]
        assert _ids(scan(model, third, upto=expected_ids[6])) == expected_ids[4:7]
        assert _ids(scan(model, None, limit=2, upto=expected_ids[6])) == expected_ids[:2]
        prefix = expected_ids[8][:12]
        within = [i for i in expected_ids if i[:12] <= prefix]
        assert _ids(scan(model, None, upto=prefix + "g")) == within
        assert scan(model, None, upto="") == [] and scan(model, third, upto=third) == []
    assert store.predictions.scan("unknown", None) == []
    assert store.predictions.scan("a:", None) == [] and store.predictions.scan("", None) == []


@_check
def check_predictions_models_after(store: Store) -> None:
    later = time.time() + 3600
    base = 1_700_000_000_000
    ids = {m: [_pid(base + 10 * i + k, i) for i in range(5)] for k, m in enumerate("abc")}
    store.predictions.put_many([_record(rid, later, model=m) for m in ("a", "b") for rid in ids[m]])
    after = store.predictions.models_after
    fresh = dict.fromkeys(["a", "b", "c", "never"])
    assert after(fresh, "~") == {"a", "b"}, "every model with a record, and only those"
    assert after({"a": None}, "~") == {"a"}, "only the models asked about"
    # Each model from its own cursor, exclusive; up to ``upto``, inclusive.
    assert after({"a": ids["a"][4], "b": ids["b"][3]}, "~") == {"b"}
    assert after({"a": ids["a"][2], "b": ids["b"][2]}, ids["a"][3]) == {"a"}
    assert after({"a": ids["a"][2], "b": ids["b"][2]}, ids["a"][2]) == set()
    assert after({"a": ids["a"][1], "b": ids["b"][1]}, ids["b"][2]) == {"a", "b"}
    # A time prefix bounds a millisecond, as for scan; "" is before every id.
    assert after({"a": "", "b": ""}, ids["a"][0][:12] + "g") == {"a"}
    assert after({}, "~") == set()
    many = {f"m{i}": None for i in range(900)} | {"b": ids["b"][3]}
    assert after(many, "~") == {"b"}, "more models than one statement holds"


@_check
def check_predictions_scan_limit_defaults_to_1000(store: Store) -> None:
    later = time.time() + 3600
    records = [_record(_pid(1_700_000_000_000 + i), later) for i in range(1003)]
    store.predictions.put_many(records[500:] + records[:500])
    first = store.predictions.scan("m", None)
    assert _ids(first) == _ids(records[:1000]), "at most 1000 records when no limit is given"
    assert _ids(store.predictions.scan("m", first[-1].id)) == _ids(records[1000:])


@_check
def check_predictions_scan_skips_expired_records(store: Store) -> None:
    now = time.time()
    base = 1_700_000_000_000
    # Even ids live, odd ids expired (put expired, never live), in one batch and in several.
    records = [
        _record(_pid(base + i), now + 3600 if i % 2 == 0 else now - 10, features={"i": i})
        for i in range(20)
    ]
    store.predictions.put_many(records[10:])
    for record in records[:10]:
        store.predictions.put_many([record])
    live = _ids(records[::2])
    assert _ids(store.predictions.scan("m", None)) == live, "expired records are not scanned"
    assert _ids(store.predictions.scan("m", None, limit=3)) == live[:3]
    assert _ids(store.predictions.scan("m", records[1].id, limit=2)) == live[1:3], (
        "an expired record's id works as a cursor"
    )
    for page in (1, 2, 7):
        assert _ids(_scan_all(store, "m", page)) == live
    # A live record put again expired disappears; an expired one put again live reappears.
    store.predictions.put_many(
        [
            dataclasses.replace(records[0], expires_at=now - 1),
            dataclasses.replace(records[1], expires_at=now + 3600),
        ]
    )
    assert _ids(store.predictions.scan("m", None, limit=2)) == [records[1].id, records[2].id]
    assert store.predictions.purge_expired(time.time()) == 10
    assert _ids(store.predictions.scan("m", None)) == [records[1].id, *live[1:]]
    assert store.predictions.purge_expired(now + 7200) == 10
    assert store.predictions.scan("m", None) == [], "nothing once everything is purged"
    store.predictions.put_many([records[4]])
    assert store.predictions.scan("m", None) == [records[4]], "a purged id can be put again"


@_check
def check_predictions_scan_skips_records_that_expired_after_their_put(store: Store) -> None:
    now = time.time()
    base = 1_700_000_000_000
    soon = [_record(_pid(base + i), now + 0.25) for i in range(30)]
    later = [_record(_pid(base + 30 + i), now + 3600) for i in range(5)]
    store.predictions.put_many(soon[::3] + later + soon[1::3] + soon[2::3])
    assert _ids(store.predictions.scan("m", None, limit=2)) == _ids(soon[:2])
    time.sleep(max(0.0, now + 0.3 - time.time()))
    # The first pages of ids hold expired records only; scan reads past them, unpurged.
    assert _ids(store.predictions.scan("m", None, limit=3)) == _ids(later[:3])
    assert _ids(store.predictions.scan("m", soon[4].id)) == _ids(later)
    assert _ids(_scan_all(store, "m", 2)) == _ids(later)
    assert store.predictions.purge_expired(time.time()) == 30
    assert _ids(store.predictions.scan("m", None)) == _ids(later)


@_check
def check_predictions_scan_follows_a_record_put_again(store: Store) -> None:
    later = time.time() + 3600
    ids = [_pid(1_700_000_000_000 + i) for i in range(4)]
    store.predictions.put_many([_record(rid, later) for rid in ids])
    replaced = _record(ids[1], later, version="v3", queued=False)
    store.predictions.put_many([replaced, replaced])
    assert store.predictions.scan("m", None) == [
        _record(ids[0], later),
        replaced,
        _record(ids[2], later),
        _record(ids[3], later),
    ], "a record put again is scanned once, as it is now"
    moved = _record(ids[2], later, model="n")
    store.predictions.put_many([moved])
    assert _ids(store.predictions.scan("m", None)) == [ids[0], ids[1], ids[3]]
    assert store.predictions.scan("n", None) == [moved], "a record put under another model moves"
    assert _ids(store.predictions.scan("m", ids[0])) == [ids[1], ids[3]]
    assert store.predictions.purge_expired(later + 1) == 4
    assert store.predictions.scan("m", None) == [] and store.predictions.scan("n", None) == []


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
    assert all(row["seq"] is None for row in history), "set_role rows carry no seq"
    assert reg.role_history("other") == []
    assert reg.roles_state("m") == RolesState({"champion": "v2"}, 0.0, 0), (
        "set_role changes the roles, not the canary share nor the seq of change_roles"
    )


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
    assert [reg.latest_snapshot_seq(*k) for k in [("m", "v1"), ("m", "v2"), ("m", "v3")]] == [
        30,
        5,
        0,
    ]
    assert [reg.latest_snapshot_at(*k) for k in [("m", "v1"), ("m", "v2"), ("m", "v3")]] == [
        30.0,
        5.0,
        None,
    ], "the time of the snapshot of the highest seq, None without one"
    reg.put_snapshot(Snapshot("m", "v1", 30, at=31.0, artifact=b"again"))
    assert reg.latest_snapshot("m", "v1") == Snapshot("m", "v1", 30, 31.0, b"again")
    assert reg.latest_snapshot_at("m", "v1") == 31.0, "a snapshot replaced at its seq"


@_check
def check_registry_documents(store: Store) -> None:
    reg = store.registry
    document = {
        "floats": [0.1, 1 / 3, -2.5e-300, 1e300, 0.0, -0.0, 1.0],
        "ints": [0, -1, 2**53 + 1, 10**30],
        "flags": [True, False],
        "none": None,
        "text": 'Zürich \u00a0 日本 "quoted" \n',
        "nested": {"lists": [[1, [2, [3.5, None]]], []], "empty": {}, "deep": {"a": {"b": {}}}},
        "bins": [{"lo": -1.5, "hi": 2.25, "count": 7}] * 50,
    }
    assert reg.get_document("m", "profile:v1") is None, "an unknown document is None"
    reg.put_document("m", "profile:v1", document)
    back = reg.get_document("m", "profile:v1")
    assert back == document, "a document round-trips"
    assert type(back) is dict
    flags, ints, floats = back["flags"], back["ints"], back["floats"]
    assert [type(v) for v in flags + ints] == [bool, bool] + [int] * 4, "bools and ints keep type"
    assert all(type(v) is float for v in floats) and math.copysign(1.0, floats[5]) == -1.0
    back["none"] = "changed"  # the caller's copy: changing it changes nothing stored
    assert reg.get_document("m", "profile:v1") == document

    report = {"at": 1.5, "alarms": []}
    reg.put_document("m", "report", report)
    reg.put_document("n", "report", {"at": 2.5})
    reg.put_document("m", "report", {"at": 3.5, "cursor": {"log_seq": 10}})
    assert reg.get_document("m", "report") == {"at": 3.5, "cursor": {"log_seq": 10}}, (
        "put replaces the whole document"
    )
    assert reg.get_document("n", "report") == {"at": 2.5}, "documents are per model"
    assert reg.get_document("m", "profile:v1") == document, "and per name"
    assert reg.get_document("n", "profile:v1") is None and reg.get_document("x", "report") is None
    reg.put_document("m", "empty", {})
    assert reg.get_document("m", "empty") == {}

    big = {"values": [i / 7 for i in range(20_000)], "name": "x" * 100_000}  # about 500 KB
    reg.put_document("m:é/{x}", "big", big)
    assert reg.get_document("m:é/{x}", "big") == big
    try:
        reg.put_document("m", "bad", ["not", "an", "object"])  # type: ignore[arg-type]
    except TypeError:
        pass
    else:
        raise AssertionError("a document is a JSON object")
    assert reg.get_document("m", "bad") is None


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
def check_registry_create_version_is_idempotent_by_key(store: Store) -> None:
    reg = store.registry
    v1 = reg.create_version("m", {"pipeline": "logistic"}, {"job": "j-1"}, at=10.0, key="job-1")
    again = reg.create_version("m", {"pipeline": "other"}, {"job": "retry"}, at=11.0, key="job-1")
    assert again == v1, "a known key returns the version registered under it"
    assert reg.list_versions("m") == [v1], "and registers nothing"
    v2 = reg.create_version("m", {"pipeline": "forest"}, {}, at=12.0, key="job-2")
    v3 = reg.create_version("m", {"pipeline": "tree"}, {}, at=13.0)
    v4 = reg.create_version("m", {"pipeline": "tree"}, {}, at=14.0)
    assert [v.version for v in (v1, v2, v3, v4)] == ["v1", "v2", "v3", "v4"], "no key: new ones"
    assert reg.create_version("m", {}, {}, at=15.0, key="job-2") == v2
    other = reg.create_version("n", {"pipeline": "x"}, {}, at=16.0, key="job-1")
    assert other.version == "v1" and other.model == "n", "keys are per model"
    assert reg.list_versions("m") == [v1, v2, v3, v4]


@_check
def check_registry_concurrent_create_version_with_one_key(store: Store) -> None:
    threads_n, rounds = 6, 4
    got: list[list[str]] = [[] for _ in range(threads_n)]
    errors: list[BaseException] = []
    start = threading.Barrier(threads_n)

    def create(t: int) -> None:
        try:
            start.wait()
            for r in range(rounds):
                # Every thread registers the version of round r: a job retried by many workers.
                info = store.registry.create_version("m", {"t": t}, {}, at=float(r), key=f"r{r}")
                got[t].append(info.version)
        except BaseException as exc:  # surfaced in the calling thread below
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(t,)) for t in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, f"concurrent create_version failed: {errors[0]!r}"
    versions = store.registry.list_versions("m")
    assert len(versions) == rounds, f"one version per key, got {[v.version for v in versions]}"
    for r in range(rounds):
        assert len({got[t][r] for t in range(threads_n)}) == 1, f"key r{r} named two versions"


@_check
def check_registry_spec_signature_round_trips(store: Store) -> None:
    reg = store.registry
    spec = {"pipeline": "logistic", "params": {"l2": 0.1 + 0.2, "classes": [True, "b", 3]}}
    plain = reg.create_version("m", spec, {"by": "test"}, at=10.0)
    assert plain.spec_signature is None, "no signature given: None"
    signed = reg.create_version("m", spec, {}, at=11.0, spec_signature="hmac-sha256:0a1b")
    assert signed.spec_signature == "hmac-sha256:0a1b", f"stored as given, got {signed}"
    odd = 'é "quoted" {json} \' -- ; \x00?'  # the store keeps any string, byte for byte
    other = reg.create_version("m", {"pipeline": "tree"}, {}, at=12.0, spec_signature=odd)
    assert reg.get_version("m", "v1") == plain
    assert reg.get_version("m", "v2") == signed
    back = reg.get_version("m", "v3")
    assert back == other and back is not None and back.spec_signature == odd
    assert reg.list_versions("m") == [plain, signed, other]
    assert signed.spec == spec, "the spec is stored as given, floats exact"


@_check
def check_registry_set_spec_signature(store: Store) -> None:
    reg = store.registry
    spec = {"pipeline": "forest", "params": {"n_models": 10, "lambda": 6.000000000000001}}
    meta = {"trained_on": [0, 100], "score": 0.1 + 0.7}
    v1 = reg.create_version("m", spec, meta, at=10.0)
    v2 = reg.create_version("m", {"pipeline": "tree"}, {}, at=11.0, spec_signature="old")
    n1 = reg.create_version("n", {"pipeline": "x"}, {}, at=12.0)
    signed = reg.set_spec_signature("m", "v1", "sig-1")
    assert signed == dataclasses.replace(v1, spec_signature="sig-1"), (
        f"only the signature changes (spec, meta, created_at stay), got {signed}"
    )
    assert reg.get_version("m", "v1") == signed
    back = reg.get_version("m", "v1")
    assert back is not None and (back.spec, back.meta) == (spec, meta), "spec and meta exact"
    replaced = reg.set_spec_signature("m", "v2", "new")
    assert replaced == dataclasses.replace(v2, spec_signature="new"), "a signature is replaced"
    assert reg.list_versions("m") == [signed, replaced]
    assert reg.get_version("n", "v1") == n1, "other models are left alone"
    for model, version in (("m", "v3"), ("m", "v0"), ("m", "latest"), ("m", ""), ("zz", "v1")):
        got = reg.set_spec_signature(model, version, "sig")
        assert got is None, f"{model}/{version!r} is no version: None, got {got}"
        assert reg.get_version(model, version) is None, "and nothing is created"
    assert reg.list_versions("zz") == []
    assert [v.version for v in reg.list_versions("m")] == ["v1", "v2"]
    # A version signed later is still the same version for its key and its roles.
    reg.set_role("m", "champion", "v1", actor="a", reason="r", at=13.0)
    assert reg.roles("m") == {"champion": "v1"}


@_check
def check_registry_create_version_with_a_known_key_keeps_the_stored_signature(
    store: Store,
) -> None:
    reg = store.registry
    first = reg.create_version("m", {"p": 1}, {}, at=10.0, key="job-1", spec_signature="first")
    again = reg.create_version("m", {"p": 2}, {}, at=11.0, key="job-1", spec_signature="second")
    assert again == first and again.spec_signature == "first", "the first signature is kept"
    unsigned = reg.create_version("m", {"p": 3}, {}, at=12.0, key="job-2")
    assert reg.create_version("m", {}, {}, at=13.0, key="job-2", spec_signature="late") == (
        unsigned
    ), "a key registered without a signature gets none from a retry"
    resigned = reg.set_spec_signature("m", "v1", "re-signed")
    assert resigned is not None
    assert reg.create_version("m", {}, {}, at=14.0, key="job-1") == resigned, (
        "a known key returns the version as it is now, signature included"
    )
    assert [v.spec_signature for v in reg.list_versions("m")] == ["re-signed", None]


def _control(changes: Mapping[str, str | None], key: str | None = None, **extra: Any) -> Event:
    """A promotion's control event; its payload says what changed, so the log can be folded."""
    return Event(
        EventKind.PROMOTE, {"changes": dict(changes), **extra}, at=1_700_000_500.0, key=key
    )


def _history(store: Store, model: str = "m") -> list[tuple]:
    keys = ("role", "version", "previous", "actor", "reason", "at", "seq")
    return [tuple(row[k] for k in keys) for row in store.registry.role_history(model)]


@_check
def check_registry_change_roles_appends_the_event_and_changes_roles_together(
    store: Store,
) -> None:
    reg, log = store.registry, store.log
    for n in range(3):
        reg.create_version("m", {"n": n}, {}, at=float(n))
    log.append("m", [_label(0), _label(1)])
    assert reg.roles_state("m") == RolesState(), "no change yet: no roles, share 0, seq 0"

    event = _control({"champion": "v1"}, key="promote-1")
    seq = reg.change_roles("m", {"champion": "v1"}, event, actor="alice", reason="first", at=10.0)
    assert seq == 3, "the control event takes the log's next seq"
    assert log.head("m") == 3
    assert log.read("m", after=2) == [dataclasses.replace(event, seq=3)], "one event, as given"
    assert reg.roles("m") == {"champion": "v1"}
    assert reg.roles_state("m") == RolesState({"champion": "v1"}, 0.0, 3)
    assert _history(store) == [("champion", "v1", None, "alice", "first", 10.0, 3)]

    # Several roles at once, the canary share with them; only roles that change are audited.
    changes = {"champion": "v2", "shadow": "v1", "canary": "v3", "old": None}
    seq = reg.change_roles(
        "m", changes, _control(changes), actor="bob", reason="r2", at=20.0, canary_share=0.25
    )
    assert seq == 4
    assert reg.roles_state("m") == RolesState(
        {"champion": "v2", "shadow": "v1", "canary": "v3"}, 0.25, 4
    )
    assert _history(store)[1:] == [
        ("champion", "v2", "v1", "bob", "r2", 20.0, 4),
        ("shadow", "v1", None, "bob", "r2", 20.0, 4),
        ("canary", "v3", None, "bob", "r2", 20.0, 4),
    ], "one row per role that changed, in the order of the changes, with the event's seq"

    # A change that changes nothing still appends its event (followers switch at its seq).
    seq = reg.change_roles(
        "m", {"champion": "v2"}, _control({"champion": "v2"}), actor="c", reason="r", at=30.0
    )
    assert seq == 5 and log.head("m") == 5
    assert reg.roles_state("m") == RolesState(
        {"champion": "v2", "shadow": "v1", "canary": "v3"}, 0.25, 5
    ), "the share is kept when not given"
    assert len(_history(store)) == 4, "no audit row for a role that kept its version"

    # Removing roles; labels appended meanwhile share the numbering.
    assert log.append("m", [_label(2)]) == [6]
    seq = reg.change_roles(
        "m",
        {"canary": None, "shadow": None},
        _control({"canary": None, "shadow": None}),
        actor="d",
        reason="end",
        at=40.0,
        canary_share=0.0,
    )
    assert seq == 7
    assert reg.roles_state("m") == RolesState({"champion": "v2"}, 0.0, 7)
    assert _history(store)[4:] == [
        ("canary", None, "v3", "d", "end", 40.0, 7),
        ("shadow", None, "v1", "d", "end", 40.0, 7),
    ]
    assert [e.seq for e in log.read("m", after=0)] == list(range(1, 8))
    assert reg.roles_state("other") == RolesState(), "models are independent"


@_check
def check_registry_change_roles_with_a_known_key_changes_nothing(store: Store) -> None:
    reg, log = store.registry, store.log
    reg.create_version("m", {}, {}, at=1.0)
    reg.create_version("m", {}, {}, at=2.0)
    first = _control({"champion": "v1"}, key="promote-7")
    seq = reg.change_roles("m", {"champion": "v1"}, first, actor="a", reason="r", at=10.0)
    log.append("m", [_label(0)])
    state, history = reg.roles_state("m"), _history(store)
    # A retry (same key), even one that says something else, happens once: the first time.
    retry = _control({"champion": "v2"}, key="promote-7")
    again = reg.change_roles(
        "m", {"champion": "v2"}, retry, actor="b", reason="retry", at=20.0, canary_share=0.5
    )
    assert again == seq, "a known key returns the seq of its event"
    assert log.head("m") == seq + 1, "and appends nothing"
    assert reg.roles_state("m") == state and _history(store) == history, "nor changes roles"
    assert log.read("m", after=0)[0] == dataclasses.replace(first, seq=seq)
    # The key is shared with plain appends: a label with that key is a duplicate too.
    dup = log.append("m", [Event(EventKind.LABEL, {"x": 1}, at=0.0, key="promote-7")])
    assert dup == [seq] and dup.new == [False]
    appended = log.append("m", [Event(EventKind.LABEL, {"x": 1}, at=0.0, key="label-1")])
    taken = _control({"champion": "v2"}, key="label-1")
    assert (
        reg.change_roles("m", {"champion": "v2"}, taken, actor="c", reason="r", at=30.0)
        == (appended[0])
    ), "a key already used by a label event names that event"
    assert reg.roles("m") == {"champion": "v1"}


@_check
def check_registry_change_roles_to_an_unknown_version_changes_nothing(store: Store) -> None:
    reg, log = store.registry, store.log
    reg.create_version("m", {}, {}, at=1.0)
    reg.create_version("m", {}, {}, at=2.0)
    reg.change_roles(
        "m",
        {"champion": "v1"},
        _control({"champion": "v1"}),
        actor="a",
        reason="r",
        at=5.0,
        canary_share=0.1,
    )
    head, state, history = log.head("m"), reg.roles_state("m"), _history(store)
    for changes in (
        {"champion": "v9"},
        {"shadow": "v2", "champion": "v3"},  # one good change does not go through alone
        {"champion": "latest"},
        {"canary": "v0"},
    ):
        try:
            reg.change_roles(
                "m",
                changes,
                _control(changes, key="bad"),
                actor="eve",
                reason="typo",
                at=9.0,
                canary_share=0.9,
            )
        except LookupError:
            pass
        else:
            raise AssertionError(f"{changes}: a role cannot go to a version that does not exist")
        assert log.head("m") == head, f"{changes}: no event appended"
        assert reg.roles_state("m") == state, f"{changes}: roles, share and seq unchanged"
        assert _history(store) == history, f"{changes}: no audit row"
    try:
        reg.change_roles(
            "n", {"champion": "v1"}, _control({"champion": "v1"}), actor="e", reason="r", at=9.0
        )
    except LookupError:
        pass
    else:
        raise AssertionError("versions are per model")
    assert log.head("n") == 0
    # The refused key was not taken: the corrected call goes through.
    seq = reg.change_roles(
        "m", {"shadow": "v2"}, _control({"shadow": "v2"}, key="bad"), actor="a", reason="r", at=10.0
    )
    assert seq == head + 1 and reg.roles("m") == {"champion": "v1", "shadow": "v2"}


@_check
def check_registry_canary_share_round_trips_and_is_validated(store: Store) -> None:
    reg, log = store.registry, store.log
    reg.create_version("m", {}, {}, at=1.0)
    for share in (0.125, 1.0, 0.0, 1 / 3, 1e-9):
        reg.change_roles(
            "m", {"canary": "v1"}, _control({}), actor="a", reason="r", at=2.0, canary_share=share
        )
        back = reg.roles_state("m").canary_share
        assert back == share and type(back) is float, f"share {share!r} came back as {back!r}"
    head, state = log.head("m"), reg.roles_state("m")
    for bad in (-0.01, 1.5, math.nan, math.inf, -math.inf):
        try:
            reg.change_roles(
                "m", {"canary": None}, _control({}), actor="a", reason="r", at=3.0, canary_share=bad
            )
        except ValueError:
            pass
        else:
            raise AssertionError(f"canary_share {bad!r} is outside [0, 1]")
        assert log.head("m") == head and reg.roles_state("m") == state, "a refused call: no change"


@_check
def check_registry_concurrent_change_roles_keep_log_and_roles_together(store: Store) -> None:
    reg, log = store.registry, store.log
    versions = [reg.create_version("m", {"n": n}, {}, at=float(n)).version for n in range(4)]
    roles = ("champion", "shadow", "canary")
    threads_n, rounds = 5, 12
    returned: list[list[tuple[int, dict]]] = [[] for _ in range(threads_n)]
    errors: list[BaseException] = []
    start = threading.Barrier(threads_n + 1)

    def admin(t: int) -> None:
        try:
            start.wait()
            for r in range(rounds):
                changes: dict[str, str | None] = {
                    roles[(t + r) % 3]: versions[(t * r + r) % 4],
                    roles[(t + r + 1) % 3]: None if (t + r) % 4 == 0 else versions[t % 4],
                }
                share = None if r % 3 else ((t * rounds + r) % 10) / 10
                # Every fourth round all threads send one key: one of them wins, the others
                # must get the winner's seq back and change nothing.
                key = f"round-{r}" if r % 4 == 0 else None
                event = _control(changes, key=key, canary_share=share, by=t)
                seq = reg.change_roles(
                    "m", changes, event, actor=f"t{t}", reason=f"r{r}", at=float(r),
                    canary_share=share,
                )  # fmt: skip
                returned[t].append((seq, changes))
        except BaseException as exc:  # surfaced in the calling thread below
            errors.append(exc)

    def labeller() -> None:
        try:
            start.wait()
            for i in range(40):
                log.append("m", [_label(i)])
        except BaseException as exc:  # surfaced in the calling thread below
            errors.append(exc)

    threads = [threading.Thread(target=admin, args=(t,)) for t in range(threads_n)]
    threads.append(threading.Thread(target=labeller))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, f"concurrent change_roles failed: {errors[0]!r}"

    events = log.read("m", after=0, limit=10_000)
    assert [e.seq for e in events] == list(range(1, log.head("m") + 1)), "gapless"
    controls = [e for e in events if e.kind is EventKind.PROMOTE]
    keyed_rounds = len(range(0, rounds, 4))
    assert len(controls) == threads_n * rounds - (threads_n - 1) * keyed_rounds, (
        "one event per change, one per shared key"
    )
    by_seq = {e.seq: e for e in controls}
    for t in range(threads_n):
        for r, (seq, changes) in enumerate(returned[t]):
            event = by_seq.get(seq)
            assert event is not None, f"thread {t} round {r}: seq {seq} is no control event"
            if r % 4 == 0:
                assert event.key == f"round-{r}"
            else:
                assert event.payload["by"] == t and event.payload["changes"] == changes

    # Fold the control events in log order: the roles, the share, the seq and every audit row
    # must be what the log says, whatever order the store gave the concurrent calls.
    state: dict[str, str] = {}
    share, last = 0.0, 0
    expected_rows = []
    for event in controls:
        for role, version in event.payload["changes"].items():
            previous = state.get(role)
            if previous != version:
                expected_rows.append((role, version, previous, event.seq))
            if version is None:
                state.pop(role, None)
            else:
                state[role] = version
        if event.payload["canary_share"] is not None:
            share = event.payload["canary_share"]
        last = event.seq  # type: ignore[assignment]
    assert reg.roles_state("m") == RolesState(state, share, last), "roles equal the log's fold"
    rows = [(r["role"], r["version"], r["previous"], r["seq"]) for r in reg.role_history("m")]
    assert rows == expected_rows, "audit rows follow the log"


@_check
def check_ping(store: Store) -> None:
    store.ping()


@_check
def check_registry_prunes_old_snapshots(store: Store) -> None:
    registry = store.registry
    for seq in (10, 20, 30, 40):
        registry.put_snapshot(Snapshot("m", "v1", seq, float(seq), b"state %d" % seq))
    registry.put_snapshot(Snapshot("m", "v2", 5, 5.0, b"other version"))
    assert registry.prune_snapshots("m", "v1", keep=2) == 2
    assert registry.latest_snapshot("m", "v1").seq == 40
    assert registry.latest_snapshot("m", "v1", max_seq=35).seq == 30
    assert registry.latest_snapshot("m", "v1", max_seq=25) is None, "pruned snapshots are gone"
    assert registry.latest_snapshot("m", "v2").seq == 5, "other versions are left alone"
    assert registry.prune_snapshots("m", "v1", keep=2) == 0
    assert registry.prune_snapshots("m", "nothing", keep=1) == 0
