"""Roles inside the engine: which version answers (champion, canary share), which only learn
(shadow, challenger, previous). A change goes through the log, so every process that follows it
switches at the same seq; this process applies it before answering."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

from onlearn.engine.follower import Follower
from onlearn.errors import FieldError, RoleConflict, SchemaViolation, UnknownVersion
from onlearn.records import EventKind
from onlearn.registry import (
    CANARY,
    CHALLENGER,
    CHAMPION,
    PREVIOUS,
    ROLES,
    SHADOW,
    control_event,
)
from onlearn.runtime import ModelRuntime
from onlearn.store.base import Store


class RoleChanges:
    """Promotes and rolls back the versions of an engine's models."""

    def __init__(self, store: Store, follower: Follower, clock: Callable[[], float]) -> None:
        self.store = store
        self._follower = follower
        self.clock = clock

    def change_roles(
        self,
        rt: ModelRuntime,
        changes: Mapping[str, str | None],
        *,
        actor: str,
        reason: str,
        kind: EventKind = EventKind.PROMOTE,
        canary_share: float | None = None,
        key: str | None = None,
    ) -> int:
        """Change roles through the log (every follower switches at the same seq) and apply the
        change here before answering. Versions must exist and share the model's schema."""
        name = rt.name
        for role, version in changes.items():
            if role not in ROLES:
                raise RoleConflict(f"{role!r} is not a role; roles: {', '.join(ROLES)}")
            if version is None:
                continue
            info = self.store.registry.get_version(name, version)
            if info is None:
                raise UnknownVersion(f"model {name!r} has no version {version!r}")
            expected = rt.schema.to_config()
            if json.loads(json.dumps(info.spec.get("schema"))) != json.loads(json.dumps(expected)):
                raise RoleConflict(
                    f"version {version} was trained on another schema than model {name!r} "
                    "serves now; it cannot take a role (register it again from the new config)"
                )
        if canary_share is not None and not 0.0 <= canary_share <= 1.0:
            raise SchemaViolation([FieldError(("share",), "range", "share must be in [0, 1]")])
        now = self.clock()
        event = control_event(
            dict(changes), actor=actor, reason=reason, at=now, key=key, kind=kind,
            canary_share=canary_share,
        )  # fmt: skip
        seq = self.store.registry.change_roles(
            name,
            dict(changes),
            event,
            actor=actor,
            reason=reason,
            at=now,
            canary_share=canary_share,
        )
        self._follower.catch_up(rt, upto=seq)
        return seq

    def promote(
        self,
        rt: ModelRuntime,
        version: str,
        role: str,
        *,
        actor: str,
        reason: str,
        share: float | None = None,
        key: str | None = None,
    ) -> int:
        """Give ``role`` to ``version``. A new champion keeps the old one as ``previous`` (live,
        for an instant rollback) and leaves the roles it held before."""
        name = rt.name
        roles = dict(rt.roles)
        champion = roles[CHAMPION]
        if role == CHAMPION:
            if version == champion:
                raise RoleConflict(f"{version} is already the champion of {name!r}")
            changes: dict[str, str | None] = {CHAMPION: version, PREVIOUS: champion}
            for other in (CHALLENGER, SHADOW, CANARY):
                if roles.get(other) == version:
                    changes[other] = None
        elif role in (CHALLENGER, SHADOW, CANARY):
            if version == champion:
                raise RoleConflict(
                    f"{version} is the champion of {name!r}; it cannot also be {role}"
                )
            changes = {role: version}
        else:
            raise RoleConflict(
                f"one can promote to champion, challenger, shadow or canary, not {role!r}"
            )
        if role == CANARY and share is None:
            share = rt.canary_share or 0.1
        return self.change_roles(
            rt,
            changes,
            actor=actor,
            reason=reason,
            canary_share=share if role == CANARY else None,
            key=key,
        )

    def rollback(self, rt: ModelRuntime, *, actor: str, reason: str, key: str | None = None) -> int:
        """The previous champion answers again, in one step: it kept learning as ``previous``,
        so it is exactly the state it would be had it never left."""
        name = rt.name
        previous = rt.roles.get(PREVIOUS)
        if previous is None:
            raise RoleConflict(f"model {name!r} has no previous champion to roll back to")
        changes = {CHAMPION: previous, PREVIOUS: None}
        return self.change_roles(
            rt, changes, actor=actor, reason=reason, kind=EventKind.ROLLBACK, key=key
        )
