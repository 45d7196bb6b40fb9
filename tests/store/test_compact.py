"""The compact encoding (onlearn/store/compact.py): exact round trips, shapes and their limit,
what a reader of this version does with rows it cannot read or fields it does not know, and the
shapes table shared by several stores (processes) on SQLite and Redis."""

from __future__ import annotations

import dataclasses
import enum
import threading
from collections.abc import Iterator
from pathlib import Path

import msgspec
import numpy as np
import pytest

from onlearn.records import Event, EventKind, PredictionRecord
from onlearn.store import compact, open_store
from onlearn.store.base import Store
from onlearn.store.codec import dumps, encode_prediction
from onlearn.store.compact import (
    CorruptRow,
    Shapes,
    pack_event,
    pack_payload,
    pack_record,
    unpack_event,
    unpack_payload,
    unpack_record,
)

PID = "01a2508963002ed204eb0300a897eebb"
FEATURES = {
    "empty_server_form_handler": 1.0,
    "popup_window": 0.5,
    "https": 1.0,
    "request_from_other_domain": 0.0,
    "anchor_from_other_domain": 1.0,
    "is_popular": 0.5,
    "long_url": 0.0,
    "age_of_domain": 1,
    "ip_in_url": 0,
}
OUTPUTS = {
    "v1": {"label": False, "proba": [[True, 0.030243741916847828], [False, 0.9697562580831521]]}
}
LABEL = {
    "label": False,
    "source": "app",
    "labeller": None,
    "prediction_id": PID,
    "features": FEATURES,
    "predicted_at": 1796647510.7847302,
    "outputs": OUTPUTS,
    "answered_by": "v1",
    "sampled": None,
    # Issue 13: the sampling probability (filled by a sampler later) and what a label corrects.
    "sample_p": None,
    "corrects": None,
}
RECORD = PredictionRecord(
    id=PID,
    model="phishing",
    at=1796647510.7847302,
    features=FEATURES,
    version="v1",
    outputs=OUTPUTS,
    uncertainty=0.030243741916847828,
    queued=False,
    expires_at=1797252310.7847302,
    reason=None,
)


def test_the_example_models_label_event_and_record_are_small() -> None:
    shapes = Shapes.in_memory()
    payload = pack_payload(shapes, "phishing", LABEL, f"prediction:{PID}")
    body = pack_record(shapes, RECORD, columns=True)
    # Against 498 B and 496 B of JSON; the rows around them are in benchmarks/RESULTS.md.
    assert (len(payload), len(body)) == (102, 91), (len(payload), len(body))
    assert (len(dumps(LABEL)), len(encode_prediction(RECORD))) == (498, 496)
    assert unpack_payload(shapes, "phishing", payload, f"prediction:{PID}") == LABEL
    back = unpack_record(
        shapes, body, id=PID, model="phishing", at=RECORD.at, expires_at=RECORD.expires_at
    )
    assert back == RECORD


def test_corrections_and_label_events_of_an_earlier_onlearn_are_read() -> None:
    """A correction is a label event with the fields of what it corrects: a shape of its own,
    a little larger than a first label. Label events written before these fields existed (an
    older shape) are read as they were, and mean "corrects nothing" (``.get`` is None)."""
    from onlearn.corrections import correction_event, corrects

    shapes = Shapes.in_memory()
    key = f"prediction:{PID}"
    first = Event(EventKind.LABEL, LABEL, 1796647511.0, seq=7, key=key)
    fix = correction_event(first, label=True, source="human", labeller="ann", chain_key=key, at=2.0)
    data = pack_payload(shapes, "phishing", fix.payload, fix.key)
    assert len(data) < 160, len(data)
    back = unpack_payload(shapes, "phishing", data, fix.key)
    assert back == fix.payload and back["prediction_id"] == PID
    assert (corrects(back), back["previous_label"], back["previous_source"]) == (7, False, "app")
    old = {k: v for k, v in LABEL.items() if k not in ("sample_p", "corrects")}
    again = unpack_payload(shapes, "phishing", pack_payload(shapes, "phishing", old, key), key)
    assert again == old and corrects(again) is None


def test_values_come_back_with_their_types() -> None:
    shapes = Shapes.in_memory()
    payload = {"t": True, "one": 1, "float_one": 1.0, "s": "1", "none": None, "l": (1, 2.0)}
    back = unpack_payload(shapes, "m", pack_payload(shapes, "m", payload, None), None)
    assert [type(v) for v in back.values()] == [bool, int, float, str, type(None), list]
    assert back["l"] == [1, 2.0] and type(back["l"][1]) is float


class _Color(str, enum.Enum):
    RED = "red"


class _Size(enum.IntEnum):
    BIG = 3


def test_subclasses_are_written_as_json_writes_them() -> None:
    shapes = Shapes.in_memory()
    payload = {"f": np.float64(0.25), "c": _Color.RED, "n": _Size.BIG, "in_list": [np.float64(0.1)]}
    back = unpack_payload(shapes, "m", pack_payload(shapes, "m", payload, None), None)
    assert back == {"f": 0.25, "c": "red", "n": 3, "in_list": [0.1]}
    assert [type(v) for v in back.values()] == [float, str, int, list]


@pytest.mark.parametrize("bad", [object(), b"bytes", {1, 2}, [object()]])
def test_what_json_cannot_hold_is_refused(bad: object) -> None:
    shapes = Shapes.in_memory()
    with pytest.raises(TypeError):
        pack_payload(shapes, "m", {"x": bad}, None)


def test_a_model_past_its_shape_limit_writes_maps() -> None:
    shapes = Shapes.in_memory(limit=2)
    payloads = [{f"k{i}": i, "x": [i]} for i in range(5)]
    data = [pack_payload(shapes, "m", p, None) for p in payloads]
    assert [unpack_payload(shapes, "m", d, None) for d in data] == payloads
    assert len(shapes._keys["m"]) == 2 and "m" in shapes._full
    assert len(data[4]) > len(data[0]), "past the limit the names are in the row"
    # Another model has its own limit.
    assert unpack_payload(shapes, "n", pack_payload(shapes, "n", payloads[4], None), None)
    assert len(shapes._keys["n"]) == 1


def test_a_new_field_is_a_new_shape_that_this_reader_decodes() -> None:
    """The room left for a later onlearn's fields (a correction's, a sampling probability): a
    payload with more fields gets a shape of its own, registered in the store, and any reader
    returns them."""
    writer = Shapes.in_memory()
    later = {**LABEL, "corrects": 12, "previous_label": True, "sample_p": 0.125}
    data = pack_payload(writer, "phishing", later, f"prediction:{PID}")
    reader = Shapes(writer._load, writer._register)  # another process on the same store
    assert unpack_payload(reader, "phishing", data, f"prediction:{PID}") == later


def test_trailing_fields_of_a_record_are_ignored() -> None:
    """A later onlearn may add fields at the end of a record's array; this one reads its own
    (the seventh, ``sample_p``, came with importance weights)."""
    shapes = Shapes.in_memory()
    body = pack_record(shapes, RECORD, columns=True)
    fields = msgspec.msgpack.decode(body)  # extension values stay Ext objects
    longer = msgspec.msgpack.encode([*fields, 0.25, {"new": "field"}])
    back = unpack_record(
        shapes, longer, id=PID, model="phishing", at=RECORD.at, expires_at=RECORD.expires_at
    )
    assert back == dataclasses.replace(RECORD, sample_p=0.25)


def test_events_round_trip_whole() -> None:
    shapes = Shapes.in_memory()
    event = Event(EventKind.LABEL, LABEL, 1796647511.25, None, f"prediction:{PID}")
    back = unpack_event(shapes, "phishing", pack_event(shapes, "phishing", event), 7, event.key)
    assert back == Event(EventKind.LABEL, LABEL, 1796647511.25, 7, event.key)
    record = unpack_record(shapes, pack_record(shapes, RECORD, columns=False), id=PID)
    assert record == RECORD


def test_unreadable_rows_raise_corrupt_row() -> None:
    shapes = Shapes.in_memory()
    good = pack_payload(shapes, "m", {"a": 1, "b": 2}, None)
    encode = msgspec.msgpack.encode
    cases = [
        b"\xc1\x02anything",  # a later format
        encode([99, 1, 2]),  # a shape the store lacks
        encode([1, 1, 2, 3]),  # more values than the shape has keys
        encode([0, {"x": msgspec.msgpack.Ext(77, b"")}]),  # an extension type of a later onlearn
        good[:-1],  # cut short
    ]
    for data in cases:
        with pytest.raises(CorruptRow):
            unpack_payload(shapes, "m", data, None)


def test_shapes_registered_by_one_process_are_found_by_another() -> None:
    writer = Shapes.in_memory()
    data = pack_payload(writer, "m", {"a": 1}, None)
    reader = Shapes(writer._load, writer._register)
    reader.id_of("m", ("other",))  # the reader knows the model already, not the new shape
    second = pack_payload(writer, "m", {"b": 2, "c": 3}, None)
    assert unpack_payload(reader, "m", data, None) == {"a": 1}
    assert unpack_payload(reader, "m", second, None) == {"b": 2, "c": 3}


# --- the shapes table on the backends ----------------------------------------------------------


@pytest.fixture(params=["sqlite", "redis"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/shapes.db"
    return request.getfixturevalue("redis_url")


@pytest.fixture
def two_stores(url: str) -> Iterator[tuple[Store, Store]]:
    """Two stores on one file or database: two processes, each with its own cache."""
    with open_store(url) as a, open_store(url) as b:
        yield a, b


def test_concurrent_registrations_give_one_id_per_shape(two_stores: tuple[Store, Store]) -> None:
    stores = two_stores
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def write(store: Store, t: int) -> None:
        try:
            start.wait()
            for i in range(15):
                # Shapes both writers meet, and shapes of one writer alone.
                payload = {f"shared{i}": i, "x": t} if i % 2 else {f"own{t}-{i}": i}
                store.log.append("m", [Event(EventKind.LABEL, payload, float(i))])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(stores[t % 2], t)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    expected = sorted(
        (tuple(e.payload), tuple(e.payload.values())) for e in stores[0].log.read("m", 0)
    )
    for store in stores:
        read = store.log.read("m", after=0)
        assert len(read) == 60
        assert sorted((tuple(e.payload), tuple(e.payload.values())) for e in read) == expected
    fresh_ids = {}
    for store in stores:
        shapes = store.log._db.shapes if hasattr(store.log, "_db") else store.log._shapes  # type: ignore[attr-defined]
        shapes._learn("m")
        ids = shapes._ids["m"]
        assert len(set(ids.values())) == len(ids), "one id per shape"
        fresh_ids.update(ids)
    assert len(set(fresh_ids.values())) == len(fresh_ids), "both stores agree on every id"


def test_the_shape_limit_holds_on_the_backends(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from onlearn.store.redis import shapes as redis_shapes
    from onlearn.store.sqlite import shapes as sqlite_shapes

    monkeypatch.setattr(sqlite_shapes, "MAX_SHAPES", 3)
    monkeypatch.setattr(redis_shapes, "MAX_SHAPES", 3)
    payloads = [{f"k{i}": i} for i in range(6)]
    with open_store(url) as store:
        store.log.append("m", [Event(EventKind.LABEL, p, 1.0) for p in payloads])
        store.predictions.put_many(
            [
                PredictionRecord(f"p{i}", "m", 1.0, p, "v1", {}, expires_at=4e9)
                for i, p in enumerate(payloads)
            ]
        )
    with open_store(url) as store:  # a fresh cache
        assert [e.payload for e in store.log.read("m", 0)] == payloads
        assert [r.features for r in store.predictions.scan("m", None)] == payloads


def test_registering_inside_a_write_transaction_is_refused(tmp_path: Path) -> None:
    """A shape is committed before the row that uses it: the SQLite ports encode before they
    take the write lock, and registering inside a transaction would be a bug of theirs."""
    with open_store(f"sqlite:///{tmp_path}/t.db") as store:
        db = store.log._db  # type: ignore[attr-defined]
        with db.transaction(db.durable()), pytest.raises(RuntimeError):
            db.shapes.id_of("m", ("a", "b"))


def test_the_float_cache_keeps_the_sign_of_zero() -> None:
    shapes = Shapes.in_memory()
    for value in (0.0, -0.0, 0.0, -0.0):
        back = unpack_payload(
            shapes, "m", pack_payload(shapes, "m", {"x": value, "l": value}, None), None
        )
        assert str(back["x"]) == str(value) and str(back["l"]) == str(value)
    assert compact._SHORT[0.0] is compact._ZERO


@pytest.mark.parametrize(
    "payload", [{"x": "a\ud800"}, {"\udfff": 1}, {"l": ["\ud800"]}, {"d": {"k": {"\ud800": 1}}}]
)
def test_strings_utf8_cannot_hold_are_refused_as_before(payload: dict) -> None:
    """As with JSON text in SQLite and Redis: the HTTP layer refuses them first, and the
    prediction writer drops a record it cannot write (tests/core/test_background_writers.py)."""
    with pytest.raises(UnicodeEncodeError):
        pack_payload(Shapes.in_memory(), "m", payload, None)
