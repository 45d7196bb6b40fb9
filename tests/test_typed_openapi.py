"""Each served model typed in the OpenAPI document (serving/typed_openapi.py): its features, its
labels and its operations, in /openapi.json up to [openapi] max_models models, and in its own
document at /models/{name}/openapi.json. The document says what the server takes: rows it
allows are answered 200, rows it refuses 422 (the fuzz test, tests/e2e/test_fuzz.py, does the
same with generated requests)."""

from __future__ import annotations

import hashlib
import tomllib

import jsonschema_rs
import pytest
import schemathesis
from fastapi.testclient import TestClient

from onlearn.config import settings_from_mapping
from onlearn.errors import ConfigError
from serving import auth
from serving.app import create_app

CONFIG = """
[store]
url = "memory://"

# binary, every feature rule
[models.pets]
task = "classification"
classes = ["cat", "dog"]
pipeline = { name = "logistic_regression" }
active = { budget = 1.0, max_claim = 7, lease_s = 30, max_lease_s = 60 }
[models.pets.features]
weight = { type = "number", min = 0, max = 100 }
legs = { type = "integer", min = 0, max = 4 }
color = { type = "category", values = ["black", "white"] }
breed = "category"
indoor = "boolean"
name = { type = "string", nullable = true }
age = { type = "number", nullable = true }

# multiclass, integer classes, unknown features dropped
[models.digit-v2]
task = "classification"
classes = [0, 1, 2]
unknown_fields = "drop"
pipeline = { name = "logistic_regression" }
[models.digit-v2.features]
x = "number"

# regression
[models.price]
task = "regression"
pipeline = { name = "linear_regression" }
[models.price.features]
rooms = { type = "integer", min = 1 }
"""

KEY = "onl_" + "k" * 40
PETS = {"weight": 3.5, "legs": 4, "color": "black", "breed": "tabby", "indoor": True}


def settings(**openapi):
    doc = tomllib.loads(CONFIG)
    doc["openapi"] = openapi
    return settings_from_mapping(doc)


@pytest.fixture(scope="module")
def api():
    with TestClient(create_app(settings())) as client:
        yield client


@pytest.fixture(scope="module")
def document(api):
    return api.get("/openapi.json").json()


def validator(document: dict, component: str):
    root = {"$ref": f"#/components/schemas/{component}", "components": document["components"]}
    return jsonschema_rs.Draft202012Validator(root)


def test_every_feature_rule_maps_to_its_json_schema(document):
    features = document["components"]["schemas"]["PetsFeatures"]
    assert features["properties"] == {
        "weight": {"type": "number", "minimum": 0, "maximum": 100},
        "legs": {"type": "integer", "minimum": 0, "maximum": 4},
        "color": {"enum": ["black", "white"]},
        "breed": {"type": ["string", "integer", "boolean"]},
        "indoor": {"type": "boolean"},
        "name": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "age": {"anyOf": [{"type": "number"}, {"type": "null"}]},
    }
    # Nullable features may be left out; undeclared ones are refused (unknown_fields = reject).
    assert features["required"] == ["weight", "legs", "color", "breed", "indoor"]
    assert features["additionalProperties"] is False
    assert document["components"]["schemas"]["DigitV2Features"]["additionalProperties"] is True


def test_labels_are_typed_by_task(document):
    schemas = document["components"]["schemas"]
    assert schemas["PetsLabel"]["enum"] == ["cat", "dog"]
    assert schemas["DigitV2Label"]["enum"] == [0, 1, 2]
    assert schemas["PriceLabel"]["type"] == "number"
    feedback = schemas["PetsFeedbackRequest"]["properties"]
    assert feedback["label"]["$ref"] == "#/components/schemas/PetsLabel"
    answer = schemas["PriceFeedbackRequest"]["properties"]["label"]
    assert answer["$ref"] == "#/components/schemas/PriceLabel"
    predicted = schemas["PetsPredictResponse"]["properties"]["label"]["anyOf"]
    assert predicted[0] == {"$ref": "#/components/schemas/PetsLabel"}


def test_each_model_has_its_own_operations_and_the_generic_ones_are_gone(document):
    paths = document["paths"]
    ids = {op["operationId"] for ops in paths.values() for op in ops.values()}
    for name in ("pets", "digit-v2", "price"):
        for verb in ("predict", "predict_batch", "feedback", "feedback_batch", "retrain"):
            assert f"{verb}_{name}" in ids
    # Only the model with a labelling queue has the queue's typed operations.
    assert {"claim_pets", "label_pets"} <= ids
    assert "claim_price" not in ids and "label_price" not in ids
    assert "/models/{name}/predict" not in paths and "/models/{name}/feedback" not in paths
    body = paths["/models/pets/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/PetsPredictRequest"}
    batch = document["components"]["schemas"]["PetsPredictBatchRequest"]
    assert batch["properties"]["rows"]["items"] == {
        "$ref": "#/components/schemas/PetsPredictRequest"
    }
    name = paths["/models/{name}/metrics"]["get"]["parameters"][0]
    assert name["schema"]["enum"] == ["pets", "digit-v2", "price"]
    claim = document["components"]["schemas"]["PetsClaimRequest"]["properties"]
    assert claim["limit"]["maximum"] == 7
    # A claim's body is optional (null or absent: the defaults), as in the generic operation.
    body = paths["/models/pets/queue/claim"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"] == {
        "anyOf": [{"$ref": "#/components/schemas/PetsClaimRequest"}, {"type": "null"}],
        "title": "Body",
    }
    assert not body.get("required")
    # Every $ref points at a component that exists: a generator can resolve the whole document.
    refs = set(_refs(document))
    for r in refs:
        _, _, section, name = r.split("/")
        assert name in document["components"][section], r
    # The error answers every model repeats are written once.
    answers = paths["/models/price/feedback"]["post"]["responses"]
    assert answers["503"] == {"$ref": "#/components/responses/Error503"}


def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_the_documents_are_valid_openapi_3_1(api, document):
    # The official OpenAPI 3.1 schema, as schemathesis ships it (validators.py checks a
    # document against it when it loads one with validation on).
    from schemathesis.specs.openapi.definitions import OPENAPI_31

    valid = jsonschema_rs.validator_for(OPENAPI_31)
    assert document["openapi"] == "3.1.0"
    for doc in (document, api.get("/models/digit-v2/openapi.json").json()):
        errors = [e.message for e in valid.iter_errors(doc)]
        assert errors == [], errors[:5]


def test_a_generator_can_load_every_operation(document):
    for component in document["components"]["schemas"].values():
        assert jsonschema_rs.meta.is_valid(component), component
    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert "POST /models/pets/predict" in {op.label for op in operations}


ROWS = [
    ("pets", PETS, True),
    ("pets", {**PETS, "weight": 0, "legs": 0}, True),
    ("pets", {**PETS, "legs": 4.0, "name": "Tom", "age": None}, True),
    ("pets", {**PETS, "breed": 3}, True),
    ("pets", {**PETS, "weight": 100.5}, False),
    ("pets", {**PETS, "legs": 2.5}, False),
    ("pets", {**PETS, "legs": -1}, False),
    ("pets", {**PETS, "color": "ginger"}, False),
    ("pets", {**PETS, "indoor": 1}, False),
    ("pets", {**PETS, "breed": None}, False),
    ("pets", {**PETS, "name": 7}, False),
    ("pets", {k: v for k, v in PETS.items() if k != "legs"}, False),
    ("pets", {**PETS, "tail": True}, False),
    ("pets", {**PETS, "weight": "3"}, False),
    ("digit-v2", {"x": 1, "extra": "dropped"}, True),
    ("digit-v2", {"x": True}, False),
    ("price", {"rooms": 3}, True),
    ("price", {"rooms": 0}, False),
]


@pytest.mark.parametrize(("model", "row", "valid"), ROWS, ids=lambda v: repr(v)[:40])
def test_the_document_and_the_server_agree_on_a_row(api, document, model, row, valid):
    prefix = {"pets": "Pets", "digit-v2": "DigitV2", "price": "Price"}[model]
    assert validator(document, f"{prefix}PredictRequest").is_valid({"features": row}) is valid
    answer = api.post(f"/models/{model}/predict", json={"features": row})
    assert answer.status_code == (200 if valid else 422), answer.text


LABELS = [
    ("pets", "cat", True),
    ("pets", "bird", False),
    ("pets", 1, False),
    ("digit-v2", 2, True),
    ("digit-v2", "2", False),
    ("digit-v2", True, False),
    ("price", 2.5, True),
    ("price", 3, True),
    ("price", "3", False),
    ("price", False, False),
]


@pytest.mark.parametrize(("model", "label", "valid"), LABELS, ids=lambda v: repr(v)[:40])
def test_the_document_and_the_server_agree_on_a_label(api, document, model, label, valid):
    prefix = {"pets": "Pets", "digit-v2": "DigitV2", "price": "Price"}[model]
    row = {"pets": PETS, "digit-v2": {"x": 1.0}, "price": {"rooms": 2}}[model]
    body = {"features": row, "label": label}
    assert validator(document, f"{prefix}FeedbackRequest").is_valid(body) is valid
    answer = api.post(f"/models/{model}/feedback", json=body)
    assert answer.status_code == (200 if valid else 422), answer.text


def test_feedback_needs_a_prediction_id_or_features_in_both(api, document):
    feedback = validator(document, "PetsFeedbackRequest")
    for body in ({"label": "cat"}, {"label": "cat", "prediction_id": None, "features": None}):
        assert not feedback.is_valid(body)
        assert api.post("/models/pets/feedback", json=body).status_code == 422
    unknown = {"label": "cat", "prediction_id": "no-such-id", "features": None}
    assert feedback.is_valid(unknown)
    assert api.post("/models/pets/feedback", json=unknown).status_code == 404


def test_a_model_has_its_own_document(api, document):
    own = api.get("/models/price/openapi.json")
    assert own.status_code == 200
    paths = own.json()["paths"]
    assert "/models/price/predict" in paths and "/models/pets/predict" not in paths
    assert (
        own.json()["components"]["schemas"]["PriceFeatures"]
        == (document["components"]["schemas"]["PriceFeatures"])
    )
    unknown = api.get("/models/nope/openapi.json")
    assert unknown.status_code == 404
    assert "nope" in unknown.json()["detail"]
    # A read about a model, like GET /models/{name}: any key when access control is on.
    assert auth.needed("GET", "/models/{name}/openapi.json") == auth.ANY_KEY


def test_the_documents_are_built_once(api):
    app = api.app
    assert app.openapi() is app.openapi()
    first = api.get("/models/pets/openapi.json").content
    assert api.get("/models/pets/openapi.json").content == first


@pytest.mark.parametrize("max_models", [0, 2])
def test_past_max_models_the_main_document_stays_generic(max_models):
    with TestClient(create_app(settings(max_models=max_models))) as client:
        document = client.get("/openapi.json").json()
        assert "/models/{name}/predict" in document["paths"]
        assert not any("/models/pets" in p for p in document["paths"])
        assert "PetsFeatures" not in document["components"]["schemas"]
        assert "/models/{name}/openapi.json" in document["info"]["description"]
        assert "max_models" in document["info"]["description"]
        own = client.get("/models/pets/openapi.json").json()
        assert "PetsFeatures" in own["components"]["schemas"]
    with TestClient(create_app(settings(max_models=3))) as client:
        assert "/models/pets/predict" in client.get("/openapi.json").json()["paths"]


def test_with_access_control_the_open_document_names_no_model():
    doc = tomllib.loads(CONFIG)
    digest = hashlib.sha256(KEY.encode()).hexdigest()
    doc["security"] = {"api_keys": [{"name": "ops", "key_sha256": digest, "roles": ["predict"]}]}
    with TestClient(create_app(settings_from_mapping(doc))) as client:
        document = client.get("/openapi.json")
        assert document.status_code == 200
        assert "pets" not in document.text and "Pets" not in document.text
        assert "/models/{name}/openapi.json" in document.json()["info"]["description"]
        assert client.get("/models/pets/openapi.json").status_code == 401
        own = client.get("/models/pets/openapi.json", headers={"Authorization": f"Bearer {KEY}"})
        assert own.status_code == 200
        assert "PetsFeatures" in own.json()["components"]["schemas"]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"max_models": -1}, "max_models must be a whole number"),
        ({"max_models": 2.5}, "max_models must be a whole number"),
        ({"max_models": True}, "max_models must be a whole number"),
        ({"max_model": 3}, r"\[openapi\]: unknown entry max_model"),
    ],
)
def test_the_openapi_table_is_checked(table, message):
    with pytest.raises(ConfigError, match=message):
        settings(**table)


def test_retrain_options_follow_the_allow_lists(api, document):
    retrain = validator(document, "PetsRetrainRequest")
    cases = [
        ({"candidates": ["hoeffding_tree", {"name": "logistic_regression", "l1": 0.1}]}, True),
        ({"candidates": [{"name": "logistic_regression", "l1": 0.1, "l2": 0.1}]}, False),
        ({"candidates": ["linear_regression"]}, False),  # a regression pipeline
        ({"candidates": [{"name": "hoeffding_tree", "max_depth": 51}]}, False),
        ({"candidates": [{"name": "hoeffding_tree", "recover": True}]}, True),
        ({"candidates": [{"name": "hoeffding_tree", "recover": 1}]}, False),
        ({"passes": 21}, False),
        ({"metric": "mae"}, False),
    ]
    for body, valid in cases:
        assert retrain.is_valid(body) is valid, body
        if not valid:
            answer = api.post("/models/pets/retrain", json=body)
            assert answer.status_code == 422, (body, answer.text)


def test_true_and_false_classes_are_a_boolean_for_client_generators():
    doc = tomllib.loads(CONFIG)
    doc["models"]["pets"]["classes"] = [True, False]
    doc["models"]["pets"]["features"]["color"] = {"type": "category", "values": [False, True]}
    with TestClient(create_app(settings_from_mapping(doc))) as client:
        schemas = client.get("/openapi.json").json()["components"]["schemas"]
    # openapi-python-client refuses an enum of booleans and drops every operation using it.
    assert schemas["PetsLabel"]["type"] == "boolean" and "enum" not in schemas["PetsLabel"]
    assert schemas["PetsFeatures"]["properties"]["color"] == {"type": "boolean"}
