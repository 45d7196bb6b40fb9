"""SQLite-specific behaviour: persistence, several processes on one file, locks, bad paths."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from onlearn.errors import ConfigError, StoreReplaced, StoreUnavailable
from onlearn.records import (
    Event,
    EventKind,
    Job,
    JobState,
    PredictionRecord,
    QueueItem,
    QueueState,
    Snapshot,
    VersionInfo,
)
from onlearn.store import open_store
from onlearn.store.sqlite import SCHEMA_VERSION, open_sqlite_store, parse_sqlite_url

REPO = Path(__file__).resolve().parents[2]


def _event(i: int, key: str | None = None) -> Event:
    return Event(EventKind.LABEL, {"features": {"x": i}, "label": i % 3 == 0}, at=float(i), key=key)


def _url(tmp_path: Path, name: str = "onlearn.db", query: str = "") -> str:
    return f"sqlite:///{tmp_path / name}{query}"


def _run_python(code: str, *args: str) -> subprocess.Popen:
    """Start ``python -c code args...`` on this checkout, with pipes for stdin and stdout."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
    )


def test_data_survives_close_and_reopen(tmp_path: Path) -> None:
    url = _url(tmp_path)
    record = PredictionRecord(
        "p-1",
        "m",
        1.0,
        {"x": 1},
        "v1",
        {"v1": {"label": True, "proba": [[True, 1.0]]}},
        expires_at=time.time() + 600,
    )
    with open_sqlite_store(url) as store:
        store.log.append("m", [_event(i, key=f"k{i}") for i in range(5)])
        store.log.trim("m", upto=5)
        store.predictions.put_many([record])
        v1 = store.registry.create_version("m", {"pipeline": "logistic"}, {"note": "é"}, at=1.0)
        store.registry.set_role("m", "champion", "v1", actor="a", reason="r", at=2.0)
        store.registry.put_snapshot(Snapshot("m", "v1", 5, 3.0, b"\x00state"))
    with open_sqlite_store(url) as store:
        assert store.log.head("m") == 5
        assert store.log.append("m", [_event(5)]) == [6], "numbering survives a full trim"
        assert store.predictions.get("p-1") == record
        assert store.registry.list_versions("m") == [v1]
        assert store.registry.roles("m") == {"champion": "v1"}
        assert len(store.registry.role_history("m")) == 1
        assert store.registry.latest_snapshot("m", "v1").artifact == b"\x00state"


def test_closed_store_fails_clearly_and_closes_every_thread_connection(tmp_path: Path) -> None:
    store = open_sqlite_store(_url(tmp_path))
    threads = [threading.Thread(target=store.log.head, args=("m",)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        store.log.append("m", [_event(0)])
    with pytest.raises(StoreUnavailable, match="closed"):
        store.predictions.get("p")
    # Every connection is closed: the file can be opened exclusively and reopened as a store.
    raw = sqlite3.connect(tmp_path / "onlearn.db", isolation_level=None, timeout=0)
    raw.execute("PRAGMA locking_mode = EXCLUSIVE")
    raw.execute("BEGIN EXCLUSIVE")
    raw.execute("COMMIT")
    raw.close()
    with open_sqlite_store(_url(tmp_path)) as again:
        assert again.log.append("m", [_event(0)]) == [1]


def test_durability_settings(tmp_path: Path) -> None:
    with open_sqlite_store(_url(tmp_path)) as store:
        db = store.log._db  # type: ignore[attr-defined]
        assert db.durable().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.durable().execute("PRAGMA synchronous").fetchone()[0] == 2, "FULL for labels"
        assert db.fast().execute("PRAGMA synchronous").fetchone()[0] == 1, "NORMAL for records"
        assert db.durable().execute("PRAGMA busy_timeout").fetchone()[0] == 5000


def test_connections_of_ended_threads_are_closed(tmp_path: Path) -> None:
    with open_sqlite_store(_url(tmp_path)) as store:
        for _ in range(20):
            thread = threading.Thread(target=store.log.head, args=("m",))
            thread.start()
            thread.join()
        assert len(store.log._db._open) <= 2  # type: ignore[attr-defined]


_WRITER = """
    import json, sys
    from onlearn.records import Event, EventKind
    from onlearn.store import open_store

    name, rounds = sys.argv[1], int(sys.argv[2])
    with open_store({url!r}) as store:
        print("ready", flush=True)
        sys.stdin.readline()  # wait for "go", so that every writer runs at the same time
        seqs = []
        for r in range(rounds):
            batch = [Event(EventKind.LABEL, {{"w": name, "r": r, "i": i}}, at=0.0)
                     for i in range(1 + r % 3)]
            if r % 10 == 0:
                batch.append(Event(EventKind.LABEL, {{"w": name}}, at=0.0, key=f"shared-{{r}}"))
            seqs.append(store.log.append("m", batch))
        print(json.dumps(seqs), flush=True)
"""


def test_processes_appending_to_one_file_get_unique_gapless_seqs(tmp_path: Path) -> None:
    url = _url(tmp_path)
    open_sqlite_store(url).close()  # create the schema once, as `onlearn serve` would
    writers, rounds = 3, 40
    procs = [_run_python(_WRITER.format(url=url), f"w{w}", str(rounds)) for w in range(writers)]
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        results.append(json.loads(out))

    per_writer = sum(1 + r % 3 for r in range(rounds))
    shared = len(range(0, rounds, 10))
    total = writers * per_writer + shared
    with open_sqlite_store(url) as store:
        events = store.log.read("m", after=0, limit=10_000)
        assert [e.seq for e in events] == list(range(1, total + 1)), "gapless, no lost event"
        assert store.log.head("m") == total
    written = {
        (f"w{w}", r, i) for w in range(writers) for r in range(rounds) for i in range(1 + r % 3)
    }
    read = {(e.payload["w"], e.payload["r"], e.payload["i"]) for e in events if e.key is None}
    assert read == written
    # A key appended by every process at about the same time exists once, with one seq for all.
    assert sorted(e.key for e in events if e.key) == sorted(
        f"shared-{r}" for r in range(0, rounds, 10)
    )
    for r_index in range(shared):
        assert len({res[r_index * 10][-1] for res in results}) == 1
    acknowledged = {s for res in results for batch in res for s in batch}
    assert acknowledged == set(range(1, total + 1))


_ACKNOWLEDGER = """
    import sys
    from onlearn.records import Event, EventKind
    from onlearn.store import open_store

    with open_store({url!r}) as store:
        i = 0
        while True:
            (seq,) = store.log.append("m", [Event(EventKind.LABEL, {{"i": i}}, at=0.0)])
            print(seq, flush=True)  # the acknowledgement: printed only once append returned
            i += 1
"""


def test_acknowledged_events_survive_kill_9(tmp_path: Path) -> None:
    url = _url(tmp_path)
    proc = _run_python(_ACKNOWLEDGER.format(url=url))
    acknowledged = [int(proc.stdout.readline()) for _ in range(50)]
    os.kill(proc.pid, signal.SIGKILL)
    rest, _ = proc.communicate(timeout=10)
    acknowledged += [int(line) for line in rest.split()]
    with open_sqlite_store(url) as store:
        seqs = [e.seq for e in store.log.read("m", after=0, limit=100_000)]
    assert acknowledged == list(range(1, len(acknowledged) + 1))
    assert seqs[: len(acknowledged)] == acknowledged, "every acknowledged event is in the log"
    assert seqs == list(range(1, len(seqs) + 1))


def test_locked_database_raises_store_unavailable_without_hanging(tmp_path: Path) -> None:
    url = _url(tmp_path, query="?busy_timeout_ms=100")
    with open_sqlite_store(url) as store:
        store.log.append("m", [_event(0)])
        locker = sqlite3.connect(tmp_path / "onlearn.db", isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="locked.*busy_timeout_ms=100"):
                store.log.append("m", [_event(1)])
            assert time.monotonic() - started < 3
            with pytest.raises(StoreUnavailable):
                store.registry.create_version("m", {}, {}, at=0.0)
            with pytest.raises(StoreUnavailable):
                open_sqlite_store(url)
            assert store.log.head("m") == 1, "readers do not wait for the writer (WAL)"
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        # The store recovers by itself once the lock is gone.
        assert store.log.append("m", [_event(1)]) == [2]


def test_path_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data.db").mkdir()
    with pytest.raises(ConfigError, match="is a directory"):
        open_sqlite_store(_url(tmp_path, "data.db"))


def test_unopenable_path_raises_store_unavailable(tmp_path: Path) -> None:
    (tmp_path / "plain-file").write_text("not a directory")
    with pytest.raises(StoreUnavailable, match="cannot create its directory"):
        open_sqlite_store(_url(tmp_path, "plain-file/sub/onlearn.db"))


def test_file_that_is_not_a_database_raises_store_unavailable(tmp_path: Path) -> None:
    (tmp_path / "junk.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreUnavailable, match="not an SQLite database"):
        open_sqlite_store(_url(tmp_path, "junk.db"))


def test_parent_directories_are_created(tmp_path: Path) -> None:
    with open_store(_url(tmp_path, "a/b/c/onlearn.db")) as store:
        assert store.shared
        assert store.log.append("m", [_event(0)]) == [1]
    assert (tmp_path / "a/b/c/onlearn.db").is_file()


def test_relative_url_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with open_sqlite_store("sqlite:///data/rel.db") as store:
        store.log.append("m", [_event(0)])
    assert (tmp_path / "data/rel.db").is_file()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///rel/x.db", (os.path.abspath("rel/x.db"), {"busy_timeout_ms": 5000})),
        ("sqlite:////abs/x.db", ("/abs/x.db", {"busy_timeout_ms": 5000})),
        (
            "sqlite:////abs/my%20x.db?busy_timeout_ms=100",
            ("/abs/my x.db", {"busy_timeout_ms": 100}),
        ),
    ],
)
def test_parse_url(url: str, expected: tuple) -> None:
    assert parse_sqlite_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://host/x.db",
        "sqlite:///",
        "sqlite:///:memory:",
        "sqlite:////abs/dir/",
        "sqlite:////abs/x.db?timeout=3",
        "sqlite:////abs/x.db?busy_timeout_ms=soon",
        "sqlite:////abs/x.db?busy_timeout_ms=-1",
    ],
)
def test_bad_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        open_sqlite_store(url)


def test_a_file_of_schema_version_1_is_upgraded_in_place(tmp_path: Path) -> None:
    # The two tables whose shape changed in version 2, as version 1 made them, with data.
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE versions (model TEXT NOT NULL, number INTEGER NOT NULL,
            created_at REAL NOT NULL, spec TEXT NOT NULL, meta TEXT NOT NULL,
            PRIMARY KEY (model, number));
        CREATE TABLE role_history (id INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT NOT NULL,
            role TEXT NOT NULL, version TEXT, previous TEXT, actor TEXT NOT NULL,
            reason TEXT NOT NULL, at REAL NOT NULL);
        INSERT INTO versions VALUES ('m', 1, 1.0, '{"p": 1}', '{}');
        INSERT INTO role_history (model, role, version, previous, actor, reason, at)
            VALUES ('m', 'champion', 'v1', NULL, 'a', 'r', 2.0);
        PRAGMA user_version = 1;
        """
    )
    old.close()
    url = f"sqlite:///{path}"
    with open_sqlite_store(url) as store:
        reg = store.registry
        assert [v.spec for v in reg.list_versions("m")] == [{"p": 1}]
        assert reg.role_history("m") == [
            {
                "role": "champion",
                "version": "v1",
                "previous": None,
                "actor": "a",
                "reason": "r",
                "at": 2.0,
                "seq": None,
            }
        ]
        v2 = reg.create_version("m", {}, {}, at=3.0, key="job-1")
        assert reg.create_version("m", {"other": 1}, {}, at=4.0, key="job-1") == v2
        event = Event(EventKind.PROMOTE, {"changes": {"champion": "v2"}}, at=5.0, key="p-1")
        assert reg.change_roles("m", {"champion": "v2"}, event, actor="a", reason="r", at=5.0) == 1
        assert reg.roles_state("m").seq == 1 and reg.role_history("m")[-1]["seq"] == 1
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    with open_sqlite_store(url) as store:  # opening an upgraded file again changes nothing
        assert [v.version for v in store.registry.list_versions("m")] == ["v1", "v2"]


def _record(rid: str, model: str = "m", expires_at: float | None = None) -> PredictionRecord:
    expires_at = time.time() + 600 if expires_at is None else expires_at
    return PredictionRecord(
        rid, model, 1.0, {"x": 1}, "v1", {"v1": {"label": True}}, expires_at=expires_at
    )


def test_a_file_of_schema_version_2_is_upgraded_in_place(tmp_path: Path) -> None:
    # Version 3 added the documents table and the predictions_model_id index, nothing else: a
    # version-3 file without them is what version 2 made.
    path = tmp_path / "v2.db"
    url = f"sqlite:///{path}"
    ids = [f"{1_700_000_000_000 + i:012x}{i:020x}" for i in range(5)]
    with open_sqlite_store(url) as store:
        store.predictions.put_many([_record(rid) for rid in reversed(ids)])
    with sqlite3.connect(path) as old:
        old.execute("DROP TABLE documents")
        old.execute("DROP INDEX predictions_model_id")
        old.execute("PRAGMA user_version = 2")
    with open_sqlite_store(url) as store:
        assert [r.id for r in store.predictions.scan("m", None)] == ids, "old records are scanned"
        store.registry.put_document("m", "report", {"ok": True})
        assert store.registry.get_document("m", "report") == {"ok": True}
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        indexes = {row[1] for row in check.execute("PRAGMA index_list(predictions)")}
        assert "predictions_model_id" in indexes


def test_a_file_of_schema_version_3_reads_back_unsigned_versions_and_uncommitted_jobs(
    tmp_path: Path,
) -> None:
    # The versions and jobs tables as schema version 3 (onlearn 8d6a9de) created them, without
    # versions.spec_signature and jobs.committed, with data; the other tables are created on
    # open as for any file that lacks them.
    path = tmp_path / "v3.db"
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE versions (
            model TEXT NOT NULL, number INTEGER NOT NULL, created_at REAL NOT NULL,
            spec TEXT NOT NULL, meta TEXT NOT NULL, key TEXT, PRIMARY KEY (model, number));
        CREATE UNIQUE INDEX versions_key ON versions (model, key) WHERE key IS NOT NULL;
        CREATE TABLE jobs (
            job_id TEXT PRIMARY KEY, kind TEXT NOT NULL, model TEXT NOT NULL,
            params TEXT NOT NULL, created_at REAL NOT NULL, key TEXT, state TEXT NOT NULL,
            attempts INTEGER NOT NULL, max_attempts INTEGER NOT NULL, run_after REAL NOT NULL,
            worker TEXT, lease_expires_at REAL, updated_at REAL, result TEXT, error TEXT);
        CREATE UNIQUE INDEX jobs_key ON jobs (key) WHERE key IS NOT NULL;
        CREATE INDEX jobs_active
            ON jobs (created_at, job_id) WHERE state IN ('queued', 'running');
        INSERT INTO versions VALUES ('m', 1, 1.0, '{"pipeline":"logistic","l2":0.1}', '{}', 'j-1');
        INSERT INTO jobs VALUES ('queued', 'refit', 'm', '{}', 1.0, NULL, 'queued', 0, 3, 0.0,
            NULL, NULL, NULL, NULL, NULL);
        INSERT INTO jobs VALUES ('running', 'refit', 'm', '{"w":1}', 2.0, 'k', 'running', 1, 3,
            0.0, 'w', 50.0, 2.0, NULL, NULL);
        PRAGMA user_version = 3;
        """
    )
    old.close()
    url = f"sqlite:///{path}"
    v1 = VersionInfo("m", "v1", 1.0, {"pipeline": "logistic", "l2": 0.1}, {}, None)
    queued = Job("queued", "refit", "m", {}, 1.0)
    running = Job(
        "running", "refit", "m", {"w": 1}, 2.0, key="k", state=JobState.RUNNING, attempts=1,
        worker="w", lease_expires_at=50.0, updated_at=2.0,
    )  # fmt: skip
    with open_sqlite_store(url) as store:
        reg, jobs = store.registry, store.jobs
        assert jobs is not None
        assert reg.get_version("m", "v1") == v1 and reg.list_versions("m") == [v1]
        assert reg.create_version("m", {}, {}, at=2.0, key="j-1", spec_signature="x") == v1
        assert jobs.get("queued") == queued and jobs.get("running") == running
        assert jobs.list() == [running, queued]
        # The old rows work with the new calls, and what they write is kept.
        assert reg.set_spec_signature("m", "v1", "sig") == VersionInfo(
            "m", "v1", 1.0, v1.spec, {}, "sig"
        )
        assert jobs.commit("running", "w", now=3.0) is not None
        assert jobs.cancel("running", 4.0, reason="stop").committed  # type: ignore[union-attr]
        assert jobs.cancel("queued", 4.0, reason="stop").state is JobState.CANCELLED  # type: ignore[union-attr]
        assert jobs.complete("running", "w", {"v": "v2"}, now=5.0).committed  # type: ignore[union-attr]
        assert jobs.claim("w2", lease_s=10, now=1000.0) is None, "cancelled: never claimed"
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 7
    with open_sqlite_store(url) as store:
        assert store.jobs is not None
        assert store.registry.get_version("m", "v1").spec_signature == "sig"  # type: ignore[union-attr]
        done = store.jobs.get("running")
        assert done is not None and done.committed and done.state is JobState.DONE
        assert store.jobs.get("queued").state is JobState.CANCELLED  # type: ignore[union-attr]


@pytest.mark.parametrize("after", [None, "0000"])
def test_scan_reads_the_model_index_in_order_without_sorting(
    tmp_path: Path, after: str | None
) -> None:
    from onlearn.store.sqlite import predictions as sqlite_predictions

    with open_sqlite_store(_url(tmp_path)) as store:
        now = time.time()
        # Many expired, unpurged rows and many models: the planner must still take the index.
        store.predictions.put_many(
            [
                _record(f"{i:032x}", f"m{i % 50}", now - 10 if i % 3 else now + 600)
                for i in range(4000)
            ]
        )
        conn = store.predictions._db.fast()  # type: ignore[attr-defined]
        conn.execute("ANALYZE")
        sql, args = (
            (sqlite_predictions._SCAN_FIRST_SQL, ("m1", "~", now, 10))
            if after is None
            else (sqlite_predictions._SCAN_SQL, ("m1", after, "~", now, 10))
        )
        plan = " | ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", args))
        assert "USING INDEX predictions_model_id (model=?" in plan, plan
        assert "TEMP B-TREE" not in plan, plan
        got = store.predictions.scan("m1", after, limit=10)
        assert len(got) == 10
        assert [r.id for r in got] == [f"{i:032x}" for i in range(1, 4000, 50) if i % 3 == 0][:10]


def test_a_file_of_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    with sqlite3.connect(path) as newer:
        newer.execute("PRAGMA user_version = 99")
    with pytest.raises(ConfigError, match="schema version 99"):
        open_sqlite_store(f"sqlite:///{path}")


def test_a_version_6_queue_asks_finished_inputs_again_after_the_upgrade(tmp_path: Path) -> None:
    """Schema 7: the dedupe index covers waiting items only. A file written by the onlearn of
    schema 6 (a done, a skipped-out, a claimed and a queued item) is upgraded when opened."""
    path = tmp_path / "v6.db"
    with sqlite3.connect(path) as old:
        fixture = REPO / "tests" / "store" / "fixtures" / "store_v6_queue.sql"
        old.executescript(fixture.read_text(encoding="utf-8"))
    t0 = 1_700_000_000.0

    def item(item_id: str, key: str) -> QueueItem:
        return QueueItem(
            item_id, "m", {"x": 0.5}, priority=0.5, enqueued_at=t0 + 10, dedupe_key=key
        )

    with open_sqlite_store(f"sqlite:///{path}") as store:
        queue = store.queue
        assert queue is not None
        before = queue.stats("m")
        assert (before.labelled, before.skipped, before.released, before.pushed) == (1, 1, 0, 4)
        assert queue.get("m", "done").state is QueueState.DONE  # type: ignore[union-attr]
        # The keys of the done and the skipped-out item are free again; waiting ones are not.
        assert queue.push(item("again", "k-done"), max_size=100).status == "queued"
        assert queue.push(item("again2", "k-skipped"), max_size=100).status == "queued"
        assert queue.push(item("dup1", "k-held"), max_size=100).item_id == "held"
        assert queue.push(item("dup2", "k-waiting"), max_size=100).item_id == "waiting"
        # The new columns work on old rows.
        (waiting,) = [i for i in queue.peek("m", 10) if i.item_id == "waiting"]
        assert waiting.skipped_by is None
        skipped = queue.skip("m", "waiting", None, now=t0 + 20, max_skips=5, labeller="ann")
        assert skipped.item is not None and skipped.item.skipped_by == "ann"
        assert [
            i.item_id for i in queue.claim("m", limit=5, lease_s=60, labeller="ann", now=t0 + 30)
        ] == [
            "again",
            "again2",
        ], "the item ann skipped is passed over"
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 7
        indexes = {
            name for (name,) in check.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
        }
        assert "queue_items_waiting_dedupe" in indexes and "queue_items_dedupe" not in indexes
        plan = check.execute(
            "EXPLAIN QUERY PLAN SELECT item_id FROM queue_items WHERE model = ? AND dedupe_key = ?"
            " AND dedupe_key IS NOT NULL AND state IN ('queued', 'claimed')",
            ("m", "k"),
        ).fetchall()
        assert "queue_items_waiting_dedupe" in str(plan), f"push's lookup reads the index: {plan}"


# The generation id (onlearn/store/generation.py)


def test_a_fresh_file_put_in_place_takes_no_append_nor_role_change(tmp_path: Path) -> None:
    url = _url(tmp_path)
    with open_store(url) as store, open_store(_url(tmp_path, "fresh.db")) as fresh:
        store.registry.create_version("m", {"n": 0}, {}, at=0.0)
        fresh.registry.create_version("m", {"n": 0}, {}, at=0.0)
        assert store.log.append("m", [_event(1), _event(2)]) == [1, 2]
        assert fresh.generation.id != store.generation.id
        source, target = (
            sqlite3.connect(tmp_path / "fresh.db"),
            sqlite3.connect(tmp_path / "onlearn.db"),
        )
        source.backup(target)  # a restore of another store under the open one
        source.close()
        target.close()
        with pytest.raises(StoreReplaced, match=f"holds generation {fresh.generation.id}"):
            store.log.append("m", [_event(3)])
        with pytest.raises(StoreReplaced):
            store.registry.change_roles(
                "m",
                {"champion": "v1"},
                Event(EventKind.PROMOTE, {"changes": {"champion": "v1"}}, at=1.0),
                actor="a",
                reason="r",
                at=1.0,
            )
        assert store.log.head("m") == 0 and store.registry.roles("m") == {}


def test_a_file_of_an_earlier_onlearn_gets_a_generation_at_first_open(tmp_path: Path) -> None:
    with open_store(_url(tmp_path)) as store:
        first = store.generation.id
    with sqlite3.connect(tmp_path / "onlearn.db") as conn:
        conn.execute("DELETE FROM meta WHERE name = 'generation'")  # as an earlier onlearn left it
    with open_store(_url(tmp_path)) as store, open_store(_url(tmp_path)) as again:
        assert store.generation.id != first and again.generation.id == store.generation.id
        store.log.append("m", [_event(1)])  # both processes append to it
        again.log.append("m", [_event(2)])
