"""A model's labelled history as rows, and their export from its log.

A row is one label event, as a flat dict of JSON values (:data:`ROW_FIELDS`): what was
labelled (``features``), the ``label``, who gave it (``source``, ``labeller``), when (``at``,
Unix seconds, and ``seq``, its position in the source log), what the model had answered
(``prediction_id``, ``predicted_at``, ``answered_by``: the version that answered, ``outputs``:
every version's answer), the sampler's ``sampled``, ``sample_p`` and ``pace``
(onlearn/weights.py), and for a correction (``kind`` ``"correction"``) the ``event_id`` of the
row it ``corrects`` and what that row said (``previous_label``, ...). A retraction (``kind``
``"retraction"``: a label withdrawn, as a Label Studio annotation deleted) is a row too: the
``event_id`` of the first label whose chain it ``retracts``, and the ``label`` recorded when it
was withdrawn. Control events (promotions, alarms) are not part of it.

The export reads the log through the store's ports, so it works on every backend, and covers the
retained part of the log: events trimmed (covered by a snapshot) are gone, and
:class:`ExportReport` says where the file starts.

An exported event's ``event_id`` is stable (:func:`export_id`), and :func:`row_key` is the key
an import (:mod:`onlearn.history_import`) gives it back: ``prediction:<id>`` as is, anything
else ``event:<id>``, what inline feedback with that ``event_id`` would use.

>>> row_key("prediction:01ab"), row_key("17"), export_id("event:17", "g", 3)
('prediction:01ab', 'event:17', '17')
>>> export_id(None, "gen1", 42)
'gen1:42'
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from onlearn.corrections import CORRECTION_PREFIX, RETRACTION_PREFIX
from onlearn.errors import OnlearnError
from onlearn.records import Event, EventKind, LabelSource
from onlearn.store.base import Store

__all__ = [
    "ROW_FIELDS",
    "BadHistoryRow",
    "among",
    "ExportReport",
    "export_id",
    "export_rows",
    "parse_bound",
    "row_key",
]

ROW_FIELDS = (
    "event_id",
    "seq",
    "at",
    "kind",
    "label",
    "features",
    "source",
    "labeller",
    "prediction_id",
    "predicted_at",
    "answered_by",
    "outputs",
    "sampled",
    "sample_p",
    "pace",
    "corrects",
    "retracts",
    "previous_label",
    "previous_source",
    "previous_labeller",
)
LABEL, CORRECTION, RETRACTION = "label", "correction", "retraction"
# Events read per call.
PAGE = 1000


class BadHistoryRow(OnlearnError, ValueError):
    """A row of a history file breaks a rule; the message names the line and the field."""

    def __init__(self, where: str, field: str, msg: str) -> None:
        super().__init__(f"{where}: {field}: {msg}")
        self.where = where
        self.field = field


# Identity


def export_id(key: str | None, generation: str, seq: int) -> str:
    """The ``event_id`` of an exported event: the id feedback was given (``event:<id>``), the
    prediction it labels (``prediction:<id>``), a correction's own key, or for an event
    without a key, the source store's generation id and its seq (unique to that store)."""
    if key is None:
        return f"{generation}:{seq}"
    if key.startswith("event:"):
        return key[len("event:") :]
    return key


def row_key(event_id: str) -> str:
    """The log key a first label with this ``event_id`` gets: the same key its feedback would
    have had, so a prediction labelled live and imported is one label, not two."""
    return event_id if event_id.startswith("prediction:") else f"event:{event_id}"


def _chain_root(correction_key: str) -> str:
    """The chain key inside a correction's key ``correction:<chain key>:<seq>``."""
    return correction_key[len(CORRECTION_PREFIX) : correction_key.rindex(":")]


# Positions


def parse_bound(text: str) -> int | float:
    """A ``--since``/``--until`` bound: a seq (a whole number) or an event time (ISO-8601, UTC
    when it names no zone), which comes back as Unix seconds (a float).

    >>> parse_bound("120"), parse_bound("2026-01-01T00:00:00Z"), parse_bound("2026-01-01")
    (120, 1767225600.0, 1767225600.0)
    """
    text = text.strip()
    if text.isascii() and text.isdigit():  # "²".isdigit() too, which int() refuses
        if len(text) > 100:  # int() refuses past 4300 digits, with advice for programmers
            raise ValueError(f"{text[:20]}... has more digits than any seq")
        return int(text)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a seq (a whole number) nor an ISO-8601 time "
            "(2026-01-31 or 2026-01-31T12:00:00Z)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def _within(event: Event, since: int | float | None, until: int | float | None) -> bool:
    """Seq bounds are inclusive at both ends; a time window is ``[since, until)``, so that
    consecutive windows never share an event."""
    if isinstance(since, int) and event.seq < since:
        return False
    if isinstance(since, float) and event.at < since:
        return False
    if isinstance(until, int) and event.seq > until:
        return False
    return not (isinstance(until, float) and event.at >= until)


# Export


@dataclass
class ExportReport:
    """What an export covered: ``rows`` written (``corrections`` and ``retractions`` among
    them), the seqs of the
    first and last, the log's ``head``, and ``trimmed``: the seqs up to it were trimmed before
    the export read the log (0: none), so they are in no file."""

    model: str
    head: int = 0
    trimmed: int = 0
    rows: int = 0
    corrections: int = 0
    retractions: int = 0
    first_seq: int | None = None
    last_seq: int | None = None

    def summary(self) -> str:
        covered = (
            f"seq {self.first_seq}..{self.last_seq}" if self.rows else "no label event in range"
        )
        text = (
            f"model {self.model!r}: {self.rows} label events "
            f"({among(self.corrections, self.retractions)}), {covered}; log head {self.head}"
        )
        if self.trimmed:
            text += (
                f"; events 1..{self.trimmed} were trimmed (covered by a snapshot) and are not "
                "in the export"
            )
        else:
            text += "; no event was trimmed from the log"
        return text


def export_rows(
    store: Store,
    model: str,
    *,
    since: int | float | None = None,
    until: int | float | None = None,
    report: ExportReport | None = None,
    page: int = PAGE,
) -> Iterator[dict[str, Any]]:
    """The label events of ``model``'s log as rows, in seq order, within ``since``/``until``
    (see :func:`parse_bound`). ``report`` is filled in as the rows go."""
    log = store.log
    report = report if report is not None else ExportReport(model)
    report.head = log.head(model)
    first = log.read(model, after=0, limit=1)
    report.trimmed = (first[0].seq - 1) if first else report.head
    generation = store.generation.id
    after = since - 1 if isinstance(since, int) and since > 0 else 0
    stop = until if isinstance(until, int) else report.head
    # The ids of the corrections exported, by seq: what a later correction of one names.
    correction_ids: dict[int, str] = {}
    while after < stop:
        events = log.read(model, after=after, limit=page)
        if not events:
            break
        for event in events:
            if event.seq > stop:
                break
            if event.kind not in _EXPORTED or not _within(event, since, until):
                continue
            if event.kind is EventKind.RETRACT:
                row = _retraction_row(event, generation)
                report.retractions += 1
            else:
                row = _row(event, generation)
            target = event.payload.get("corrects")
            if target is not None:
                row["corrects"] = correction_ids.get(target) or _target_id(
                    store, model, event, target, generation
                )
                correction_ids[event.seq] = row["event_id"]
                report.corrections += 1
            report.rows += 1
            report.first_seq = report.first_seq or event.seq
            report.last_seq = event.seq
            yield row
        after = events[-1].seq


_EXPORTED = (EventKind.LABEL, EventKind.RETRACT)


def among(corrections: int, retractions: int) -> str:
    """What a summary says of the corrections and retractions among its events (retractions
    only when there are some: most histories have none).

    >>> among(0, 0), among(2, 1)
    ('0 corrections', '2 corrections, 1 retraction')
    """
    text = f"{corrections} corrections"
    if retractions:
        text += f", {retractions} retraction{'s' * (retractions != 1)}"
    return text


def _retraction_row(event: Event, generation: str) -> dict[str, Any]:
    """A withdrawn label: what it withdraws is named by its chain's first label, the one an
    import keys the chain by (the chain key is in the retraction's payload and its own key)."""
    p = event.payload
    chain = p.get("chain") or (event.key or "")[len(RETRACTION_PREFIX) :]
    row = dict.fromkeys(ROW_FIELDS)
    row.update(
        event_id=export_id(event.key, generation, event.seq),
        seq=event.seq,
        at=event.at,
        kind=RETRACTION,
        label=p["label"],
        source=p.get("source") or LabelSource.APP.value,
        labeller=p.get("labeller"),
        retracts=export_id(chain, generation, event.seq),
        previous_source=p.get("previous_source"),
        previous_labeller=p.get("previous_labeller"),
    )
    return row


def _row(event: Event, generation: str) -> dict[str, Any]:
    p = event.payload
    correction = p.get("corrects") is not None
    return {
        "event_id": export_id(event.key, generation, event.seq),
        "seq": event.seq,
        "at": event.at,
        "kind": CORRECTION if correction else LABEL,
        "label": p["label"],
        "features": p.get("features"),
        "source": p.get("source") or LabelSource.APP.value,
        "labeller": p.get("labeller"),
        "prediction_id": p.get("prediction_id"),
        "predicted_at": p.get("predicted_at"),
        "answered_by": p.get("answered_by"),
        "outputs": p.get("outputs"),
        "sampled": p.get("sampled"),
        "sample_p": p.get("sample_p"),
        "pace": p.get("pace"),
        "corrects": None,
        "retracts": None,
        "previous_label": p.get("previous_label") if correction else None,
        "previous_source": p.get("previous_source") if correction else None,
        "previous_labeller": p.get("previous_labeller") if correction else None,
    }


def _target_id(store: Store, model: str, event: Event, target: int, generation: str) -> str:
    """The ``event_id`` of what a correction corrects, when it is not a correction exported
    just before: the event at that seq, else (trimmed, or before the window) its chain's first
    label, named by the chain key inside the correction's own key."""
    found = store.log.read(model, after=target - 1, limit=1)
    if found and found[0].seq == target:
        return export_id(found[0].key, generation, target)
    root = _chain_root(event.key) if event.key else None
    return export_id(root, generation, target)
