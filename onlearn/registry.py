"""Versions, roles and lineage: what a version is made of and which one answers."""

from __future__ import annotations

import json
import subprocess
from functools import cache
from pathlib import Path

from onlearn.config import ModelConfig
from onlearn.store.base import Store

CHAMPION = "champion"


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
    """Make sure the model has a champion built from its current config; return its version.

    A first start registers ``v1``. When the config's pipeline, schema or classes changed since
    the champion was registered, a new version is registered from the config and becomes
    champion; it learns by replaying the log.
    """
    spec = _normalised(config.spec())
    champion = store.registry.roles(config.name).get(CHAMPION)
    if champion is not None:
        info = store.registry.get_version(config.name, champion)
        if info is not None and _normalised(dict(info.spec)) == spec:
            return champion
        reason = f"config changed since {champion} was registered"
    else:
        reason = "first start"
    info = store.registry.create_version(
        config.name,
        spec,
        meta={
            "source": "config",
            "parent": champion,
            "pipeline_fingerprint": config.pipeline.fingerprint(),
            "schema_fingerprint": config.schema.fingerprint(),
            "code": code_version(),
            "trained_on": {"from_seq": 1, "by": "replay of the log"},
        },
        at=at,
    )
    store.registry.set_role(config.name, CHAMPION, info.version, actor=actor, reason=reason, at=at)
    return info.version
