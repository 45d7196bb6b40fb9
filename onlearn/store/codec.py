"""JSON encoding of the records that backends persist as text (SQLite now, Redis later).

Payloads, features and outputs are JSON-safe by contract, so plain ``json`` round-trips them,
labels included: ``true``, ``3``, ``"cat"`` and ``0.5`` come back as ``bool``, ``int``, ``str``
and ``float``. JSON object keys are always strings, which is why labels travel as values
(``[[label, p], ...]``) and never as keys. Tuples come back as lists.

>>> event = Event(EventKind.LABEL, {"label": True, "proba": [[True, 0.9]]}, at=1.5, key="k")
>>> decode_event(encode_event(event), seq=7) == Event(
...     EventKind.LABEL, {"label": True, "proba": [[True, 0.9]]}, at=1.5, seq=7, key="k")
True
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from onlearn.records import Event, EventKind, Job, JobState, PredictionRecord, QueueItem, QueueState

__all__ = [
    "decode_document",
    "decode_event",
    "decode_job",
    "decode_prediction",
    "decode_queue_item",
    "dumps",
    "encode_document",
    "encode_event",
    "encode_job",
    "encode_prediction",
    "encode_queue_item",
    "event_from_dict",
    "event_to_dict",
    "job_from_dict",
    "job_to_dict",
    "loads",
    "prediction_from_dict",
    "prediction_to_dict",
    "queue_item_from_dict",
    "queue_item_to_dict",
]

# Compact separators: these strings are stored once per event and per prediction. NaN is left
# allowed (Python's json reads it back) so that an odd probability from a model cannot make a
# prediction record unwritable; the HTTP layer already refuses NaN in client input.
_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_decode = json.JSONDecoder().decode


def dumps(obj: Any) -> str:
    """Encode a JSON-safe value as compact JSON text."""
    return _encoder.encode(obj)


def loads(text: str | bytes) -> Any:
    """Decode JSON text (or UTF-8 bytes) written by :func:`dumps`."""
    if isinstance(text, bytes | bytearray):
        text = text.decode("utf-8")
    return _decode(text)


def encode_document(document: Mapping[str, Any]) -> str:
    """A registry document (a JSON object) as text; TypeError for anything else.

    >>> decode_document(encode_document({"a": [1, 2.5, True, None], "b": {"c": "é"}}))
    {'a': [1, 2.5, True, None], 'b': {'c': 'é'}}
    """
    if not isinstance(document, Mapping):
        raise TypeError(f"a document is a mapping (a JSON object), not {type(document).__name__}")
    return dumps(document if isinstance(document, dict) else dict(document))


def decode_document(text: str | bytes) -> dict[str, Any]:
    return loads(text)


def event_to_dict(event: Event) -> dict[str, Any]:
    """The event as a JSON-safe dict, without its seq (the log's position is stored apart)."""
    return {
        "kind": event.kind.value,
        "payload": event.payload,
        "at": event.at,
        "key": event.key,
    }


def event_from_dict(data: Mapping[str, Any], seq: int | None = None) -> Event:
    return Event(
        kind=EventKind(data["kind"]),
        payload=data["payload"],
        at=float(data["at"]),
        seq=seq,
        key=data.get("key"),
    )


def encode_event(event: Event) -> str:
    return dumps(event_to_dict(event))


def decode_event(text: str | bytes, seq: int | None = None) -> Event:
    return event_from_dict(loads(text), seq=seq)


def prediction_to_dict(record: PredictionRecord) -> dict[str, Any]:
    out = {
        "id": record.id,
        "model": record.model,
        "at": record.at,
        "features": record.features,
        "version": record.version,
        "outputs": record.outputs,
        "uncertainty": record.uncertainty,
        "queued": record.queued,
        "expires_at": record.expires_at,
        "reason": record.reason,
    }
    if record.sample_p is not None:  # only with importance weights: the usual dict as before
        out["sample_p"] = record.sample_p
    return out


def prediction_from_dict(data: Mapping[str, Any]) -> PredictionRecord:
    uncertainty = data.get("uncertainty")
    return PredictionRecord(
        id=data["id"],
        model=data["model"],
        at=float(data["at"]),
        features=data["features"],
        version=data["version"],
        outputs=data["outputs"],
        uncertainty=None if uncertainty is None else float(uncertainty),
        queued=bool(data.get("queued", False)),
        expires_at=float(data.get("expires_at", 0.0)),
        reason=data.get("reason"),
        sample_p=_optional_float(data.get("sample_p")),
    )


def encode_prediction(record: PredictionRecord) -> str:
    return dumps(prediction_to_dict(record))


def decode_prediction(text: str | bytes) -> PredictionRecord:
    return prediction_from_dict(loads(text))


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def queue_item_to_dict(item: QueueItem) -> dict[str, Any]:
    """The item as a JSON-safe dict (its state as the enum's value).

    >>> item = QueueItem("i1", "m", {"x": 1}, priority=0.5, enqueued_at=2.0, proba=[[True, 0.5]])
    >>> decode_queue_item(encode_queue_item(item)) == item
    True
    """
    return {
        "item_id": item.item_id,
        "model": item.model,
        "features": item.features,
        "priority": item.priority,
        "enqueued_at": item.enqueued_at,
        "prediction_id": item.prediction_id,
        "dedupe_key": item.dedupe_key,
        "proba": item.proba,
        "uncertainty": item.uncertainty,
        "reason": item.reason,
        "state": item.state.value,
        "attempts": item.attempts,
        "skips": item.skips,
        "labeller": item.labeller,
        "claim_id": item.claim_id,
        "lease_expires_at": item.lease_expires_at,
        "finished_at": item.finished_at,
        "result": item.result,
        "skipped_by": item.skipped_by,
    }


def queue_item_from_dict(data: Mapping[str, Any]) -> QueueItem:
    return QueueItem(
        item_id=data["item_id"],
        model=data["model"],
        features=data["features"],
        priority=float(data["priority"]),
        enqueued_at=float(data["enqueued_at"]),
        prediction_id=data.get("prediction_id"),
        dedupe_key=data.get("dedupe_key"),
        proba=data.get("proba"),
        uncertainty=_optional_float(data.get("uncertainty")),
        reason=data.get("reason", "uncertain"),
        state=QueueState(data.get("state", QueueState.QUEUED.value)),
        attempts=int(data.get("attempts", 0)),
        skips=int(data.get("skips", 0)),
        labeller=data.get("labeller"),
        claim_id=data.get("claim_id"),
        lease_expires_at=_optional_float(data.get("lease_expires_at")),
        finished_at=_optional_float(data.get("finished_at")),
        result=data.get("result"),
        skipped_by=data.get("skipped_by"),
    )


def encode_queue_item(item: QueueItem) -> str:
    return dumps(queue_item_to_dict(item))


def decode_queue_item(text: str | bytes) -> QueueItem:
    return queue_item_from_dict(loads(text))


def job_to_dict(job: Job) -> dict[str, Any]:
    """The job as a JSON-safe dict (its state as the enum's value).

    >>> job = Job("j1", "refit", "m", {"window": 100}, created_at=1.0, key="refit:m:7")
    >>> decode_job(encode_job(job)) == job
    True
    """
    return {
        "job_id": job.job_id,
        "kind": job.kind,
        "model": job.model,
        "params": job.params,
        "created_at": job.created_at,
        "key": job.key,
        "state": job.state.value,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "run_after": job.run_after,
        "worker": job.worker,
        "lease_expires_at": job.lease_expires_at,
        "updated_at": job.updated_at,
        "result": job.result,
        "error": job.error,
        "committed": job.committed,
    }


def job_from_dict(data: Mapping[str, Any]) -> Job:
    return Job(
        job_id=data["job_id"],
        kind=data["kind"],
        model=data["model"],
        params=data["params"],
        created_at=float(data["created_at"]),
        key=data.get("key"),
        state=JobState(data.get("state", JobState.QUEUED.value)),
        attempts=int(data.get("attempts", 0)),
        max_attempts=int(data.get("max_attempts", 3)),
        run_after=float(data.get("run_after", 0.0)),
        worker=data.get("worker"),
        lease_expires_at=_optional_float(data.get("lease_expires_at")),
        updated_at=_optional_float(data.get("updated_at")),
        result=data.get("result"),
        error=data.get("error"),
        committed=bool(data.get("committed", False)),  # absent: written by an earlier onlearn
    )


def encode_job(job: Job) -> str:
    return dumps(job_to_dict(job))


def decode_job(text: str | bytes) -> Job:
    return job_from_dict(loads(text))
