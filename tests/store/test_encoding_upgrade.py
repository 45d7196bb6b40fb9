"""Stores written by onlearn before the compact encoding (JSON rows) are read by this one, mixed
with new rows, on SQLite and on Redis; ``onlearn store migrate`` rewrites the SQLite rows.

The fixtures were written by onlearn at commit 23606a9 (tests/store/fixtures/: the SQLite file
as an SQL dump, the Redis keys as JSON) from the events and records of ``_old_events`` and
``_old_records`` below.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import redis

from onlearn.records import Event, EventKind, PredictionRecord
from onlearn.store import migrate_store, open_store
from onlearn.store.base import Store
from onlearn.store.sqlite import SCHEMA_VERSION

FIXTURES = Path(__file__).with_name("fixtures")
MODEL = "phishing"
PID = "01a2508963002ed204eb0300a897eebb"
EXPIRES = 4102444800.0
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


def _old_events() -> list[Event]:
    label = {
        "label": False,
        "source": "app",
        "labeller": None,
        "prediction_id": PID,
        "features": FEATURES,
        "predicted_at": 1796647510.7847302,
        "outputs": OUTPUTS,
        "answered_by": "v1",
        "sampled": None,
    }
    inline = {
        "label": True,
        "source": "human",
        "labeller": "zoë",
        "prediction_id": None,
        "features": {**FEATURES, "https": None},
        "predicted_at": None,
        "outputs": None,
        "answered_by": None,
        "sampled": None,
    }
    hostile = {
        "label": "cat",
        "features": {
            "名前": "Zürich ✓",
            "big": 2**70,
            "neg": -(2**63),
            "nan": float("nan"),
            "inf": float("-inf"),
            "nested": [[1, [2.5, None]], [], {"k": [True]}],
            "": "",
        },
        "extra": {"a": None},
    }
    promote = {"changes": {"champion": "v1"}, "actor": "admin"}
    return [
        Event(EventKind.LABEL, label, 1796647511.25, 1, f"prediction:{PID}"),
        Event(EventKind.LABEL, inline, 1796647512.5, 2, "event:e-1"),
        Event(EventKind.LABEL, hostile, 1796647513.0, 3, None),
        Event(EventKind.PROMOTE, promote, 1796647514.0, 4, "promote-1"),
        Event(EventKind.LABEL, {**label, "label": True}, 1796647515.0, 5, "event:e-2"),
    ]


def _old_records() -> list[PredictionRecord]:
    return [
        PredictionRecord(
            id=PID,
            model=MODEL,
            at=1796647510.7847302,
            features=FEATURES,
            version="v1",
            outputs=OUTPUTS,
            uncertainty=0.030243741916847828,
            queued=True,
            expires_at=EXPIRES,
            reason="uncertain",
        ),
        PredictionRecord(
            id="p-ünïcode",
            model=MODEL,
            at=1.5,
            features={"名前": "x", "big": 2**70, "nan": float("nan"), "l": [[1], []]},
            version="v2",
            outputs={"v2": {"label": 3, "proba": None}, "v3": {"label": "cat"}},
            uncertainty=None,
            queued=False,
            expires_at=EXPIRES,
            reason=None,
        ),
    ]


def _new_events() -> list[Event]:
    label = dict(_old_events()[0].payload)
    pid = "01a2508963002ed204eb0300a897ffff"
    return [
        Event(
            EventKind.LABEL,
            {**label, "prediction_id": pid},
            1796647600.0,
            None,
            f"prediction:{pid}",
        ),
        Event(EventKind.LABEL, {**label, "features": {"名前": 2**70}}, 1796647601.0, None, None),
    ]


def _same(a: Any, b: Any) -> bool:
    """Equal, NaN included (NaN != NaN would make every comparison of the hostile rows fail)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_same, a, b))
    if dataclasses.is_dataclass(a):
        return type(a) is type(b) and _same(dataclasses.asdict(a), dataclasses.asdict(b))
    return type(a) is type(b) and a == b


def _check_reads_old_and_new(store: Store) -> None:
    old = _old_events()
    read = store.log.read(MODEL, after=0)
    assert _same(read, old), read
    for record in _old_records():
        assert _same(store.predictions.get(record.id), record)
    assert sorted(r.id for r in store.predictions.scan(MODEL, None)) == sorted(
        r.id for r in _old_records()
    )
    # Keys of old events still dedupe, a control event's too.
    again = store.log.append(MODEL, [dataclasses.replace(old[0], seq=None, payload={})])
    assert again == [1] and again.new == [False]
    promote = dataclasses.replace(old[3], seq=None)
    assert (
        store.registry.change_roles(
            MODEL, {"champion": "v1"}, promote, actor="admin", reason="again", at=2e9
        )
        == 4
    )
    # New rows beside the old ones.
    new = _new_events()
    assert store.log.append(MODEL, new) == [6, 7]
    read = store.log.read(MODEL, after=0)
    assert _same(
        read, old + [dataclasses.replace(e, seq=s) for e, s in zip(new, [6, 7], strict=True)]
    )
    fresh = dataclasses.replace(_old_records()[0], id="01a2508963002ed204eb0300a897ffff")
    store.predictions.put_many([fresh])
    assert _same(store.predictions.get(fresh.id), fresh)
    assert len(store.predictions.scan(MODEL, None)) == 3
    assert store.log.trim(MODEL, upto=2) == 2
    assert [e.seq for e in store.log.read(MODEL, after=0)] == [3, 4, 5, 6, 7]


# --- SQLite ----------------------------------------------------------------------------------


def _old_sqlite_file(tmp_path: Path) -> Path:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript((FIXTURES / "store_v5.sql").read_text(encoding="utf-8"))
    return path


def _typeofs(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return (
            conn.execute(
                "SELECT seq, typeof(payload), typeof(key) FROM events ORDER BY seq"
            ).fetchall()
            + conn.execute("SELECT id, typeof(body) FROM predictions ORDER BY id").fetchall()
        )


def test_sqlite_reads_a_store_of_an_earlier_onlearn_beside_new_rows(tmp_path: Path) -> None:
    path = _old_sqlite_file(tmp_path)
    with open_store(f"sqlite:///{path}") as store:
        _check_reads_old_and_new(store)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert conn.execute("SELECT value FROM meta WHERE name = 'legacy_rows'").fetchone() == (
            "1",
        )
    assert _typeofs(path) == [
        (3, "text", "null"),  # the old rows as they were (1 and 2 trimmed)
        (4, "text", "text"),
        (5, "text", "text"),
        (6, "blob", "blob"),  # a key prediction:<id> as the id's 16 bytes
        (7, "blob", "null"),
        (PID, "text"),
        ("01a2508963002ed204eb0300a897ffff", "blob"),
        ("p-ünïcode", "text"),
    ]


def test_onlearn_store_migrate_rewrites_the_rows_of_an_earlier_onlearn(tmp_path: Path) -> None:
    path = _old_sqlite_file(tmp_path)
    url = f"sqlite:///{path}"
    said: list[str] = []
    migrate_store(url, said.append)
    assert any("5 events rewritten" in line for line in said), said
    assert any("2 prediction records rewritten" in line for line in said), said
    assert _typeofs(path) == [
        (1, "blob", "blob"),
        (2, "blob", "text"),
        (3, "blob", "null"),
        (4, "blob", "text"),
        (5, "blob", "text"),
        (PID, "blob"),
        ("p-ünïcode", "blob"),
    ]
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM meta WHERE name = 'legacy_rows'").fetchall() == []
    with open_store(url) as store:
        assert not store.log._db.legacy_rows  # type: ignore[attr-defined]
        _check_reads_old_and_new(store)
    again: list[str] = []
    migrate_store(url, again.append)
    assert again and "nothing to do" in again[-1], again


# --- Redis -----------------------------------------------------------------------------------


def _load_redis_fixture(url: str) -> None:
    keys = json.loads((FIXTURES / "redis_v5.json").read_text(encoding="utf-8"))["keys"]
    client = redis.Redis.from_url(url)
    try:
        for key, entry in keys.items():
            kind, value = entry["type"], entry["value"]
            if kind == "string":
                client.set(key, value)
            elif kind == "hash":
                client.hset(key, mapping=value)
            elif kind == "zset":
                client.zadd(key, dict(value))
            elif kind == "list":
                client.rpush(key, *value)
            elif kind == "stream":
                for entry_id, fields in value:
                    client.xadd(key, fields, id=entry_id)
            else:
                raise AssertionError(f"fixture key {key} of type {kind}")
    finally:
        client.close()


def test_redis_reads_a_store_of_an_earlier_onlearn_beside_new_entries(redis_url: str) -> None:
    _load_redis_fixture(redis_url)
    with open_store(redis_url) as store:
        _check_reads_old_and_new(store)
    client = redis.Redis.from_url(redis_url)
    try:
        entries = client.xrange(f"onlearn:model:{{{MODEL}}}:log")
        kinds = [(int(i[2:]), f[b"e"][:1] == b"{") for i, f in entries]
        assert kinds == [(3, True), (4, True), (5, True), (6, False), (7, False)]
        assert client.get(f"onlearn:prediction:{PID}")[:1] == b"{"
        assert client.get("onlearn:prediction:01a2508963002ed204eb0300a897ffff")[:1] != b"{"
    finally:
        client.close()


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_an_old_reader_of_the_new_rows_is_refused_or_told(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A file of version 6 or later is refused by an onlearn of version 5 (it checks
    user_version); the compact rows never start with "{", so a JSON reader fails on them at
    once."""
    url = (
        f"sqlite:///{tmp_path}/new.db"
        if backend == "sqlite"
        else request.getfixturevalue("redis_url")
    )
    with open_store(url) as store:
        store.log.append(MODEL, _new_events())
    if backend == "sqlite":
        with sqlite3.connect(tmp_path / "new.db") as conn:
            assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
            payloads = [p for (p,) in conn.execute("SELECT payload FROM events")]
    else:
        client = redis.Redis.from_url(url)
        payloads = [f[b"e"] for _, f in client.xrange(f"onlearn:model:{{{MODEL}}}:log")]
        client.close()
    for payload in payloads:
        assert isinstance(payload, bytes) and payload[:1] != b"{"
        with pytest.raises(ValueError):
            json.loads(payload)


def test_migrate_rewrites_every_row_of_many_models_in_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows written as the previous onlearn wrote them (its JSON writers are still in
    onlearn.store.codec), across chunk boundaries and models, come back the same after migrate."""
    from onlearn.store.codec import dumps, encode_prediction
    from onlearn.store.sqlite import migrate

    monkeypatch.setattr(migrate, "CHUNK_ROWS", 7)
    path = tmp_path / "old.db"
    url = f"sqlite:///{path}"
    with open_store(url):
        pass  # the schema
    label = dict(_old_events()[0].payload)
    rows, records = [], []
    for model in ("a", "b:ü"):
        for seq in range(1, 31):
            pid = f"{seq:030x}{len(model):02x}"
            key = f"prediction:{pid}" if seq % 3 else (None if seq % 2 else f"event:{seq}")
            payload = {**label, "prediction_id": pid, "label": seq % 2 == 0}
            rows.append((model, seq, "label", dumps(payload), 1e9 + seq, key))
            record = dataclasses.replace(_old_records()[0], id=f"{model}-{pid}", model=model)
            records.append(
                (record.id, model, record.at, record.expires_at, encode_prediction(record))
            )
    with sqlite3.connect(path) as conn:
        conn.executemany("INSERT INTO events VALUES (?,?,?,?,?,?)", rows)
        conn.executemany(
            "INSERT INTO heads VALUES (?, 30) ON CONFLICT DO NOTHING", [("a",), ("b:ü",)]
        )
        conn.executemany("INSERT INTO predictions VALUES (?,?,?,?,?)", records)
        conn.execute("INSERT INTO meta VALUES ('legacy_rows', '1')")

    def everything() -> tuple:
        with open_store(url) as store:
            return (
                {m: store.log.read(m, after=0) for m in ("a", "b:ü")},
                {m: store.predictions.scan(m, None) for m in ("a", "b:ü")},
            )

    before = everything()
    assert sum(map(len, before[0].values())) == 60 and sum(map(len, before[1].values())) == 60
    said: list[str] = []
    migrate_store(url, said.append)
    assert any("60 events rewritten" in line for line in said), said
    assert any("60 prediction records rewritten" in line for line in said), said
    with sqlite3.connect(path) as conn:
        kinds = conn.execute(
            "SELECT typeof(payload), typeof(key), count(*) FROM events GROUP BY 1, 2 ORDER BY 2"
        ).fetchall()
        assert kinds == [("blob", "blob", 40), ("blob", "null", 10), ("blob", "text", 10)]
        assert conn.execute("SELECT DISTINCT typeof(body) FROM predictions").fetchall() == [
            ("blob",)
        ]
    assert everything() == before
    with open_store(url) as store:  # keys still dedupe, in their new form
        again = store.log.append("a", [dataclasses.replace(before[0]["a"][0], seq=None)])
        assert again == [1] and again.new == [False]
