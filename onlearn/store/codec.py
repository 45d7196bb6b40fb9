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

from onlearn.records import Event, EventKind, PredictionRecord

__all__ = [
    "decode_event",
    "decode_prediction",
    "dumps",
    "encode_event",
    "encode_prediction",
    "event_from_dict",
    "event_to_dict",
    "loads",
    "prediction_from_dict",
    "prediction_to_dict",
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
    return {
        "id": record.id,
        "model": record.model,
        "at": record.at,
        "features": record.features,
        "version": record.version,
        "outputs": record.outputs,
        "uncertainty": record.uncertainty,
        "queued": record.queued,
        "expires_at": record.expires_at,
    }


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
    )


def encode_prediction(record: PredictionRecord) -> str:
    return dumps(prediction_to_dict(record))


def decode_prediction(text: str | bytes) -> PredictionRecord:
    return prediction_from_dict(loads(text))
