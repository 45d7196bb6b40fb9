"""Each served model typed in the OpenAPI document: its features, its labels, its operations.

The routes are declared once, generically (``/models/{name}/predict`` takes ``features`` of any
shape): FastAPI cannot know a model's schema, which is configuration. This module turns the
generic document into a typed one. Every operation whose body carries a model's features or
labels (:data:`TYPED`) gets a concrete path per model, ``/models/phishing/predict`` with
operationId ``predict_phishing``, whose body refers to that model's components
(``PhishingFeatures``, ``PhishingLabel``, ``PhishingPredictRequest``, ...), so a client generated
from the document is typed. The generic templates of those operations are then left out, and
the ``name`` of the other operations is an ``enum`` of the served models.

With more than ``[openapi] max_models`` models the main document stays generic (it would grow
by tens of kB a model) and says where each model's own document is:
:func:`model_document` builds it, with that one model typed.

The schemas say exactly what the server accepts (onlearn/schema.py, onlearn/labels.py, and for
the options serving/typed_options.py): schemathesis's negative-data check (tests/e2e/test_fuzz.py) sends
what they refuse and expects a 4xx, its positive-data check sends what they allow and expects
no 422.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Sequence
from typing import Any

from onlearn.config import ModelConfig, Task
from onlearn.schema import Feature, FeatureType, UnknownFields
from serving.typed_options import catalog_component, catalog_tables, claim_schema, retrain_schema

# template path -> (operationId prefix, request component, 200 response component)
TYPED: dict[str, tuple[str, str, str | None]] = {
    "/models/{name}/predict": ("predict", "PredictRequest", "PredictResponse"),
    "/models/{name}/predict/batch": (
        "predict_batch",
        "PredictBatchRequest",
        "PredictBatchResponse",
    ),
    "/models/{name}/feedback": ("feedback", "FeedbackRequest", None),
    "/models/{name}/feedback/batch": ("feedback_batch", "FeedbackBatchRequest", None),
    "/models/{name}/queue/claim": ("claim", "ClaimRequest", None),
    "/models/{name}/queue/{item_id}/label": ("label", "LabelRequest", None),
    "/models/{name}/retrain": ("retrain", "RetrainRequest", None),
}
QUEUE_ONLY = {"/models/{name}/queue/claim", "/models/{name}/queue/{item_id}/label"}
REF = "#/components/schemas/"
LABEL_TYPES = ["string", "integer", "boolean"]  # a class label (onlearn/labels.py)


def ref(name: str) -> dict[str, str]:
    return {"$ref": REF + name}


def feature_schema(feature: Feature) -> dict[str, Any]:
    """The JSON Schema of one feature's value, as :meth:`Schema.validate` takes it.

    An integer feature takes 42.0 as 42, as JSON Schema's ``integer`` does; a category without
    ``values`` takes any string, integer or boolean.
    """
    t = feature.type
    if t is FeatureType.CATEGORY:
        schema: dict[str, Any] = (
            enum_schema(feature.values) if feature.values is not None else {"type": LABEL_TYPES}
        )
    else:
        schema = {"type": t.value}
        if feature.min is not None:
            schema["minimum"] = feature.min
        if feature.max is not None:
            schema["maximum"] = feature.max
    if feature.nullable:
        # OpenAPI 3.1's form of nullable, the one FastAPI writes for Optional fields.
        return {"anyOf": [schema, {"type": "null"}]}
    return schema


def features_schema(config: ModelConfig, title: str) -> dict[str, Any]:
    schema = config.schema
    return {
        "title": title,
        "type": "object",
        "description": f"The features of model {config.name!r}. A nullable feature may be "
        "left out (it is then null); "
        + (
            "a feature the schema does not declare is refused."
            if schema.unknown_fields is UnknownFields.REJECT
            else "features the schema does not declare are dropped."
        ),
        "properties": {f.name: feature_schema(f) for f in schema.features},
        "required": [f.name for f in schema.features if not f.nullable],
        "additionalProperties": schema.unknown_fields is not UnknownFields.REJECT,
    }


def enum_schema(values: Sequence[Any]) -> dict[str, Any]:
    """``enum`` of the values; true and false as ``type: boolean``, the same set, since
    generators (openapi-python-client) take no boolean enum and drop every operation using it.

    >>> enum_schema([True, False]), enum_schema(["cat", "dog"])
    ({'type': 'boolean'}, {'enum': ['cat', 'dog']})
    """
    if len(values) == 2 and all(v.__class__ is bool for v in values) and len(set(values)) == 2:
        return {"type": "boolean"}
    return {"enum": list(values)}


def label_schema(config: ModelConfig, title: str) -> dict[str, Any]:
    if config.task is Task.REGRESSION:
        return {"title": title, "type": "number", "description": "The true value."}
    if config.classes is not None:
        return {"title": title, **enum_schema(config.classes), "description": "A class label."}
    return {"title": title, "type": LABEL_TYPES, "description": "A class label."}


def component_prefixes(names: Sequence[str]) -> dict[str, str]:
    """model name -> the prefix of its component names: ``fraud-v2`` -> ``FraudV2``.

    Component names allow ``[A-Za-z0-9._-]`` only; a name that loses its identity in the
    conversion (two models giving one prefix, non-ASCII letters) gets ``Model<n>``.
    """
    out: dict[str, str] = {}
    taken: set[str] = set()
    for i, name in enumerate(names):
        camel = "".join(p[:1].upper() + p[1:] for p in re.split(r"[-_]", name))
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", camel) or camel in taken:
            camel = f"Model{i}"
        taken.add(camel)
        out[name] = camel
    return out


def typed_components(config: ModelConfig, prefix: str, schemas: dict[str, Any]) -> None:
    """Add the components of one model to ``schemas`` (in place)."""
    p = prefix
    schemas[f"{p}Features"] = features_schema(config, f"{p}Features")
    schemas[f"{p}Label"] = label_schema(config, f"{p}Label")
    features, label = ref(f"{p}Features"), ref(f"{p}Label")

    predict = copy.deepcopy(schemas["PredictRequest"])
    predict["properties"]["features"] = {**features, "description": "The row to predict."}
    predict.pop("examples", None)
    predict["title"] = f"{p}PredictRequest"
    schemas[f"{p}PredictRequest"] = predict

    batch = copy.deepcopy(schemas["PredictBatchRequest"])
    batch["properties"]["rows"]["items"] = ref(f"{p}PredictRequest")
    batch["title"] = f"{p}PredictBatchRequest"
    schemas[f"{p}PredictBatchRequest"] = batch

    answer = copy.deepcopy(schemas["PredictResponse"])
    answer["properties"]["label"] = {
        "anyOf": [label, {"type": "null"}],
        "description": "The predicted label (null before the model learned any).",
    }
    answer["title"] = f"{p}PredictResponse"
    schemas[f"{p}PredictResponse"] = answer

    answers = copy.deepcopy(schemas["PredictBatchResponse"])
    answers["properties"]["predictions"]["items"] = ref(f"{p}PredictResponse")
    answers["title"] = f"{p}PredictBatchResponse"
    schemas[f"{p}PredictBatchResponse"] = answers

    feedback = copy.deepcopy(schemas["FeedbackRequest"])
    props = feedback["properties"]
    props["label"] = {**label, "description": props["label"].get("description", "")}
    props["features"] = {"anyOf": [features, {"type": "null"}], **_described(props["features"])}
    feedback.pop("examples", None)
    # The label belongs to a prediction (its id) or to features given inline: not both absent
    # or null. Said with `not` rather than an anyOf of two shapes, which generators turn into
    # two half models (openapi-python-client then drops them as duplicates).
    nothing = {"type": "null"}
    feedback["not"] = {"properties": {"prediction_id": nothing, "features": nothing}}
    feedback["title"] = f"{p}FeedbackRequest"
    schemas[f"{p}FeedbackRequest"] = feedback

    items = copy.deepcopy(schemas["FeedbackBatchRequest"])
    items["properties"]["items"]["items"] = ref(f"{p}FeedbackRequest")
    items["title"] = f"{p}FeedbackBatchRequest"
    schemas[f"{p}FeedbackBatchRequest"] = items

    if config.active is not None:
        labelled = copy.deepcopy(schemas["LabelRequest"])
        labelled["properties"]["label"] = {
            **label,
            "description": labelled["properties"]["label"].get("description", ""),
        }
        labelled["title"] = f"{p}LabelRequest"
        schemas[f"{p}LabelRequest"] = labelled
        schemas[f"{p}ClaimRequest"] = claim_schema(
            config, schemas["ClaimRequest"], f"{p}ClaimRequest"
        )

    shared = catalog_component(config.task.value)
    if shared not in schemas:
        schemas[shared] = catalog_tables(config.task.value)
    schemas[f"{p}RetrainRequest"] = retrain_schema(
        config, schemas["RetrainRequest"], f"{p}RetrainRequest"
    )


def _described(schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": schema["description"]} if "description" in schema else {}


def typed_paths(
    config: ModelConfig, prefix: str, templates: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """The concrete paths of one model, from the generic operations in ``templates``."""
    name = config.name
    paths: dict[str, dict[str, Any]] = {}
    for template, (verb, request, response) in TYPED.items():
        if template in QUEUE_ONLY and config.active is None:
            continue
        operations = templates.get(template)
        if operations is None:
            continue
        operation = copy.deepcopy(operations["post"])
        operation["operationId"] = f"{verb}_{name}"
        operation["tags"] = [*operation.get("tags", []), name]
        operation["parameters"] = [
            p
            for p in operation.get("parameters", [])
            if not (p["in"] == "path" and p["name"] == "name")
        ]
        if not operation["parameters"]:
            del operation["parameters"]
        body = operation["requestBody"]["content"]["application/json"]
        # In place of the generic body's reference: an optional body (a claim) stays optional.
        body["schema"] = retarget(body["schema"], request, prefix + request)
        if response is not None:
            ok = operation["responses"]["200"]["content"]["application/json"]
            ok["schema"] = ref(prefix + response)
        paths[template.replace("{name}", name)] = {"post": operation}
    return paths


def retarget(schema: Any, generic: str, typed: str) -> Any:
    """``schema`` with its references to the component ``generic`` pointed at ``typed``."""
    if isinstance(schema, dict):
        if schema.get("$ref") == REF + generic:
            return {**schema, "$ref": REF + typed}
        return {key: retarget(value, generic, typed) for key, value in schema.items()}
    if isinstance(schema, list):
        return [retarget(value, generic, typed) for value in schema]
    return schema


def typed_document(
    generic: dict[str, Any], configs: Sequence[ModelConfig], *, max_models: int
) -> dict[str, Any]:
    """The document with ``configs`` typed (a new one; ``generic`` is left as it is). With more
    models than ``max_models``, the generic document with a note where the typed ones are."""
    doc = copy.deepcopy(generic)
    if not configs or len(configs) > max_models:
        note = (
            "\n\nThe document of one model, with its features and labels typed, is at "
            "`GET /models/{name}/openapi.json`"
        )
        if max_models == 0:
            note += " (with an API key: [openapi] max_models is 0, or access control is on)"
        elif configs:
            note += (
                f" ({len(configs)} models are served, more than [openapi] max_models = "
                f"{max_models}: this document is generic)"
            )
        doc["info"]["description"] = doc["info"].get("description", "") + note + "."
        return doc
    schemas = doc["components"]["schemas"]
    prefixes = component_prefixes([c.name for c in configs])
    paths = doc["paths"]
    templates = {t: paths.pop(t) for t in TYPED if t in paths}
    typed: dict[str, Any] = {}
    for config in configs:
        typed_components(config, prefixes[config.name], schemas)
        typed.update(typed_paths(config, prefixes[config.name], templates))
    names = [c.name for c in configs]
    # Label Studio's routes serve classification models only (a choice among classes).
    classifiers = [c.name for c in configs if c.task is Task.CLASSIFICATION]
    for path, operations in paths.items():
        served = classifiers if path.startswith("/label-studio/") else names
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path" and parameter["name"] == "name":
                    parameter["schema"] = {**parameter["schema"], "enum": served}
    shared_responses(typed, doc["components"].setdefault("responses", {}))
    doc["paths"] = {**paths, **typed}
    # The generic request bodies are no longer used by any operation: left out, so that a
    # generated client has only the typed ones.
    for _, request, response in TYPED.values():
        schemas.pop(request, None)
        if response is not None:
            schemas.pop(response, None)
    return doc


def shared_responses(paths: dict[str, Any], responses: dict[str, Any]) -> None:
    """Replace the error answers of ``paths`` by references to one copy each in ``responses``
    (in place): every model repeats them, 1.7 of the 2 kB of an operation."""
    names: dict[str, str] = {}
    for operations in paths.values():
        for operation in operations.values():
            for status, answer in operation["responses"].items():
                if status.startswith("2"):
                    continue
                key = json.dumps(answer, sort_keys=True)
                if key not in names:
                    name = f"Error{status}"
                    n = 2
                    while name in responses:
                        name, n = f"Error{status}v{n}", n + 1
                    responses[name] = answer
                    names[key] = name
                operation["responses"][status] = {"$ref": f"#/components/responses/{names[key]}"}


def model_document(generic: dict[str, Any], config: ModelConfig) -> dict[str, Any]:
    """The document of one model: every operation, with that model typed."""
    doc = typed_document(generic, [config], max_models=1)
    doc["info"]["title"] = f"{generic['info'].get('title', 'onlearn')}: model {config.name}"
    return doc
