"""A model's options typed for the OpenAPI document: what its retrain and claim requests take.

The allow-lists and bounds are the server's own (onlearn/refit_options.py for a retrain, the
model's ``[models.NAME.active]`` table for a claim), written as JSON Schema so that a request the
document allows is one the server accepts (serving/typed_openapi.py puts them in the document).
"""

from __future__ import annotations

import copy
from typing import Any

from onlearn.config import ModelConfig
from onlearn.models.catalog import CATALOG
from onlearn.refit_options import LIMITS, METRICS, REQUEST_PARAMS, Bound, declared_candidates

REF = "#/components/schemas/"


def catalog_tables(task: str) -> dict[str, Any]:
    """The catalog pipelines of a task as a request may give them: a table of the name and the
    parameters of :data:`REQUEST_PARAMS`, each within its bounds. One component per task,
    shared by its models."""
    tables = []
    for name in catalog_of(task):
        params = {key: bound_schema(bound) for key, bound in REQUEST_PARAMS[name].items()}
        table: dict[str, Any] = {
            "type": "object",
            "properties": {"name": {"const": name}, **params},
            "required": ["name"],
            "additionalProperties": False,
        }
        if {"l1", "l2"} <= params.keys():
            # One penalty at most (river's linear models refuse both).
            nonzero = {"not": {"const": 0}}
            table["not"] = {
                "required": ["l1", "l2"],
                "properties": {"l1": nonzero, "l2": nonzero},
            }
        tables.append(table)
    return {
        "title": catalog_component(task),
        "description": f"A {task} catalog pipeline with some of its parameters.",
        "anyOf": tables,
    }


def catalog_of(task: str) -> list[str]:
    return [n for n in REQUEST_PARAMS if CATALOG[n].task == task]


def catalog_component(task: str) -> str:
    return f"{task.capitalize()}CatalogCandidate"


def retrain_schema(config: ModelConfig, generic: dict[str, Any], title: str) -> dict[str, Any]:
    """The retrain options of a model, with its allow-lists (onlearn/refit_options.py). The
    same candidate twice is trained once (no ``uniqueItems``)."""
    task = config.task.value
    names = catalog_of(task)
    ids = [c.id for c in declared_candidates(config)]
    low, high = LIMITS["candidates"]
    schema = copy.deepcopy(generic)
    props = schema["properties"]
    props["candidates"] = {
        "anyOf": [
            {
                "type": "array",
                "items": {
                    "anyOf": [
                        {"enum": list(dict.fromkeys(ids + names))},
                        {"$ref": REF + catalog_component(task)},
                    ]
                },
                "minItems": int(low),
                "maxItems": int(high),
            },
            {"type": "null"},
        ],
        "description": props["candidates"].get("description", ""),
    }
    bounded = {"passes": "integer", "holdout": "number", "max_rows": "integer"}
    for key, kind in bounded.items():
        low, high = LIMITS[key]
        props[key] = {
            "anyOf": [{"type": kind, "minimum": low, "maximum": high}, {"type": "null"}],
            "description": props[key].get("description", ""),
        }
    metrics = [m for m, (of, _) in METRICS.items() if of == task]
    props["metric"] = {
        "anyOf": [{"enum": metrics}, {"type": "null"}],
        "description": props["metric"].get("description", ""),
    }
    schema["title"] = title
    return schema


def claim_schema(config: ModelConfig, generic: dict[str, Any], title: str) -> dict[str, Any]:
    """A claim's limits, from the model's ``[models.NAME.active]`` table."""
    active = config.active
    schema = copy.deepcopy(generic)
    props = schema["properties"]
    props["limit"] = {
        **props["limit"],
        "type": "integer",
        "minimum": 1,
        "maximum": active.max_claim,
    }
    props["lease_s"] = {
        "anyOf": [
            {"type": "number", "exclusiveMinimum": 0, "maximum": active.max_lease_s},
            {"type": "null"},
        ],
        "description": props["lease_s"].get("description", ""),
    }
    schema["title"] = title
    return schema


def bound_schema(bound: Bound) -> dict[str, Any]:
    """The values :meth:`Bound.check` lets through."""
    if bound.kind == "bool":
        return {"type": "boolean"}
    choices = {"enum": list(bound.choices)}
    if bound.kind == "choice":
        return choices
    kind = "integer" if bound.kind == "int" else "number"
    number = {"type": kind, "minimum": bound.low, "maximum": bound.high}
    return {"anyOf": [number, choices]} if bound.choices else number
