"""Versions, roles and lineage: what a version is made of and which one answers."""

from __future__ import annotations

import hashlib
import json
import subprocess
from functools import cache
from pathlib import Path

from onlearn.config import ModelConfig
from onlearn.records import Event, EventKind
from onlearn.store.base import Store

CHAMPION = "champion"  # answers
CHALLENGER = "challenger"  # predicts and learns beside the champion, compared on every label
SHADOW = "shadow"  # predicts and learns, never answers
CANARY = "canary"  # answers a share of the requests
PREVIOUS = "previous"  # the champion before the last promotion: kept live for instant rollback
ROLES = (CHAMPION, CHALLENGER, SHADOW, CANARY, PREVIOUS)


def _normalised(spec: dict) -> dict:
    """The spec as the store gives it back (JSON), so that comparisons are exact."""
    return json.loads(json.dumps(spec))


@cache
def code_version() -> dict:
    """The package version and, when run from a git checkout, the commit."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        package = version("onlearn")
    except PackageNotFoundError:
        package = None
    commit = None
    root = Path(__file__).resolve().parent.parent
    if (root / ".git").exists():
        try:
            commit = (
                subprocess.run(
                    ["git", "-C", str(root), "rev-parse", "HEAD"],
                    capture_output=True,
                    text=True,
                    timeout=5,
                ).stdout.strip()
                or None
            )
        except (OSError, subprocess.SubprocessError):
            commit = None
    return {"package": package, "git_commit": commit}


def ensure_registered(
    store: Store, config: ModelConfig, *, at: float, actor: str = "config"
) -> str:
    """Make sure the model has a champion and that its config's current spec is registered;
    return the champion.

    The first start registers ``v1`` as champion. When the config's pipeline, schema or classes
    differ from the newest version registered from the config, a new version is registered from
    it and promoted to champion through the log (so that running replicas switch too), the old
    champion kept as ``previous``; it learns by replaying the log. A champion that came from a
    refit or a promotion stays champion as long as the config does not change.
    """
    model = config.name
    spec = _normalised(config.spec())
    registry = store.registry
    champion = registry.roles(model).get(CHAMPION)
    from_config = [v for v in registry.list_versions(model) if v.meta.get("source") == "config"]
    if champion is not None and from_config and _normalised(dict(from_config[-1].spec)) == spec:
        return champion
    fingerprint = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    info = registry.create_version(
        model,
        spec,
        meta={
            "source": "config",
            "parent": champion,
            "pipeline_fingerprint": config.pipeline.fingerprint(),
            "schema_fingerprint": config.schema.fingerprint(),
            "config_fingerprint": fingerprint,
            "code": code_version(),
            "trained_on": {"from_seq": 1, "by": "replay of the log"},
        },
        at=at,
        key=f"config:{fingerprint}",  # processes starting together register it once
    )
    if champion is None:
        registry.set_role(model, CHAMPION, info.version, actor=actor, reason="first start", at=at)
        return info.version
    if info.version == champion:
        return champion
    changes = {CHAMPION: info.version, PREVIOUS: champion}
    reason = f"the config changed: {info.version} from the new config replaces {champion}"
    event = control_event(
        changes, actor=actor, reason=reason, at=at, key=f"config:{model}:{info.version}:{champion}"
    )
    registry.change_roles(model, changes, event, actor=actor, reason=reason, at=at)
    return info.version


def control_event(
    changes: dict,
    *,
    actor: str,
    reason: str,
    at: float,
    key: str | None = None,
    kind: EventKind = EventKind.PROMOTE,
    canary_share: float | None = None,
) -> Event:
    """The log event of a change of roles: every follower switches at its seq."""
    return Event(
        kind=kind,
        payload={
            "changes": changes,
            "canary_share": canary_share,
            "actor": actor,
            "reason": reason,
        },
        at=at,
        key=key,
    )
