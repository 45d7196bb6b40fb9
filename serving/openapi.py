"""The errors each operation can answer, added to the OpenAPI document in one place.

FastAPI documents the 200 and the 422 it validates itself; the rest come from the middlewares
(size, time), from domain errors (``serving/errors.py``) and from the fast routes, which FastAPI
never sees. Clients generated from the document, and the fuzz test (tests/e2e/test_fuzz.py),
read them here.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from onlearn.errors import UnknownModel
from serving.responses import JSON
from serving.typed_openapi import model_document, typed_document

ERROR = "ErrorMessage"

# status -> what it means, for every operation it applies to (see ``errors_of``).
MEANING = {
    400: "The body could not be read (not JSON, not UTF-8), or an option is not valid.",
    404: "No such model (or item, version, job), or the model has no labelling queue.",
    408: "The request body did not arrive within [limits] request_timeout_s.",
    409: "A conflict with the current state: a different label for a prediction or event "
    "that has one (not used; the recorded label is in the detail), another labeller holds or "
    "labelled the item (a label answered 409 was not used), the item is labelled already "
    "(skip, release), the role change is not "
    "possible now, or the job already registered its result or ended.",
    410: "Gone: the prediction expired (send inline features), or the item left the queue.",
    413: "The body is larger than [limits] max_body_bytes.",
    503: "The store is unavailable; or label events wait beyond [engine] max_pending_labels, "
    "or prediction records beyond max_pending_predictions (back-pressure: nothing was "
    "answered nor recorded); retry after Retry-After. Also the store is not the one this "
    "process opened (emptied, replaced or restored: the detail says so); retrying does not "
    "help then: restart the process against the right store.",
    504: "The request took longer than [limits] request_timeout_s; it may still take effect.",
}

# The operations whose 409 may also be a label conflict: a different label for a prediction or
# event that has one, answered with the recorded label (onlearn/corrections.py).
LABEL_CONFLICTS = {
    ("post", "/models/{name}/feedback"),
    ("post", "/models/{name}/queue/{item_id}/label"),
}
LABEL_CONFLICT = "LabelConflict"

# (method, path) -> the statuses of that operation beyond the common ones.
SPECIFIC = {
    ("post", "/models/{name}/feedback"): {409, 410},
    ("post", "/models/{name}/queue/{item_id}/label"): {409, 410},
    ("post", "/models/{name}/queue/{item_id}/skip"): {409, 410},
    ("post", "/models/{name}/queue/{item_id}/release"): {409, 410},
    ("post", "/models/{name}/versions/{version}/promote"): {409},
    ("post", "/models/{name}/rollback"): {409},
    ("get", "/jobs/{job_id}"): {404},
    ("post", "/jobs/{job_id}/cancel"): {404, 409},
    ("post", "/label-studio/{name}/webhook"): {409},
}


def errors_of(method: str, path: str, operation: dict[str, Any]) -> set[int]:
    statuses = {503, 504} | SPECIFIC.get((method, path), set())
    if "{name}" in path:
        statuses.add(404)
    if "requestBody" in operation:
        statuses |= {400, 408, 413}
    return statuses


def document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the error answers to every operation of ``schema`` (in place; returned)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components[ERROR] = {
        "title": ERROR,
        "type": "object",
        "properties": {
            "detail": {"type": "string", "description": "What went wrong, and what to do."}
        },
        "required": ["detail"],
    }
    components[LABEL_CONFLICT] = {
        "title": LABEL_CONFLICT,
        "type": "object",
        "description": "A different label for a prediction or event that has one: not used. "
        'Send it again with "correction": true to correct the recorded label.',
        "properties": {
            "detail": {
                "type": "object",
                "properties": {
                    "msg": {"type": "string"},
                    "used": {"type": "boolean", "description": "Always false."},
                    "recorded": {
                        "type": "object",
                        "description": "The label recorded for it: label, source, labeller, seq.",
                        "properties": {
                            "label": {},
                            "source": {"type": "string"},
                            "labeller": {"type": ["string", "null"]},
                            "seq": {"type": "integer"},
                        },
                        "required": ["label", "source", "seq"],
                    },
                },
                "required": ["msg", "used", "recorded"],
            }
        },
        "required": ["detail"],
    }
    body = {"application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR}"}}}
    either = {
        "application/json": {
            "schema": {
                "oneOf": [
                    {"$ref": f"#/components/schemas/{ERROR}"},
                    {"$ref": f"#/components/schemas/{LABEL_CONFLICT}"},
                ]
            }
        }
    }
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            for status in sorted(errors_of(method, path, operation)):
                content = either if status == 409 and (method, path) in LABEL_CONFLICTS else body
                responses.setdefault(
                    str(status), {"description": MEANING[status], "content": content}
                )
    readyz = schema.get("paths", {}).get("/readyz", {}).get("get")
    if readyz is not None:
        readyz["responses"]["503"] = {
            "description": "Not ready: the store cannot be reached or models are not loaded.",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {"status": {"type": "string"}, "reason": {"type": "string"}},
                    }
                }
            },
        }
    return schema


def install(app) -> None:
    """Serve the document with the error answers added and the served models typed
    (``serving/typed_openapi.py``), and each model's own at ``/models/{name}/openapi.json``.

    Both are built at their first request and kept while the served models stay the same (the
    engine loads them at start; the key notices a model added or replaced all the same).
    """
    build = app.openapi
    cache = DocumentCache(app, build)
    app.openapi = cache.main

    async def model_openapi(name: str) -> JSON:
        return JSON(cache.model(name))

    app.add_api_route(
        "/models/{name}/openapi.json",
        model_openapi,
        methods=["GET"],
        include_in_schema=False,
    )


class DocumentCache:
    """The documents, built once per set of served models."""

    MAX_MODEL_DOCUMENTS = 64  # each is the whole API (~70 kB): the recently asked ones stay

    def __init__(self, app, build) -> None:
        self._app = app
        self._build = build
        self._key: tuple | None = None
        self._generic: dict[str, Any] | None = None
        self._main: dict[str, Any] | None = None
        self._models: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def _configs(self) -> list:
        engine = getattr(self._app.state, "engine", None)
        if engine is None:  # asked before the lifespan started the engine: the settings' models
            return list(self._app.state.settings.models)
        return [rt.config for rt in engine.runtimes.values()]

    def _fresh(self) -> list:
        configs = self._configs()
        key = tuple((c.name, id(c)) for c in configs)
        if key != self._key:
            if self._generic is None:
                self._generic = document_errors(self._build())
            self._key, self._main = key, None
            self._models.clear()
        return configs

    def main(self) -> dict[str, Any]:
        configs = self._fresh()
        if self._main is None:
            limit = self._app.state.settings.openapi.max_models
            if getattr(self._app.state, "keyring", None):
                # With access control on, /openapi.json is open and names no model (what a
                # key protects); each model's typed document needs a key, as GET /models does.
                limit = 0
            self._main = typed_document(self._generic, configs, max_models=limit)
        return self._main

    def model(self, name: str) -> dict[str, Any]:
        configs = self._fresh()
        found = self._models.get(name)
        if found is not None:
            self._models.move_to_end(name)
            return found
        config = next((c for c in configs if c.name == name), None)
        if config is None:
            served = ", ".join(sorted(c.name for c in configs)) or "none"
            raise UnknownModel(f"model {name!r} is not served; served models: {served}")
        document = model_document(self._generic, config)
        self._models[name] = document
        while len(self._models) > self.MAX_MODEL_DOCUMENTS:
            self._models.popitem(last=False)
        return document
