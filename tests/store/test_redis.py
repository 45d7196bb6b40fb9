"""Redis-specific behaviour: key layout, several processes, outages and restarts, expiry, URLs.

Every test runs against a private ``redis-server`` started by the fixtures of tests/conftest.py;
the shared contract checks run through ``BACKENDS`` in test_contract.py.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from onlearn.errors import ConfigError, StoreReplaced, StoreUnavailable
from onlearn.records import Event, EventKind, Job, PredictionRecord, QueueItem, QueueState, Snapshot
from onlearn.store.base import Store
from onlearn.store.redis import label_queue, open_redis_store, parse_redis_url
from onlearn.store.redis.connection import BREAKER_OPEN_S
from onlearn.store.redis.keys import RedisKeys

REPO = Path(__file__).resolve().parents[2]


def _event(i: int, key: str | None = None) -> Event:
    return Event(EventKind.LABEL, {"features": {"x": i}, "label": i % 3 == 0}, at=float(i), key=key)


def _record(rid: str, expires_at: float) -> PredictionRecord:
    return PredictionRecord(
        rid, "m", time.time(), {"x": 1}, "v1", {"v1": {"label": True}}, expires_at=expires_at
    )


@pytest.fixture
def store(redis_url: str) -> Iterator[Store]:
    with open_redis_store(redis_url) as opened:
        yield opened


def _workload(store: Store, model: str) -> None:
    """Touch every kind of key of ``model``; the seqs and versions prove the model starts empty
    (so that it shares no key with another model or prefix)."""
    seqs = store.log.append(model, [_event(i, key=f"k{i}" if i % 2 else None) for i in range(10)])
    assert seqs == list(range(1, 11))
    assert store.log.trim(model, upto=4) == 4
    record = dataclasses.replace(_record(f"{model}/p1", time.time() + 600), model=model)
    store.predictions.put_many([record])
    assert [r.id for r in store.predictions.scan(model, None)] == [f"{model}/p1"]
    store.registry.put_document(model, "report", {"model": model})
    assert store.registry.create_version(model, {"n": 1}, {}, at=1.0).version == "v1"
    store.registry.set_role(model, "champion", "v1", actor="t", reason="r", at=2.0)
    store.registry.put_snapshot(Snapshot(model, "v1", 10, 3.0, b"\x00\xffstate"))
    assert store.registry.create_version(model, {"n": 2}, {}, at=3.0, key="job-1").version == "v2"
    promote = Event(EventKind.PROMOTE, {"changes": {"canary": "v2"}}, at=4.0, key="pr-1")
    seq = store.registry.change_roles(
        model, {"canary": "v2"}, promote, actor="t", reason="r", at=4.0, canary_share=0.1
    )
    assert seq == 11
    queue, jobs = store.queue, store.jobs
    assert queue is not None and jobs is not None
    for n, item_id in enumerate(["q1", "q 2/é", "q3"]):
        item = QueueItem(item_id, model, {"x": n}, priority=n, enqueued_at=5.0, dedupe_key=f"d{n}")
        assert queue.push(item, max_size=100).status == "queued"
    (claimed,) = queue.claim(model, limit=1, lease_s=60, labeller="ann", now=6.0)
    assert claimed.item_id == "q3"
    assert queue.complete(model, "q 2/é", None, {"seq": 1}, now=7.0).status == "ok"
    jobs.enqueue(Job(f"{model}/job", "refit", model, {}, created_at=8.0, key=f"{model}:refit"))
    jobs.enqueue(Job(f"{model}/job 2", "refit", model, {}, created_at=9.0))
    assert jobs.cancel(f"{model}/job 2", 9.5, reason="r").state.value == "cancelled"  # type: ignore[union-attr]
    assert store.registry.set_spec_signature(model, "v1", "sig") is not None


def test_every_key_comes_from_the_keys_module_and_carries_the_prefix(redis_url: str) -> None:
    odd = "odd:name{tag}*?[x] é"
    with open_redis_store(redis_url) as store:
        for model in ("m", odd):
            _workload(store, model)
        assert store.log.read(odd, after=0)[0].seq == 5
        assert store.registry.latest_snapshot(odd, "v1").artifact == b"\x00\xffstate"  # type: ignore[union-attr]
    with open_redis_store(f"{redis_url}?prefix=team-a:onlearn") as team_store:
        _workload(team_store, "m")  # starts at seq 1 and v1: no key shared with the default prefix

    client = redis.Redis.from_url(redis_url)
    found = set(client.scan_iter(count=1000))
    default, team = RedisKeys(), RedisKeys("team-a:onlearn")
    strays = [k for k in found if not (default.owns(k) or team.owns(k))]
    assert not strays, f"keys not named by redis.keys: {strays}"
    assert {k for k in found if default.owns(k)} == set(client.scan_iter(match=default.match))
    assert all(k.startswith(b"onlearn:") or k.startswith(b"team-a:onlearn:") for k in found)
    # The layout documented in redis.keys is the one in use: every kind of key is there.
    for keys in (default, team):
        expected = {
            keys.log("m"),
            keys.log_head("m"),
            keys.log_keys("m"),
            keys.versions("m"),
            keys.versions_last("m"),
            keys.roles("m"),
            keys.role_history("m"),
            keys.snapshots("m", "v1"),
            keys.snapshot("m", "v1", 10),
            keys.prediction("m/p1"),
            keys.predictions_expiry(),
            keys.predictions_models(),
            keys.predictions_of_model("m"),
            keys.documents("m"),
            keys.versions_keys("m"),
            keys.roles_state("m"),
            keys.queue("m"),
            keys.queue_leases("m"),
            keys.queue_finished("m"),
            keys.queue_waiting("m"),
            keys.queue_dedupe("m"),
            keys.queue_counters("m"),
            keys.queue_item("m", "q1"),
            keys.queue_item("m", "q 2/é"),
            keys.job("m/job"),
            keys.job_keys(),
            keys.jobs_active(),
            keys.jobs_all(),
            keys.jobs_of_model("m"),
        }
        assert {k.encode() for k in expected} <= found
    # Only the idempotency keys of untrimmed events are kept (k5, k7, k9).
    assert sorted(client.hkeys(default.log_keys("m"))) == [b"k5", b"k7", b"k9", b"pr-1"]
    assert client.type(default.log("m")) == b"stream"
    assert (
        client.type(default.queue("m")) == b"zset" and client.type(default.job("m/job")) == b"hash"
    )


def test_scripts_build_the_keys_python_names_for_any_item_id(store: Store, redis_url: str) -> None:
    # Claims, evictions, expiries and purges find items through sorted sets and build their
    # keys in Lua: the encoding must be redis.keys' for every character.
    queue, jobs = store.queue, store.jobs
    assert queue is not None and jobs is not None
    odd = [chr(c) for c in range(32, 127)] + ["é", "日本", "a b", "x" * 300, "\u00a0", "%%", "%25"]
    for n, item_id in enumerate(odd):
        priority = 1.0 if item_id == odd[-1] else -float(n)
        item = QueueItem(item_id, "m", {"n": n}, priority=priority, enqueued_at=1.0)
        assert queue.push(item, max_size=len(odd) - 1).status == "queued", item_id
    victim = queue.get("m", odd[-2])  # the lowest priority when the last one came in
    assert victim is not None and victim.state is QueueState.EVICTED
    claimed = queue.claim("m", limit=len(odd), lease_s=5, labeller=None, now=10.0)
    assert [i.item_id for i in claimed] == odd[-1:] + odd[:-2], "every claimed item came whole"
    assert queue.release_expired("m", now=15.0) == len(odd) - 1
    skipped = [queue.skip("m", i, None, now=20.0, max_skips=1).status for i in odd]
    assert skipped == ["ok"] * (len(odd) - 2) + ["gone", "ok"]
    assert queue.purge_finished("m", before=100.0) == len(odd)
    assert all(queue.get("m", i) is None for i in odd)
    for n, job_id in enumerate(odd):
        jobs.enqueue(Job(job_id, "refit", "m", {}, created_at=float(n), max_attempts=1))
    got = [jobs.claim("w", lease_s=5, now=10.0) for _ in odd]
    assert [j.job_id for j in got if j is not None] == odd
    for _ in odd:  # each worker died on its only attempt: found through the active set
        assert jobs.claim("w2", lease_s=5, now=20.0) is None
    assert all(jobs.get(i).state.value == "failed" for i in odd)  # type: ignore[union-attr]
    client = redis.Redis.from_url(redis_url)
    strays = [k for k in client.scan_iter(count=1000) if not RedisKeys().owns(k)]
    assert not strays, f"keys not named by redis.keys: {strays[:5]}"


def test_large_claims_are_served_by_several_scripts_in_order(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(label_queue, "_CLAIM_CHUNK", 3)
    queue = store.queue
    assert queue is not None
    for n in range(10):
        queue.push(QueueItem(f"i{n}", "m", {}, priority=n / 10, enqueued_at=1.0), max_size=100)
    claimed = queue.claim("m", limit=8, lease_s=5, labeller="ann", now=2.0)
    assert [i.item_id for i in claimed] == [f"i{n}" for n in range(9, 1, -1)]
    assert len({i.claim_id for i in claimed}) == 8
    chosen = queue.claim(
        "m", limit=5, lease_s=5, labeller=None, now=2.0, item_ids=["i9", "i0", "x", "i1"]
    )
    assert [i.item_id for i in chosen] == ["i0", "i1"]
    assert queue.claim("m", limit=0, lease_s=5, labeller=None, now=7.0) == []
    assert queue.stats("m").expired == 10, "a claim of nothing still releases expired leases"


_WRITER = """
    import json, sys
    from onlearn.records import Event, EventKind
    from onlearn.store.redis import open_redis_store

    name, rounds, url = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    with open_redis_store(url) as store:
        print("ready", flush=True)
        sys.stdin.readline()  # wait for "go", so that every writer runs at the same time
        seqs = []
        for r in range(rounds):
            batch = [Event(EventKind.LABEL, {"w": name, "r": r, "i": i}, at=0.0)
                     for i in range(1 + r % 3)]
            if r % 10 == 0:
                batch.append(Event(EventKind.LABEL, {"w": name}, at=0.0, key=f"shared-{r}"))
            seqs.append(store.log.append("m", batch))
        print(json.dumps(seqs), flush=True)
"""


def test_processes_appending_to_one_log_get_unique_gapless_seqs(redis_url: str) -> None:
    writers, rounds = 4, 40
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(_WRITER), f"w{w}", str(rounds), redis_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            cwd=REPO,
        )
        for w in range(writers)
    ]
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
    with open_redis_store(redis_url) as store:
        events = store.log.read("m", after=0, limit=10_000)
        assert [e.seq for e in events] == list(range(1, total + 1)), "gapless, no lost event"
        assert store.log.head("m") == total
    written = {
        (f"w{w}", r, i) for w in range(writers) for r in range(rounds) for i in range(1 + r % 3)
    }
    assert {
        (e.payload["w"], e.payload["r"], e.payload["i"]) for e in events if not e.key
    } == written
    # A key appended by every process at about the same time exists once, with one seq for all.
    assert sorted(e.key for e in events if e.key) == [f"shared-{r}" for r in range(0, rounds, 10)]
    for r_index in range(shared):
        assert len({res[r_index * 10][-1] for res in results}) == 1
    for res in results:
        mine = [s for r, batch in enumerate(res) for s in batch[: 1 + r % 3]]
        assert mine == sorted(mine), "one writer's seqs increase"
    acknowledged = {s for res in results for batch in res for s in batch}
    assert acknowledged == set(range(1, total + 1))


def _fails_fast(
    call: Callable[[], object], match: str = "unavailable", within: float = 3.0
) -> None:
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match=match):
        call()
    assert time.monotonic() - started < within, "a dead Redis must not stall the caller"


def test_killed_redis_fails_fast_and_the_same_store_recovers_with_the_data(
    redis_server_factory: Callable[..., object],
) -> None:
    server = redis_server_factory(appendonly=True, appendfsync="always")
    record = _record("p-1", time.time() + 600)
    with open_redis_store(f"{server.url}/0") as store:  # type: ignore[attr-defined]
        assert store.log.append("m", [_event(i, key=f"k{i}") for i in range(5)]) == [1, 2, 3, 4, 5]
        v1 = store.registry.create_version("m", {"pipeline": "logistic"}, {"note": "é"}, at=1.0)
        store.registry.set_role("m", "champion", "v1", actor="a", reason="r", at=2.0)
        store.registry.put_snapshot(Snapshot("m", "v1", 5, 3.0, b"\x00state"))
        store.predictions.put_many([record])

        # kill -9 right after the acknowledgements: appendfsync always put them on disk.
        server.kill()  # type: ignore[attr-defined]
        _fails_fast(lambda: store.log.append("m", [_event(5)]))
        _fails_fast(lambda: store.log.head("m"))
        _fails_fast(lambda: store.log.read("m", after=0))
        _fails_fast(lambda: store.predictions.put_many([_record("p-2", time.time() + 600)]))
        _fails_fast(lambda: store.predictions.get("p-1"))
        _fails_fast(lambda: store.registry.list_versions("m"))
        _fails_fast(
            lambda: store.registry.set_role("m", "shadow", "v1", actor="a", reason="r", at=0)
        )
        _fails_fast(lambda: store.queue.claim("m", limit=1, lease_s=1, labeller=None, now=0))  # type: ignore[union-attr]
        _fails_fast(lambda: store.jobs.claim("w", lease_s=1, now=0))  # type: ignore[union-attr]
        _fails_fast(store.ping)

        server.start()  # type: ignore[attr-defined]  # same port, same directory
        store.ping()
        assert store.log.head("m") == 5
        assert store.log.append("m", [_event(5), _event(0, key="k0")]) == [6, 1]
        assert [e.key for e in store.log.read("m", after=0)] == ["k0", "k1", "k2", "k3", "k4", None]
        assert store.registry.list_versions("m") == [v1]
        assert store.registry.roles("m") == {"champion": "v1"}
        assert len(store.registry.role_history("m")) == 1
        assert store.registry.latest_snapshot("m", "v1").artifact == b"\x00state"  # type: ignore[union-attr]
        assert store.predictions.get("p-1") == record
        assert store.registry.create_version("m", {}, {}, at=4.0).version == "v2"


def test_hung_redis_times_out_and_a_retried_append_stays_idempotent(
    redis_server_factory: Callable[..., object],
) -> None:
    server = redis_server_factory()
    url = f"{server.url}/0?socket_timeout=0.5&socket_connect_timeout=0.5"  # type: ignore[attr-defined]
    with open_redis_store(url) as store:
        assert store.log.append("m", [_event(0)]) == [1]
        server.pause()  # type: ignore[attr-defined]  # connections are accepted, nothing answers
        try:
            # The command reached Redis's socket: it may run once Redis wakes up. That is why
            # appends are never retried blindly, and why labels carry idempotency keys.
            _fails_fast(
                lambda: store.log.append("m", [_event(1, key="p-9")]),
                match="socket_timeout",
                within=2.0,
            )
            # The breaker is open: the next calls fail at once instead of each waiting 0.5 s.
            _fails_fast(lambda: store.log.head("m"), match="timed out less than", within=0.1)
        finally:
            server.resume()  # type: ignore[attr-defined]
        _fails_fast(lambda: store.log.head("m"), match="timed out less than", within=0.1)
        time.sleep(BREAKER_OPEN_S)  # then it closes by itself
        assert store.log.append("m", [_event(1, key="p-9")]) == [2]
        assert store.log.head("m") == 2
        assert [e.seq for e in store.log.read("m", after=0)] == [1, 2]
        assert store.registry.list_versions("m") == [], "replies are not mixed up after timeouts"


def test_prediction_records_expire_in_redis(store: Store, redis_url: str) -> None:
    keys, client = RedisKeys(), redis.Redis.from_url(redis_url)
    now = time.time()
    store.predictions.put_many([_record("soon", now + 1.0), _record("later", now + 600)])
    # The expiry is rounded up to the next millisecond (never deleted early), so the TTL Redis
    # reports from its own millisecond clock may be one more than the seconds asked for.
    assert 0 < client.pttl(keys.prediction("soon")) <= 1001
    assert 599_000 < client.pttl(keys.prediction("later")) <= 600_001
    assert store.predictions.get("soon") is not None
    # A record put again already expired replaces the live one: it is gone at once.
    store.predictions.put_many([_record("later", now - 1)])
    assert store.predictions.get("later") is None
    assert client.exists(keys.prediction("later")) == 0
    time.sleep(1.2)
    assert store.predictions.get("soon") is None
    assert client.exists(keys.prediction("soon")) == 0, "Redis deleted the expired record itself"
    # The expiry index keeps the ids until a purge, which the prediction writer runs regularly.
    assert store.predictions.purge_expired(time.time()) == 2
    assert client.zcard(keys.predictions_expiry()) == 0
    assert client.hlen(keys.predictions_models()) == 0
    assert client.zcard(keys.predictions_of_model("m")) == 0


def test_scan_indexes_forget_expired_ids(store: Store, redis_url: str) -> None:
    keys, client = RedisKeys(), redis.Redis.from_url(redis_url)
    now = time.time()
    pid = "{:012x}{:020x}".format
    soon = [_record(pid(1, i), now + 0.3) for i in range(250)]
    later = [_record(pid(2, i), now + 600) for i in range(3)]
    store.predictions.put_many(soon + later)
    index = keys.predictions_of_model("m")
    assert client.zcard(index) == 253 and client.hlen(keys.predictions_models()) == 253
    assert {client.zscore(index, r.id) for r in soon + later} == {0.0}, "one score: lex order"
    time.sleep(0.4)
    # Redis expired the records; scan reads past their ids and drops them from the index.
    assert [r.id for r in store.predictions.scan("m", None, limit=2)] == [r.id for r in later[:2]]
    assert client.zcard(index) == 3
    assert client.zcard(keys.predictions_expiry()) == 253, "the expiry index waits for a purge"
    assert store.predictions.purge_expired(time.time()) == 250
    assert client.hlen(keys.predictions_models()) == 3 and client.zcard(index) == 3

    # An id put again under another model leaves its old model's index when scanned or purged.
    moved = _record(later[0].id, time.time() + 600)
    store.predictions.put_many([dataclasses.replace(moved, model="n")])
    assert client.zcard(index) == 3
    assert [r.id for r in store.predictions.scan("m", None)] == [r.id for r in later[1:]]
    assert client.zcard(index) == 2
    assert client.hget(keys.predictions_models(), moved.id) == b"n"
    assert store.predictions.purge_expired(time.time() + 3600) == 3
    assert client.zcard(index) == client.zcard(keys.predictions_of_model("n")) == 0
    assert client.hlen(keys.predictions_models()) == client.zcard(keys.predictions_expiry()) == 0


def test_purge_handles_ids_written_before_the_scan_index(store: Store, redis_url: str) -> None:
    # An older onlearn wrote records and expiry entries, but no model index nor id -> model.
    keys, client = RedisKeys(), redis.Redis.from_url(redis_url)
    now = time.time()
    client.set(keys.prediction("old"), b"{}", px=60_000)
    client.zadd(keys.predictions_expiry(), {"old": now - 5, "older": now - 50})
    store.predictions.put_many([_record("new", now - 1), _record("live", now + 600)])
    assert store.predictions.purge_expired(now) == 3
    assert client.exists(keys.prediction("old")) == 0
    assert client.zrange(keys.predictions_expiry(), 0, -1) == [b"live"]
    assert [r.id for r in store.predictions.scan("m", None)] == ["live"]


def test_put_many_indexes_a_batch_in_a_few_commands(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The writer thread pays for the index on every batch: one ZADD per model, one HSET; and
    # one GET of the store's generation (records encoded with shapes of an emptied store).
    sent: list[str] = []
    pipeline = redis.client.Pipeline

    def record_commands(self: redis.client.Pipeline, raise_on_error: bool = True) -> list:
        sent.extend(str(args[0]) for args, _ in self.command_stack)
        return original(self, raise_on_error)

    original = pipeline.execute
    monkeypatch.setattr(pipeline, "execute", record_commands)
    now = time.time()
    records = [_record(f"p{i}", now + 600) for i in range(100)]
    records += [dataclasses.replace(_record(f"q{i}", now + 600), model="n") for i in range(50)]
    store.predictions.put_many(records)
    assert sorted(sent) == sorted(["GET"] + ["SET"] * 150 + ["ZADD"] * 3 + ["HSET"])


def test_large_batches_and_long_trims_are_split_into_bounded_scripts(
    store: Store, redis_url: str
) -> None:
    n = 12_345  # more events than one append script takes, more than many trim scripts remove
    events = [_event(i, key=f"k{i}" if i % 2 else None) for i in range(n)]
    assert store.log.append("m", events) == list(range(1, n + 1))
    assert store.log.append("m", [_event(0, key="k12343")]) == [12_344], "dedupe across chunks"
    assert store.log.trim("m", upto=12_000) == 12_000
    assert [e.seq for e in store.log.read("m", after=0)] == list(range(12_001, n + 1))
    client = redis.Redis.from_url(redis_url)
    assert client.hlen(RedisKeys().log_keys("m")) == len(range(12_002, n + 1, 2)), (
        "keys of seqs 12002, 12004, ..."
    )
    assert store.log.append("m", [_event(1, key="k1")]) == [n + 1], "a trimmed key is forgotten"


def test_scripts_come_back_after_the_script_cache_is_flushed(store: Store, redis_url: str) -> None:
    store.log.append("m", [_event(0)])
    redis.Redis.from_url(redis_url).script_flush()  # as after a restart without persistence
    assert store.log.append("m", [_event(1, key="a")]) == [2]
    assert store.log.trim("m", upto=1) == 1
    assert store.registry.create_version("m", {}, {}, at=0.0).version == "v1"
    store.registry.set_role("m", "champion", "v1", actor="a", reason="r", at=0.0)
    promote = Event(EventKind.PROMOTE, {"changes": {"shadow": "v1"}}, at=0.0)
    assert (
        store.registry.change_roles("m", {"shadow": "v1"}, promote, actor="a", reason="r", at=0)
        == 3
    )
    assert store.queue is not None and store.jobs is not None
    store.queue.push(QueueItem("i", "m", {}, priority=0.5, enqueued_at=0.0), max_size=10)
    assert [
        i.item_id for i in store.queue.claim("m", limit=1, lease_s=1, labeller=None, now=0)
    ] == ["i"]
    store.jobs.enqueue(Job("j", "refit", "m", {}, created_at=0.0))
    assert store.jobs.claim("w", lease_s=1, now=0.0).job_id == "j"  # type: ignore[union-attr]
    store.predictions.put_many([_record("p", time.time() - 1)])
    assert store.predictions.purge_expired(time.time()) == 1


def test_unreachable_redis_fails_at_open_without_leaking_the_password() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once the socket is closed
    url = f"redis://user:s3cret@127.0.0.1:{port}/0"
    _fails_fast(lambda: open_redis_store(url))
    with pytest.raises(StoreUnavailable) as caught:
        open_redis_store(url)
    assert "s3cret" not in str(caught.value) and "***" in str(caught.value)


def test_closed_store_fails_clearly(redis_url: str) -> None:
    store = open_redis_store(redis_url)
    store.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        store.log.head("m")


def test_redis_without_appendonly_is_reported(
    redis_server_factory: Callable[..., object], caplog: pytest.LogCaptureFixture
) -> None:
    server = redis_server_factory(appendonly=False)
    with caplog.at_level(logging.WARNING, logger="onlearn.store.redis"):
        open_redis_store(f"{server.url}/0").close()  # type: ignore[attr-defined]
    assert "appendonly off" in caplog.text


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://h:6379/1", ("redis://h:6379/1", {"prefix": "onlearn"})),
        (
            "redis://h?prefix=a:b&socket_timeout=1",
            ("redis://h?socket_timeout=1", {"prefix": "a:b"}),
        ),
        ("rediss://:pw@h:6380/0", ("rediss://:pw@h:6380/0", {"prefix": "onlearn"})),
        ("unix:///run/redis.sock?db=2", ("unix:///run/redis.sock?db=2", {"prefix": "onlearn"})),
    ],
)
def test_parse_url(url: str, expected: tuple) -> None:
    assert parse_redis_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "http://h:6379/0",
        "redis:/h:6379/0",
        "redis://h:6379/zero",
        "redis://h:6379/0?prefix=",
        "redis://h:6379/0?prefix=a{b}",
        "redis://h:6379/0?prefix=a*",
        "redis://h:6379/0?decode_responses=true",
    ],
)
def test_bad_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        open_redis_store(url)


def test_open_store_opens_redis_urls(redis_url: str) -> None:
    from onlearn.store import open_store
    from onlearn.store.redis import RedisEventLog

    with open_store(redis_url) as store:
        assert isinstance(store.log, RedisEventLog) and store.shared
        store.ping()


def test_large_artifacts_are_stored_in_parts(store: Store, redis_url: str) -> None:
    big = bytes(range(256)) * (10 * 4096 + 3)  # 10 MiB and a bit: 11 parts of 1 MiB
    store.registry.put_snapshot(Snapshot("m", "v1", 7, 1.0, big))
    assert store.registry.latest_snapshot("m", "v1") == Snapshot("m", "v1", 7, 1.0, big)
    key = RedisKeys().snapshot("m", "v1", 7)
    client = redis.Redis.from_url(redis_url)
    assert client.hlen(key) == 2 + 11
    store.registry.put_snapshot(Snapshot("m", "v1", 7, 2.0, b"small"))
    assert client.hlen(key) == 2 + 1, "a replaced snapshot leaves none of its old parts"
    assert store.registry.latest_snapshot("m", "v1") == Snapshot("m", "v1", 7, 2.0, b"small")


def test_a_lost_head_counter_cannot_break_numbering(store: Store, redis_url: str) -> None:
    store.log.append("m", [_event(i) for i in range(3)])
    redis.Redis.from_url(redis_url).delete(RedisKeys().log_head("m"))  # e.g. a partial restore
    assert store.log.head("m") == 3
    assert store.log.append("m", [_event(3)]) == [4]
    assert store.log.head("m") == 4


def test_redis_refusing_writes_is_unavailable_not_a_bug(
    redis_server_factory: Callable[..., object],
) -> None:
    server = redis_server_factory()
    admin = server.client()  # type: ignore[attr-defined]
    with open_redis_store(f"{server.url}/0") as store:  # type: ignore[attr-defined]
        store.log.append("m", [_event(0)])
        admin.config_set("maxmemory", "1")  # full: every write is refused with OOM
        try:
            with pytest.raises(StoreUnavailable, match="maxmemory"):
                store.log.append("m", [_event(1)])
            with pytest.raises(StoreUnavailable, match="maxmemory"):
                store.registry.create_version("m", {}, {}, at=0.0)
            with pytest.raises(StoreUnavailable, match="maxmemory"):
                store.predictions.put_many([_record("p", time.time() + 60)])
            assert store.log.head("m") == 1, "reads still work"
        finally:
            admin.config_set("maxmemory", "0")
        admin.replicaof("127.0.0.1", "1")  # a replica (of nothing) refuses writes: READONLY
        try:
            with pytest.raises(StoreUnavailable, match="read only"):
                store.log.append("m", [_event(1)])
        finally:
            admin.replicaof("no", "one")
        assert store.log.append("m", [_event(1)]) == [2]


def test_jobs_and_versions_stored_by_an_earlier_onlearn_read_back(
    store: Store, redis_url: str
) -> None:
    # What an earlier onlearn wrote: job hashes without a ``committed`` field, version JSON
    # without ``spec_signature``.
    jobs = store.jobs
    assert jobs is not None
    client = redis.Redis.from_url(redis_url)
    keys = RedisKeys()
    for n, job_id in enumerate(["a", "b"]):
        jobs.enqueue(Job(job_id, "refit", "m", {}, created_at=float(n)))
        assert client.hdel(keys.job(job_id), "committed") == 1
    v1 = store.registry.create_version("m", {"p": 0.1 + 0.2}, {"n": 1}, at=2.0, key="job-1")
    old_json = json.dumps({"created_at": 2.0, "spec": {"p": 0.1 + 0.2}, "meta": {"n": 1}})
    client.hset(keys.versions("m"), "1", old_json)

    assert v1.spec_signature is None and store.registry.get_version("m", "v1") == v1
    assert store.registry.list_versions("m") == [v1]
    assert store.registry.create_version("m", {}, {}, at=3.0, key="job-1") == v1
    signed = store.registry.set_spec_signature("m", "v1", "sig")
    assert signed == dataclasses.replace(v1, spec_signature="sig")
    assert store.registry.get_version("m", "v1") == signed
    assert json.loads(client.hget(keys.versions("m"), "1"))["spec"] == {"p": 0.1 + 0.2}

    assert [j.committed for j in jobs.list()] == [False, False]
    a = jobs.claim("w", lease_s=10, now=5.0)
    b = jobs.claim("w", lease_s=10, now=5.0)
    assert a is not None and b is not None and not a.committed and not b.committed
    cancelled = jobs.cancel("a", 6.0, reason="stop")
    assert cancelled is not None and cancelled.state.value == "cancelled", "not committed: cancels"
    committed = jobs.commit("b", "w", now=6.0)
    assert committed is not None and committed.committed
    assert jobs.cancel("b", 7.0, reason="stop") == committed
    client.close()


def test_pass_over_release_and_label_scripts_find_any_item_id(store: Store, redis_url: str) -> None:
    queue = store.queue
    assert queue is not None
    odd = ["é", "日本", "a b", "x:y{z}*", "%25", "p/q", "~-."]
    for n, item_id in enumerate(odd):
        item = QueueItem(item_id, "m", {"n": n}, priority=-n, enqueued_at=1.0, dedupe_key=item_id)
        assert queue.push(item, max_size=100).status == "queued"
    for item in queue.claim("m", limit=10, lease_s=60, labeller="ann", now=2.0):
        assert queue.skip("m", item.item_id, item.claim_id, now=3.0, max_skips=5).status == "ok"
    assert queue.peek("m", 10, passing_over="ann") == []
    assert queue.claim("m", limit=10, lease_s=60, labeller="ann", now=4.0) == []
    taken = queue.claim("m", limit=10, lease_s=60, labeller="bob", now=4.0)
    assert [i.item_id for i in taken] == odd and all(i.skipped_by == "ann" for i in taken)
    first, *rest = taken
    assert queue.release("m", first.item_id, first.claim_id, now=5.0).status == "ok"  # type: ignore[arg-type]
    for n, item in enumerate(rest):
        event = Event(EventKind.LABEL, {"label": n, "x": 0.1 + n}, at=6.0, key=f"prediction:{n}")
        out = queue.label("m", item.item_id, item.claim_id, [event], {"version": "v1"}, now=6.0)
        assert out.status == "ok" and out.seqs == [n + 1], out
        assert out.item.result == {"seq": n + 1, "version": "v1"}  # type: ignore[union-attr]
    assert [e.payload for e in store.log.read("m", 0)] == [
        {"label": n, "x": 0.1 + n} for n in range(len(rest))
    ], "appended as the log appends: read back whole by the log"
    # Done items left the dedupe hash: their inputs are asked again.
    again = QueueItem("new", "m", {}, priority=0.5, enqueued_at=7.0, dedupe_key=rest[0].item_id)
    assert queue.push(again, max_size=100).status == "queued"


def test_a_dedupe_entry_left_by_an_earlier_onlearn_for_a_done_item_holds_nothing(
    store: Store, redis_url: str
) -> None:
    """An earlier onlearn kept a done or skipped item's dedupe key; push reads the item's
    state and lets the input be asked again."""
    queue = store.queue
    assert queue is not None
    for item_id in ("done", "skipped"):
        item = QueueItem(item_id, "m", {}, priority=0.5, enqueued_at=1.0, dedupe_key=f"k-{item_id}")
        queue.push(item, max_size=100)
    queue.complete("m", "done", None, {"seq": 1}, now=2.0)
    queue.skip("m", "skipped", None, now=2.0, max_skips=1)
    client = redis.Redis.from_url(redis_url)
    client.hset(RedisKeys().queue_dedupe("m"), mapping={"k-done": "done", "k-skipped": "skipped"})
    client.close()
    for key in ("k-done", "k-skipped"):
        item = QueueItem(f"new-{key}", "m", {}, priority=0.5, enqueued_at=3.0, dedupe_key=key)
        assert queue.push(item, max_size=100).status == "queued", key


def test_items_pushed_by_an_earlier_onlearn_count_for_the_oldest_waiting(
    store: Store, redis_url: str
) -> None:
    """An earlier onlearn kept no waiting set: until its items are gone, the oldest is found by
    reading the queued members and the claimed items."""
    queue = store.queue
    assert queue is not None
    for item_id, at in (("claimed", 5.0), ("queued", 7.0), ("newer", 9.0)):
        queue.push(QueueItem(item_id, "m", {}, priority=at, enqueued_at=at), max_size=100)
    assert queue.claim("m", limit=1, lease_s=60, labeller=None, now=10.0)[0].item_id == "newer"
    client = redis.Redis.from_url(redis_url)
    client.zrem(RedisKeys().queue_waiting("m"), "claimed", "newer")  # as if pushed before
    client.close()
    assert queue.oldest_waiting("m") == 5.0
    queue.complete("m", "claimed", None, {}, now=11.0)
    assert queue.oldest_waiting("m") == 7.0
    queue.complete("m", "queued", None, {}, now=11.0)
    assert queue.oldest_waiting("m") == 9.0, "a claimed item of an earlier onlearn still waits"


# The generation id (onlearn/store/generation.py)


def test_an_emptied_redis_takes_no_append_and_no_record_encoded_with_its_old_shapes(
    store: Store, redis_url: str
) -> None:
    # A process caches the compact encoding's shape ids; in a Redis emptied and filled again by
    # another process, the same id names another shape (or none): a record or an event encoded
    # with the old cache would be read back with the wrong keys.
    now = time.time()
    record = dataclasses.replace(_record("p-old", now + 600), features={"a": 1, "b": 2})
    store.predictions.put_many([record])
    assert store.log.append("m", [_event(1), _event(2)]) == [1, 2]
    old = store.generation.id
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    with open_redis_store(redis_url) as other:  # a new process: a new generation, new shapes
        assert other.generation.id != old
        other.predictions.put_many(
            [dataclasses.replace(_record("p-new", now + 600), features={"y": 1, "z": 2})]
        )
        assert other.log.append("m", [_event(3)]) == [1]
        with pytest.raises(StoreReplaced, match="holds generation"):
            store.predictions.put_many(
                [dataclasses.replace(record, id="p-stale", features={"a": 3, "b": 4})]
            )
        assert other.predictions.get("p-stale") is None, "the record was taken out again"
        with pytest.raises(StoreReplaced):
            store.log.append("m", [_event(4)])
        assert [e.seq for e in other.log.read("m", after=0)] == [1], "nothing appended"
        assert other.log.read("m", after=0)[0].payload["features"] == {"x": 3}
    assert store.generation.lost is not None
    client.close()


def test_a_store_of_an_earlier_onlearn_gets_a_generation_at_first_open(
    store: Store, redis_url: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    assert client.get(RedisKeys().generation).decode() == store.generation.id
    client.delete(RedisKeys().generation)  # as an earlier onlearn left it
    with open_redis_store(redis_url) as opened:
        assert client.get(RedisKeys().generation).decode() == opened.generation.id
        with open_redis_store(redis_url) as again:
            assert again.generation.id == opened.generation.id, "set once, read by every process"
    client.close()
