"""The compact encoding of log events and prediction records, used by the SQLite and Redis
backends (queue items, jobs and registry documents stay JSON: :mod:`onlearn.store.codec`).

It is msgpack (written with msgspec) plus a few extension types, each an exact round trip of a
JSON-safe value (the ``Event`` and ``PredictionRecord`` in memory are unchanged):

- **Shapes.** A dict whose keys are all strings is written positionally: the tuple of its keys,
  in order, is a *shape*, registered once per model in the store and cached in memory
  (:class:`Shapes`); a row holds the shape's small id and the values. The example model's nine
  feature names (131 B of JSON) become one byte, and so do the names of a label event's
  fields. A new field (a later onlearn's correction fields or sampling probability in a label
  event) is just a new shape: readers decode every field whose name the store holds, and pass
  the ones they do not know on, untouched. Each model has at most :data:`MAX_SHAPES` shapes;
  past that, and for a dict with non-string keys, the dict is a plain msgpack map.
- **Short floats.** A float that a 32-bit float holds exactly (0.5, 1.0, 3.25, ...) is written
  as msgpack's float32, 5 bytes instead of 9; it reads back as the same double (the shortest
  exact form, as CBOR's preferred serialisation does). Others stay float64, NaN included.
- **Hex strings.** A string of lowercase hex digits, of even length 16 or more (prediction ids),
  is written as its bytes (a 32-digit id: 18 bytes instead of 34).
- **Big ints.** An int beyond msgpack's 64 bits is written as its decimal digits.
- **The key's id.** A label event joined to a prediction has the key ``prediction:<id>`` and
  ``<id>`` again in its payload; the payload refers to the key instead (3 bytes).

Like the JSON it replaces, it refuses what JSON cannot hold (TypeError) and strings that UTF-8
cannot (a lone surrogate: UnicodeEncodeError), in values and in names alike.

A payload is written as ``[shape id, value, ...]`` (``[0, {map}]`` without a shape); the
backends add what they keep outside their columns. Rows written by an earlier onlearn are JSON
text, which starts with ``{`` and so is never mistaken for msgpack (an array starts with a byte
from 0x90); :func:`is_json` tells them apart and the backends read both. A later, incompatible
format would start with 0xc1, the one byte msgpack never uses.

>>> from onlearn.store.codec import dumps
>>> shapes = Shapes.in_memory()
>>> payload = {"label": True, "prediction_id": "01a2508963002ed204eb0300a897eebb",
...            "features": {"age": 42, "score": 0.5, "city": "Zürich"}, "proba": 0.1}
>>> data = pack_payload(shapes, "m", payload, "prediction:01a2508963002ed204eb0300a897eebb")
>>> len(data), len(dumps(payload))
(33, 127)
>>> unpack_payload(shapes, "m", data, "prediction:01a2508963002ed204eb0300a897eebb") == payload
True
"""

from __future__ import annotations

import itertools
import json
import math
import re
import struct
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec

from onlearn.records import Event, EventKind, PredictionRecord
from onlearn.store.codec import decode_prediction, loads

__all__ = [
    "MAX_SHAPES",
    "CorruptRow",
    "Shapes",
    "is_json",
    "pack_event",
    "pack_payload",
    "pack_record",
    "unpack_event",
    "unpack_payload",
    "unpack_record",
]

# The most shapes one model registers; then dicts of new shapes are written as maps. Enough for
# every dict onlearn writes (a label event, its features, its outputs: a handful per schema and
# set of versions), small enough that a client sending ever new keys cannot grow the table.
MAX_SHAPES = 1000
# A dict with more keys than this is written as a map (its shape would be a huge row).
MAX_SHAPE_KEYS = 10_000

# Extension type codes (msgpack's application range is 0..127).
_SHAPED = 1  # data: msgpack [shape id, value, ...]
_HEX = 2  # data: the bytes of a lowercase hex string
_BIGINT = 3  # data: ASCII decimal digits of an int beyond 64 bits
_KEY_ID = 4  # data: empty; the value is the id part of the event's key "prediction:<id>"

_KEY_PREFIX = "prediction:"
_encode = msgspec.msgpack.Encoder().encode
_Ext = msgspec.msgpack.Ext
_Raw = msgspec.Raw
_f32 = struct.Struct(">f")
_pack_f32, _unpack_f32 = _f32.pack, _f32.unpack
_is_hex = re.compile(r"[0-9a-f]+").fullmatch
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
_KEY_REF = _Ext(_KEY_ID, b"")


class CorruptRow(ValueError):
    """A stored row that this onlearn cannot decode (written by a newer onlearn, or damaged)."""


class _KeyIdMarker:
    __slots__ = ()


_KEY_ID_VALUE = _KeyIdMarker()


# --- shapes ----------------------------------------------------------------------------------


class Shapes:
    """The shapes of each model of one store: ``keys <-> id``, cached in memory.

    ``load(model)`` reads every shape of a model from the store, ``{id: keys}``;
    ``register(model, keys)`` adds one atomically (or finds it) and returns its id, or None when
    the model already has ``MAX_SHAPES``. A shape never changes once registered, so the cache
    is never stale; the store is asked only on a miss. Encoding may register (a write of its
    own, committed before the row that uses the shape); decoding only loads.
    """

    def __init__(
        self,
        load: Callable[[str], Mapping[int, Sequence[str]]],
        register: Callable[[str, tuple[str, ...]], int | None],
    ):
        self._load = load
        self._register = register
        self._lock = threading.Lock()  # registrations (they may wait for the store's write lock)
        self._load_lock = threading.Lock()  # loads (they never do): never held while taking _lock
        # Per model, dicts that only ever grow (under the lock): readers on other threads use
        # them without it, and the codecs below hold on to them.
        self._ids: dict[str, dict[tuple[str, ...], int]] = {}
        self._keys: dict[str, dict[int, tuple[str, ...]]] = {}
        self._full: set[str] = set()
        self._codecs: dict[str, _ModelCodec] = {}

    @classmethod
    def in_memory(cls, limit: int = MAX_SHAPES) -> Shapes:
        """Shapes kept in a dict: for tests and doctests (no backend stores them this way)."""
        table: dict[str, dict[int, tuple[str, ...]]] = {}

        def register(model: str, keys: tuple[str, ...]) -> int | None:
            shapes = table.setdefault(model, {})
            for sid, known in shapes.items():
                if known == keys:
                    return sid
            if len(shapes) >= limit:
                return None
            shapes[len(shapes) + 1] = keys
            return len(shapes)

        return cls(lambda model: dict(table.get(model, {})), register)

    def id_of(self, model: str, keys: tuple[str, ...]) -> int | None:
        """The id of ``keys`` for ``model``, registered if new; None: write a map instead."""
        sid = self._ids_of(model).get(keys)
        if sid is not None or model in self._full:
            return sid
        with self._lock:  # one registration at a time per process; the store orders processes
            sid = self._ids[model].get(keys)
            if sid is None:
                sid = self._register(model, keys)
                if sid is None:
                    self._full.add(model)
                    return None
                self._remember(model, sid, keys)
            return sid

    def keys_of(self, model: str, sid: int) -> tuple[str, ...]:
        keys = self._keys_of(model).get(sid)
        if keys is None:
            with self._load_lock:
                self._learn(model)  # registered by another process since
            keys = self._keys[model].get(sid)
            if keys is None:
                raise CorruptRow(
                    f"model {model!r}: a row refers to shape {sid!r}, which the store lacks"
                )
        return keys

    def _ids_of(self, model: str) -> dict[tuple[str, ...], int]:
        ids = self._ids.get(model)
        if ids is None:
            with self._load_lock:
                if model not in self._ids:
                    self._learn(model)
            ids = self._ids[model]
        return ids

    def _keys_of(self, model: str) -> dict[int, tuple[str, ...]]:
        self._ids_of(model)
        return self._keys[model]

    def _learn(self, model: str) -> None:
        """Read the model's shapes from the store (under the load lock)."""
        loaded = {int(sid): tuple(keys) for sid, keys in self._load(model).items()}
        if model not in self._keys:  # published filled, and never replaced: codecs hold them
            self._keys[model] = loaded
            self._ids[model] = {keys: sid for sid, keys in loaded.items()}
            return
        for sid, keys in loaded.items():
            self._remember(model, sid, keys)

    def _remember(self, model: str, sid: int, keys: tuple[str, ...]) -> None:
        # The keys first: a reader that finds the id of a shape can always find its keys.
        self._keys[model][sid] = keys
        self._ids[model][keys] = sid

    def codec(self, model: str) -> _ModelCodec:
        codec = self._codecs.get(model)
        if codec is None:
            codec = self._codecs.setdefault(model, _ModelCodec(self, model))
        return codec


def keys_text(keys: Sequence[str]) -> str:
    """A shape as stored: a JSON array in ASCII."""
    return json.dumps(list(keys))


def keys_from_text(text: str | bytes) -> tuple[str, ...]:
    return tuple(json.loads(text))


# --- encoding and decoding for one model -----------------------------------------------------

# Floats seen to fit 32 bits, with their encoding (values of a feature repeat: 0.5, 1.0, ...).
# Bounded.
_ZERO, _MINUS_ZERO = _Raw(b"\xca" + _pack_f32(0.0)), _Raw(b"\xca" + _pack_f32(-0.0))
# 0.0 == -0.0, so they share an entry: a hit on _ZERO checks the sign.
_SHORT: dict[float, Any] = {0.0: _ZERO}
_SHORT_MAX = 4096


def _float(value: float) -> Any:
    if value == 0.0:
        return _ZERO if math.copysign(1.0, value) > 0 else _MINUS_ZERO
    try:
        packed = _pack_f32(value)
    except OverflowError:
        return value
    if _unpack_f32(packed)[0] != value:  # not exact, or NaN
        return value
    short = _Raw(b"\xca" + packed)
    if len(_SHORT) < _SHORT_MAX:
        _SHORT[value] = short
    return short


def _plain(v: Any) -> Any:
    """A subclass of a JSON type (numpy's float64, a str enum) as the plain type, as ``json``
    writes it; TypeError for anything JSON cannot hold."""
    if isinstance(v, bool):
        return bool(v)
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return float(v)
    if isinstance(v, str):
        return str.__str__(v)
    if isinstance(v, Mapping):
        return dict(v)
    if isinstance(v, list | tuple):
        return list(v)
    raise TypeError(f"Object of type {type(v).__name__} is not JSON serializable")


class _ModelCodec:
    """Encoding and decoding of one model's values: closures over its (growing) shape dicts,
    so that the per-value work is a type test and a dict read."""

    def __init__(self, shapes: Shapes, model: str):
        self.model = model
        ids = shapes._ids_of(model)
        known = shapes._keys_of(model)
        short = _SHORT
        get_short = short.get
        int_min, int_max = _INT_MIN, _INT_MAX
        copysign = math.copysign

        def shape(keys: tuple) -> int | None:
            if not keys or len(keys) > MAX_SHAPE_KEYS:
                return None
            for k in keys:
                if k.__class__ is not str:
                    return None
                k.encode()  # a name UTF-8 cannot hold is refused, as in a map
            return shapes.id_of(model, keys)

        def key(k: Any) -> Any:
            if k.__class__ is str or k is None or k.__class__ in (int, float, bool):
                return k
            if isinstance(k, str):
                return str.__str__(k)
            raise TypeError(f"a dict key must be a string, not {type(k).__name__}")

        def loose(v: Any) -> Any:
            """A value inside a list, on the careful pass: exact, no shapes, no short floats."""
            t = v.__class__
            if t is int:
                return v if int_min <= v <= int_max else _Ext(_BIGINT, str(v).encode())
            if t is str or t is float or t is bool or v is None:
                return v
            if t is list or t is tuple:
                return [loose(x) for x in v]
            if isinstance(v, Mapping):
                return {key(k): loose(x) for k, x in v.items()}
            return loose(_plain(v))

        def value(v: Any, careful: bool) -> Any:
            t = v.__class__
            if t is float:
                s = get_short(v)
                if s is None:
                    return _float(v)
                return _MINUS_ZERO if s is _ZERO and copysign(1.0, v) < 0 else s
            if t is str:
                if len(v) >= 16 and not len(v) & 1 and _is_hex(v):
                    return _Ext(_HEX, bytes.fromhex(v))
                return v
            if t is int:
                return v if int_min <= v <= int_max else _Ext(_BIGINT, str(v).encode())
            if t is bool or v is None:
                return v
            if t is dict:
                return mapping(v, careful)
            if t is list or t is tuple:
                # msgspec writes lists as they are (floats in 8 bytes, dicts as maps); a value
                # it cannot write (a big int, a subclass) makes the first pass fail, and the
                # careful pass walks them.
                return [loose(x) for x in v] if careful else v
            return value(_plain(v), careful)

        def values(d: dict, out: list, careful: bool, own: str | None = None) -> list:
            append = out.append
            for v in d.values():
                t = v.__class__
                if t is float:
                    s = get_short(v)
                    if s is None:
                        s = _float(v)
                    elif s is _ZERO and copysign(1.0, v) < 0:
                        s = _MINUS_ZERO
                    append(s)
                elif (t is int and int_min <= v <= int_max) or t is bool or v is None:
                    append(v)
                elif t is str and len(v) < 16:
                    append(v)
                elif own is not None and t is str and v == own:
                    append(_KEY_REF)
                else:
                    append(value(v, careful))
            return out

        def mapping(d: dict, careful: bool) -> Any:
            keys = tuple(d)
            sid = ids.get(keys)
            if sid is None:
                sid = shape(keys)
                if sid is None:
                    return {key(k): value(v, careful) for k, v in d.items()}
            return _Ext(_SHAPED, _encode(values(d, [sid], careful)))

        def top(payload: Mapping, event_key: str | None, careful: bool) -> list:
            """A payload as ``[shape id, value, ...]``, or ``[0, {map}]``."""
            if payload.__class__ is not dict:
                if not isinstance(payload, Mapping):
                    raise TypeError(f"a payload is a mapping, not {type(payload).__name__}")
                payload = dict(payload)
            keys = tuple(payload)
            sid = ids.get(keys)
            if sid is None:
                sid = shape(keys)
                if sid is None:
                    return [0, {key(k): value(v, careful) for k, v in payload.items()}]
            own = None
            if event_key is not None and event_key.startswith(_KEY_PREFIX):
                own = event_key[len(_KEY_PREFIX) :]
            return values(payload, [sid], careful, own)

        def ext_hook(code: int, data: memoryview) -> Any:
            if code == _SHAPED:
                items = decode(data)
                sid = items[0]
                keys = known.get(sid)
                if keys is None:
                    keys = shapes.keys_of(model, sid)
                if len(keys) != len(items) - 1:
                    raise CorruptRow(
                        f"model {model!r}: shape {sid} has {len(keys)} keys, a row "
                        f"{len(items) - 1} values"
                    )
                it = iter(items)
                next(it)
                return dict(zip(keys, it, strict=False))
            if code == _HEX:
                return data.hex()
            if code == _BIGINT:
                return int(bytes(data))
            if code == _KEY_ID:
                return _KEY_ID_VALUE
            raise CorruptRow(f"unknown msgpack extension type {code} (written by a newer onlearn?)")

        decode = msgspec.msgpack.Decoder(ext_hook=ext_hook).decode

        def unpack(items: list, start: int, event_key: str | None) -> dict:
            """The payload at ``items[start:]``, from ``top``."""
            sid = items[start]
            if sid == 0:
                return items[start + 1]
            keys = known.get(sid)
            if keys is None:
                keys = shapes.keys_of(model, sid)
            if len(keys) != len(items) - start - 1:
                raise CorruptRow(
                    f"model {model!r}: shape {sid} has {len(keys)} keys, a row "
                    f"{len(items) - start - 1} values"
                )
            if marker in items:
                if event_key is None or not event_key.startswith(_KEY_PREFIX):
                    raise CorruptRow(f"model {model!r}: a row refers to a key it does not have")
                own = event_key[len(_KEY_PREFIX) :]
                items = [own if v is marker else v for v in items]
            return dict(zip(keys, itertools.islice(items, start + 1, None), strict=False))

        marker = _KEY_ID_VALUE
        self.unpack = unpack
        self.value = value
        self.top = top
        self.decode = decode
        self.known = known

    def pack(self, build: Callable[[bool], Any]) -> bytes:
        try:
            return _encode(build(False))
        except (OverflowError, TypeError):
            # Rare: a big int or a subclass in a list. Look at everything this time (a value
            # JSON cannot hold raises TypeError again).
            return _encode(build(True))


def pack_payload(shapes: Shapes, model: str, payload: Mapping[str, Any], key: str | None) -> bytes:
    """An event's payload, for a backend that keeps kind, time and key in columns (SQLite)."""
    codec = shapes.codec(model)
    top = codec.top
    return codec.pack(lambda careful: top(payload, key, careful))


def pack_event(shapes: Shapes, model: str, event: Event) -> bytes:
    """A whole event but its seq and key: ``[kind, at, shape id, value, ...]`` (Redis)."""
    codec = shapes.codec(model)
    top = codec.top
    return codec.pack(
        lambda careful: [event.kind.value, float(event.at), *top(event.payload, event.key, careful)]
    )


def pack_record(shapes: Shapes, record: PredictionRecord, *, columns: bool) -> bytes:
    """A prediction record without its id: ``[features, version, outputs, uncertainty, queued,
    reason, sample_p]`` (``sample_p`` is left out when None: the array an earlier onlearn
    wrote). With ``columns=False`` (Redis: the record is one value), the model comes first as
    its own msgpack string and the array starts with ``at, expires_at``.

    Fields a later onlearn adds go at the end of the array; this one ignores them.
    """
    model = record.model
    uncertainty = record.uncertainty
    sample_p = record.sample_p
    codec = shapes.codec(model)
    value = codec.value

    def build(careful: bool) -> list:
        fields = [
            value(record.features, careful),
            value(record.version, careful),
            value(record.outputs, careful),
            None if uncertainty is None else float(uncertainty),
            bool(record.queued),
            value(record.reason, careful),
        ]
        if sample_p is not None:
            fields.append(float(sample_p))
        return fields if columns else [float(record.at), float(record.expires_at), *fields]

    body = codec.pack(build)
    return body if columns else _encode(model) + body


# --- decoding --------------------------------------------------------------------------------


def is_json(data: str | bytes) -> bool:
    """Whether a stored payload or record is the JSON of an earlier onlearn."""
    return data.__class__ is str or data[:1] == b"{"


def _decode(shapes: Shapes, model: str, data: bytes) -> Any:
    if data[:1] == b"\xc1":
        raise CorruptRow(f"model {model!r}: a row in a format of a newer onlearn")
    try:
        return shapes.codec(model).decode(data)
    except msgspec.DecodeError as exc:
        raise CorruptRow(f"model {model!r}: cannot decode a stored row: {exc}") from exc


def unpack_payload(shapes: Shapes, model: str, data: str | bytes, key: str | None) -> dict:
    """A payload from :func:`pack_payload`, or the JSON text of an earlier onlearn."""
    if is_json(data):
        return loads(data)
    return shapes.codec(model).unpack(_decode(shapes, model, data), 0, key)


def unpack_event(shapes: Shapes, model: str, data: bytes, seq: int, key: str | None) -> Event:
    """An event from :func:`pack_event`, or the JSON of an earlier onlearn (its fields but
    ``key``, which the backend keeps apart)."""
    if is_json(data):
        d = loads(data)
        return Event(EventKind(d["kind"]), d["payload"], float(d["at"]), seq, key)
    values = _decode(shapes, model, data)
    payload = shapes.codec(model).unpack(values, 2, key)
    return Event(EventKind(values[0]), payload, values[1], seq, key)


def unpack_record(
    shapes: Shapes,
    data: str | bytes,
    *,
    id: str,
    model: str | None = None,
    at: float | None = None,
    expires_at: float | None = None,
) -> PredictionRecord:
    """A record from :func:`pack_record` (with ``model``, ``at`` and ``expires_at`` from the
    columns that hold them when ``columns=True``), or the JSON of an earlier onlearn."""
    if is_json(data):
        return decode_prediction(data)
    if model is None:  # Redis: the model, then the record
        model, data = _split_model(data)
        values = _decode(shapes, model, data)
        at, expires_at = values[0], values[1]
        values = values[2:]
    else:
        values = _decode(shapes, model, data)
    return PredictionRecord(
        id=id,
        model=model,
        at=at,
        features=values[0],
        version=values[1],
        outputs=values[2],
        uncertainty=values[3],
        queued=values[4],
        expires_at=expires_at,
        reason=values[5],
        sample_p=values[6] if len(values) > 6 else None,
    )


def record_model(data: str | bytes) -> str:
    """The model of a record as Redis keeps it, without decoding the rest."""
    if is_json(data):
        return loads(data)["model"]
    return _split_model(data)[0]


def _split_model(data: bytes) -> tuple[str, bytes]:
    head = data[0]
    if 0xA0 <= head <= 0xBF:
        start, size = 1, head - 0xA0
    elif head == 0xD9:
        start, size = 2, data[1]
    elif head == 0xDA:
        start, size = 3, int.from_bytes(data[1:3], "big")
    elif head == 0xDB:
        start, size = 5, int.from_bytes(data[1:5], "big")
    else:
        raise CorruptRow("a prediction record that does not start with its model")
    return bytes(data[start : start + size]).decode(), data[start + size :]
