"""``MemoryRegistry``: versions, roles with their audit history, snapshots and documents."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from onlearn.records import (
    Event,
    Snapshot,
    VersionInfo,
)
from onlearn.store.base import (
    RolesState,
)
from onlearn.store.codec import decode_document, encode_document
from onlearn.store.leases import (
    check_canary_share,
)
from onlearn.store.memory.log import MemoryEventLog

_VERSION_NAME = re.compile(r"v([1-9][0-9]*)")


class MemoryRegistry:
    """Versions, roles and snapshots in dicts.

    ``log`` is the store's event log (:func:`open_memory_store` passes it), where
    ``change_roles`` appends its control events; without one the registry keeps a log of its own.
    The registry shares that log's lock, so that ``change_roles`` appends its event and changes
    the roles in one step that no reader of either can split. Registry calls are rare and short,
    so sharing the log's lock costs the label path nothing noticeable.
    """

    def __init__(self, log: MemoryEventLog | None = None) -> None:
        self._log = log if log is not None else MemoryEventLog()
        self._lock = self._log._lock
        self._versions: dict[str, list[VersionInfo]] = {}
        # key -> version number: the number, not the info, so that a key finds the version as
        # it is now (set_spec_signature replaces the info).
        self._version_keys: dict[str, dict[str, int]] = {}
        self._roles: dict[str, dict[str, str]] = {}
        self._state: dict[str, tuple[float, int]] = {}  # model -> (canary_share, seq)
        self._history: dict[str, list[dict]] = {}
        self._snapshots: dict[tuple[str, str], dict[int, Snapshot]] = {}
        # JSON text, as the other backends keep it: what comes back is a copy that neither the
        # caller's later changes nor the reader's reach, with the same types as elsewhere.
        self._documents: dict[tuple[str, str], str] = {}

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
        with self._lock:
            keyed = self._version_keys.setdefault(model, {})
            versions = self._versions.setdefault(model, [])
            if key is not None and key in keyed:
                return versions[keyed[key] - 1]
            info = VersionInfo(
                model, f"v{len(versions) + 1}", at, dict(spec), dict(meta), spec_signature
            )
            versions.append(info)
            if key is not None:
                keyed[key] = len(versions)
            return info

    def set_spec_signature(self, model: str, version: str, signature: str) -> VersionInfo | None:
        with self._lock:
            info = self._get_locked(model, version)
            if info is None:
                return None
            info = dataclasses.replace(info, spec_signature=signature)
            self._versions[model][int(version[1:]) - 1] = info
            return info

    def _get_locked(self, model: str, version: str) -> VersionInfo | None:
        match = _VERSION_NAME.fullmatch(version)
        if match is None:
            return None
        versions = self._versions.get(model, [])
        number = int(match.group(1))
        return versions[number - 1] if number <= len(versions) else None

    def get_version(self, model: str, version: str) -> VersionInfo | None:
        with self._lock:
            return self._get_locked(model, version)

    def list_versions(self, model: str) -> list[VersionInfo]:
        with self._lock:
            return list(self._versions.get(model, []))

    def roles(self, model: str) -> dict[str, str]:
        with self._lock:
            return dict(self._roles.get(model, {}))

    def roles_state(self, model: str) -> RolesState:
        with self._lock:
            share, seq = self._state.get(model, (0.0, 0))
            return RolesState(dict(self._roles.get(model, {})), share, seq)

    def _apply_locked(
        self,
        model: str,
        changes: Mapping[str, str | None],
        *,
        actor: str,
        reason: str,
        at: float,
        seq: int | None,
        always_audit: bool,
    ) -> None:
        roles = self._roles.setdefault(model, {})
        history = self._history.setdefault(model, [])
        for role, version in changes.items():
            previous = roles.get(role)
            if previous == version and not always_audit:
                continue
            if version is None:
                roles.pop(role, None)
            else:
                roles[role] = version
            history.append(
                {
                    "role": role,
                    "version": version,
                    "previous": previous,
                    "actor": actor,
                    "reason": reason,
                    "at": at,
                    "seq": seq,
                }
            )

    def set_role(
        self, model: str, role: str, version: str | None, *, actor: str, reason: str, at: float
    ) -> None:
        with self._lock:
            if version is not None and self._get_locked(model, version) is None:
                raise LookupError(f"model {model!r} has no version {version!r}")
            self._apply_locked(
                model,
                {role: version},
                actor=actor,
                reason=reason,
                at=at,
                seq=None,
                always_audit=True,
            )

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
        with self._lock:
            if event.key is not None:
                known = self._log._seq_of_key(model, event.key)
                if known is not None:
                    return known  # a retried change: it happened once already
            for version in changes.values():
                if version is not None and self._get_locked(model, version) is None:
                    raise LookupError(f"model {model!r} has no version {version!r}")
            (seq,) = self._log._append_locked(model, [event])
            self._apply_locked(
                model, changes, actor=actor, reason=reason, at=at, seq=seq, always_audit=False
            )
            share = self._state.get(model, (0.0, 0))[0] if canary_share is None else canary_share
            self._state[model] = (float(share), seq)
            return seq

    def role_history(self, model: str) -> list[dict]:
        with self._lock:
            return [dict(row) for row in self._history.get(model, [])]

    def put_snapshot(self, snapshot: Snapshot) -> None:
        with self._lock:
            key = (snapshot.model, snapshot.version)
            self._snapshots.setdefault(key, {})[snapshot.seq] = snapshot

    def prune_snapshots(self, model: str, version: str, keep: int) -> int:
        with self._lock:
            snapshots = self._snapshots.get((model, version), {})
            old = sorted(snapshots)[: max(0, len(snapshots) - max(keep, 0))]
            for seq in old:
                del snapshots[seq]
            return len(old)

    def put_document(self, model: str, name: str, document: Mapping[str, Any]) -> None:
        text = encode_document(document)
        with self._lock:
            self._documents[(model, name)] = text

    def get_document(self, model: str, name: str) -> dict | None:
        with self._lock:
            text = self._documents.get((model, name))
        return None if text is None else decode_document(text)

    def latest_snapshot(
        self, model: str, version: str, max_seq: int | None = None
    ) -> Snapshot | None:
        with self._lock:
            snapshots = self._snapshots.get((model, version), {})
            seqs = [s for s in snapshots if max_seq is None or s <= max_seq]
            return snapshots[max(seqs)] if seqs else None

    def latest_snapshot_seq(self, model: str, version: str) -> int:
        with self._lock:
            return max(self._snapshots.get((model, version), {}), default=0)

    def latest_snapshot_at(self, model: str, version: str) -> float | None:
        with self._lock:
            snapshots = self._snapshots.get((model, version), {})
            return snapshots[max(snapshots)].at if snapshots else None
