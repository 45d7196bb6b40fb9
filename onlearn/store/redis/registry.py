"""The Registry on Redis: versions, roles with their audit history, snapshots and documents, in
hashes, lists and sorted sets per model. Changes that read and write several keys are Lua
scripts (``lua/registry_*.lua``); ``change_roles`` appends its control event with the log's own
function (``lua/lib/append_events.lua``), so that roles and log change in one step."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from redis import exceptions as rx

from onlearn.records import Event, Snapshot, VersionInfo
from onlearn.store.base import RolesState
from onlearn.store.codec import decode_document, dumps, encode_document, loads
from onlearn.store.compact import Shapes
from onlearn.store.leases import check_canary_share
from onlearn.store.redis.connection import Connection, guarded
from onlearn.store.redis.fields import decode
from onlearn.store.redis.log import _encode_entry
from onlearn.store.redis.scripts import register
from onlearn.store.redis.shapes import SharesShapes

__all__ = ["RedisRegistry"]

_VERSION_NAME = re.compile(r"v([1-9][0-9]*)")
_HISTORY_FIELDS = ("role", "version", "previous", "actor", "reason", "at")  # and "seq"
# Artifacts are written in parts: redis-py sends each large argument with one sendall, which
# must finish within socket_timeout, so a part of 1 MiB needs only 0.5 MB/s at the default 2 s
# while a forest's tens of MB in one piece would time out on a modest link.
_PART_BYTES = 1 << 20


class RedisRegistry(SharesShapes):
    def __init__(self, conn: Connection, shapes: Shapes | None = None):
        self._conn = conn
        self._given_shapes = shapes
        self._create_version_script = register(conn.client, "registry_create_version")
        self._set_role_script = register(conn.client, "registry_set_role")
        self._change_roles_script = register(conn.client, "registry_change_roles", "append_events")

    @guarded("create version")
    def create_version(
        self,
        model: str,
        spec: dict,
        meta: dict,
        at: float,
        key: str | None = None,
        *,
        spec_signature: str | None = None,
    ) -> VersionInfo:
        text = dumps(
            {"created_at": at, "spec": spec, "meta": meta, "spec_signature": spec_signature}
        )
        k = self._conn.keys
        found = self._create_version_script(
            keys=[k.versions_last(model), k.versions(model), k.versions_keys(model)],
            args=[text, "0" if key is None else "1", key or ""],
        )
        number = int(found[0])
        return self._info(model, number, found[1] if len(found) > 1 else text)

    @staticmethod
    def _info(model: str, number: int, text: bytes | str) -> VersionInfo:
        data = loads(text)
        created_at = float(data["created_at"])
        return VersionInfo(
            model,
            f"v{number}",
            created_at,
            data["spec"],
            data["meta"],
            data.get("spec_signature"),  # absent in a version stored by an earlier onlearn
        )

    @guarded("set spec signature", idempotent=True)
    def set_spec_signature(self, model: str, version: str, signature: str) -> VersionInfo | None:
        match = _VERSION_NAME.fullmatch(version)
        if match is None:
            return None
        number = int(match.group(1))
        key = self._conn.keys.versions(model)
        # WATCH, then MULTI/EXEC: the JSON is read, changed in Python and written back. Python,
        # not a script, because cjson would re-encode the spec's floats with 14 digits (the
        # spec would no longer be the one signed). The race this prevents: another write of
        # the versions hash between the read and the write (a concurrent set_spec_signature,
        # a restore) being overwritten by this call's stale copy; EXEC fails and we read again.
        with self._conn.client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key)
                    text = pipe.hget(key, str(number))
                    if text is None:
                        return None
                    data = loads(text)
                    data["spec_signature"] = signature
                    pipe.multi()
                    pipe.hset(key, str(number), dumps(data))
                    pipe.execute()
                    return self._info(model, number, dumps(data))
                except rx.WatchError:
                    continue

    @guarded("get version", idempotent=True)
    def get_version(self, model: str, version: str) -> VersionInfo | None:
        match = _VERSION_NAME.fullmatch(version)
        if match is None:
            return None
        number = int(match.group(1))
        text = self._conn.client.hget(self._conn.keys.versions(model), str(number))
        return None if text is None else self._info(model, number, text)

    @guarded("list versions", idempotent=True)
    def list_versions(self, model: str) -> list[VersionInfo]:
        found = self._conn.client.hgetall(self._conn.keys.versions(model))
        numbered = sorted((int(number), text) for number, text in found.items())
        return [self._info(model, number, text) for number, text in numbered]

    @guarded("roles", idempotent=True)
    def roles(self, model: str) -> dict[str, str]:
        found = self._conn.client.hgetall(self._conn.keys.roles(model))
        return {decode(role): decode(version) for role, version in sorted(found.items())}

    @guarded("roles state", idempotent=True)
    def roles_state(self, model: str) -> RolesState:
        k = self._conn.keys
        # MULTI: both reads run in one step, so they see one state (change_roles is a script).
        pipe = self._conn.client.pipeline(transaction=True)
        pipe.hgetall(k.roles(model))
        pipe.hmget(k.roles_state(model), ["canary_share", "seq"])
        roles, (share, seq) = pipe.execute()
        return RolesState(
            {decode(role): decode(version) for role, version in sorted(roles.items())},
            0.0 if share is None else float(share),
            0 if seq is None else int(seq),
        )

    @staticmethod
    def _number(model: str, version: str | None) -> int:
        """The number of a version name; LookupError for a name that is no version."""
        if version is None:
            return 0
        match = _VERSION_NAME.fullmatch(version)
        if match is None:
            raise LookupError(f"model {model!r} has no version {version!r}")
        return int(match.group(1))

    @guarded("set role")
    def set_role(
        self, model: str, role: str, version: str | None, *, actor: str, reason: str, at: float
    ) -> None:
        number = self._number(model, version)
        entry = dumps(
            {
                "role": role,
                "version": version,
                "actor": actor,
                "reason": reason,
                "at": at,
                "seq": None,
            }
        )
        k = self._conn.keys
        done = self._set_role_script(
            keys=[k.versions(model), k.roles(model), k.role_history(model)],
            args=[
                role,
                "0" if version is None else "1",
                version or "",
                number,
                entry[:-1] + ',"previous":',
            ],
        )
        if not done:
            raise LookupError(f"model {model!r} has no version {version!r}")

    @guarded("change roles")
    def change_roles(
        self,
        model: str,
        changes: Mapping[str, str | None],
        event: Event,
        *,
        actor: str,
        reason: str,
        at: float,
        canary_share: float | None = None,
    ) -> int:
        check_canary_share(canary_share)
        changes = dict(changes)
        args: list[Any] = list(_encode_entry(self._shapes, model, event))  # as append stores it
        args += ["0", ""] if canary_share is None else ["1", repr(float(canary_share))]
        args.append(len(changes))
        for role, version in changes.items():
            entry = dumps(
                {"role": role, "version": version, "actor": actor, "reason": reason, "at": at}
            )
            args += [
                role,
                "0" if version is None else "1",
                version or "",
                self._number(model, version),
                entry[:-1] + ',"seq":',
            ]
        generation = self._conn.generation
        generation.refuse()
        args.append(generation.id)  # last: append_events checks it
        k = self._conn.keys
        status, value = self._change_roles_script(
            keys=[
                k.log_head(model),
                k.log(model),
                k.log_keys(model),
                k.versions(model),
                k.roles(model),
                k.role_history(model),
                k.roles_state(model),
                k.generation,
            ],
            args=args,
        )
        if status == 2:
            raise LookupError(f"model {model!r} has no version {decode(value)!r}")
        return int(value)

    @guarded("role history", idempotent=True)
    def role_history(self, model: str) -> list[dict]:
        rows = self._conn.client.lrange(self._conn.keys.role_history(model), 0, -1)
        history = []
        for row in rows:
            data = loads(row)
            entry = {name: data[name] for name in _HISTORY_FIELDS}
            entry["at"] = float(entry["at"])
            entry["seq"] = data.get("seq")  # absent from entries written before seqs were kept
            history.append(entry)
        return history

    @guarded("put snapshot", idempotent=True)
    def put_snapshot(self, snapshot: Snapshot) -> None:
        k = self._conn.keys
        model, version, seq = snapshot.model, snapshot.version, snapshot.seq
        artifact = memoryview(bytes(snapshot.artifact))
        parts = range(0, len(artifact), _PART_BYTES)
        blob: dict[str, Any] = {"at": repr(float(snapshot.at)), "parts": len(parts)}
        blob.update((str(n), artifact[i : i + _PART_BYTES]) for n, i in enumerate(parts))
        # MULTI: the index never points at a snapshot that is not stored whole, nor misses one
        # that is; a snapshot replaced at the same seq loses all its old parts (DEL first).
        pipe = self._conn.client.pipeline(transaction=True)
        pipe.delete(k.snapshot(model, version, seq))
        pipe.hset(k.snapshot(model, version, seq), mapping=blob)
        pipe.zadd(k.snapshots(model, version), {str(seq): seq})
        pipe.execute()

    @guarded("prune snapshots", idempotent=True)
    def prune_snapshots(self, model: str, version: str, keep: int) -> int:
        k = self._conn.keys
        index = k.snapshots(model, version)
        # The oldest first; everything but the newest ``keep``. A concurrent put of a newer
        # snapshot only makes the kept ones newer: the index and the blobs go together (MULTI).
        old = (
            self._conn.client.zrange(index, 0, -max(keep, 0) - 1)
            if keep > 0
            else (self._conn.client.zrange(index, 0, -1))
        )
        if not old:
            return 0
        pipe = self._conn.client.pipeline(transaction=True)
        for member in old:
            pipe.delete(k.snapshot(model, version, int(member)))
        pipe.zrem(index, *old)
        pipe.execute()
        return len(old)

    @guarded("put document", idempotent=True)
    def put_document(self, model: str, name: str, document: Mapping[str, Any]) -> None:
        self._conn.client.hset(self._conn.keys.documents(model), name, encode_document(document))

    @guarded("get document", idempotent=True)
    def get_document(self, model: str, name: str) -> dict | None:
        text = self._conn.client.hget(self._conn.keys.documents(model), name)
        return None if text is None else decode_document(text)

    @guarded("latest snapshot", idempotent=True)
    def latest_snapshot(
        self, model: str, version: str, max_seq: int | None = None
    ) -> Snapshot | None:
        k = self._conn.keys
        client = self._conn.client
        found = client.zrevrangebyscore(
            k.snapshots(model, version), "+inf" if max_seq is None else max_seq, "-inf", 0, 1
        )
        if not found:
            return None
        seq = int(found[0])
        # Two reads, not one script: an artifact is megabytes, which a script would copy while
        # Redis serves nobody else. Snapshots are never deleted, so the index entry stays valid;
        # the blob itself is written whole by one MULTI.
        blob = client.hgetall(k.snapshot(model, version, seq))
        if b"parts" not in blob:
            return None
        artifact = b"".join(blob[str(n).encode()] for n in range(int(blob[b"parts"])))
        return Snapshot(model, version, seq, float(blob[b"at"]), artifact)

    @guarded("latest snapshot seq", idempotent=True)
    def latest_snapshot_seq(self, model: str, version: str) -> int:
        found = self._conn.client.zrevrange(self._conn.keys.snapshots(model, version), 0, 0)
        return int(found[0]) if found else 0

    @guarded("latest snapshot time", idempotent=True)
    def latest_snapshot_at(self, model: str, version: str) -> float | None:
        k = self._conn.keys
        found = self._conn.client.zrevrange(k.snapshots(model, version), 0, 0)
        if not found:
            return None
        # Two reads: the index, then one field of the blob (its artifact stays in Redis).
        at = self._conn.client.hget(k.snapshot(model, version, int(found[0])), "at")
        return None if at is None else float(at)
