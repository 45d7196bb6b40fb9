"""Data in and out (onlearn/history.py, onlearn/history_files.py): a model's labelled history
exported from one store and imported into another gives the same model.

The source model learns live on a real SQLite file: labels joined with predictions, inline
labels with and without an event id, and corrections. Its export is imported into a real
redis-server, and a model served from there answers a held-out set exactly as the source does.
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, date, datetime

import pytest
from river import datasets

from onlearn.config import settings_from_mapping
from onlearn.corrections import correction_key
from onlearn.engine import Engine, FeedbackItem
from onlearn.errors import LabelConflict
from onlearn.history import BadHistoryRow, ExportReport, export_rows
from onlearn.history_files import read_rows, write_rows
from onlearn.history_import import import_rows
from onlearn.records import EventKind
from onlearn.store import open_store
from tests.core.conftest import PHISHING_FEATURES

CATEGORIES = {
    "size": "number",
    "count": "integer",
    "flag": "boolean",
    "weight": {"type": "number", "nullable": True},
    "colour": {"type": "category", "values": ["red", "green", "blue"]},
    "shape": {"type": "category", "nullable": True},
}


def phishing(n):
    return [(dict(x), bool(y)) for x, y in itertools.islice(datasets.Phishing(), n)]


def segments(n):
    return [(dict(x), y) for x, y in itertools.islice(datasets.ImageSegments(), n)]


def trump(n):
    return [(dict(x), float(y)) for x, y in itertools.islice(datasets.TrumpApproval(), n)]


def mixed(n):
    """Categories, a nullable number often null, integers and booleans: what Parquet types."""
    rows = []
    for i in range(n):
        x = {
            "size": (i * 7919 % 97) / 9.0,
            "count": i % 11,
            "flag": i % 3 == 0,
            "weight": None if i % 4 == 0 else (i % 13) / 5.0,
            "colour": ("red", "green", "blue")[i % 3],
            "shape": None if i % 5 == 0 else ("round", "square")[i % 2],
        }
        score = x["size"] - 5 + (2 if x["colour"] == "red" else 0) + (x["weight"] or 0)
        rows.append((x, "low" if score < 0 else "mid" if score < 3 else "high"))
    return rows


LOGISTIC = {"name": "logistic_regression"}
SMALL = {
    "models": {"m": {"classes": [True, False], "features": {"x": "number"}, "pipeline": LOGISTIC}}
}


def features_of(data):
    return {name: "number" for name in data(1)[0][0]}


CASES = {
    "binary": (
        {"classes": [True, False], "features": PHISHING_FEATURES, "pipeline": LOGISTIC},
        phishing,
    ),
    "multiclass": (
        {
            "classes": ["brickface", "cement", "foliage", "grass", "path", "sky", "window"],
            "features": features_of(segments),
            "pipeline": LOGISTIC,
        },
        segments,
    ),
    "regression": (
        {
            "task": "regression",
            "pipeline": {"name": "linear_regression"},
            "features": features_of(trump),
        },
        trump,
    ),
    # Labels asked by a randomised sampler carry sample_p: the replay learns them weighted.
    "weighted": (
        {
            "classes": [True, False],
            "features": PHISHING_FEATURES,
            "pipeline": LOGISTIC,
            "active": {
                "strategy": "randomized_variable_uncertainty",
                "budget": 0.3,
                "window": 50,
                "importance_weights": True,
                "seed": 3,
            },
        },
        phishing,
    ),
    # Labels bought by the default deterministic sampler carry a pace weight (onlearn/weights.py),
    # which the logistic regression learns with: the replay must read it from the import too.
    "paced": (
        {
            "classes": [True, False],
            "features": PHISHING_FEATURES,
            "pipeline": LOGISTIC,
            "active": {"budget": 0.3, "window": 50, "seed": 3},
        },
        phishing,
    ),
    "categories": (
        {
            "classes": ["low", "mid", "high"],
            "features": CATEGORIES,
            "pipeline": {"name": "hoeffding_tree"},
        },
        mixed,
    ),
}
N, HELD_OUT = 240, 40


def settings(url: str, case: str):
    model, _ = CASES[case]
    return settings_from_mapping(
        {"store": {"url": url}, "security": {"secret_key": "test"}, "models": {"m": model}}
    )


def other_label(case: str, y):
    if case == "regression":
        return y + 1.0
    classes = CASES[case][0]["classes"]
    return classes[(classes.index(y) + 1) % len(classes)]


def teach(url: str, case: str) -> list[dict]:
    """Labels learned live on ``url``: most joined with their prediction, some inline (with an
    event id or without), some corrected, one corrected twice. The held-out rows' answers."""
    _, data = CASES[case]
    rows = data(N + HELD_OUT)
    with Engine.from_settings(settings(url, case)) as engine:
        for i, (x, y) in enumerate(rows[:N]):
            if i % 10 == 3:
                item = FeedbackItem(label=y, features=x, event_id=f"inline-{i}")
            elif i % 10 == 7:
                item = FeedbackItem(label=y, features=x, source="weak")
            else:
                p = engine.predict_one("m", x)
                item = FeedbackItem(label=y, prediction_id=p.prediction_id, labeller=f"l{i % 3}")
            engine.feedback_one("m", item)
            if i % 25 == 5:  # a correction, by a person
                fix = FeedbackItem(
                    label=other_label(case, y),
                    prediction_id=item.prediction_id,
                    source="human",
                    labeller="ann",
                    correction=True,
                )
                engine.feedback_one("m", fix)
                if i == 5:  # and a correction of the correction
                    engine.feedback_one(
                        "m",
                        FeedbackItem(label=y, prediction_id=item.prediction_id, correction=True),
                    )
        return answers(engine, rows[N:])


def answers(engine: Engine, rows) -> list:
    out = []
    for x, _ in rows:
        p = engine.predict_one("m", x)
        out.append((p.label, p.proba))
    return out


def served(url: str, case: str) -> list:
    """A server's answers on the held-out rows once it has started on ``url`` (its model
    replayed from the log)."""
    _, data = CASES[case]
    with Engine.from_settings(settings(url, case)) as engine:
        return answers(engine, data(N + HELD_OUT)[N:])


def export_to(url: str, case: str, path, fmt: str, **window) -> ExportReport:
    report = ExportReport("m")
    with open_store(url) as store:
        write_rows(export_rows(store, "m", report=report, **window), str(path), fmt, config(case))
    return report


def import_from(url: str, case: str, path, fmt: str, **options):
    with open_store(url) as store:
        return import_rows(store, config(case), lambda: read_rows(str(path), fmt), **options)


def config(case: str):
    return settings("memory://", case).model("m")


def label_events(url: str) -> list:
    with open_store(url) as store:
        return [
            (e.seq, e.key, e.at, dict(e.payload))
            for e in store.log.read("m", after=0, limit=10_000)
            if e.kind is EventKind.LABEL
        ]


def keyed(url: str, events: list) -> list:
    """``events`` of the store at ``url`` with the keys an import gives them: their own, or for
    an event that had none, the source store's generation and its seq."""
    with open_store(url) as store:
        generation = store.generation.id
    return [(k or f"event:{generation}:{seq}", at, p) for seq, k, at, p in events]


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path}/source.db"


@pytest.mark.parametrize("case", ["binary", "multiclass", "regression", "weighted", "paced"])
def test_a_history_moved_from_sqlite_to_redis_gives_the_same_model(
    case, sqlite_url, redis_url, tmp_path
):
    expected = teach(sqlite_url, case)
    assert served(sqlite_url, case) == expected  # the source replays to itself
    report = export_to(sqlite_url, case, tmp_path / "h.jsonl", "jsonl")
    source = label_events(sqlite_url)
    assert report.rows == len(source) and report.corrections == 11 and report.trimmed == 0

    if case == "weighted":
        assert any(p["sample_p"] not in (None, 1.0) for *_, p in source)
    if case == "paced":
        # The app labels predictions the sampler did not ask about too, which lowers the pace
        # of those it did (Sampler.pace): one value per moment, each in [1, 1 / budget].
        paces = {p["pace"] for *_, p in source} - {None}
        assert len(paces) > 1 and all(1.0 <= pace <= 1 / 0.3 for pace in paces), paces
    imported = import_from(redis_url, case, tmp_path / "h.jsonl", "jsonl")
    assert (imported.appended, imported.corrections) == (len(source), 11)

    assert served(redis_url, case) == expected
    # The same events in the same order: labels, features, sources, labellers, times, what
    # each correction corrects, and the keys feedback gave them (an event that had none is
    # known by the source store's generation and its seq).
    assert [(k, at, p) for _, k, at, p in label_events(redis_url)] == keyed(sqlite_url, source)


def test_parquet_and_jsonl_import_the_same_log(sqlite_url, tmp_path):
    expected = teach(sqlite_url, "categories")
    export_to(sqlite_url, "categories", tmp_path / "h.jsonl", "jsonl")
    export_to(sqlite_url, "categories", tmp_path / "h.parquet", "parquet")
    from_jsonl, from_parquet = f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/b.db"
    import_from(from_jsonl, "categories", tmp_path / "h.jsonl", "jsonl")
    import_from(from_parquet, "categories", tmp_path / "h.parquet", "parquet")
    events = label_events(from_jsonl)
    assert events == label_events(from_parquet)
    assert [(k, at, p) for _, k, at, p in events] == keyed(sqlite_url, label_events(sqlite_url))
    # JSON types survive both: null features stay null, integers integers, booleans booleans.
    first = events[0][3]["features"]
    assert first["weight"] is None and type(first["count"]) is int and first["flag"] is True
    assert served(from_parquet, "categories") == expected


def test_parquet_columns_are_typed_from_the_config(sqlite_url, tmp_path):
    import pyarrow.parquet as pq

    teach(sqlite_url, "categories")
    export_to(sqlite_url, "categories", tmp_path / "h.parquet", "parquet")
    table = pq.read_table(tmp_path / "h.parquet")
    assert str(table.schema.field("features").type) == (
        "struct<size: double, count: int64, flag: bool, weight: double, colour: string, "
        "shape: string>"
    )
    assert str(table.schema.field("label").type) == "string"
    assert table.column("kind").to_pylist().count("correction") == 11


def test_importing_a_file_twice_appends_nothing_the_second_time(sqlite_url, tmp_path):
    teach(sqlite_url, "binary")
    export_to(sqlite_url, "binary", tmp_path / "h.jsonl", "jsonl")
    target = f"sqlite:///{tmp_path}/t.db"
    first = import_from(target, "binary", tmp_path / "h.jsonl", "jsonl", batch=64)
    again = import_from(target, "binary", tmp_path / "h.jsonl", "jsonl", batch=64)
    assert first.appended == first.rows == len(label_events(sqlite_url))
    assert (again.appended, again.present, again.conflicts) == (0, first.rows, 0)
    assert len(label_events(target)) == first.rows


def test_an_imported_prediction_keeps_its_label_and_its_corrections(sqlite_url, tmp_path):
    """A prediction labelled (and corrected) in the source and labelled again live in the
    destination is one label: the live label meets the corrected one, as it would have at
    the source."""
    teach(sqlite_url, "binary")
    export_to(sqlite_url, "binary", tmp_path / "h.jsonl", "jsonl")
    target = f"sqlite:///{tmp_path}/t.db"
    import_from(target, "binary", tmp_path / "h.jsonl", "jsonl")
    rows = [json.loads(line) for line in (tmp_path / "h.jsonl").read_text().splitlines()]
    corrected = [r for r in rows if r["kind"] == "correction"][-1]  # a chain of one correction
    chain = corrected["corrects"]
    assert chain.startswith("prediction:")
    events = label_events(target)
    root_seq = next(seq for seq, key, _, _ in events if key == chain)
    assert any(key == correction_key(chain, root_seq) for _, key, _, _ in events)
    with Engine.from_settings(settings(target, "binary")) as engine:
        with pytest.raises(LabelConflict) as conflict:
            engine.feedback_one(
                "m",
                FeedbackItem(
                    label=corrected["previous_label"],
                    prediction_id=corrected["prediction_id"],
                    features=corrected["features"],  # its record is in the source store only
                ),
            )
    assert conflict.value.recorded["label"] == corrected["label"]


def test_since_and_until_take_seqs_and_event_times(sqlite_url, tmp_path):
    teach(sqlite_url, "binary")
    events = label_events(sqlite_url)
    report = export_to(sqlite_url, "binary", tmp_path / "s.jsonl", "jsonl", since=50, until=80)
    seqs = [json.loads(line)["seq"] for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert seqs == [seq for seq, *_ in events if 50 <= seq <= 80]
    assert (report.first_seq, report.last_seq) == (50, 80)
    times = sorted(at for _, _, at, _ in events)
    since, until = times[100], times[150]
    export_to(sqlite_url, "binary", tmp_path / "t.jsonl", "jsonl", since=since, until=until)
    got = [json.loads(line)["at"] for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert got == [at for _, _, at, _ in events if since <= at < until] and len(got) == 50


def test_an_export_says_what_the_trim_took(sqlite_url, tmp_path):
    teach(sqlite_url, "binary")
    with open_store(sqlite_url) as store:
        store.log.trim("m", 100)
        head = store.log.head("m")
    report = export_to(sqlite_url, "binary", tmp_path / "h.jsonl", "jsonl")
    assert (report.trimmed, report.first_seq, report.last_seq, report.head) == (
        100,
        101,
        head,
        head,
    )
    assert "events 1..100 were trimmed" in report.summary()


def test_a_bad_row_stops_the_import_before_anything_is_appended(tmp_path):
    rows = [
        {"features": {"x": 1.0}, "label": True, "event_id": "a"},
        {"features": {"x": 2.0}, "label": False, "event_id": "b"},
        {"features": {"x": "high"}, "label": True, "event_id": "c"},
        {"features": {"x": 3.0}, "label": True, "event_id": "d"},
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    model = settings_from_mapping(SMALL).model("m")
    with open_store("memory://") as store:
        with pytest.raises(BadHistoryRow) as bad:
            import_rows(store, model, lambda: read_rows(str(path), "jsonl"))
        assert str(bad.value) == (
            f"{path} line 3: features.x: x must be a number, got 'high' (a string)"
        )
        assert store.log.head("m") == 0
        report = import_rows(store, model, lambda: read_rows(str(path), "jsonl"), skip_invalid=True)
        assert (report.appended, report.skipped) == (3, 1)
        assert [e.key for e in store.log.read("m", 0)] == ["event:a", "event:b", "event:d"]
        assert report.errors == [str(bad.value)]


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({"features": {"x": 1.0}, "label": "yes"}, "label"),
        ({"features": {"x": 1.0}, "label": True, "source": "robot"}, "source"),
        ({"features": {"y": 1.0}, "label": True}, "features.x"),
        ({"features": {"x": 1.0}, "label": True, "kind": "correction"}, "corrects"),
        (
            {"features": {"x": 1.0}, "label": True, "kind": "correction", "corrects": "zz"},
            "corrects",
        ),
        ({"features": {"x": 1.0}, "label": True, "colour": "red"}, "colour"),
        ({"features": {"x": 1.0}, "label": True, "sample_p": 0}, "sample_p"),
        ({"features": {"x": 1.0}, "label": True, "sample_p": 1e-9}, "sample_p"),
        ({"features": {"x": 1.0}, "label": True, "pace": 0.5}, "pace"),
        ({"features": {"x": 1.0}, "label": True, "pace": 1e6}, "pace"),
        ({"features": {"x": 1.0}, "label": True, "pace": "10"}, "pace"),
        ({"features": {"x": 1.0}, "label": True, "at": "yesterday"}, "at"),
        # Past what a time can be (an export could not write them back; the string one was inf)
        ({"features": {"x": 1.0}, "label": True, "at": 1e300}, "at"),
        ({"features": {"x": 1.0}, "label": True, "at": "9" * 400}, "at"),
        ({"features": {"x": 1.0}, "label": True, "predicted_at": -1e12}, "predicted_at"),
    ],
)
def test_each_rule_names_its_field(row, field, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(row) + "\n")
    model = settings_from_mapping(SMALL).model("m")
    with open_store("memory://") as store, pytest.raises(BadHistoryRow) as bad:
        import_rows(store, model, lambda: read_rows(str(path), "jsonl"))
    assert bad.value.field == field and bad.value.where == f"{path} line 1"


def test_a_parquet_timestamp_or_date_column_is_an_event_time(tmp_path):
    """As pandas writes a datetime column: a timestamp (UTC unless it names a zone), or a date."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "pandas.parquet"
    at = [datetime(2026, 1, 1, 12), datetime(2026, 1, 2, 12, tzinfo=UTC)]
    pq.write_table(
        pa.table(
            {
                "features": [{"x": 1.0}, {"x": 2.0}],
                "label": [True, False],
                "at": pa.array(at),
                "predicted_at": pa.array([date(2026, 1, 1)] * 2, pa.date32()),
            }
        ),
        path,
    )
    model = settings_from_mapping(SMALL).model("m")
    with open_store("memory://") as store:
        import_rows(store, model, lambda: read_rows(str(path), "parquet"))
        events = store.log.read("m", 0)
    assert [e.at for e in events] == [1767268800.0, 1767355200.0]
    assert [e.payload["predicted_at"] for e in events] == [1767225600.0] * 2


def test_rows_without_event_ids_are_imported_once(tmp_path):
    """A history written by hand (no event ids): each row is known by its content and how
    many identical rows came before it, so importing the file again appends nothing, while
    two identical rows are two labels."""
    path = tmp_path / "mine.jsonl"
    rows = [{"features": {"x": 1.0}, "label": True}] * 2 + [
        {"features": {"x": 2.0}, "label": False}
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    model = settings_from_mapping(SMALL).model("m")
    with open_store("memory://") as store:
        first = import_rows(store, model, lambda: read_rows(str(path), "jsonl"))
        again = import_rows(store, model, lambda: read_rows(str(path), "jsonl"))
        assert (first.appended, again.appended, again.present) == (3, 0, 3)


def test_a_server_following_the_store_learns_what_is_imported(sqlite_url, tmp_path):
    """The import appends to the log; a serving process on the store follows the log and
    learns the imported labels, with no restart."""
    expected = teach(sqlite_url, "binary")
    export_to(sqlite_url, "binary", tmp_path / "h.jsonl", "jsonl")
    target = f"sqlite:///{tmp_path}/t.db"
    with Engine.from_settings(settings(target, "binary")) as engine:
        report = import_from(target, "binary", tmp_path / "h.jsonl", "jsonl")
        assert engine.runtime("m").wait_applied(report.last_seq, timeout=10)
        assert answers(engine, CASES["binary"][1](N + HELD_OUT)[N:]) == expected


def test_an_engine_in_this_process_learns_each_batch_as_it_is_appended(tmp_path, sqlite_url):
    expected = teach(sqlite_url, "regression")
    export_to(sqlite_url, "regression", tmp_path / "h.jsonl", "jsonl")
    with Engine.from_settings(settings("memory://", "regression")) as engine:
        rt = engine.runtime("m")
        seen = []

        def learn(events, seqs):
            engine.learn_appended("m", events, seqs)
            seen.append(rt.seq)

        report = import_rows(
            engine.store,
            config("regression"),
            lambda: read_rows(str(tmp_path / "h.jsonl"), "jsonl"),
            batch=100,
            learn=learn,
        )
        assert seen[-1] == report.last_seq and len(seen) >= report.appended // 100
        assert answers(engine, CASES["regression"][1](N + HELD_OUT)[N:]) == expected


def test_consecutive_windows_imported_in_order_give_the_whole_history(sqlite_url, tmp_path):
    """A window that starts with a correction whose first label is in the window before: the
    import finds that label in the destination's log and corrects it there."""
    teach(sqlite_url, "binary")
    export_to(sqlite_url, "binary", tmp_path / "all.jsonl", "jsonl")
    rows = [json.loads(line) for line in (tmp_path / "all.jsonl").read_text().splitlines()]
    cut = next(r["seq"] for r in rows if r["kind"] == "correction" and r["seq"] > 20)
    export_to(sqlite_url, "binary", tmp_path / "a.jsonl", "jsonl", until=cut - 1)
    export_to(sqlite_url, "binary", tmp_path / "b.jsonl", "jsonl", since=cut)
    whole, parts = f"sqlite:///{tmp_path}/whole.db", f"sqlite:///{tmp_path}/parts.db"
    import_from(whole, "binary", tmp_path / "all.jsonl", "jsonl")
    import_from(parts, "binary", tmp_path / "a.jsonl", "jsonl")
    second = import_from(parts, "binary", tmp_path / "b.jsonl", "jsonl")
    assert second.corrections >= 1
    assert label_events(parts) == label_events(whole)
    # The second window alone has nothing to correct: refused, naming the row.
    with pytest.raises(BadHistoryRow) as alone:
        import_from(f"sqlite:///{tmp_path}/alone.db", "binary", tmp_path / "b.jsonl", "jsonl")
    assert alone.value.field == "corrects" and alone.value.where.endswith("line 1")


def test_a_row_the_log_holds_with_another_label_is_counted_not_imported(tmp_path):
    model = settings_from_mapping(SMALL).model("m")
    path = tmp_path / "h.jsonl"
    rows = [
        {"event_id": f"e{i}", "features": {"x": float(i)}, "label": i % 2 == 0} for i in range(4)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with open_store("memory://") as store:
        import_rows(store, model, lambda: read_rows(str(path), "jsonl"))
        rows[2]["label"] = not rows[2]["label"]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        again = import_rows(store, model, lambda: read_rows(str(path), "jsonl"))
        assert (again.appended, again.present, again.conflicts) == (0, 3, 1)
        assert "1 in the log with another label (not imported: event_id 'e2')" in (again.summary())
        assert store.log.by_keys("m", ["event:e2"])["event:e2"].payload["label"] is True


def test_labels_of_undeclared_classes_travel_in_parquet_as_json_text(tmp_path):
    """Without declared classes a model's labels may be of any JSON type: Parquet keeps them as
    JSON text and gives back the same values and types."""
    table = {"features": {"x": "number"}, "pipeline": LOGISTIC}
    model = settings_from_mapping({"models": {"m": table}}).model("m")
    rows = [
        {"event_id": f"e{i}", "features": {"x": float(i)}, "label": label}
        for i, label in enumerate([True, 1, "one", False])
    ]
    (tmp_path / "h.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with open_store("memory://") as a, open_store("memory://") as b:
        import_rows(a, model, lambda: read_rows(str(tmp_path / "h.jsonl"), "jsonl"))
        write_rows(export_rows(a, "m"), str(tmp_path / "h.parquet"), "parquet", model)
        import_rows(b, model, lambda: read_rows(str(tmp_path / "h.parquet"), "parquet"))
        got = [e.payload["label"] for e in b.log.read("m", 0)]
    assert got == [True, 1, "one", False] and [type(v) for v in got] == [bool, int, str, bool]


def retractions(url: str) -> list:
    """The log's retractions as an import must give them back: key, chain, what was recorded
    when each was withdrawn (the key of that event), who withdrew it."""
    with open_store(url) as store:
        events = store.log.read("m", after=0, limit=10_000)
    by_seq = {e.seq: e for e in events}
    return [
        (
            e.key,
            e.at,
            e.payload["chain"],
            by_seq[e.payload["retracts"]].key,
            e.payload["label"],
            e.payload["source"],
            e.payload["labeller"],
        )
        for e in events
        if e.kind is EventKind.RETRACT
    ]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_retractions_travel_with_the_history(fmt, sqlite_url, redis_url, tmp_path):
    """A withdrawn label (a Label Studio annotation deleted) is exported as a row of its own
    and imported as a retraction of the same chain, as it ends in the destination: a plain
    label, a corrected one (withdrawn at its newest correction) and an inline one."""
    import asyncio

    teach(sqlite_url, "binary")
    with open_store(sqlite_url) as store:
        firsts = [
            e for e in store.log.read("m", after=0, limit=10_000) if e.kind is EventKind.LABEL
        ]
    corrected = next(
        e.key
        for e in firsts
        if e.payload.get("corrects") is None
        and e.key
        and any(f.key == correction_key(e.key, e.seq) for f in firsts)
    )
    plain = next(
        e.key for e in firsts if e.key and e.key.startswith("prediction:") and e.key != corrected
    )
    chains = [plain, corrected, "event:inline-3"]
    with Engine.from_settings(settings(sqlite_url, "binary")) as engine:
        done = asyncio.run(engine.retract_async("m", chains, labeller="ls:7"))
    assert all(seq is not None for seq in done)
    expected = served(sqlite_url, "binary")

    report = export_to(sqlite_url, "binary", tmp_path / f"h.{fmt}", fmt)
    assert report.retractions == 3
    rows = list(read_rows(str(tmp_path / f"h.{fmt}"), fmt))
    withdrawn = [row for _, row in rows if row["kind"] == "retraction"]
    assert sorted(row["retracts"] for row in withdrawn) == sorted([plain, corrected, "inline-3"])
    imported = import_from(redis_url, "binary", tmp_path / f"h.{fmt}", fmt)
    assert imported.retractions == 3
    assert retractions(redis_url) == retractions(sqlite_url)
    assert served(redis_url, "binary") == expected
    again = import_from(redis_url, "binary", tmp_path / f"h.{fmt}", fmt)
    assert (again.appended, again.conflicts) == (0, 0)
    assert len(retractions(redis_url)) == 3


def test_a_retraction_of_what_is_nowhere_is_refused(tmp_path):
    path = tmp_path / "h.jsonl"
    path.write_text(json.dumps({"kind": "retraction", "retracts": "nowhere", "label": True}) + "\n")
    with pytest.raises(BadHistoryRow, match="retracts.*'nowhere' is neither earlier"):
        import_from(f"sqlite:///{tmp_path}/t.db", "binary", path, "jsonl")
    path.write_text(
        json.dumps({"kind": "label", "retracts": "x", "label": True, "features": {}}) + "\n"
    )
    with pytest.raises(BadHistoryRow, match='retracts: only a row of kind "retraction"'):
        import_from(f"sqlite:///{tmp_path}/t.db", "binary", path, "jsonl")
