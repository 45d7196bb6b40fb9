"""Corrections: a label next to the one recorded before it for the same prediction or event.

A label event is keyed by what it labels (``prediction:<id>`` or ``event:<id>``), so the log's
key dedup keeps one first label per prediction. A later, different label is a *correction*: an
event of its own, keyed ``correction:<that key>:<seq it corrects>``. Two corrections of the same
label race for that one key, and the log lets only one of them land, on every backend, with no
lock of ours: the loser learns it lost from the append (``new`` false) and is told so (409).
The label recorded for a prediction is the end of that chain: the first label, or its newest
correction.

A correction copies what the label it corrects was joined with (features, the stored answers,
the sampling reason), so it can be learned and scored even after the prediction record expired,
and names what it replaces: ``corrects`` (the seq), ``previous_label``, ``previous_source``,
``previous_labeller``. Every label event also has ``sample_p``, the probability with which the
sampler asked for it (None until a sampler fills it in), and ``pace``, the pace weight of a
label the budgeted strategy bought (onlearn/weights.py; None otherwise).

>>> same_label(True, 1), same_label(2, 2.0), same_label("a", "a")
(False, True, True)
>>> correction_key("prediction:ab", 7)
'correction:prediction:ab:7'

A label can also be withdrawn: a *retraction* (``EventKind.RETRACT``, keyed
``retraction:<first key>``, so a retraction delivered twice lands once) names the chain and the
label recorded when it was withdrawn. The live model keeps what it learned (an online model
cannot unlearn); refits leave every label of a retracted chain out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from onlearn.errors import LabelConflict
from onlearn.records import Event, EventKind, FeedbackItem
from onlearn.store.base import EventLog

CORRECTION_PREFIX = "correction:"
RETRACTION_PREFIX = "retraction:"
# The fields a correction adds to a label event's payload.
CORRECTION_FIELDS = ("corrects", "previous_label", "previous_source", "previous_labeller")
# Links followed at most from a first label to its newest correction: a bound on the lookups
# a label costs, far above what labelling produces (a correction of a correction is rare).
MAX_CHAIN = 1000


def correction_key(key: str, seq: int) -> str:
    """The key of the correction of the label event at ``seq`` whose chain starts at ``key``."""
    return f"{CORRECTION_PREFIX}{key}:{seq}"


def same_label(a: Any, b: Any) -> bool:
    """Whether two labels are the same: class labels with their type (``True`` is not ``1``,
    as the config's classes), numbers by value (a regression target ``2`` is ``2.0``)."""
    if a.__class__ is bool or b.__class__ is bool:
        return a.__class__ is b.__class__ and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return a.__class__ is b.__class__ and a == b


def recorded(log: EventLog, model: str, keys: Iterable[str]) -> dict[str, Event]:
    """The label recorded for each key: the end of its chain of corrections. Keys with no event
    (never labelled, or trimmed) are left out. One lookup per link of the longest chain, for all
    the keys at once."""
    ends: dict[str, Event] = {}
    pending = {key: key for key in keys}  # key of the next link -> the chain's first key
    for _ in range(MAX_CHAIN):
        if not pending:
            break
        found = log.by_keys(model, list(pending))
        nxt = {}
        for link, event in found.items():
            first = pending[link]
            ends[first] = event
            nxt[correction_key(first, event.seq)] = first
        pending = nxt
    return ends


def conflict_detail(event: Event) -> dict[str, Any]:
    """What a 409 says about the recorded label."""
    payload = event.payload
    return {
        "label": payload["label"],
        "source": payload.get("source") or "app",
        "labeller": payload.get("labeller"),
        "seq": event.seq,
    }


def decide(
    item: FeedbackItem, end: Event, chain_key: str, at: float, *, may_correct: bool = True
) -> int | Event:
    """What a label ``item`` becomes next to ``end``, the label recorded for its chain: the
    recorded seq (the same label: idempotent), a correction event to append (a different label
    that asks to correct, or overrides the recorded label's source), else LabelConflict.
    ``may_correct=False``: a correction that lost its race to another is compared, never
    corrects the winner."""
    if same_label(end.payload["label"], item.label):
        return end.seq
    source = end.payload.get("source") or "app"
    if may_correct and (item.correction or source in item.overrides):
        return correction_event(
            end,
            label=item.label,
            source=item.source,
            labeller=item.labeller,
            chain_key=chain_key,
            at=at,
        )
    recorded_label = conflict_detail(end)
    what = "prediction" if item.prediction_id is not None else "event"
    raise LabelConflict(
        f"label not used: the label recorded for this {what} is {recorded_label['label']!r} "
        f"(source {recorded_label['source']}, seq {recorded_label['seq']}); send it again "
        'with "correction": true to correct it',
        recorded_label,
    )


def correction_event(
    previous: Event,
    *,
    label: Any,
    source: str,
    labeller: str | None,
    chain_key: str,
    at: float,
) -> Event:
    """The event that corrects ``previous`` (the recorded label of the chain ``chain_key``)."""
    old = previous.payload
    payload = {
        "label": label,
        "source": source,
        "labeller": labeller,
        "prediction_id": old.get("prediction_id"),
        "features": old["features"],
        "predicted_at": old.get("predicted_at"),
        "outputs": old.get("outputs"),
        "answered_by": old.get("answered_by"),
        "sampled": old.get("sampled"),
        "sample_p": old.get("sample_p"),
        "pace": old.get("pace"),
        "corrects": previous.seq,
        "previous_label": old["label"],
        "previous_source": old.get("source") or "app",
        "previous_labeller": old.get("labeller"),
    }
    return Event(EventKind.LABEL, payload, at, key=correction_key(chain_key, previous.seq))


def retraction_event(
    recorded_end: Event, *, chain_key: str, source: str, labeller: str | None, at: float
) -> Event:
    """The event that withdraws the chain ``chain_key``, whose recorded label is
    ``recorded_end``: one per chain (its key), whatever label the chain ended with."""
    old = recorded_end.payload
    payload = {
        "retracts": recorded_end.seq,
        "chain": chain_key,
        "label": old["label"],
        "source": source,
        "labeller": labeller,
        "previous_source": old.get("source") or "app",
        "previous_labeller": old.get("labeller"),
    }
    return Event(EventKind.RETRACT, payload, at, key=f"{RETRACTION_PREFIX}{chain_key}")


def corrects(payload: Mapping[str, Any]) -> int | None:
    """The seq a label event corrects, or None for a first label (and events of an earlier
    onlearn, which has no corrections)."""
    return payload.get("corrects")


class TrainingLabels:
    """The labels a refit trains on, with corrections applied: a correction's label replaces
    the label of the first event of its chain, and is not a row of its own; when that first
    event is not in the refit's range (trimmed, or left out by ``max_rows``), the newest
    correction of the chain is the row.

    A retraction (a ``RETRACT`` event) drops every label of its chain: the first label and its
    corrections, before or after it.

    Feed the label and retraction events in seq order (``add``), then ask ``label_of(seq)``
    and ``dropped(seq)`` for each row kept.
    """

    def __init__(self) -> None:
        self._root: dict[int, int] = {}  # seq of a correction -> seq of its chain's first label
        self._final: dict[int, Any] = {}  # first label's seq -> its newest corrected label
        self._newest: dict[int, int] = {}  # first label's seq -> its newest correction's seq
        self._retracted: set[int] = set()  # first labels' seqs of retracted chains
        self.corrections = 0  # correction events seen
        self.retractions = 0  # retraction events seen

    def add(self, event: Event) -> None:
        if event.kind is EventKind.RETRACT:
            self.retractions += 1
            target = event.payload["retracts"]
            self._retracted.add(self._root.get(target, target))
            return
        target = corrects(event.payload)
        if target is None:
            return
        self.corrections += 1
        root = self._root.get(target, target)
        self._root[event.seq] = root
        self._final[root] = event.payload["label"]
        self._newest[root] = event.seq

    def label_of(self, seq: int, label: Any) -> Any:
        return self._final.get(seq, label)

    def replaced(self, seq: int) -> bool:
        return seq in self._final

    def rewrite(self, kept: set[int]):
        """For a replay that trains on the same labels as the rows: a function of a label event
        that gives it with its corrected label, None for a correction merged into a row (or
        superseded), else the event itself."""

        def rewrite(event: Event) -> Event | None:
            if self.dropped(event.seq, kept):
                return None
            if self.replaced(event.seq):
                payload = {**event.payload, "label": self._final[event.seq]}
                return Event(event.kind, payload, event.at, event.seq, event.key)
            return event

        return rewrite

    def dropped(self, seq: int, kept: set[int]) -> bool:
        """Whether the label at ``seq`` is left out: its chain was retracted, or it is a
        correction merged into a row (its chain's first label is in ``kept``) or superseded by
        a newer correction of the same chain."""
        root = self._root.get(seq)
        if (seq if root is None else root) in self._retracted:
            return True
        if root is None:
            return False
        return root in kept or self._newest[root] != seq


__all__ = [
    "CORRECTION_FIELDS",
    "CORRECTION_PREFIX",
    "RETRACTION_PREFIX",
    "TrainingLabels",
    "conflict_detail",
    "correction_event",
    "correction_key",
    "corrects",
    "decide",
    "recorded",
    "retraction_event",
    "same_label",
]
