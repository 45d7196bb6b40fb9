"""Label Studio's ML backend protocol, translated to onlearn's predict and feedback.

Label Studio (community edition) calls an ML backend at a URL the user types, here
``http://HOST:PORT/label-studio/{model}``: ``GET health``, ``POST setup`` (the label config;
answers the model version), ``POST predict`` (tasks; one prediction per task) and ``POST
webhook`` (annotations created, updated, deleted). This module is that protocol without HTTP:

- the label config's ``<Choices>`` tag is bound to the model's classes (:func:`bind`): each
  choice names one class, every class has a choice, or the call is refused naming what does
  not match;
- a task's ``data`` holds the features; values imported from a CSV file arrive as strings and
  are read by the feature's type (:func:`task_features`);
- a prediction's ``score`` is the model's confidence (the highest probability), as Label Studio
  expects: tasks ordered by score, lowest first, is uncertainty sampling;
- ``model_version`` is the answering version and a learning epoch from the log position
  (:func:`model_version`), so it changes as the model learns and stale scores can be told apart;
- an annotation is a label from a person (source ``human``, the annotator as labeller), keyed by
  the annotation so that a webhook delivered twice is learned once; an update is a correction,
  a deletion a retraction (:mod:`onlearn.corrections`).

>>> model_version("v1", 0), model_version("v1", 37), model_version("v2", 5000)
('v1-0', 'v1-32', 'v2-4096')
"""

from __future__ import annotations

import functools
import math
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from onlearn.config import ModelConfig, Task
from onlearn.errors import FieldError, SchemaViolation
from onlearn.records import FeedbackItem, LabelSource

# The CSV reading rules of infer_schema, so that a column drafted as a number reads back as one.
from onlearn.schema import _FLOAT_RE, _INT_RE, _MISSING_TEXT, Feature, FeatureType, Schema

CREATED = ("ANNOTATION_CREATED", "ANNOTATIONS_CREATED")
UPDATED = "ANNOTATION_UPDATED"
# Label Studio sends ANNOTATIONS_DELETED (a list of ids); ANNOTATION_DELETED is the name the
# label-studio-ml-backend library lists: both are taken.
DELETED = ("ANNOTATIONS_DELETED", "ANNOTATION_DELETED")
LEARNED = (*CREATED, UPDATED, *DELETED)
EVENT_PREFIX = "label-studio"
# The learning epoch moves at each power of two of the log position up to this, then at each
# multiple of it: a young model changes with every few labels, an older one by many.
EPOCH_STEP = 1024
_TRUE = frozenset({"true", "yes", "1"})
_FALSE = frozenset({"false", "no", "0"})


def model_version(version: str, seq: int) -> str:
    """The version Label Studio sees: the onlearn version and its learning epoch, the log
    position rounded down (to a power of two below :data:`EPOCH_STEP`, to a multiple of it
    above). Predictions of an older epoch are stale: Label Studio asks again for tasks without
    a prediction of the current version."""
    if seq < 1:
        epoch = 0
    elif seq < EPOCH_STEP:
        epoch = 1 << (seq.bit_length() - 1)
    else:
        epoch = seq - seq % EPOCH_STEP
    return f"{version}-{epoch}"


# The label config


@dataclass(frozen=True)
class ChoicesTag:
    """A ``<Choices>`` tag: ``name`` is the result's ``from_name``, ``to_name`` its
    ``to_name``; ``choices`` are the values an annotation holds (a choice's ``alias`` if it has
    one, else its ``value``)."""

    name: str
    to_name: str
    choices: tuple[str, ...]
    multiple: bool


def _attr(element: ElementTree.Element, name: str) -> str | None:
    # Label Studio reads attribute names without regard to case (toName, toname).
    for key, value in element.attrib.items():
        if key.lower() == name.lower():
            return value
    return None


# Label configs are a few kB; a bigger one is parsed at each call rather than kept in the cache,
# where 64 of them up to the body limit (4 MB) would pin hundreds of MB for whoever sent them.
CACHED_CONFIG_CHARS = 65_536


def choices_tags(label_config: str, loc: tuple = ("label_config",)) -> tuple[ChoicesTag, ...]:
    """The ``<Choices>`` tags of a label config, in document order.

    >>> config = '<View><Text name="t" value="$text"/><Choices name="c" toName="t">'
    >>> config += '<Choice value="Yes" alias="pos"/><Choice value="No"/></Choices></View>'
    >>> choices_tags(config)
    (ChoicesTag(name='c', to_name='t', choices=('pos', 'No'), multiple=False),)
    """
    if len(label_config) > CACHED_CONFIG_CHARS:
        return _parse_choices(label_config, loc)
    return _cached_choices(label_config, loc)


def _parse_choices(label_config: str, loc: tuple) -> tuple[ChoicesTag, ...]:
    if "<!doctype" in label_config.lower() or "<!entity" in label_config.lower():
        # Entities are how XML bombs are built; a label config never needs them.
        raise _violation(loc, "xml", "the label config must not declare a DOCTYPE or entities")
    try:
        root = ElementTree.fromstring(label_config)
    except ElementTree.ParseError as e:
        raise _violation(loc, "xml", f"the label config is not valid XML: {e}") from None
    tags = []
    for element in root.iter():
        if not isinstance(element.tag, str) or element.tag.lower() != "choices":
            continue
        name, to_name = _attr(element, "name"), _attr(element, "toName")
        if not name or not to_name:
            raise _violation(
                loc, "xml", "a <Choices> tag of the label config has no name or toName"
            )
        values = tuple(
            _attr(c, "alias") or _attr(c, "value") or ""
            for c in element.iter()
            if isinstance(c.tag, str) and c.tag.lower() == "choice"
        )
        multiple = (_attr(element, "choice") or "single").lower() == "multiple"
        tags.append(ChoicesTag(name, to_name, values, multiple))
    return tuple(tags)


_cached_choices = functools.lru_cache(maxsize=64)(_parse_choices)


def class_text(label: Any) -> str:
    """How a class reads as a choice: booleans as JSON writes them, others as text.

    >>> class_text(True), class_text(3), class_text("pos")
    ('true', '3', 'pos')
    """
    if label.__class__ is bool:
        return "true" if label else "false"
    return str(label)


def _key(label: Any) -> tuple[bool, Any]:
    return (label.__class__ is bool, label)  # True and 1 are different classes


@dataclass(frozen=True)
class Binding:
    """A label config bound to a model: the ``<Choices>`` tag used, and choice <-> class."""

    tag: ChoicesTag
    to_class: Mapping[str, Any]
    _to_choice: Mapping[tuple[bool, Any], str]

    def choice_of(self, label: Any) -> str | None:
        return self._to_choice.get(_key(label))


def bind(label_config: Any, config: ModelConfig, loc: tuple) -> Binding:
    """Bind ``label_config`` to the model: the first ``<Choices>`` tag whose choices are the
    model's classes, one to one (a choice names a class by its text; ``true``/``false`` for a
    boolean class, in any case). A model without declared classes takes any single-choice tag,
    its choices as string labels. Raises SchemaViolation at ``loc`` naming what does not match.
    """
    if config.task is not Task.CLASSIFICATION:
        raise not_classification(config.name)
    if not isinstance(label_config, str) or not label_config.strip():
        raise _violation(loc, "missing", "the label config (Label Studio's XML) is required")
    tags = choices_tags(label_config, loc)
    if not tags:
        raise _violation(
            loc,
            "label_config",
            "the label config has no <Choices> tag: a classification model answers one choice "
            "among its classes",
        )
    problems = []
    for tag in tags:
        binding, problem = _bind_tag(tag, config.classes)
        if binding is not None:
            return binding
        problems.append(f'<Choices name="{tag.name}">: {problem}')
    classes = ", ".join(repr(class_text(c)) for c in config.classes or ())
    raise _violation(
        loc,
        "label_config",
        f"the label config does not fit model {config.name!r} (classes {classes}): "
        + "; ".join(problems),
    )


def _bind_tag(tag: ChoicesTag, classes: Sequence | None) -> tuple[Binding | None, str]:
    if tag.multiple:
        return None, 'choice="multiple" lets an annotator pick several; use choice="single"'
    if len(set(tag.choices)) != len(tag.choices) or "" in tag.choices:
        return None, "its choices must be distinct and non-empty"
    to_class: dict[str, Any] = {}
    if classes is None:
        to_class = {choice: choice for choice in tag.choices}
    else:
        unknown = []
        for choice in tag.choices:
            found = [c for c in classes if _names(choice, c)]
            if found:
                to_class[choice] = found[0]
            else:
                unknown.append(choice)
        taken = {_key(c) for c in to_class.values()}
        missing = [class_text(c) for c in classes if _key(c) not in taken]
        twice = len(taken) != len(to_class)
        if unknown or missing or twice:
            parts = []
            if unknown:
                parts.append(f"choices that are no class of the model: {_listed(unknown)}")
            if missing:
                parts.append(f"classes with no choice: {_listed(missing)}")
            if twice:
                parts.append("two choices name the same class")
            return None, "; ".join(parts)
    to_choice = {_key(label): choice for choice, label in to_class.items()}
    return Binding(tag, to_class, to_choice), ""


def _names(choice: str, label: Any) -> bool:
    if label.__class__ is bool:
        return choice.strip().lower() == class_text(label)
    return choice == class_text(label)


def _listed(values: Sequence[str]) -> str:
    return ", ".join(repr(v) for v in values)


# Task data -> features


def task_features(data: Mapping[str, Any], schema: Schema) -> dict[str, Any]:
    """The features of a task's ``data``: the keys the schema declares (a task may hold more,
    shown to the annotator), strings read by their feature's type, since a CSV file imported in
    Label Studio makes every value a string. What cannot be read stays as it came, for the
    schema to refuse with its own message.

    >>> schema = Schema.from_config(
    ...     {"x": {"type": "number"}, "n": {"type": "integer", "nullable": True},
    ...      "ok": {"type": "boolean"}, "c": {"type": "category", "values": [1, 2]}}
    ... )
    >>> task_features({"x": " 0.5", "n": "", "ok": "Yes", "c": "2", "text": "shown"}, schema)
    {'x': 0.5, 'n': None, 'ok': True, 'c': 2}
    >>> task_features({"x": "abc", "n": 3, "ok": False, "c": 1}, schema)
    {'x': 'abc', 'n': 3, 'ok': False, 'c': 1}
    """
    out = {}
    for name, value in data.items():
        if name not in schema:
            continue
        out[name] = read_text(schema[name], value) if isinstance(value, str) else value
    return out


def read_text(feature: Feature, text: str) -> Any:
    """A string read as ``feature``'s type; the string itself when it does not read as one."""
    kind = feature.type
    stripped = text.strip()
    low = stripped.lower()
    if kind in (FeatureType.NUMBER, FeatureType.INTEGER, FeatureType.BOOLEAN):
        if low in _MISSING_TEXT:
            return None
        if kind is FeatureType.BOOLEAN:
            return True if low in _TRUE else False if low in _FALSE else text
        if _INT_RE.fullmatch(stripped):
            try:
                return int(stripped)
            except ValueError:  # past Python's 4300 digits: no feature's value, the schema says so
                return text
        if _FLOAT_RE.fullmatch(stripped):
            value = float(stripped)
            return value if math.isfinite(value) else text
        return text
    if kind is FeatureType.CATEGORY and feature.values is not None:
        for value in feature.values:
            if not isinstance(value, str) and _names(stripped, value):
                return value
    return text


# Annotations -> feedback


def project_uid(project: Any, loc: tuple) -> str:
    """Label Studio's own id of a project, ``<id>.<creation time in s>``: ids start again in a
    new Label Studio database, the pair does not."""
    if not isinstance(project, Mapping):
        raise _violation(loc, "dict_type", "project must be an object (Label Studio's project)")
    pid = project.get("id")
    if isinstance(pid, bool) or not isinstance(pid, int | str) or pid == "":
        raise _violation(
            (*loc, "id"), "missing", "project.id (the Label Studio project) is required"
        )
    created = project.get("created_at")
    if isinstance(created, str):
        try:
            stamp = datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise _violation(
                (*loc, "created_at"), "datetime", "project.created_at must be an ISO 8601 time"
            ) from None
        return f"{pid}.{int(stamp)}"
    return str(pid)


def annotator(annotation: Mapping[str, Any], updated: bool) -> str | None:
    """Who labelled: Label Studio's user (an id in webhooks; an object with an email in
    exports), the one who updated for an update."""
    who = annotation.get("updated_by") if updated else None
    if who is None:
        who = annotation.get("completed_by")
    if isinstance(who, Mapping):
        who = who.get("email") or who.get("username") or who.get("id")
    if who is None or isinstance(who, bool) or not isinstance(who, int | str):
        return None
    return f"{EVENT_PREFIX}:user:{who}"[:200]


def annotation_label(annotation: Mapping[str, Any], binding: Binding, loc: tuple) -> Any:
    """The class an annotation chose in the bound tag, or None when it chose nothing there (a
    skipped task, or a result of other tags only)."""
    if annotation.get("was_cancelled"):
        return None
    result = annotation.get("result")
    if result is None:
        return None
    if not isinstance(result, list):
        raise _violation((*loc, "result"), "list_type", "annotation.result must be a list")
    for i, item in enumerate(result):
        if not isinstance(item, Mapping) or item.get("from_name") != binding.tag.name:
            continue
        value = item.get("value")
        choices = value.get("choices") if isinstance(value, Mapping) else None
        where = (*loc, "result", i, "value", "choices")
        if not isinstance(choices, list) or len(choices) != 1:
            raise _violation(where, "choices", "a classification annotation holds one choice")
        (choice,) = choices
        if not isinstance(choice, str) or choice not in binding.to_class:
            raise _violation(
                where,
                "allowed",
                f"choice {choice!r} is not one of the label config's choices "
                f"{_listed(list(binding.to_class))}",
            )
        return binding.to_class[choice]
    return None


def feedback_item(
    annotation: Mapping[str, Any],
    task: Mapping[str, Any],
    label: Any,
    schema: Schema,
    uid: str,
    *,
    updated: bool,
    loc: tuple,
) -> FeedbackItem:
    """The label of one annotation: features from its task's data, keyed by the annotation
    (an update corrects the label the same annotation gave before)."""
    data = task.get("data")
    if not isinstance(data, Mapping):
        raise _violation((*loc, "data"), "dict_type", "task.data (the features) must be an object")
    return FeedbackItem(
        label=label,
        features=task_features(data, schema),
        source=LabelSource.HUMAN.value,
        labeller=annotator(annotation, updated),
        event_id=annotation_event_id(uid, annotation["id"]),
        correction=updated,
    )


def annotation_event_id(uid: str, annotation_id: Any) -> str:
    return f"{EVENT_PREFIX}:{uid}:{annotation_id}"


def not_classification(model: str) -> SchemaViolation:
    return _violation(
        ("path", "name"),
        "task",
        f"model {model!r} is a regression model: Label Studio's ML backend serves "
        "classification models only (a choice among classes)",
    )


def _violation(loc: tuple, rule: str, msg: str) -> SchemaViolation:
    return SchemaViolation([FieldError(tuple(loc), rule, msg)])


__all__ = [
    "Binding",
    "ChoicesTag",
    "annotation_label",
    "annotator",
    "bind",
    "choices_tags",
    "class_text",
    "feedback_item",
    "model_version",
    "project_uid",
    "read_text",
    "task_features",
]
