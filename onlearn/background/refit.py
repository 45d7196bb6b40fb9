"""Batch refit: train candidate models on the labelled history and compare them with the champion.

A pure function of the log and the configs: :func:`refit` reads a model's label events, trains
each candidate on the older part, scores every candidate and the champion on the newer part,
and returns the candidates' states with the evidence. It registers nothing and changes no role;
the worker does that with the result (design section 4).

The split is by time, never shuffled: ``train`` is the first ``1 - holdout`` of the label
events, up to seq ``train_upto``; the ``holdout`` is the rest. On the holdout every model is
scored prequentially, as in production: predict, score, then learn (a batch-only candidate does
not learn). The candidates' states returned are those at ``train_upto``, before the holdout:
the engine hands a state to the online path by replaying ``(train_upto, now]`` (design section
3), so the holdout is learnt exactly once, there. Evaluation works on copies.

Candidates are :class:`onlearn.refit_options.Candidate` (an id and a config table; a plain table
gets an id from :func:`~onlearn.refit_options.candidate_id`). What a request may name is decided
before, by :func:`onlearn.refit_options.resolve_options`; a table here is trusted config:

- a river pipeline spec, ``{ name = "hoeffding_tree", grace_period = 50 }`` or a trusted
  ``{ factory = "pkg.mod:build" }``: trained by replaying the train events through
  :func:`onlearn.snapshots.replay`, so with ``passes = 1`` its state is exactly the state a
  replay of the log through that spec gives, prequential metrics included. Further passes feed
  the train events to the estimator again, without scoring (the metrics stay those of the first,
  honest pass);
- ``{ sklearn = "sklearn.linear_model:SGDClassifier", params = {...} }``, incremental: trained
  with ``learn_many`` over the train events, ``passes`` times;
- ``{ sklearn = "...", incremental = false }``: batch-only, ``fit_many`` once.

scikit-learn candidates get the schema's numeric features, and the categorical ones one-hot
with the schema's declared ``values`` or else the values seen in the train events (the
:data:`MAX_CATEGORIES` most frequent). Their states start with empty metrics: they have no
prequential history before ``train_upto``.

``max_rows`` keeps the newest label events only (a refit holds them in memory). ``should_stop``
is asked every few events (and while a scikit-learn ``fit`` runs, in a child process
that is killed on a stop): a reason raises :class:`~onlearn.errors.Interrupted`.

Each candidate's per-event outcome on the holdout is paired with the champion's: for a
regression model its absolute errors (:class:`onlearn.compare.PairedErrors`, Wilcoxon's
signed-rank test); for classification its correctness (:class:`onlearn.compare.PairedCounts`, ``a`` = champion, ``b`` = candidate) for
McNemar's test and :func:`onlearn.background.promotion.decide_promotion`.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import math
import time
from collections import Counter
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from onlearn.background.stoppable import run_stoppable
from onlearn.compare import PairedCounts, PairedErrors
from onlearn.corrections import TrainingLabels
from onlearn.errors import ConfigError, Interrupted, OnlearnError
from onlearn.learner import LearnerState
from onlearn.metrics import ClassificationMetrics, RegressionMetrics, absolute_error
from onlearn.models import PipelineSpec, build_pipeline
from onlearn.models.catalog import TASKS
from onlearn.models.sklearn_adapter import SklearnIncremental, sklearn_from_spec
from onlearn.records import Event, EventKind
from onlearn.refit_options import METRICS, MIN_LABELS, Candidate, candidate_id
from onlearn.schema import Schema
from onlearn.snapshots import REPLAY_PAGE, replay
from onlearn.store.base import Store
from onlearn.weights import event_pace, event_weight, learn_weighted, takes_pace, takes_weight

__all__ = [
    "CandidateResult",
    "ChampionResult",
    "NotEnoughData",
    "RefitResult",
    "refit",
]

MAX_CATEGORIES = 100
"""At most this many values of an undeclared categorical feature become one-hot columns."""

RIVER, SKLEARN_INCREMENTAL, SKLEARN_BATCH = "river", "sklearn_incremental", "sklearn_batch"


class NotEnoughData(OnlearnError):
    """The log holds too few label events to train and evaluate a refit."""


StopCheck = Callable[[], "str | None"]


@dataclass(frozen=True)
class _Labelled:
    seq: int
    x: dict[str, Any]
    y: Any
    source: str
    w: float = 1.0  # importance weight (onlearn/weights.py): 1 / the sampler's probability
    answered_by: str | None = None  # the version whose answer the label followed, if recorded
    pace: float = 1.0  # pace (onlearn/weights.py): linear models' weight, trees' split checks

    def weight(self, paced: bool) -> float:
        """The weight an estimator learns this label with (``paced``: it ``takes_pace``);
        ``label_weight`` of the event it came from."""
        return self.pace if paced and self.w == 1.0 else self.w


@dataclass(frozen=True)
class CandidateResult:
    """One candidate: its state at ``train_upto`` and how it did on the holdout.

    ``correct`` is its per-event outcome on the holdout: right or wrong (classification), the
    absolute error (regression); ``paired`` the comparison with the champion (``a`` = champion, ``b`` = this candidate), None without one.
    """

    index: int
    id: str
    spec: Any
    kind: str
    state: LearnerState
    metrics: ClassificationMetrics | RegressionMetrics
    correct: tuple[bool, ...] | tuple[float, ...]
    paired: PairedCounts | PairedErrors | None
    train_seconds: float
    eval_seconds: float

    @property
    def paired_test(self) -> tuple[float, float] | None:
        """``(statistic, p_value)`` of the paired test against the champion: McNemar's for a
        classifier (``PairedCounts``), Wilcoxon's signed-rank for a regressor (``PairedErrors``).
        (It was named ``mcnemar``, which a regressor's Wilcoxon answer belied.)"""
        return self.paired.test() if self.paired is not None else None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "index": self.index,
            "id": self.id,
            "version": self.state.version,
            "kind": self.kind,
            "spec": copy.deepcopy(self.spec),
            "metrics": self.metrics.to_dict(),
            "vs_champion": self.paired.to_dict() if self.paired is not None else None,
            "train_seconds": round(self.train_seconds, 3),
            "eval_seconds": round(self.eval_seconds, 3),
        }
        if self.kind != RIVER:
            # what the spec alone does not say: the columns the estimator was trained on
            estimator = self.state.estimator
            out["inputs"] = {
                "features": list(estimator.features),
                "categories": {k: list(v) for k, v in estimator.categories.items()},
                "classes": list(estimator.classes),
            }
        return out


@dataclass(frozen=True)
class ChampionResult:
    version: str
    metrics: ClassificationMetrics | RegressionMetrics
    correct: tuple[bool, ...] | tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "metrics": self.metrics.to_dict()}


@dataclass(frozen=True)
class RefitResult:
    """What a refit produced. Seq ranges are inclusive: ``(first_seq, last_seq)``."""

    model: str
    metric: str
    passes: int
    train: tuple[int, int]
    holdout: tuple[int, int]
    train_labels: int
    holdout_labels: int
    labels_by_source: Mapping[str, int]
    candidates: tuple[CandidateResult, ...]
    champion: ChampionResult | None
    best: int
    best_beats_champion: bool
    max_rows: int | None = None
    labels_available: int = 0
    # Corrections in the range read, and label rows whose label a correction replaced.
    corrections: int = 0
    corrections_applied: int = 0
    retractions: int = 0  # retraction events read: their chains are not trained on
    # labels_follow_answer: holdout labels learnt but not scored, another version (or none)
    # having answered them; ``holdout_labels`` counts those scored.
    holdout_excluded: int = 0

    @property
    def train_upto(self) -> int:
        """The seq of the last train event: the candidates' states include the log up to it."""
        return self.train[1]

    @property
    def best_candidate(self) -> CandidateResult:
        return self.candidates[self.best]

    @property
    def best_state(self) -> LearnerState:
        """The best candidate's state at ``train_upto``, untouched by the evaluation."""
        return self.candidates[self.best].state

    @property
    def best_spec(self) -> Any:
        return copy.deepcopy(self.candidates[self.best].spec)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe summary (no model states), e.g. for a job's result."""
        return {
            "model": self.model,
            "metric": self.metric,
            "passes": self.passes,
            "train": {
                "first_seq": self.train[0],
                "last_seq": self.train[1],
                "labels": self.train_labels,
                "labels_by_source": dict(self.labels_by_source),
            },
            "holdout": {
                "first_seq": self.holdout[0],
                "last_seq": self.holdout[1],
                "labels": self.holdout_labels,
                "excluded_not_champion": self.holdout_excluded,
            },
            "champion": self.champion.to_dict() if self.champion is not None else None,
            "candidates": [c.to_dict() for c in self.candidates],
            "best": self.best,
            "best_beats_champion": self.best_beats_champion,
            "max_rows": self.max_rows,
            "labels_available": self.labels_available,
            "corrections": {"events": self.corrections, "applied": self.corrections_applied},
            "retractions": self.retractions,
        }


def refit(
    store: Store,
    model: str,
    *,
    schema: Schema,
    task: str,
    classes: Sequence[Hashable] | None,
    champion_state_at: Callable[[int], LearnerState | None] | None,
    candidates: Sequence[Candidate | Mapping[str, Any] | str],
    passes: int = 1,
    holdout: float = 0.2,
    metric: str = "accuracy",
    upto: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    min_labels: int = MIN_LABELS,
    max_rows: int | None = None,
    should_stop: StopCheck | None = None,
    labels_follow_answer: bool = False,
) -> RefitResult:
    """Train ``candidates`` on the label events of ``model``'s log up to ``upto`` (default: the
    head) and compare them with the champion on the newest ``holdout`` fraction of them.

    ``champion_state_at(seq)`` returns the champion's state at ``seq`` (a copy the refit may
    change), or None when there is no champion yet; then there is no paired test and the best
    candidate beats it by default. ``metric`` picks the best candidate: ``accuracy``,
    ``log_loss``, ``macro_f1`` (classification), ``mae``, ``rmse`` (regression).
    ``progress(done, total)`` is called as events are processed, for a progress bar.
    ``max_rows``: only the newest label events, at most that many (None: all).
    ``should_stop()``: a reason to stop now, or None; checked often (see the module docstring).
    ``labels_follow_answer``: the holdout scores only the labels of requests the champion
    answered (a label of another version's answer says how the world took *that* answer); every
    model still learns every holdout label in turn, as in production.

    Raises :class:`NotEnoughData` with fewer than ``min_labels`` label events, and
    :class:`~onlearn.errors.ConfigError` for a bad candidate or option, naming it.
    """
    task = _check_options(task, candidates, passes, holdout, metric, min_labels)
    if max_rows is not None and (
        isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < min_labels
    ):
        raise ConfigError(f"refit max_rows must be an integer >= {min_labels}, got {max_rows!r}")
    stop = should_stop or _never
    head = store.log.head(model)
    upto = head if upto is None else min(upto, head)
    start_seq, labelled, available, fixes = _load(store, model, schema, upto, max_rows, stop)
    if len(labelled) < min_labels:
        raise NotEnoughData(
            f"model {model!r} has {len(labelled)} label events up to seq {upto}; a refit needs "
            f"at least {min_labels} (train on the older {1 - holdout:.0%}, evaluate on the rest)"
        )
    n_train = min(len(labelled) - 1, max(1, round(len(labelled) * (1 - holdout))))
    train, test = labelled[:n_train], labelled[n_train:]
    train_upto = train[-1].seq

    classes = tuple(classes) if classes is not None else None
    models = [
        _build(i, spec, task, schema, classes, train, start_seq)
        for i, spec in enumerate(candidates)
    ]
    rewrite = fixes.rewrite({e.seq for e in labelled})
    ids = [c.id if isinstance(c, Candidate) else candidate_id(c) for c in candidates]

    champion = champion_state_at(train_upto) if champion_state_at is not None else None
    if champion is not None and champion.seq != train_upto:
        raise ValueError(
            f"champion_state_at({train_upto}) returned the state of {champion.version} at seq "
            f"{champion.seq}; the comparison needs it at seq {train_upto}"
        )
    scored = None  # every holdout label is scored
    if labels_follow_answer and champion is not None:
        scored = _answered_by(test, champion.version, model)
    total = sum(len(train) * (1 if kind == SKLEARN_BATCH else passes) for _, kind, _ in models)
    total += len(test) * (len(models) + (champion is not None))
    ticker = _Progress(progress, total, stop)

    train_seconds = []
    for _, kind, state in models:
        started = time.perf_counter()
        _train(store, model, schema, kind, state, train, train_upto, passes, ticker, stop, rewrite)
        train_seconds.append(time.perf_counter() - started)

    champion_result = None
    if champion is not None:
        metrics, correct = _evaluate(champion, test, batch=False, ticker=ticker, scored=scored)
        champion_result = ChampionResult(champion.version, metrics, correct)

    results = []
    for i, ((spec, kind, state), train_s) in enumerate(zip(models, train_seconds, strict=True)):
        started = time.perf_counter()
        evaluated = copy.deepcopy(state)  # the state returned stays at train_upto
        metrics, correct = _evaluate(
            evaluated, test, batch=kind == SKLEARN_BATCH, ticker=ticker, scored=scored
        )
        paired = None
        if champion_result is not None:
            if task == "classification":
                paired = PairedCounts.from_correct(list(champion_result.correct), list(correct))
            else:
                paired = PairedErrors.from_errors(list(champion_result.correct), list(correct))
        results.append(
            CandidateResult(
                index=i,
                id=ids[i],
                spec=copy.deepcopy(spec),
                kind=kind,
                state=state,
                metrics=metrics,
                correct=correct,
                paired=paired,
                train_seconds=train_s,
                eval_seconds=time.perf_counter() - started,
            )
        )
    ticker.finish()

    higher = METRICS[metric][1]
    scores = [_score(r.metrics, metric, higher) for r in results]
    best = max(range(len(results)), key=lambda i: (scores[i], -i))
    if champion_result is None:
        beats = True
    else:
        beats = scores[best] > _score(champion_result.metrics, metric, higher)
    return RefitResult(
        model=model,
        metric=metric,
        passes=passes,
        train=(train[0].seq, train_upto),
        holdout=(test[0].seq, test[-1].seq),
        train_labels=len(train),
        holdout_labels=len(test) if scored is None else len(scored),
        labels_by_source=dict(Counter(e.source for e in train)),
        candidates=tuple(results),
        champion=champion_result,
        best=best,
        best_beats_champion=beats,
        max_rows=max_rows,
        labels_available=available,
        corrections=fixes.corrections,
        corrections_applied=sum(fixes.replaced(e.seq) for e in labelled),
        retractions=fixes.retractions,
        holdout_excluded=0 if scored is None else len(test) - len(scored),
    )


# ---------------------------------------------------------------------------------------------
# steps


def _check_options(
    task: str,
    candidates: Sequence[Any],
    passes: int,
    holdout: float,
    metric: str,
    min_labels: int,
) -> str:
    if task not in TASKS:
        raise ConfigError(f"task must be one of {', '.join(map(repr, TASKS))}, got {task!r}")
    task = TASKS[TASKS.index(task)]
    if isinstance(candidates, str | Mapping | Candidate) or not candidates:
        raise ConfigError("a refit needs a list of at least one candidate pipeline table")
    if isinstance(passes, bool) or not isinstance(passes, int) or passes < 1:
        raise ConfigError(f"refit passes must be a positive integer, got {passes!r}")
    if (
        isinstance(holdout, bool)
        or not isinstance(holdout, int | float)
        or not 0 < holdout < 1
        or not math.isfinite(holdout)
    ):
        raise ConfigError(
            f"refit holdout must be a fraction strictly between 0 and 1, got {holdout!r}"
        )
    if metric not in METRICS or METRICS[metric][0] != task:
        names = [m for m, (t, _) in METRICS.items() if t == task]
        raise ConfigError(f"refit metric for {task} must be one of {names}, got {metric!r}")
    if isinstance(min_labels, bool) or not isinstance(min_labels, int) or min_labels < 2:
        raise ConfigError(f"min_labels must be an integer >= 2, got {min_labels!r}")
    return task


def _load(
    store: Store,
    model: str,
    schema: Schema,
    upto: int,
    max_rows: int | None,
    stop: StopCheck,
) -> tuple[int, list[_Labelled], int, TrainingLabels]:
    """The seq before the first label event kept (0 unless the log was trimmed or ``max_rows``
    left older ones out), the newest ``max_rows`` label events up to ``upto`` with the model's
    input as river gets it and corrections applied (a corrected label replaces the label of
    the row it corrects; the correction is not a row of its own, unless what it corrects is
    out of the range), how many label events there were in all, and the corrections read."""
    kept: collections.deque[_Labelled] = collections.deque(maxlen=max_rows)
    fixes = TrainingLabels()
    available = 0
    after = 0
    start_seq: int | None = None
    while after < upto:
        _check(stop)
        events = store.log.read(model, after=after, limit=REPLAY_PAGE)
        if not events:
            break
        if start_seq is None:
            start_seq = events[0].seq - 1
        for event in events:
            if event.seq > upto:
                break
            if event.kind is EventKind.RETRACT:  # a withdrawn label: its chain is left out
                fixes.add(event)
            elif event.kind is EventKind.LABEL:
                payload = event.payload
                available += 1
                fixes.add(event)
                kept.append(
                    _Labelled(
                        event.seq,
                        schema.model_input(payload["features"]),
                        payload["label"],
                        payload.get("source") or "app",
                        event_weight(payload),
                        payload.get("answered_by"),
                        event_pace(payload),
                    )
                )
        after = events[-1].seq
    seqs = {e.seq for e in kept}
    labelled = [
        dataclasses.replace(e, y=fixes.label_of(e.seq, e.y)) if fixes.replaced(e.seq) else e
        for e in kept
        if not fixes.dropped(e.seq, seqs)
    ]
    if max_rows is not None and available > len(kept):
        # Older label events were left out: the candidates start after them, as if the log
        # began with the first one kept (control events in between change no learner state).
        start_seq = kept[0].seq - 1
    return (start_seq or 0), labelled, available, fixes


def _answered_by(test: list[_Labelled], version: str, model: str) -> set[int]:
    """The seqs of the holdout labels of requests ``version`` answered: the ones scored."""
    kept = {e.seq for e in test if e.answered_by == version}
    if not kept:
        raise NotEnoughData(
            f"model {model!r} has labels_follow_answer = true, and none of the {len(test)} "
            f"holdout labels (seq {test[0].seq} to {test[-1].seq}) follows an answer of the "
            f"champion {version}: the holdout keeps only those; label predictions it answered "
            "(feedback with their prediction_id), or raise the holdout share"
        )
    return kept


def _never() -> None:
    return None


def _check(stop: StopCheck) -> None:
    reason = stop()
    if reason is not None:
        raise Interrupted(reason)


def _build(
    index: int,
    spec: Mapping[str, Any] | str,
    task: str,
    schema: Schema,
    classes: tuple | None,
    train: list[_Labelled],
    start_seq: int,
) -> tuple[Any, str, LearnerState]:
    version = f"candidate-{index}"
    if isinstance(spec, Candidate):
        spec = spec.table
    try:
        if isinstance(spec, Mapping) and "sklearn" in spec:
            if task != "classification":
                raise ConfigError("scikit-learn candidates are classifiers; this model regresses")
            estimator = sklearn_from_spec(
                spec,
                features=schema.numeric,
                # undeclared classes: those of the train events, first seen first
                classes=classes
                if classes is not None
                else tuple(dict.fromkeys(e.y for e in train)),
                categories=_vocabulary(schema, train),
            )
            kind = (
                SKLEARN_INCREMENTAL if isinstance(estimator, SklearnIncremental) else SKLEARN_BATCH
            )
            spec = copy.deepcopy(dict(spec))
        else:
            pipeline = PipelineSpec.from_config(spec)
            estimator = build_pipeline(
                pipeline,
                task=task,
                numeric=schema.numeric,
                categorical=schema.categorical,
                classes=classes,
            )
            kind = RIVER
            spec = pipeline.to_config()
    except ConfigError as exc:
        raise ConfigError(f"refit candidates[{index}]: {exc}") from exc
    return spec, kind, LearnerState(version, task, estimator, seq=start_seq)


def _vocabulary(schema: Schema, train: list[_Labelled]) -> dict[str, tuple]:
    out = {}
    for name in schema.categorical:
        declared = schema[name].values
        if declared is not None:
            out[name] = tuple(declared)
            continue
        counts: Counter = Counter()
        for e in train:
            value = e.x.get(name)
            if value is not None:
                try:
                    counts[(value.__class__ is bool, value)] += 1
                except TypeError:  # unhashable values cannot be one-hot columns
                    pass
        # most frequent first; Counter keeps first-seen order among equal counts
        out[name] = tuple(value for (_, value), _ in counts.most_common(MAX_CATEGORIES))
    return out


def _train(
    store: Store,
    model: str,
    schema: Schema,
    kind: str,
    state: LearnerState,
    train: list[_Labelled],
    train_upto: int,
    passes: int,
    ticker: _Progress,
    stop: StopCheck,
    rewrite: Callable[[Event], Event | None] | None = None,
) -> None:
    if kind == RIVER:
        label_seqs = {e.seq for e in train}
        replay(
            store,
            model,
            schema,
            state,
            upto=train_upto,
            on_event=lambda seq: ticker.add(1) if seq in label_seqs else None,
            rewrite=rewrite,
        )
        estimator = state.estimator
        takes, paced = takes_weight(estimator), takes_pace(estimator)
        for _ in range(passes - 1):
            for e in train:
                try:
                    learn_weighted(estimator, dict(e.x), e.y, e.weight(paced), takes, e.pace)
                except Exception:  # as replay: an event a model cannot learn is skipped
                    pass
                ticker.add(1)
        state.seq = train_upto
        return
    estimator = state.estimator
    known = set(estimator.classes)
    usable = [e for e in train if _is_known(e.y, known)]
    state.learn_errors += len(train) - len(usable)
    if kind == SKLEARN_BATCH:
        if usable:
            # One call into compiled code that cannot check a stop flag: run where it can be
            # killed (a child process), and take back the fitted estimator.
            state.estimator = estimator = run_stoppable(
                _fit_many,
                estimator,
                [e.x for e in usable],
                [e.y for e in usable],
                [e.w for e in usable],
                should_stop=stop,
            )
        ticker.add(len(train))
    else:
        step = estimator.batch_size
        for _ in range(passes):
            for start in range(0, len(usable), step):
                chunk = usable[start : start + step]
                estimator.learn_many(
                    [e.x for e in chunk], [e.y for e in chunk], [e.w for e in chunk]
                )
                ticker.add(len(chunk))
            ticker.add(len(train) - len(usable))
    state.seq = train_upto


def _fit_many(estimator: Any, rows: list, labels: list, weights: list) -> Any:
    """In a child process (:func:`~onlearn.background.stoppable.run_stoppable`): the estimator, fitted."""
    estimator.fit_many(rows, labels, weights)
    return estimator


def _is_known(label: Any, known: set) -> bool:
    try:
        return label in known
    except TypeError:
        return False


def _evaluate(
    state: LearnerState,
    test: list[_Labelled],
    *,
    batch: bool,
    ticker: _Progress,
    scored: set[int] | None = None,
) -> tuple[ClassificationMetrics | RegressionMetrics, tuple[bool, ...] | None]:
    """Prequential: predict, score, then learn, event by event (``state`` is changed).
    ``scored``: the seqs to score (None: all); the others are only learnt.

    ``batch``: a batch-only scikit-learn model, which learns nothing, answers every event in one
    call.
    """
    classification = state.task == "classification"
    metrics = ClassificationMetrics() if classification else RegressionMetrics()
    correct: list = []
    takes = not batch and takes_weight(state.estimator)
    paced = takes and takes_pace(state.estimator)
    if batch:
        probas = state.estimator.predict_proba_many([e.x for e in test])
        answers = [((max(p, key=p.get) if p else None), p) for p in probas]
    for i, e in enumerate(test):
        if batch:
            y_pred, proba = answers[i]
        else:
            try:
                y_pred, proba = state.predict(dict(e.x))
            except Exception:  # counted as a wrong answer, as a model that cannot answer
                y_pred, proba = None, None
        if scored is None or e.seq in scored:
            metrics.update(e.y, y_pred, proba)
            if classification:
                correct.append(y_pred is not None and y_pred == e.y)
            else:
                correct.append(absolute_error(e.y, y_pred))
        if not batch:
            try:
                learn_weighted(state.estimator, dict(e.x), e.y, e.weight(paced), takes, e.pace)
            except Exception:  # as replay: an event a model cannot learn is skipped
                state.learn_errors += 1
        state.seq = e.seq
        ticker.add(1)
    return metrics, tuple(correct)


def _score(metrics: ClassificationMetrics | RegressionMetrics, metric: str, higher: bool) -> float:
    """The metric as a number where higher is better (None, NaN: the worst)."""
    value = getattr(metrics, metric)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return -math.inf
    return value if higher else -value


class _Progress:
    """Calls ``callback(done, total)`` about every half percent of the work, and at the end; asks
    ``stop`` every :data:`_STOP_EVERY` events."""

    def __init__(
        self, callback: Callable[[int, int], None] | None, total: int, stop: StopCheck = _never
    ) -> None:
        self.callback = callback
        self.total = total
        self.done = 0
        self.stop = stop
        self._step = max(1, total // 200)
        self._next = 0
        self._next_check = _STOP_EVERY
        if callback is not None:
            callback(0, total)
            self._next = self._step

    def add(self, n: int) -> None:
        self.done += n
        if self.done >= self._next_check:
            self._next_check = self.done + _STOP_EVERY
            _check(self.stop)
        if self.callback is not None and self.done >= self._next and self.done < self.total:
            self.callback(self.done, self.total)
            self._next = self.done + self._step

    def finish(self) -> None:
        if self.callback is not None:
            self.callback(self.total, self.total)


_STOP_EVERY = 8
"""Events between two looks at the stop check. A look costs well under a microsecond (the
worker's check reads a flag and the clock), an event of a forest of 50 trees ~15 ms: a stop is
seen within a fraction of a second whatever the model."""
