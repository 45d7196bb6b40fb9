"""Every Redis key onlearn uses, in one place.

All keys start with a prefix (``onlearn`` unless the store URL says ``?prefix=...``), so that one
Redis database can hold several deployments and an operator can find, back up or delete
everything onlearn wrote with ``SCAN MATCH onlearn:*``.

Names that come from users (model names, prediction ids, version names) are percent-encoded
(:func:`urllib.parse.quote` with no safe characters), so a name can never contain ``:``, ``{``,
``}`` or a glob character, and two different names never map to the same key. The model's part
is wrapped in ``{...}``, a Redis Cluster hash tag: every key of one model lives in one slot, so
the multi-key Lua scripts of a model stay valid on a cluster.

Per model ``m`` (``P`` is the prefix):

========================================  ======  ==============================================
key                                       type    holds
========================================  ======  ==============================================
``P:model:{m}:log``                       stream  the log; entry id ``0-<seq>``, fields ``e``
                                                  (event JSON) and ``k`` (idempotency key)
``P:model:{m}:log:head``                  string  highest seq ever given (survives a full trim)
``P:model:{m}:log:keys``                  hash    idempotency key -> seq, for untrimmed events
``P:model:{m}:versions``                  hash    version number -> JSON (created_at, spec, meta)
``P:model:{m}:versions:last``             string  highest version number ever given
``P:model:{m}:roles``                     hash    role -> version
``P:model:{m}:roles:history``             list    audit entries (JSON), oldest first
``P:model:{m}:snapshots:<version>``       zset    seq (member and score) of each snapshot
``P:model:{m}:snapshot:<version>:<seq>``  hash    one snapshot: ``at``, ``parts`` (a count),
                                                  and the artifact's bytes in parts ``0``, ``1``..
========================================  ======  ==============================================

Shared by all models:

=============================  ======  ========================================================
``P:prediction:<id>``          string  the prediction record (JSON), expiring at expires_at
``P:predictions:expiry``       zset    prediction id -> expires_at, what purge_expired walks
=============================  ======  ========================================================

>>> keys = RedisKeys()
>>> keys.log("fraud")
'onlearn:model:{fraud}:log'
>>> keys.snapshot("a:b", "v2", 30)
'onlearn:model:{a%3Ab}:snapshot:v2:30'
>>> keys.owns(keys.log_keys("x")), keys.owns("onlearn:other"), keys.owns("other:model:{x}:log")
(True, False, False)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import quote

__all__ = ["PREFIX", "RedisKeys", "valid_prefix"]

PREFIX = "onlearn"
"""The default prefix of every key."""

_PREFIX_RE = re.compile(r"[A-Za-z0-9_.-]+(?::[A-Za-z0-9_.-]+)*")


def valid_prefix(prefix: str) -> bool:
    """Letters, digits, ``_.-``, and ``:`` between parts: no braces (they would move the hash
    tag) and no glob characters (the prefix is used in ``SCAN MATCH``)."""
    return _PREFIX_RE.fullmatch(prefix) is not None


def _part(name: str) -> str:
    return quote(name, safe="")


# One encoded name: percent-escapes and characters quote() leaves alone.
_NAME = r"[A-Za-z0-9_.~%-]*"


@dataclass(frozen=True)
class RedisKeys:
    """Key names under one prefix. Stateless and cheap; one per store."""

    prefix: str = PREFIX
    _patterns: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not valid_prefix(self.prefix):
            raise ValueError(
                f"Redis key prefix {self.prefix!r}: use letters, digits, '_', '.', '-' and ':'"
            )
        model = rf"{re.escape(self.prefix)}:model:\{{{_NAME}\}}"
        patterns = (
            rf"{model}:log",
            rf"{model}:log:head",
            rf"{model}:log:keys",
            rf"{model}:versions",
            rf"{model}:versions:last",
            rf"{model}:roles",
            rf"{model}:roles:history",
            rf"{model}:snapshots:{_NAME}",
            rf"{model}:snapshot:{_NAME}:-?[0-9]+",
            rf"{re.escape(self.prefix)}:prediction:{_NAME}",
            rf"{re.escape(self.prefix)}:predictions:expiry",
        )
        object.__setattr__(self, "_patterns", tuple(re.compile(p) for p in patterns))

    def _model(self, model: str) -> str:
        return f"{self.prefix}:model:{{{_part(model)}}}"

    # --- event log ---

    def log(self, model: str) -> str:
        return f"{self._model(model)}:log"

    def log_head(self, model: str) -> str:
        return f"{self._model(model)}:log:head"

    def log_keys(self, model: str) -> str:
        return f"{self._model(model)}:log:keys"

    # --- registry ---

    def versions(self, model: str) -> str:
        return f"{self._model(model)}:versions"

    def versions_last(self, model: str) -> str:
        return f"{self._model(model)}:versions:last"

    def roles(self, model: str) -> str:
        return f"{self._model(model)}:roles"

    def role_history(self, model: str) -> str:
        return f"{self._model(model)}:roles:history"

    def snapshots(self, model: str, version: str) -> str:
        return f"{self._model(model)}:snapshots:{_part(version)}"

    def snapshot(self, model: str, version: str, seq: int) -> str:
        return f"{self._model(model)}:snapshot:{_part(version)}:{int(seq)}"

    # --- prediction records ---

    def prediction(self, prediction_id: str) -> str:
        return f"{self.prefix}:prediction:{_part(prediction_id)}"

    def predictions_expiry(self) -> str:
        return f"{self.prefix}:predictions:expiry"

    # --- for operators and tests ---

    @property
    def match(self) -> str:
        """The ``SCAN MATCH`` pattern of every key under this prefix."""
        return f"{self.prefix}:*"

    def owns(self, key: str | bytes) -> bool:
        """Whether ``key`` is one of the keys this module names."""
        if isinstance(key, bytes | bytearray):
            key = key.decode("utf-8", "replace")
        return any(p.fullmatch(key) for p in self._patterns)
