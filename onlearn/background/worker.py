"""The training worker: jobs (refit, evaluate, snapshot) and the schedules around them
(snapshots, promotion gates with automatic rollback, retrain triggers).

A worker follows the log like a serving replica (it holds an Engine: the served versions'
states, their metrics and paired comparisons) but answers no request. Jobs are leased from the
JobQueue and extended by a heartbeat while they run; a worker that dies leaves its job to be
reclaimed after the lease, and everything a job writes is keyed by the job (version, control
event), so finishing twice has the effect of finishing once.

A running job stops at its next check (every few events of a refit, and about every
0.1 s while a scikit-learn ``fit`` runs in a child process) when it is cancelled
(``POST /jobs/{id}/cancel``), or when the worker is stopping (then it is handed back to the
queue, not counted as an attempt). Before it writes anything, a job *commits* in the store: from
then on it cannot be cancelled, and a cancelled job can no longer commit, so a cancelled job
registers nothing. An error that cannot go away (a bad option, a candidate that cannot be built,
too few labels) fails the job at once; only others are retried, with back-off.
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import threading
import time
import uuid
from typing import Any

from onlearn.background.importance import ImportanceWatch
from onlearn.background.promotion import Action, decide_promotion, decide_rollback
from onlearn.background.refit import NotEnoughData, refit
from onlearn.background.snapshotter import Snapshotter
from onlearn.background.webhook import WebhookSender
from onlearn.compare import PairedCounts, PairedErrors
from onlearn.drift.importance import ImportanceBudget
from onlearn.engine import Engine
from onlearn.errors import (
    ArtifactRejected,
    ConfigError,
    Interrupted,
    OnlearnError,
    SchemaViolation,
)
from onlearn.jobs import EVALUATE, JOB_KINDS, REFIT, SNAPSHOT, cancel_job, enqueue_refit, new_job
from onlearn.models import dump_signed, load_signed, sign_spec
from onlearn.records import Job, JobState, Snapshot
from onlearn.refit_options import resolve_options
from onlearn.registry import CANARY, CHALLENGER, CHAMPION, PREVIOUS, code_version
from onlearn.runtime import ModelRuntime
from onlearn.snapshots import check_snapshot_target, save_snapshot
from onlearn.two_sample import TwoSampleCounts, TwoSampleErrors, describe_ab

log = logging.getLogger(__name__)


class Worker:
    """Runs the jobs and schedules of the models ``engine`` serves.

    The worker process (``onlearn worker``) runs on an engine of scorecards
    (``Engine(learns=False)``): gates and triggers read the metrics and paired comparisons kept
    from the answers stored in label events, and snapshots are built by replay (see
    onlearn/background/snapshotter.py), so it learns a label only when it snapshots its model.
    ``replay_snapshots``: build snapshots by replay even though the engine's states learn. Inside
    a serving process the live states answer requests, and pickling a big one would hold their
    lock. Otherwise (a test's engine) the live states are pickled.
    ``importance``: the CPU budget of the feature importances computed with each snapshot of a
    version (onlearn/background/importance.py); None turns them off. ``webhooks``: the sender of
    their alarms (default: its own).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        name: str | None = None,
        replay_snapshots: bool = False,
        clock=None,
        importance: ImportanceBudget | None = ImportanceBudget(),
        webhooks: WebhookSender | None = None,
    ) -> None:
        self.engine = engine
        self.store = engine.store
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.replay_snapshots = replay_snapshots or not engine.learns
        self.snapshotter = Snapshotter(
            self.store, engine.secret, keep=engine.settings.engine.worker_cached_states
        )
        self.clock = clock or engine.clock
        # Importance alarms to the models' webhooks, off this loop (started at the first one).
        self.webhooks = webhooks or WebhookSender()
        # Feature importance drift, computed with each snapshot (None: off)
        self.importance = (
            None
            if importance is None
            else ImportanceWatch(
                self.store, budget=importance, clock=self.clock, webhooks=self.webhooks
            )
        )
        if self.importance is not None:
            # At start, not at the first snapshot: alarms a dead worker left queued go out now.
            for rt in engine.runtimes.values():
                self.importance.take_up(rt)
        es = engine.settings.engine
        self.lease_s = es.job_lease_s
        self.poll_s = es.worker_poll_s
        now = self.clock()
        self._snapshot_at: dict[str, tuple[int, float]] = {
            name: (rt.snapshot_seq, now) for name, rt in engine.runtimes.items()
        }
        self._retrain_at: dict[str, tuple[int, float]] = {
            name: (rt.seq, now) for name, rt in engine.runtimes.items()
        }
        self._alarm_seen: dict[str, int] = {name: rt.seq for name, rt in engine.runtimes.items()}
        self._gated: dict[str, int] = {}  # model -> the seq its gates were last checked at
        # (model, gate, a, b) -> the last planned look a gate tested: each look is tested once,
        # at its own share of alpha (promotion.Look). Lost on a restart, which costs at most
        # one extra test of the current look.
        self._looks: dict[tuple[str, str, str, str], int] = {}
        self._moved: dict[str, tuple[int, str | None]] = {}  # model -> (seq, performance_moved)
        self.handlers = {REFIT: self._refit, EVALUATE: self._evaluate, SNAPSHOT: self._snapshot}
        # Set when the worker must stop: a running job stops at its next check.
        self.stopping = threading.Event()

    # The loop

    def run(self, stop: threading.Event) -> None:
        log.info("worker %s: running", self.name)
        self.stopping = stop
        while not stop.is_set():
            try:
                busy = self.tick()
            except OnlearnError as e:
                log.warning("worker %s: %s; retrying", self.name, e)
                busy = False
            except Exception:
                log.exception("worker %s: tick failed; retrying", self.name)
                busy = False
            if not busy:
                stop.wait(self.poll_s)
        self.webhooks.close()

    def tick(self) -> bool:
        """One round: schedules, then at most one job. True when a job ran."""
        for rt in list(self.engine.runtimes.values()):
            self.snapshot_if_due(rt)
            self.check_gates(rt)
            self.check_triggers(rt)
        job = self.store.jobs.claim(
            self.name, lease_s=self.lease_s, now=self.clock(), kinds=JOB_KINDS
        )
        if job is None:
            return False
        self.run_job(job)
        return True

    def run_job(self, job: Job) -> Job | None:
        log.info(
            "worker %s: %s job %s for %r (attempt %d)",
            self.name,
            job.kind,
            job.job_id,
            job.model,
            job.attempts,
        )
        done = threading.Event()

        def heartbeat() -> None:
            while not done.wait(self.lease_s / 3):
                try:
                    if not self.store.jobs.heartbeat(
                        job.job_id, self.name, lease_s=self.lease_s, now=self.clock()
                    ):
                        log.warning("worker %s: lost the lease of job %s", self.name, job.job_id)
                        return
                except OnlearnError as e:
                    log.warning(
                        "worker %s: heartbeat of job %s failed: %s", self.name, job.job_id, e
                    )

        beat = threading.Thread(
            target=heartbeat, name=f"onlearn-heartbeat-{job.job_id[:8]}", daemon=True
        )
        beat.start()
        stop = _StopCheck(self, job.job_id)
        try:
            result = self.handlers[job.kind](job, stop)
        except Interrupted as e:
            return self._interrupted(job, stop, e)
        except PERMANENT as e:
            # It would fail the same way at every attempt: say why once, now.
            log.error("worker %s: job %s failed: %s", self.name, job.job_id, e)
            return self.store.jobs.fail(
                job.job_id, self.name, _describe(e), self.clock(), retry_in=None
            )
        except Exception as e:  # noqa: BLE001 - recorded on the job, retried with back-off
            if not isinstance(e, OnlearnError):
                log.exception("worker %s: job %s failed", self.name, job.job_id)
            else:
                log.warning("worker %s: job %s failed, to be retried: %s", self.name, job.job_id, e)
            retry_in = min(300.0, 5.0 * 2 ** max(job.attempts - 1, 0))
            return self.store.jobs.fail(
                job.job_id, self.name, _describe(e), self.clock(), retry_in=retry_in
            )
        finally:
            done.set()
            beat.join()
        return self.store.jobs.complete(job.job_id, self.name, result, self.clock())

    def _interrupted(self, job: Job, stop: _StopCheck, error: Interrupted) -> Job | None:
        if stop.cancelled:
            log.info("worker %s: job %s stopped: %s", self.name, job.job_id, error)
            return self.store.jobs.get(job.job_id)
        if self.stopping.is_set():
            # Not the job's fault: back to the queue, without counting the attempt.
            log.info("worker %s: stopping; job %s goes back to the queue", self.name, job.job_id)
            return self.store.jobs.release(job.job_id, self.name, self.clock())
        log.warning("worker %s: job %s stopped: %s", self.name, job.job_id, error)
        return self.store.jobs.get(job.job_id)

    # Jobs

    def _refit(self, job: Job, stop: _StopCheck | None = None) -> dict[str, Any]:
        """Refit candidates on the labelled history; register the best as challenger when it
        beats the champion on the holdout (or when asked to anyway). The options are checked
        again here, against this worker's config: a stored job is no more trusted than a
        request. The version and the control event are keyed by the job, so a job retried after
        its worker died registers one version."""
        stop = stop or _StopCheck(self, job.job_id)
        engine, model = self.engine, job.model
        rt = engine.runtime(model)
        config = rt.config
        options = resolve_options(job.params.get("options"), config)
        champion = rt.roles[CHAMPION]
        bar = _ProgressLog(model, job.job_id)
        result = refit(
            self.store,
            model,
            schema=config.schema,
            task=config.task.value,
            classes=config.classes,
            champion_state_at=lambda seq: engine.version_state(model, champion, seq),
            candidates=options.candidates,
            passes=options.passes,
            holdout=options.holdout,
            metric=options.metric,
            max_rows=options.max_rows,
            progress=bar,
            should_stop=stop,
            labels_follow_answer=config.labels_follow_answer,
        )
        summary = result.to_dict()
        best = result.best_candidate
        outcome = _outcome(result, champion)
        if not (result.best_beats_champion or options.register_anyway):
            return {"registered": None, "reason": outcome, "refit": summary}
        # From here on the job writes: commit first, so that a cancel either came before (and
        # nothing is written) or is refused (and everything is).
        if self.store.jobs.commit(job.job_id, self.name, self.clock()) is None:
            stop.refresh()
            raise Interrupted(stop.reason or "the job was cancelled or its lease was lost")
        spec = {
            "task": config.task.value,
            "pipeline": result.best_spec,
            "schema": config.schema.to_config(),
            "classes": list(config.classes) if config.classes is not None else None,
        }
        meta = {
            "source": "refit",
            "parent": champion,
            "base_seq": result.train_upto,
            "candidate": best.id,
            "trained_on": {
                "from_seq": result.train[0],
                "to_seq": result.train[1],
                "passes": result.passes,
                "labels": result.train_labels,
                "labels_available": result.labels_available,
                "max_rows": result.max_rows,
                "corrections_applied": result.corrections_applied,
            },
            "evaluated_on": {"from_seq": result.holdout[0], "to_seq": result.holdout[1]},
            "labels_by_source": dict(result.labels_by_source),
            "metrics_at_registration": best.to_dict()["metrics"],
            "champion_at_registration": summary.get("champion"),
            "beat_champion": result.best_beats_champion,
            "schema_fingerprint": config.schema.fingerprint(),
            "code": code_version(),
            "job_id": job.job_id,
            "reason": job.params.get("reason"),
        }
        info = self.store.registry.create_version(
            model,
            spec,
            meta,
            self.clock(),
            key=f"job:{job.job_id}",
            spec_signature=sign_spec(model, spec, engine.secret),
        )
        if (
            self.store.registry.latest_snapshot(model, info.version, max_seq=result.train_upto)
            is None
        ):
            state = result.best_state
            state.version = info.version
            save_snapshot(self.store, model, state, engine.secret)
        why = f"refit job {job.job_id}: {info.version} ({best.id}) {outcome}"
        if not result.best_beats_champion:
            asked = job.params.get("reason")
            why += "; registered anyway, as asked" + (f" ({asked})" if asked else "")
        seq = engine.change_roles(
            model,
            {CHALLENGER: info.version},
            actor=f"worker {self.name}",
            reason=why,
            key=f"challenger:{job.job_id}",
        )
        return {
            "registered": info.version,
            "beat_champion": result.best_beats_champion,
            "reason": why,
            "challenger_seq": seq,
            "refit": summary,
        }

    def _evaluate(self, job: Job, stop: _StopCheck | None = None) -> dict[str, Any]:
        """How a version compares with the champion on the labels both answered so far."""
        rt = self.engine.runtime(job.model)
        version = job.params.get("version") or rt.roles.get(CHALLENGER)
        champion = rt.roles[CHAMPION]
        if rt.config.labels_follow_answer:
            return self._evaluate_ab(rt, job.params.get("version") or rt.roles.get(CANARY))
        with rt.lock:
            state = rt.states.get(version)
            if state is None:
                return {
                    "version": version,
                    "error": "the version holds no role, so it has no live comparison",
                }
            paired = _copy(state.paired.get(champion)) or _empty_comparison(rt)
        decision = decide_promotion(rt.config.rollout, *_quality(paired), paired)
        return {
            "version": version,
            "champion": champion,
            "paired": paired.to_dict(),
            "decision": decision.to_dict(),
        }

    @staticmethod
    def _evaluate_ab(rt: ModelRuntime, version: str | None) -> dict[str, Any]:
        """``_evaluate`` when labels follow the answer: a canary against the champion, each on
        the labels of what it answered (an A/B test); a version that answers nothing is not
        compared, and the answer says why."""
        policy = rt.config.rollout
        with rt.lock:
            roles = dict(rt.roles)
            state = rt.states.get(version) if version is not None else None
            ab = _copy(getattr(state, "ab", None))
        champion = roles[CHAMPION]
        if version is None:
            return {
                "version": None,
                "champion": champion,
                "comparison": "ab",
                "error": "no canary answers a share of the traffic: with labels_follow_answer "
                "only versions that answer are compared (give one the canary role)",
            }
        answer = {
            "version": version,
            "champion": champion,
            "comparison": "ab",
            "ab": describe_ab(version, roles, ab, task=rt.config.task.value, alpha=policy.alpha),
        }
        if answer["ab"]["compared"]:
            comparison = ab.get(champion) if ab else None
            comparison = comparison or _empty_ab(rt)
            answer["decision"] = decide_promotion(policy, None, None, comparison).to_dict()
        return answer

    def _snapshot(self, job: Job, stop: _StopCheck | None = None) -> dict[str, Any]:
        rt = self.engine.runtime(job.model)
        return {"snapshots": self.write_snapshots(rt)}

    # Schedules

    def snapshot_if_due(self, rt: ModelRuntime) -> None:
        es = self.engine.settings.engine
        seq, at = self._snapshot_at.get(rt.name, (0, self.clock()))
        new = rt.seq - seq
        due = (es.snapshot_every_events and new >= es.snapshot_every_events) or (
            es.snapshot_every_s and new > 0 and self.clock() - at >= es.snapshot_every_s
        )
        if due:
            self.write_snapshots(rt)

    def write_snapshots(self, rt: ModelRuntime) -> dict[str, int]:
        """A snapshot of every version holding a role, off the request path."""
        written = {}
        estimators: dict[str, Any] = {}  # states of the written versions no one else uses
        if self.replay_snapshots:
            versions = set(rt.roles.values())
            self.snapshotter.forget(rt.name, versions)
            for version in sorted(versions):
                info = self.store.registry.get_version(rt.name, version)
                snapshot = self.snapshotter.advance(info)
                if snapshot is not None:
                    written[version] = snapshot.seq
                    estimators[version] = self.snapshotter.state(rt.name, version).estimator
        else:
            # Our own copies: pickling them holds only this process's lock, under which the
            # states are consistent; the writes happen outside it.
            with rt.apply_lock, rt.lock:
                blobs = {
                    v: (s.seq, dump_signed(s, self.engine.secret)) for v, s in rt.states.items()
                }
            for version, (seq, blob) in blobs.items():
                check_snapshot_target(self.store, rt.name, seq)  # never over a changed store
                latest = self.store.registry.latest_snapshot(rt.name, version)
                if latest is None or latest.seq < seq:
                    self.store.registry.put_snapshot(
                        Snapshot(rt.name, version, seq, self.clock(), blob)
                    )
                written[version] = seq
                if self._computes_importance(rt):  # a private copy: the live one learns meanwhile
                    estimators[version] = load_signed(blob, self.engine.secret).estimator
        if written:
            rt.note_snapshot(written.get(rt.roles.get(CHAMPION), rt.snapshot_seq))
        self._snapshot_at[rt.name] = (rt.seq, self.clock())
        self.trim(rt)
        self.update_importance(rt, estimators)
        return written

    def _computes_importance(self, rt: ModelRuntime) -> bool:
        """Importances are on in this worker and not turned off in the model's config."""
        return self.importance is not None and rt.config.monitor.importance.enabled

    def update_importance(self, rt: ModelRuntime, estimators: dict[str, Any]) -> None:
        """Importances of the versions just snapshotted; a failure costs them, not the snapshot."""
        estimators = {v: e for v, e in estimators.items() if e is not None}
        if not self._computes_importance(rt) or not estimators:
            return
        try:
            self.importance.update(rt, estimators)
        except Exception:
            log.exception("worker %s: feature importance of %s failed", self.name, rt.name)

    def trim(self, rt: ModelRuntime) -> int:
        """Bound the store: keep the newest ``keep_snapshots`` snapshots of each served version,
        and forget log events older than what those versions need, minus ``retain_events`` kept
        for refits, time travel and late duplicates."""
        es = self.engine.settings.engine
        registry = self.store.registry
        needed = []
        for version in sorted(set(rt.roles.values())):
            registry.prune_snapshots(rt.name, version, keep=es.keep_snapshots)
            latest = registry.latest_snapshot(rt.name, version)
            needed.append(latest.seq if latest else 0)
        upto = min(needed, default=0) - es.retain_events
        if upto <= 0:
            return 0
        trimmed = self.store.log.trim(rt.name, upto)
        if trimmed:
            log.info("model %r: trimmed %d log events up to seq %d", rt.name, trimmed, upto)
        return trimmed

    def check_gates(self, rt: ModelRuntime) -> None:
        """Automatic promotion of a challenger, and rollback of a champion that regressed."""
        # The comparisons change only with the log (labels, role changes): a model whose seq
        # did not move since its last check is not looked at again, so an idle round costs
        # little for a thousand models.
        if self._gated.get(rt.name) == rt.seq:
            return
        self._gated[rt.name] = rt.seq
        policy = rt.config.rollout
        if rt.config.labels_follow_answer:
            self._check_ab_gates(rt)
            return
        with rt.lock:
            roles = dict(rt.roles)
            champion = roles[CHAMPION]
            challenger, previous = roles.get(CHALLENGER), roles.get(PREVIOUS)
            vs_challenger = (
                _copy(rt.states[challenger].paired.get(champion)) if challenger else None
            )
            vs_previous = _copy(rt.states[champion].paired.get(previous)) if previous else None
        if previous is not None and vs_previous is not None:
            key = (rt.name, "rollback", previous, champion)
            decision = decide_rollback(
                policy,
                *reversed(_quality(vs_previous)),
                vs_previous,
                last_look=self._looks.get(key, -1),
            )
            self._took_look(key, decision)
            if decision.action is Action.ROLLBACK:
                log.warning(
                    "model %r: rolling back %s to %s: %s",
                    rt.name,
                    champion,
                    previous,
                    decision.reason,
                )
                self.engine.rollback(
                    rt.name,
                    actor=f"worker {self.name} (automatic)",
                    reason=f"automatic rollback: {decision.reason}",
                    key=f"auto-rollback:{rt.name}:{champion}:{previous}:{rt.seq // 1_000_000}",
                )
                return
        if challenger is None or vs_challenger is None or policy.policy != "auto":
            return
        key = (rt.name, "promote", champion, challenger)
        decision = decide_promotion(
            policy, *_quality(vs_challenger), vs_challenger, last_look=self._looks.get(key, -1)
        )
        self._took_look(key, decision)
        self._carry_out(rt, decision, CHALLENGER, challenger, champion)

    def _took_look(self, key: tuple[str, str, str, str], decision: Any) -> None:
        look = decision.evidence.get("look")
        if look and look["taken"]:
            self._looks[key] = max(self._looks.get(key, -1), look["index"])

    def _carry_out(
        self, rt: ModelRuntime, decision: Any, role: str, newcomer: str, champion: str
    ) -> None:
        """A gate's promote or reject of the ``role`` (challenger or canary) ``newcomer``; a
        hold does nothing. The keys make a decision taken twice (two workers) one change."""
        actor = f"worker {self.name} (automatic)"
        if decision.action is Action.PROMOTE:
            log.info(
                "model %r: promoting %s %s over %s: %s",
                rt.name,
                role,
                newcomer,
                champion,
                decision.reason,
            )
            self.engine.promote(
                rt.name,
                newcomer,
                CHAMPION,
                actor=actor,
                reason=f"automatic promotion: {decision.reason}",
                key=f"auto-promote:{rt.name}:{newcomer}:{champion}",
            )
        elif decision.action is Action.REJECT:
            log.info("model %r: dropping %s %s: %s", rt.name, role, newcomer, decision.reason)
            self.engine.change_roles(
                rt.name,
                {role: None},
                actor=actor,
                reason=f"{role} rejected: {decision.reason}",
                key=f"auto-reject:{rt.name}:{newcomer}:{champion}",
            )

    def _check_ab_gates(self, rt: ModelRuntime) -> None:
        """The gates of a model whose labels follow the answer. Only versions that answer can
        be compared (an A/B test): with an automatic policy a challenger becomes the canary
        (when none is live; the share as before, else 0.1), and the canary is promoted or
        dropped on the A/B test. No automatic rollback: the previous champion answers nothing,
        so nothing compares it with the new one (a person can still roll back)."""
        policy = rt.config.rollout
        if policy.policy != "auto":
            return
        with rt.lock:
            roles = dict(rt.roles)
            champion, canary = roles[CHAMPION], roles.get(CANARY)
            challenger = roles.get(CHALLENGER)
            ab = _copy(getattr(rt.states[canary], "ab", {}).get(champion)) if canary else None
            share = rt.canary_share or 0.1
        actor = f"worker {self.name} (automatic)"
        if canary is None:
            if challenger is not None:
                self.engine.change_roles(
                    rt.name,
                    {CHALLENGER: None, CANARY: challenger},
                    actor=actor,
                    reason=(
                        f"labels follow the answer: challenger {challenger} answers a share of "
                        f"{share:g} as a canary, to be compared with {champion} as an A/B test"
                    ),
                    canary_share=share,
                    key=f"auto-canary:{rt.name}:{challenger}:{champion}",
                )
            return
        key = (rt.name, "ab", champion, canary)
        decision = decide_promotion(
            policy, None, None, ab or _empty_ab(rt), last_look=self._looks.get(key, -1)
        )
        self._took_look(key, decision)
        self._carry_out(rt, decision, CANARY, canary, champion)

    def check_triggers(self, rt: ModelRuntime) -> Job | None:
        """Start a retrain when an alarm came, or when enough new labels or time passed AND the
        data or the performance moved; never within the cool-down of the last automatic one."""
        cfg = rt.config.retrain
        now = self.clock()
        last_seq, last_at = self._retrain_at.get(rt.name, (0, now))
        if now - last_at < cfg.cooldown_s and last_seq != 0:
            return None
        alarms = [a for a in rt.alarms if a["seq"] > self._alarm_seen.get(rt.name, 0)]
        reason = key = None
        if cfg.on_alarm and alarms:
            newest = alarms[-1]
            described = "; ".join(
                f"{a.get('kind', 'drift')} at seq {a['seq']}"
                + (f" ({a['detail']})" if a.get("detail") else "")
                for a in alarms[-5:]
            )
            reason = f"alarm{'s' if len(alarms) > 1 else ''}: {described}"
            key = f"retrain:{rt.name}:alarm:{newest['seq']}"
        else:
            count_due = cfg.every_labels and rt.seq - last_seq >= cfg.every_labels
            time_due = cfg.every_s and now - last_at >= cfg.every_s
            # The metrics change only with the log: the answer for this seq is kept.
            seen = self._moved.get(rt.name)
            if seen is None or seen[0] != rt.seq:
                seen = self._moved[rt.name] = (rt.seq, self.performance_moved(rt))
            moved = seen[1]
            if (count_due or time_due) and moved:
                reason = f"{'new labels' if count_due else 'schedule'} and {moved}"
                key = f"retrain:{rt.name}:auto:{rt.seq}"
        if reason is None:
            return None
        if alarms:
            self._alarm_seen[rt.name] = alarms[-1]["seq"]
        self._retrain_at[rt.name] = (rt.seq, now)
        return self.store.jobs.enqueue(
            new_job(REFIT, rt.name, {"reason": reason, "actor": "trigger"}, at=now, key=key)
        )

    @staticmethod
    def performance_moved(rt: ModelRuntime) -> str | None:
        """Why the performance moved (recent accuracy below the long-run one; for regression,
        recent mean absolute error above the long-run one by more than ``performance_margin``
        of it), or None."""
        regression = rt.config.task.value == "regression"
        quality = ("recent_mae", "mae") if regression else ("recent_accuracy", "accuracy")
        with rt.lock:
            served = rt.champion.metrics.served
            recent, overall = (getattr(served, name, None) for name in quality)
            n = served.n
            window = getattr(served, "RECENT", 0)
        margin = rt.config.retrain.performance_margin
        if recent is None or overall is None or n < 2 * window:
            return None
        if regression:
            if recent > overall * (1 + margin):
                return (
                    f"recent mean absolute error {recent:.4g} rose above the long-run "
                    f"{overall:.4g} by more than {100 * margin:g}%"
                )
            return None
        if recent < overall - margin:
            return f"recent accuracy {recent:.3f} fell below the long-run {overall:.3f} by more than {margin:g}"
        return None


PERMANENT = (ConfigError, SchemaViolation, NotEnoughData, ArtifactRejected)
"""Errors a retry cannot mend: the job fails at once with the reason."""


def _describe(error: Exception) -> str:
    if isinstance(error, NotEnoughData | SchemaViolation | ConfigError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def _outcome(result, champion: str) -> str:
    """What the holdout said, in words: who won, on what, by how much."""
    metric = result.metric
    best = getattr(result.best_candidate.metrics, metric, None)
    if result.champion is None:
        return f"had no champion to beat ({metric} {_fmt(best)} on the holdout)"
    theirs = getattr(result.champion.metrics, metric, None)
    numbers = f"{metric} {_fmt(best)} against {_fmt(theirs)} on the holdout"
    if result.best_beats_champion:
        return f"beat {champion}: {numbers}"
    if best == theirs:
        return f"did not beat {champion}, it tied: {numbers}"
    return f"did not beat {champion}: {numbers}"


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


class _StopCheck:
    """Why the running job must stop now, or None: the worker is stopping, or the job was
    cancelled (or another worker took it). Called every few events, so the store is
    asked at most every ``poll_s``."""

    poll_s = 1.0

    def __init__(self, worker: Worker, job_id: str) -> None:
        self._worker = worker
        self._job_id = job_id
        self._next_poll = time.monotonic() + self.poll_s
        self.reason: str | None = None
        self.cancelled = False

    def __call__(self) -> str | None:
        if self.reason is not None:
            return self.reason
        if self._worker.stopping.is_set():
            return "the worker is stopping"
        if time.monotonic() >= self._next_poll:
            self._next_poll = time.monotonic() + self.poll_s
            self.refresh()
        return self.reason

    def refresh(self) -> None:
        try:
            job = self._worker.store.jobs.get(self._job_id)
        except OnlearnError:  # the store is away for now: go on, the lease decides
            return
        if job is None or job.state is JobState.CANCELLED:
            self.cancelled = True
            self.reason = f"cancelled: {job.error}" if job is not None else "the job is gone"
        elif job.state is not JobState.RUNNING or job.worker != self._worker.name:
            self.reason = f"the job is now {job.state.value} (worker {job.worker})"


def _copy(paired: PairedCounts | PairedErrors | None) -> PairedCounts | PairedErrors | None:
    return None if paired is None else pickle.loads(pickle.dumps(paired))


def _empty_ab(rt: ModelRuntime) -> TwoSampleCounts | TwoSampleErrors:
    return TwoSampleErrors() if rt.config.task.value == "regression" else TwoSampleCounts()


def _empty_comparison(rt: ModelRuntime) -> PairedCounts | PairedErrors:
    return PairedErrors() if rt.config.task.value == "regression" else PairedCounts()


def _quality(paired: PairedCounts | PairedErrors) -> tuple[dict, dict]:
    """Both sides' quality on the same paired labels, incumbent (a) then newcomer (b): their
    accuracy, or for regression their mean absolute error."""
    if isinstance(paired, PairedErrors):
        return {"mae": paired.a_mae}, {"mae": paired.b_mae}
    return {"accuracy": paired.a_accuracy}, {"accuracy": paired.b_accuracy}


class _ProgressLog:
    """Refit progress as log lines (a worker has no terminal); every 10%."""

    def __init__(self, model: str, job_id: str) -> None:
        self.model, self.job_id, self._next = model, job_id, 0.0

    def __call__(self, done: int, total: int) -> None:
        share = done / total if total else 1.0
        if share >= self._next:
            log.info(
                "refit %s of %r: %d%% (%d/%d events)",
                self.job_id[:8],
                self.model,
                100 * share,
                done,
                total,
            )
            self._next = min(1.0, share + 0.1) if share < 1.0 else 2.0


__all__ = [
    "EVALUATE",
    "JOB_KINDS",
    "REFIT",
    "SNAPSHOT",
    "JobState",
    "Worker",
    "cancel_job",
    "enqueue_refit",
    "new_job",
]
