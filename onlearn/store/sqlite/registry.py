"""``SqliteRegistry``: versions, roles with their audit history, snapshots and documents."""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from onlearn.records import (
    Event,
    Snapshot,
    VersionInfo,
)
from onlearn.store.base import (
    RolesState,
)
from onlearn.store.codec import (
    decode_document,
    dumps,
    encode_document,
    loads,
)
from onlearn.store.leases import (
    check_canary_share,
)
from onlearn.store.sqlite.connection import _Database, _guarded
from onlearn.store.sqlite.log import _append_events, _encode_payloads, _seqs_of_keys

_VERSION_NAME = re.compile(r"v([1-9][0-9]*)")
_VERSION_COLUMNS = "number, created_at, spec, meta, spec_signature"
_SELECT_VERSION = f"SELECT {_VERSION_COLUMNS} FROM versions WHERE model = ? AND number = ?"


def _version_from_row(model: str, row: Sequence[Any]) -> VersionInfo:
    number, created_at, spec, meta, spec_signature = row
    return VersionInfo(model, f"v{number}", created_at, loads(spec), loads(meta), spec_signature)


class SqliteRegistry:
    def __init__(self, db: _Database):
        self._db = db

    @_guarded("create version")
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
        spec_text, meta_text = dumps(spec), dumps(meta)
        conn = self._db.durable()
        # One transaction: looking the key up and taking the next number happen under the write
        # lock, so concurrent calls with one key (a job retried by two workers) register once.
        with self._db.transaction(conn):
            if key is not None:
                row = conn.execute(
                    f"SELECT {_VERSION_COLUMNS} FROM versions WHERE model = ? AND key = ?",
                    (model, key),
                ).fetchone()
                if row is not None:
                    return _version_from_row(model, row)
            (number,) = conn.execute(
                "SELECT coalesce(max(number), 0) + 1 FROM versions WHERE model = ?", (model,)
            ).fetchone()
            conn.execute(
                "INSERT INTO versions (model, number, created_at, spec, meta, key, spec_signature)"
                " VALUES (?,?,?,?,?,?,?)",
                (model, number, at, spec_text, meta_text, key, spec_signature),
            )
        return _version_from_row(model, (number, at, spec_text, meta_text, spec_signature))

    @_guarded("set spec signature")
    def set_spec_signature(self, model: str, version: str, signature: str) -> VersionInfo | None:
        match = _VERSION_NAME.fullmatch(version)
        if match is None:
            return None
        number = int(match.group(1))
        conn = self._db.durable()
        # One transaction: the version read back is the one this call signed.
        with self._db.transaction(conn):
            conn.execute(
                "UPDATE versions SET spec_signature = ? WHERE model = ? AND number = ?",
                (signature, model, number),
            )
            row = conn.execute(_SELECT_VERSION, (model, number)).fetchone()
        return None if row is None else _version_from_row(model, row)

    @_guarded("get version")
    def get_version(self, model: str, version: str) -> VersionInfo | None:
        match = _VERSION_NAME.fullmatch(version)
        if match is None:
            return None
        row = self._db.durable().execute(_SELECT_VERSION, (model, int(match.group(1)))).fetchone()
        return None if row is None else _version_from_row(model, row)

    @_guarded("list versions")
    def list_versions(self, model: str) -> list[VersionInfo]:
        rows = (
            self._db.durable()
            .execute(
                f"SELECT {_VERSION_COLUMNS} FROM versions WHERE model = ? ORDER BY number",
                (model,),
            )
            .fetchall()
        )
        return [_version_from_row(model, row) for row in rows]

    @_guarded("roles")
    def roles(self, model: str) -> dict[str, str]:
        rows = (
            self._db.durable()
            .execute("SELECT role, version FROM roles WHERE model = ? ORDER BY role", (model,))
            .fetchall()
        )
        return dict(rows)

    @staticmethod
    def _check_versions(conn: sqlite3.Connection, model: str, versions: Iterable[str]) -> None:
        for version in versions:
            match = _VERSION_NAME.fullmatch(version)
            exists = (
                match is not None
                and conn.execute(
                    "SELECT 1 FROM versions WHERE model = ? AND number = ?",
                    (model, int(match.group(1))),
                ).fetchone()
            )
            if not exists:
                raise LookupError(f"model {model!r} has no version {version!r}")

    @staticmethod
    def _apply(
        conn: sqlite3.Connection,
        model: str,
        changes: Mapping[str, str | None],
        *,
        actor: str,
        reason: str,
        at: float,
        seq: int | None,
        always_audit: bool,
    ) -> None:
        """Change roles and write their audit rows, inside the caller's write transaction (so
        that "previous" is read under the write lock: two concurrent promotions cannot both
        record the same previous version)."""
        for role, version in changes.items():
            row = conn.execute(
                "SELECT version FROM roles WHERE model = ? AND role = ?", (model, role)
            ).fetchone()
            previous = None if row is None else row[0]
            if previous == version and not always_audit:
                continue
            if version is None:
                conn.execute("DELETE FROM roles WHERE model = ? AND role = ?", (model, role))
            else:
                conn.execute(
                    "INSERT INTO roles (model, role, version) VALUES (?, ?, ?)"
                    " ON CONFLICT (model, role) DO UPDATE SET version = excluded.version",
                    (model, role, version),
                )
            conn.execute(
                "INSERT INTO role_history (model, role, version, previous, actor, reason, at, seq)"
                " VALUES (?,?,?,?,?,?,?,?)",
                (model, role, version, previous, actor, reason, at, seq),
            )

    @_guarded("set role")
    def set_role(
        self, model: str, role: str, version: str | None, *, actor: str, reason: str, at: float
    ) -> None:
        conn = self._db.durable()
        # One transaction: the role and its audit row are written together or not at all.
        with self._db.transaction(conn):
            if version is not None:
                self._check_versions(conn, model, [version])
            self._apply(
                conn,
                model,
                {role: version},
                actor=actor,
                reason=reason,
                at=at,
                seq=None,
                always_audit=True,
            )

    @_guarded("change roles")
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
        payloads = _encode_payloads(self._db, model, [event])  # outside the write lock
        conn = self._db.durable()
        # One transaction on the durable connection over events, heads, roles, roles_state and
        # role_history: the control event and the roles it announces are committed together or
        # not at all, and concurrent changes are serialised by the write lock, so the roles
        # always equal the fold of the control events in log order.
        with self._db.transaction(conn):
            if event.key is not None:
                known = _seqs_of_keys(self._db, conn, model, [event.key])
                if known:
                    return known[event.key]  # a retried change: it happened once already
            # Raising here rolls the transaction back: nothing was written yet anyway.
            self._check_versions(conn, model, (v for v in changes.values() if v is not None))
            (seq,) = _append_events(self._db, conn, model, [event], payloads)
            self._apply(
                conn,
                model,
                changes,
                actor=actor,
                reason=reason,
                at=at,
                seq=seq,
                always_audit=False,
            )
            if canary_share is None:
                conn.execute(
                    "INSERT INTO roles_state (model, seq) VALUES (?, ?)"
                    " ON CONFLICT (model) DO UPDATE SET seq = excluded.seq",
                    (model, seq),
                )
            else:
                conn.execute(
                    "INSERT INTO roles_state (model, canary_share, seq) VALUES (?, ?, ?)"
                    " ON CONFLICT (model) DO UPDATE"
                    " SET canary_share = excluded.canary_share, seq = excluded.seq",
                    (model, float(canary_share), seq),
                )
        return seq

    @_guarded("roles state")
    def roles_state(self, model: str) -> RolesState:
        conn = self._db.durable()
        with self._db.reading(conn):
            roles = conn.execute(
                "SELECT role, version FROM roles WHERE model = ? ORDER BY role", (model,)
            ).fetchall()
            row = conn.execute(
                "SELECT canary_share, seq FROM roles_state WHERE model = ?", (model,)
            ).fetchone()
        share, seq = (0.0, 0) if row is None else row
        return RolesState(dict(roles), float(share), seq)

    @_guarded("role history")
    def role_history(self, model: str) -> list[dict]:
        rows = (
            self._db.durable()
            .execute(
                "SELECT role, version, previous, actor, reason, at, seq FROM role_history"
                " WHERE model = ? ORDER BY id",
                (model,),
            )
            .fetchall()
        )
        names = ("role", "version", "previous", "actor", "reason", "at", "seq")
        return [dict(zip(names, row, strict=True)) for row in rows]

    @_guarded("put snapshot")
    def put_snapshot(self, snapshot: Snapshot) -> None:
        conn = self._db.durable()
        with self._db.transaction(conn):
            conn.execute(
                "INSERT OR REPLACE INTO snapshots (model, version, seq, at, artifact)"
                " VALUES (?,?,?,?,?)",
                (
                    snapshot.model,
                    snapshot.version,
                    snapshot.seq,
                    snapshot.at,
                    sqlite3.Binary(snapshot.artifact),
                ),
            )

    @_guarded("prune snapshots")
    def prune_snapshots(self, model: str, version: str, keep: int) -> int:
        conn = self._db.durable()
        with self._db.transaction(conn):
            cursor = conn.execute(
                "DELETE FROM snapshots WHERE model = ? AND version = ? AND seq NOT IN"
                " (SELECT seq FROM snapshots WHERE model = ? AND version = ?"
                "  ORDER BY seq DESC LIMIT ?)",
                (model, version, model, version, max(keep, 0)),
            )
            return cursor.rowcount

    @_guarded("put document")
    def put_document(self, model: str, name: str, document: Mapping[str, Any]) -> None:
        body = encode_document(document)
        conn = self._db.durable()
        with self._db.transaction(conn):
            conn.execute(
                "INSERT INTO documents (model, name, body, at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (model, name) DO UPDATE SET body = excluded.body, at = excluded.at",
                (model, name, body, time.time()),
            )

    @_guarded("get document")
    def get_document(self, model: str, name: str) -> dict | None:
        row = (
            self._db.durable()
            .execute("SELECT body FROM documents WHERE model = ? AND name = ?", (model, name))
            .fetchone()
        )
        return None if row is None else decode_document(row[0])

    @_guarded("latest snapshot")
    def latest_snapshot(
        self, model: str, version: str, max_seq: int | None = None
    ) -> Snapshot | None:
        limit = (1 << 63) - 1 if max_seq is None else max_seq
        row = (
            self._db.durable()
            .execute(
                "SELECT seq, at, artifact FROM snapshots"
                " WHERE model = ? AND version = ? AND seq <= ? ORDER BY seq DESC LIMIT 1",
                (model, version, limit),
            )
            .fetchone()
        )
        if row is None:
            return None
        seq, at, artifact = row
        return Snapshot(model, version, seq, at, bytes(artifact))

    @_guarded("latest snapshot seq")
    def latest_snapshot_seq(self, model: str, version: str) -> int:
        (seq,) = (
            self._db.fast()
            .execute(
                "SELECT MAX(seq) FROM snapshots WHERE model = ? AND version = ?", (model, version)
            )
            .fetchone()
        )
        return seq or 0

    @_guarded("latest snapshot time")
    def latest_snapshot_at(self, model: str, version: str) -> float | None:
        # The primary key (model, version, seq) ends the walk at its first row.
        row = (
            self._db.fast()
            .execute(
                "SELECT at FROM snapshots WHERE model = ? AND version = ? ORDER BY seq DESC LIMIT 1",
                (model, version),
            )
            .fetchone()
        )
        return None if row is None else row[0]
