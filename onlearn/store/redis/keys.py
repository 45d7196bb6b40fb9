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
                                                  (the event in the compact encoding, or its
                                                  JSON if an earlier onlearn wrote it) and ``k``
                                                  (idempotency key)
``P:model:{m}:log:head``                  string  highest seq ever given (survives a full trim)
``P:model:{m}:log:keys``                  hash    idempotency key -> seq, for untrimmed events
``P:model:{m}:shapes``                    hash    the compact encoding's shapes: ``<id>`` ->
                                                  keys (a JSON array), the keys -> ``<id>``, and
                                                  ``#``: the highest id given
``P:model:{m}:versions``                  hash    version number -> JSON (created_at, spec, meta,
                                                  spec_signature: absent if an earlier onlearn
                                                  wrote it)
``P:model:{m}:versions:last``             string  highest version number ever given
``P:model:{m}:versions:keys``             hash    create_version's idempotency key -> number
``P:model:{m}:roles``                     hash    role -> version
``P:model:{m}:roles:state``               hash    ``canary_share`` and ``seq`` (the control
                                                  event of the last change_roles)
``P:model:{m}:roles:history``             list    audit entries (JSON), oldest first
``P:model:{m}:documents``                 hash    document name -> JSON (put_document)
``P:model:{m}:snapshots:<version>``       zset    seq (member and score) of each snapshot
``P:model:{m}:snapshot:<version>:<seq>``  hash    one snapshot: ``at``, ``parts`` (a count),
                                                  and the artifact's bytes in parts ``0``, ``1``..
``P:model:{m}:queue``                     zset    queued items: score ``-priority``, member
                                                  ``<16 hex of enqueued_at><item_id>`` (the rank)
``P:model:{m}:queue:leases``              zset    claimed item ids by ``lease_expires_at``
``P:model:{m}:queue:finished``            zset    done, skipped and evicted ids by ``finished_at``
``P:model:{m}:queue:waiting``             zset    queued and claimed ids by ``enqueued_at`` (the
                                                  oldest item still waiting, for its age)
``P:model:{m}:queue:dedupe``              hash    dedupe key -> item id (items still waiting)
``P:model:{m}:queue:counters``            hash    labelled, skipped, expired, ... (QueueStats)
``P:model:{m}:queue:item:<id>``           hash    one item: ``body`` (JSON of the fields that
                                                  never change) and one field per changing one
``P:model:{m}:predictions``               zset    the ids of the model's prediction records, all
                                                  of score 0 so that they sort by id (scan reads
                                                  it with ZRANGEBYLEX from its cursor)
========================================  ======  ==============================================

Shared by all models (the job keys carry the hash tag ``{jobs}``: one slot for the job scripts):

=============================  ======  ========================================================
``P:generation``               string  the store's generation id (onlearn/store/generation.py),
                                       set once; the log's append scripts check it (it has no
                                       hash tag: on a Redis Cluster those scripts would need a
                                       copy per model, which onlearn does not make)
``P:prediction:<id>``          string  the prediction record (its model, then the record in the
                                       compact encoding; JSON if an earlier onlearn wrote it),
                                       expiring at expires_at
``P:predictions:expiry``       zset    prediction id -> expires_at, what purge_expired walks
``P:predictions:models``       hash    prediction id -> model, for the ids in a model's index:
                                       how purge_expired finds the index of an id whose record
                                       Redis has already expired
``P:{jobs}:job:<id>``          hash    one job: ``body`` (JSON of the fields that never
                                       change) and one field per changing one
``P:{jobs}:keys``              hash    idempotency key -> job id
``P:{jobs}:active``            zset    queued and running job ids by created_at (claim order;
                                       ties by id: members of equal score sort bytewise)
``P:{jobs}:all``               zset    every job id by created_at (``list``)
``P:{jobs}:model:<m>``         zset    the job ids of model m by created_at (``list(model)``)
=============================  ======  ========================================================

Scripts that find items or jobs in a sorted set build their hash keys from an id with the same
percent-encoding (``quote`` in ``lua/lib/quote.lua``) under the prefix that
:meth:`RedisKeys.queue_item_prefix` or :meth:`RedisKeys.job_prefix` gives; such a key shares the
hash tag of the keys the script was given, so it lives in the same cluster slot.

>>> keys = RedisKeys()
>>> keys.log("fraud")
'onlearn:model:{fraud}:log'
>>> keys.snapshot("a:b", "v2", 30)
'onlearn:model:{a%3Ab}:snapshot:v2:30'
>>> keys.queue_item("m", "a b"), keys.job("j/1")
('onlearn:model:{m}:queue:item:a%20b', 'onlearn:{jobs}:job:j%2F1')
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
        jobs = rf"{re.escape(self.prefix)}:\{{jobs\}}"
        patterns = (
            rf"{re.escape(self.prefix)}:generation",
            rf"{model}:log",
            rf"{model}:log:head",
            rf"{model}:log:keys",
            rf"{model}:shapes",
            rf"{model}:versions",
            rf"{model}:versions:last",
            rf"{model}:versions:keys",
            rf"{model}:roles",
            rf"{model}:roles:state",
            rf"{model}:roles:history",
            rf"{model}:documents",
            rf"{model}:snapshots:{_NAME}",
            rf"{model}:snapshot:{_NAME}:-?[0-9]+",
            rf"{model}:queue",
            rf"{model}:queue:leases",
            rf"{model}:queue:finished",
            rf"{model}:queue:waiting",
            rf"{model}:queue:dedupe",
            rf"{model}:queue:counters",
            rf"{model}:queue:item:{_NAME}",
            rf"{model}:predictions",
            rf"{re.escape(self.prefix)}:prediction:{_NAME}",
            rf"{re.escape(self.prefix)}:predictions:expiry",
            rf"{re.escape(self.prefix)}:predictions:models",
            rf"{jobs}:job:{_NAME}",
            rf"{jobs}:keys",
            rf"{jobs}:active",
            rf"{jobs}:all",
            rf"{jobs}:model:{_NAME}",
        )
        object.__setattr__(self, "_patterns", tuple(re.compile(p) for p in patterns))

    @property
    def generation(self) -> str:
        """The store's generation id (onlearn.store.generation): a string, set once."""
        return f"{self.prefix}:generation"

    def _model(self, model: str) -> str:
        return f"{self.prefix}:model:{{{_part(model)}}}"

    # --- event log ---

    def log(self, model: str) -> str:
        return f"{self._model(model)}:log"

    def log_head(self, model: str) -> str:
        return f"{self._model(model)}:log:head"

    def log_keys(self, model: str) -> str:
        return f"{self._model(model)}:log:keys"

    def shapes(self, model: str) -> str:
        return f"{self._model(model)}:shapes"

    # --- registry ---

    def versions(self, model: str) -> str:
        return f"{self._model(model)}:versions"

    def versions_last(self, model: str) -> str:
        return f"{self._model(model)}:versions:last"

    def versions_keys(self, model: str) -> str:
        return f"{self._model(model)}:versions:keys"

    def roles(self, model: str) -> str:
        return f"{self._model(model)}:roles"

    def roles_state(self, model: str) -> str:
        return f"{self._model(model)}:roles:state"

    def role_history(self, model: str) -> str:
        return f"{self._model(model)}:roles:history"

    def documents(self, model: str) -> str:
        return f"{self._model(model)}:documents"

    def snapshots(self, model: str, version: str) -> str:
        return f"{self._model(model)}:snapshots:{_part(version)}"

    def snapshot(self, model: str, version: str, seq: int) -> str:
        return f"{self._model(model)}:snapshot:{_part(version)}:{int(seq)}"

    # --- labelling queue ---

    def queue(self, model: str) -> str:
        return f"{self._model(model)}:queue"

    def queue_leases(self, model: str) -> str:
        return f"{self._model(model)}:queue:leases"

    def queue_finished(self, model: str) -> str:
        return f"{self._model(model)}:queue:finished"

    def queue_waiting(self, model: str) -> str:
        return f"{self._model(model)}:queue:waiting"

    def queue_dedupe(self, model: str) -> str:
        return f"{self._model(model)}:queue:dedupe"

    def queue_counters(self, model: str) -> str:
        return f"{self._model(model)}:queue:counters"

    def queue_item_prefix(self, model: str) -> str:
        """What an item's key starts with; the encoded item id follows."""
        return f"{self._model(model)}:queue:item:"

    def queue_item(self, model: str, item_id: str) -> str:
        return f"{self.queue_item_prefix(model)}{_part(item_id)}"

    # --- jobs ---

    def _jobs(self) -> str:
        return f"{self.prefix}:{{jobs}}"

    def job_prefix(self) -> str:
        """What a job's key starts with; the encoded job id follows."""
        return f"{self._jobs()}:job:"

    def job(self, job_id: str) -> str:
        return f"{self.job_prefix()}{_part(job_id)}"

    def job_keys(self) -> str:
        return f"{self._jobs()}:keys"

    def jobs_active(self) -> str:
        return f"{self._jobs()}:active"

    def jobs_all(self) -> str:
        return f"{self._jobs()}:all"

    def jobs_of_model(self, model: str) -> str:
        return f"{self._jobs()}:model:{_part(model)}"

    # --- prediction records ---

    def prediction(self, prediction_id: str) -> str:
        return f"{self.prefix}:prediction:{_part(prediction_id)}"

    def predictions_expiry(self) -> str:
        return f"{self.prefix}:predictions:expiry"

    def predictions_models(self) -> str:
        return f"{self.prefix}:predictions:models"

    def predictions_of_model(self, model: str) -> str:
        return f"{self._model(model)}:predictions"

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
