"""The ML backend Label Studio calls, for every model of an engine: health, setup, predict and
webhook bodies in (as Label Studio sends them), answers out, through the engine's predict,
feedback and retraction. The translation itself is :mod:`onlearn.label_studio.protocol`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from onlearn.config import Task
from onlearn.errors import FieldError, LabelConflict, SchemaViolation
from onlearn.label_studio.protocol import (
    CREATED,
    DELETED,
    LEARNED,
    UPDATED,
    Binding,
    annotation_event_id,
    annotation_label,
    bind,
    feedback_item,
    model_version,
    not_classification,
    project_uid,
    task_features,
)
from onlearn.records import FeedbackItem, LabelSource
from onlearn.registry import CHAMPION
from onlearn.runtime import ModelRuntime


class LabelStudioBackend:
    """Label Studio's ML backend over an :class:`~onlearn.engine.Engine`. Stateless: the label
    config comes with every call (setup, predict, webhook), so any replica answers any call."""

    def __init__(self, engine, *, max_tasks: int = 10_000) -> None:
        self.engine = engine
        self.max_tasks = max_tasks

    def _classifier(self, name: str) -> ModelRuntime:
        rt = self.engine.runtime(name)
        if rt.config.task is not Task.CLASSIFICATION:
            raise not_classification(name)
        return rt

    def version(self, rt: ModelRuntime) -> str:
        return model_version(rt.roles[CHAMPION], rt.seq)

    def health(self, name: str) -> dict[str, Any]:
        rt = self._classifier(name)
        return {
            "status": "UP",
            "model_class": "onlearn",
            "model": name,
            "model_version": self.version(rt),
        }

    def setup(self, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Check the label config against the model (a 422 naming what does not match) and
        answer the model version."""
        rt = self._classifier(name)
        bind(body.get("schema"), rt.config, ("body", "schema"))
        return {"model_version": self.version(rt)}

    def train(self, name: str) -> dict[str, Any]:
        """Label Studio's *Start Training*: nothing to start, each annotation was learned as it
        came (a refit is the worker's, `POST /models/{name}/retrain`, an admin's call)."""
        rt = self._classifier(name)
        return {
            "status": "ok",
            "job": None,
            "model_version": self.version(rt),
            "detail": "onlearn learns each annotation as it comes: nothing to start",
        }

    def _at_most(self, items: list, loc: tuple, what: str) -> None:
        # As a batch of predict or feedback: a bound on the work one call can ask.
        if len(items) > self.max_tasks:
            raise _violation(
                loc,
                "max_items",
                f"{loc[-1]} must hold at most {self.max_tasks} {what} ([limits] max_batch_rows), "
                f"got {len(items)}",
            )

    def predict(self, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """One prediction per task, in order: the choice of the answering version, ``score``
        its confidence. A task whose data does not fit the schema gets an empty result and an
        ``error`` (Label Studio stores an empty prediction; one bad row does not keep the
        others from their scores); when no task fits, the call is a 422 naming the fields."""
        rt = self._classifier(name)
        binding = bind(body.get("label_config"), rt.config, ("body", "label_config"))
        tasks = body.get("tasks")
        if not isinstance(tasks, list):
            raise _violation(("body", "tasks"), "list_type", "tasks must be a list of tasks")
        self._at_most(tasks, ("body", "tasks"), "tasks")
        project = body.get("project")
        rows, keys, at, failed = [], [], [], {}
        for i, task in enumerate(tasks):
            loc = ("body", "tasks", i)
            try:
                if not isinstance(task, Mapping) or not isinstance(task.get("data"), Mapping):
                    raise _violation((*loc, "data"), "dict_type", "task.data must be an object")
                features = task_features(task["data"], rt.schema)
                try:
                    rt.schema.validate(features)
                except SchemaViolation as e:
                    rt.count_violations(e)  # as a predict counts them (the monitor shows them)
                    raise e.at(*loc, "data") from None
            except SchemaViolation as e:
                failed[i] = e
                continue
            rows.append(features)
            # A task is routed like a keyed request: a canary answers the same tasks each time.
            task_id = task.get("id")
            keys.append(f"label-studio:{project}:{task_id}" if task_id is not None else None)
            at.append(i)
        if tasks and not rows:
            errors = [error for v in failed.values() for error in v.errors]
            raise SchemaViolation(errors, sum(v.omitted for v in failed.values()))
        predictions = self.engine.predict_many(name, rows, keys=keys) if rows else []
        results: list[dict[str, Any]] = [{} for _ in tasks]
        for i, prediction in zip(at, predictions, strict=True):
            results[i] = _result(binding, prediction, model_version(prediction.version, rt.seq))
        version = self.version(rt)
        for i, error in failed.items():
            results[i] = {
                "result": [],
                "score": None,
                "model_version": version,
                "error": str(error),
            }
        return {"results": results}

    async def webhook(self, name: str, body: Mapping[str, Any]) -> dict:
        """Learn from an annotation event: created is a first label, updated a correction,
        deleted a retraction. Other actions (Label Studio sends every action to the backend's
        webhook) are answered and ignored."""
        # The model first: an unknown one is a 404 whatever the action, never "ignored".
        rt = self._classifier(name)
        action = body.get("action")
        if not isinstance(action, str):
            raise _violation(("body", "action"), "string_type", "action must be a string")
        if action not in LEARNED:
            return {"status": "ignored", "action": action}
        project = body.get("project")
        uid = project_uid(project, ("body", "project"))
        binding = bind(project.get("label_config"), rt.config, ("body", "project", "label_config"))
        if action in DELETED:
            return await self._retract(name, body, uid)
        return await self._learn(name, rt, body, binding, uid, action)

    async def _retract(self, name: str, body: Mapping[str, Any], uid: str) -> dict:
        annotations = body.get("annotations", body.get("annotation"))
        if isinstance(annotations, Mapping):
            annotations = [annotations]
        if not isinstance(annotations, list):
            raise _violation(
                ("body", "annotations"), "list_type", "annotations must be a list of {id}"
            )
        self._at_most(annotations, ("body", "annotations"), "annotations")
        ids = [_annotation_id(a, ("body", "annotations", i)) for i, a in enumerate(annotations)]
        keys = [f"event:{annotation_event_id(uid, a)}" for a in ids]
        seqs = await self.engine.retract_async(name, keys, source=LabelSource.HUMAN.value)
        results = [
            {"annotation": a, "retracted": seq is not None, "seq": seq}
            for a, seq in zip(ids, seqs, strict=True)
        ]
        return {"status": "ok", "action": body["action"], "results": results}

    async def _learn(
        self,
        name: str,
        rt: ModelRuntime,
        body: Mapping[str, Any],
        binding: Binding,
        uid: str,
        action: str,
    ) -> dict:
        annotations, tasks = body.get("annotation"), body.get("task")
        bulk = action in CREATED and isinstance(annotations, list)  # ANNOTATIONS_CREATED
        if bulk:
            self._at_most(annotations, ("body", "annotation"), "annotations")
            tasks_at = {
                t["id"]: (t, ("body", "task", k))
                for k, t in enumerate(tasks if isinstance(tasks, list) else [])
                if isinstance(t, Mapping) and isinstance(t.get("id"), int | str)
            }
            pairs = [(a, *tasks_at.get(_task_id(a), (None, ("body", "task")))) for a in annotations]
        else:
            pairs = [(annotations, tasks, ("body", "task"))]
        items: list[FeedbackItem] = []
        task_locs: list[tuple] = []
        answers: list[tuple[dict[str, Any], FeedbackItem | None]] = []
        for i, (annotation, task, task_loc) in enumerate(pairs):
            loc = ("body", "annotation", i) if bulk else ("body", "annotation")
            if not isinstance(annotation, Mapping):
                raise _violation(loc, "dict_type", "annotation must be an object")
            answer: dict[str, Any] = {"annotation": _annotation_id(annotation, loc)}
            label = annotation_label(annotation, binding, loc)
            if label is None:
                answer["ignored"] = _why_ignored(annotation, binding)
                answers.append((answer, None))
                continue
            if not isinstance(task, Mapping):
                raise _violation(
                    task_loc, "dict_type", "task (the annotated task) must be an object"
                )
            item = feedback_item(
                annotation, task, label, rt.schema, uid, updated=action == UPDATED, loc=task_loc
            )
            items.append(item)
            task_locs.append(task_loc)
            answers.append((answer, item))
        if items:
            try:
                found = await self.engine.feedback_many_async(name, items)
            except SchemaViolation as e:  # at (item, "features", ...): say where in the body
                raise SchemaViolation(
                    [
                        FieldError((*task_locs[f.loc[0]], "data", *f.loc[2:]), f.rule, f.msg)
                        for f in e.errors
                    ],
                    e.omitted,
                ) from None
            results = iter(found)
            for answer, item in answers:
                if item is None:
                    continue
                result = next(results)
                if result.error is not None:
                    error = _in_label_studio_terms(result.error)
                    if len(items) == 1:
                        raise error  # one annotation: its conflict is the answer (409)
                    answer["error"] = {"detail": str(error)}
                    continue
                answer.update(result.to_dict(), label=item.label, labeller=item.labeller)
        return {"status": "ok", "action": action, "results": [a for a, _ in answers]}


def _in_label_studio_terms(error: Exception) -> Exception:
    """A label conflict says what to do in Label Studio: feedback's advice (send it again with
    ``"correction": true``) is no step a Label Studio user can take, while updating the
    annotation is (an update is learned as a correction)."""
    if not isinstance(error, LabelConflict):
        return error
    recorded = error.recorded
    return LabelConflict(
        f"label not used: this annotation is recorded with the label {recorded['label']!r} "
        f"(seq {recorded['seq']}); to change it, update the annotation in Label Studio (an "
        "update is learned as a correction)",
        recorded,
    )


def _result(binding: Binding, prediction, version: str) -> dict[str, Any]:
    probabilities = [p for p in (prediction.proba or {}).values() if isinstance(p, float | int)]
    score = float(max(probabilities, default=0.0))
    choice = binding.choice_of(prediction.label) if prediction.label is not None else None
    result = []
    if choice is not None:
        result.append(
            {
                "from_name": binding.tag.name,
                "to_name": binding.tag.to_name,
                "type": "choices",
                "value": {"choices": [choice]},
                "score": score,
            }
        )
    return {"result": result, "score": score, "model_version": version}


def _task_id(annotation: Any) -> int | str | None:
    task = annotation.get("task") if isinstance(annotation, Mapping) else None
    if isinstance(task, Mapping):  # an exported annotation nests its task
        task = task.get("id")
    return task if isinstance(task, int | str) else None


def _annotation_id(annotation: Any, loc: tuple) -> int | str:
    value = annotation.get("id") if isinstance(annotation, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int | str) or value == "":
        raise _violation((*loc, "id"), "missing", "annotation id is required")
    return value


def _why_ignored(annotation: Mapping[str, Any], binding: Binding) -> str:
    if annotation.get("was_cancelled"):
        return "skipped in Label Studio (was_cancelled): no label"
    return f'no choice of <Choices name="{binding.tag.name}"> in the annotation'


def _violation(loc: Sequence, rule: str, msg: str) -> SchemaViolation:
    return SchemaViolation([FieldError(tuple(loc), rule, msg)])


__all__ = ["LabelStudioBackend"]
