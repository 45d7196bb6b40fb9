"""Versions, roles and lineage: what a version is made of and which one answers."""

from __future__ import annotations

import functools
import hashlib
import json
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from onlearn.config import ModelConfig
from onlearn.errors import ArtifactRejected
from onlearn.models import check_spec_signature, sign_spec
from onlearn.records import Event, EventKind
from onlearn.store.base import Store

CHAMPION = "champion"  # answers
CHALLENGER = "challenger"  # predicts and learns beside the champion, compared on every label
SHADOW = "shadow"  # predicts and learns, never answers
CANARY = "canary"  # answers a share of the requests
PREVIOUS = "previous"  # the champion before the last promotion: kept live for instant rollback
# The monitor's latest report of a model, a document of the registry every server reads.
MONITOR_REPORT = "monitor"
# The worker's latest feature importances of a model's versions (onlearn/background/importance.py).
IMPORTANCE_REPORT = "importance"
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
    store: Store, config: ModelConfig, *, at: float, secret: bytes, actor: str = "config"
) -> str:
    """Make sure the model has a champion and that its config's current spec is registered;
    return the champion.

    The first start registers ``v1`` as champion. When the config's pipeline, schema or classes
    differ from the newest version registered from the config, a new version is registered from
    it and promoted to champion through the log (so that running replicas switch too), the old
    champion kept as ``previous``; it learns by replaying the log. A champion that came from a
    refit or a promotion stays champion as long as the config does not change. The spec is
    signed with ``secret`` (see :func:`onlearn.models.sign_spec`).
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
        spec_signature=sign_spec(model, spec, secret),
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


@dataclass(frozen=True)
class SpecCheck:
    """One version's spec as ``onlearn store sign-specs`` found and left it."""

    model: str
    version: str
    source: str | None
    pipeline: str
    outcome: str  # "signed", "already signed", "refused"
    why: str = ""

    @property
    def refused(self) -> bool:
        return self.outcome == "refused"

    @property
    def text(self) -> str:
        line = f"{self.model} {self.version} (from {self.source or '?'}; {self.pipeline}): "
        return line + self.outcome + (f": {self.why}" if self.why else "")


def declared_code(config: ModelConfig) -> set[str]:
    """The code the config names (factories, scikit-learn classes): what a spec may name."""
    tables = [config.pipeline.to_config(), *(c.table for c in config.refit.candidates)]
    return {t[k] for t in tables for k in ("factory", "sklearn") if isinstance(t.get(k), str)}


def sign_specs(
    store: Store, config: ModelConfig, secret: bytes, *, resign: bool = False
) -> list[SpecCheck]:
    """Sign the specs of ``config``'s model that an earlier onlearn stored unsigned.

    A spec that names code the config does not declare (a factory, a scikit-learn class) is not
    signed: it may have been written into the store by someone else; nor is one whose signature
    does not match. ``resign`` signs those too, for an operator who checked them.
    """
    model = config.name
    allowed = declared_code(config)
    out = []
    for info in store.registry.list_versions(model):
        pipeline = dict(info.spec.get("pipeline") or {}) if isinstance(info.spec, dict) else {}
        code = {pipeline[k] for k in ("factory", "sklearn") if isinstance(pipeline.get(k), str)}
        summary = ", ".join(
            f"{k} {v}" for k, v in pipeline.items() if k in ("name", "factory", "sklearn")
        )
        check = functools.partial(
            SpecCheck, model, info.version, info.meta.get("source"), summary or "no pipeline"
        )
        try:
            check_spec_signature(model, info.version, info.spec, info.spec_signature, secret)
        except ArtifactRejected:
            pass
        else:
            out.append(check("already signed"))
            continue
        why = ""
        if info.spec_signature:
            why = "its signature does not match (edited in the store, or another secret)"
        elif undeclared := sorted(code - allowed):
            why = f"names code the config does not declare ({', '.join(undeclared)})"
        if why and not resign:
            out.append(check("refused", f"{why}; left unsigned"))
            continue
        store.registry.set_spec_signature(model, info.version, sign_spec(model, info.spec, secret))
        out.append(check("signed", why and f"signed anyway (--resign): {why}"))
    return out
