"""The import of a labelled history (:mod:`onlearn.history`'s rows) into a model's log.

Rows are appended as label events with the keys feedback gives them, so an import is
idempotent: a row's ``event_id`` becomes the event's key (:func:`~onlearn.history.row_key`), and
a correction is keyed in its chain as :mod:`onlearn.corrections` keys it, with the destination's
seqs, and a retraction withdraws the chain its ``retracts`` names, as it stands in the
destination. Every row is checked against the model's schema and label rules before anything is
appended; a bad row stops the import with its line and field (``skip_invalid`` skips and counts
it instead).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from onlearn.config import ModelConfig
from onlearn.corrections import (
    CORRECTION_PREFIX,
    correction_event,
    recorded,
    retraction_event,
    same_label,
)
from onlearn.errors import SchemaViolation
from onlearn.history import (
    CORRECTION,
    LABEL,
    RETRACTION,
    ROW_FIELDS,
    BadHistoryRow,
    among,
    parse_bound,
    row_key,
)
from onlearn.labels import check_label
from onlearn.records import Event, EventKind, LabelSource
from onlearn.store.base import Store
from onlearn.weights import MAX_WEIGHT

__all__ = ["ImportReport", "import_rows"]

_SOURCES = frozenset(s.value for s in LabelSource)
# Events appended per call: one durable append (a transaction, a pipeline) per batch.
BATCH = 1000
# How many bad rows an import that skips them describes; the others are counted.
SHOWN_ERRORS = 5


@dataclass
class ImportReport:
    """What an import did: ``rows`` read, events ``appended`` (``corrections`` among them),
    ``present``: rows whose event the log held already (the same label: a file imported
    again), ``conflicts``: rows whose event the log held with another label (not imported),
    ``skipped``: bad rows left out (with ``skip_invalid``), the first of them in ``errors``,
    and the seqs the appended events got."""

    model: str
    rows: int = 0
    appended: int = 0
    corrections: int = 0
    retractions: int = 0
    present: int = 0
    conflicts: int = 0
    conflicting: list[str] = field(default_factory=list)  # the first few event ids
    skipped: int = 0
    errors: list[str] = field(default_factory=list)
    first_seq: int | None = None
    last_seq: int | None = None

    def summary(self) -> str:
        text = (
            f"model {self.model!r}: {self.rows} rows read, {self.appended} label events appended "
            f"({among(self.corrections, self.retractions)})"
        )
        if self.appended:
            text += f" at seq {self.first_seq}..{self.last_seq}"
        text += f"; {self.present} already in the log"
        if self.conflicts:
            shown = ", ".join(self.conflicting) + (", ..." if self.conflicts > 5 else "")
            text += (
                f"; {self.conflicts} in the log with another label (not imported: event_id {shown})"
            )
        if self.skipped:
            text += f"; {self.skipped} bad rows skipped"
        return text


@dataclass
class _Checked:
    """A row that passed the checks: what its event needs."""

    where: str
    event_id: str
    label: Any
    at: float
    payload: dict[str, Any]
    corrects: str | None = None
    retracts: str | None = None

    @property
    def target(self) -> str | None:
        """The event_id of what this row corrects or retracts."""
        return self.corrects if self.corrects is not None else self.retracts


@dataclass
class _Placed:
    """An event of the import as the log holds it, and the key of its chain."""

    event: Event
    chain: str


def import_rows(
    store: Store,
    config: ModelConfig,
    rows: Callable[[], Iterable[tuple[str, Mapping[str, Any]]]],
    *,
    skip_invalid: bool = False,
    batch: int = BATCH,
    clock: Callable[[], float] = time.time,
    progress: Callable[[str, int], None] | None = None,
    learn: Callable[[list[Event], Any], None] | None = None,
) -> ImportReport:
    """Append the rows (``(where, row)`` pairs: the line or row number and the row) to
    ``config``'s log, in their order, as label events.

    ``rows`` is called twice: the first pass checks every row (and that each correction's
    target exists), so a bad row stops the import before anything is appended; the second
    appends in batches of ``batch``. ``progress(phase, n)`` is told each ``n`` rows done
    (``"check"``, then ``"import"``). ``learn(events, seqs)`` is handed each appended batch:
    an engine in this process applies them (``Engine.learn_appended``); serving processes on a
    shared store follow the log and learn them without it."""
    report = ImportReport(config.name)
    skipped: set[str] = set()  # the wheres of bad rows (skip_invalid)
    known: set[str] = set()
    # corrected or retracted event_id -> (where, field), for targets not in the file
    outside: dict[str, tuple[str, str]] = {}
    referenced: set[str] = set()  # what corrections correct: the events to remember
    for checked in _checked(config, rows(), report, skipped, skip_invalid, clock):
        target = checked.target
        if target is not None:
            referenced.add(target)
        if target is not None and target not in known:
            if target.startswith(CORRECTION_PREFIX):
                _bad(
                    report,
                    skipped,
                    skip_invalid,
                    BadHistoryRow(
                        checked.where,
                        "corrects" if checked.corrects is not None else "retracts",
                        f"{target!r} is a correction that is not earlier in this "
                        "file: a correction of a correction must follow it in the same file",
                    ),
                )
                continue
            name = "corrects" if checked.corrects is not None else "retracts"
            outside.setdefault(target, (checked.where, name))
        known.add(checked.event_id)
        if progress:
            progress("check", 1)
    placed: dict[str, _Placed] = {}
    if outside:
        found = store.log.by_keys(config.name, [row_key(t) for t in outside])
        for target, (where, name) in outside.items():
            event = found.get(row_key(target))
            if event is None:
                _bad(
                    report,
                    skipped,
                    skip_invalid,
                    BadHistoryRow(
                        where,
                        name,
                        f"{target!r} is neither earlier in this file nor in model "
                        f"{config.name!r}'s log: import what it corrects or retracts first",
                    ),
                )
            else:
                placed[target] = _Placed(event, event.key)
    report.rows = 0
    appender = _Appender(store, config.name, report, placed, referenced, learn)
    for checked in _checked(config, rows(), report, None, True, clock):
        if checked.where in skipped:
            continue
        if checked.target is not None:
            if checked.target not in placed and checked.target not in appender.pending_ids:
                report.skipped += 1  # it corrects or retracts a skipped row
                continue
            if checked.target in appender.pending_ids:
                appender.flush()
            target = placed[checked.target]
        if checked.retracts is not None:
            # Withdraws the chain as it ends in the destination (its newest correction there).
            end = recorded(store.log, config.name, [target.chain]).get(target.chain)
            if end is None:
                report.skipped += 1  # trimmed from the destination: nothing left to withdraw
                continue
            event = retraction_event(
                end,
                chain_key=target.chain,
                source=checked.payload["source"],
                labeller=checked.payload["labeller"],
                at=checked.at,
            )
            appender.add(checked.event_id, event, target.chain)
        elif checked.corrects is not None:
            event = correction_event(
                target.event,
                label=checked.label,
                source=checked.payload["source"],
                labeller=checked.payload["labeller"],
                chain_key=target.chain,
                at=checked.at,
            )
            appender.add(checked.event_id, event, target.chain)
        else:
            key = row_key(checked.event_id)
            appender.add(
                checked.event_id, Event(EventKind.LABEL, checked.payload, checked.at, key=key), key
            )
        if len(appender) >= batch:
            if progress:
                progress("import", len(appender))
            appender.flush()
    if progress:
        progress("import", len(appender))
    appender.flush()
    return report


class _Appender:
    """Events waiting for one durable append, and what they became once appended."""

    def __init__(self, store, model, report, placed, referenced, learn) -> None:
        self.store = store
        self.model = model
        self.report = report
        # Only the events a later correction names are kept: memory stays flat however long
        # the history.
        self.placed = placed
        self.referenced = referenced
        self.learn = learn
        self.ids: list[str] = []
        self.events: list[Event] = []
        self.chains: list[str] = []
        self.pending_ids: set[str] = set()

    def __len__(self) -> int:
        return len(self.events)

    def add(self, event_id: str, event: Event, chain: str) -> None:
        self.ids.append(event_id)
        self.events.append(event)
        self.chains.append(chain)
        self.pending_ids.add(event_id)

    def flush(self) -> None:
        if not self.events:
            return
        # A store found replaced takes no label (onlearn.store.generation), as for feedback.
        self.store.generation.refuse()
        log, report = self.store.log, self.report
        result = log.append(self.model, self.events)
        met = [e.key for e, new in zip(self.events, result.new, strict=True) if not new]
        existing = log.by_keys(self.model, met) if met else {}
        for event_id, event, chain, seq, new in zip(
            self.ids, self.events, self.chains, result, result.new, strict=True
        ):
            if new:
                report.appended += 1
                report.corrections += event.payload.get("corrects") is not None
                report.retractions += event.kind is EventKind.RETRACT
                report.first_seq = report.first_seq or seq
                report.last_seq = seq
                held = Event(event.kind, event.payload, event.at, seq, event.key)
            else:
                held = existing.get(event.key) or Event(
                    event.kind, event.payload, event.at, seq, event.key
                )
                if same_label(held.payload["label"], event.payload["label"]):
                    report.present += 1
                else:
                    report.conflicts += 1
                    if len(report.conflicting) < 5:
                        report.conflicting.append(repr(event_id))
            if event_id in self.referenced:
                self.placed[event_id] = _Placed(held, chain)
        if self.learn is not None and any(result.new):
            self.learn(self.events, result)
        self.ids, self.events, self.chains = [], [], []
        self.pending_ids = set()


def _bad(report: ImportReport, skipped, skip_invalid: bool, error: BadHistoryRow) -> None:
    if not skip_invalid:
        raise error
    report.skipped += 1
    skipped.add(error.where)
    if len(report.errors) < SHOWN_ERRORS:
        report.errors.append(str(error))


def _checked(
    config: ModelConfig,
    rows: Iterable[tuple[str, Mapping[str, Any]]],
    report: ImportReport,
    skipped: set[str] | None,
    skip_invalid: bool,
    clock: Callable[[], float],
) -> Iterator[_Checked]:
    """The rows that pass the checks; a bad one raises (or is counted, with skip_invalid).
    Rows without an ``event_id`` get one from their content and how many identical rows came
    before: stable when the same file is imported again, or with rows added to it."""
    seen: dict[str, int] = {}
    ids: set[str] = set()
    for where, row in rows:
        report.rows += 1
        try:
            checked = _check(config, where, row, clock)
            if checked.event_id in ids:
                raise BadHistoryRow(
                    where, "event_id", f"{checked.event_id!r} is given to an earlier row too"
                )
        except BadHistoryRow as error:
            if skipped is not None:
                _bad(report, skipped, skip_invalid, error)
            continue
        if not checked.event_id:
            # Fields given as null count as absent: a Parquet row has every column.
            given = {k: v for k, v in row.items() if v is not None}
            digest = hashlib.sha256(
                json.dumps(given, sort_keys=True, default=str).encode()
            ).hexdigest()[:32]
            n = seen[digest] = seen.get(digest, 0) + 1
            checked.event_id = f"row-{digest}-{n}"
        ids.add(checked.event_id)
        yield checked


def _check(
    config: ModelConfig, where: str, row: Mapping[str, Any], clock: Callable[[], float]
) -> _Checked:
    if isinstance(row, BadHistoryRow):  # the file could not give this row (onlearn.history_files)
        raise row
    if not isinstance(row, Mapping):
        raise BadHistoryRow(where, "row", "must be an object of field to value")
    unknown = sorted(set(row) - set(ROW_FIELDS))
    if unknown:
        raise BadHistoryRow(where, unknown[0], f"unknown field; a row has {', '.join(ROW_FIELDS)}")
    event_id = row.get("event_id")
    if event_id is not None and (not isinstance(event_id, str) or not event_id):
        raise BadHistoryRow(where, "event_id", "must be a non-empty string")
    kind = row.get("kind") or LABEL
    if kind not in (LABEL, CORRECTION, RETRACTION):
        raise BadHistoryRow(
            where, "kind", f"must be {LABEL!r}, {CORRECTION!r} or {RETRACTION!r}, got {kind!r}"
        )
    corrects, retracts = row.get("corrects"), row.get("retracts")
    if kind == CORRECTION and (not isinstance(corrects, str) or not corrects):
        raise BadHistoryRow(where, "corrects", "a correction names the event_id it corrects")
    if kind != CORRECTION and corrects is not None:
        raise BadHistoryRow(where, "corrects", 'only a row of kind "correction" corrects one')
    if kind == RETRACTION and (not isinstance(retracts, str) or not retracts):
        raise BadHistoryRow(
            where, "retracts", "a retraction names the event_id of the first label it withdraws"
        )
    if kind != RETRACTION and retracts is not None:
        raise BadHistoryRow(where, "retracts", 'only a row of kind "retraction" retracts one')
    if "label" not in row:
        raise BadHistoryRow(where, "label", "is required")
    label = row["label"]
    for error in check_label(config, label):
        raise BadHistoryRow(where, "label", error.msg)
    source = row.get("source") or LabelSource.APP.value
    if source not in _SOURCES:
        raise BadHistoryRow(where, "source", f"must be one of {', '.join(sorted(_SOURCES))}")
    labeller = row.get("labeller")
    if labeller is not None and (not isinstance(labeller, str) or len(labeller) > 200):
        raise BadHistoryRow(where, "labeller", "must be a string of at most 200 characters")
    at = _time(where, "at", row.get("at"))
    at = clock() if at is None else at
    features = row.get("features")
    clean = None
    if features is not None or kind == LABEL:
        try:
            clean = config.schema.validate(features, hints=True)
        except SchemaViolation as e:
            first = e.errors[0]
            name = ".".join(map(str, ("features", *first.loc)))
            more = len(e.errors) + e.omitted - 1
            raise BadHistoryRow(
                where, name, first.msg + (f" (and {more} more)" if more > 0 else "")
            ) from None
    # The weights' bounds are those onlearn writes (onlearn/weights.py): no weight above
    # MAX_WEIGHT, the largest weight_clip.
    sample_p = row.get("sample_p")
    if sample_p is not None and (
        isinstance(sample_p, bool)
        or not isinstance(sample_p, int | float)
        or not 1 / MAX_WEIGHT <= sample_p <= 1
    ):
        raise BadHistoryRow(
            where, "sample_p", f"must be a probability in [{1 / MAX_WEIGHT:g}, 1] or null"
        )
    pace = row.get("pace")
    if pace is not None and (
        isinstance(pace, bool) or not isinstance(pace, int | float) or not 1 <= pace <= MAX_WEIGHT
    ):
        raise BadHistoryRow(where, "pace", f"must be a number in [1, {MAX_WEIGHT:g}] or null")
    outputs = row.get("outputs")
    if outputs is not None and not (
        isinstance(outputs, Mapping)
        and all(isinstance(v, Mapping) and "label" in v for v in outputs.values())
    ):
        raise BadHistoryRow(
            where, "outputs", 'must map each version to its answer {"label", "proba"}, or be null'
        )
    for name in ("prediction_id", "answered_by", "sampled"):
        if row.get(name) is not None and not isinstance(row[name], str):
            raise BadHistoryRow(where, name, "must be a string or null")
    payload = {
        "label": label,
        "source": source,
        "labeller": labeller,
        "prediction_id": row.get("prediction_id"),
        "features": clean,
        "predicted_at": _time(where, "predicted_at", row.get("predicted_at")),
        "outputs": dict(outputs) if outputs is not None else None,
        "answered_by": row.get("answered_by"),
        "sampled": row.get("sampled"),
        "sample_p": sample_p,
        "pace": pace,
        "corrects": None,
    }
    return _Checked(where, event_id or "", label, at, payload, corrects, retracts)


# Years 1 to 9999, as datetime has them: no event's time is outside, and an export could not
# write one back as a time.
_FIRST_TIME, _LAST_TIME = -62_135_596_800.0, 253_402_300_800.0


def _time(where: str, name: str, value: Any) -> float | None:
    """Unix seconds, from a number, an ISO-8601 string, or a Parquet timestamp or date column
    (a datetime or date: UTC unless it names a zone)."""
    if value is None:
        return None
    seconds = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, datetime):
        seconds = (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    elif isinstance(value, date):
        seconds = datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp()
    elif isinstance(value, str):
        try:
            seconds = float(parse_bound(value)) if not value.strip().isdigit() else float(value)
        except ValueError:
            pass
    if seconds is None:
        raise BadHistoryRow(where, name, "must be Unix seconds or an ISO-8601 time")
    if not (math.isfinite(seconds) and _FIRST_TIME <= seconds < _LAST_TIME):
        raise BadHistoryRow(
            where, name, f"must be a time in the years 1 to 9999, got {value!r:.40}"
        )
    return seconds
