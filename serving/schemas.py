"""Request and response bodies of the HTTP API, for validation and the OpenAPI docs.

Labels and features are typed ``Any`` here on purpose: the model's schema, not pydantic,
decides what is valid, so that a string "1" is never silently turned into a number.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from onlearn.records import LabelSource

PHISHING_ROW = {
    "empty_server_form_handler": 0.0,
    "popup_window": 0.0,
    "https": 0.0,
    "request_from_other_domain": 0.0,
    "anchor_from_other_domain": 0.0,
    "is_popular": 0.5,
    "long_url": 1.0,
    "age_of_domain": 1,
    "ip_in_url": 1,
}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        # Python's JSON parser takes NaN, Infinity and lone surrogates (\\ud800), which are not
        # JSON: stored in a job's options or a label event they made every later read of it a
        # 500 (GET /jobs), or failed the store's write. The fast routes refuse them likewise.
        try:
            json.dumps(data, ensure_ascii=False, allow_nan=False, default=str).encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(
                "a string holds a \\uD800-\\uDFFF escape outside a surrogate pair, which is "
                "not valid Unicode; send UTF-8 text"
            ) from None
        except ValueError:
            raise ValueError("NaN and Infinity are not JSON numbers; send finite numbers") from None
        return data


class PredictRequest(Strict):
    features: dict[str, Any] = Field(
        description="Feature name -> value, as the model's schema says."
    )
    key: str | None = Field(
        None, description="Routing key: the same key is always answered by the same version."
    )

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"features": PHISHING_ROW}]}
    )


class PredictBatchRequest(Strict):
    rows: list[PredictRequest] = Field(description="Rows to predict, each with its features.")


class PredictResponse(BaseModel):
    prediction_id: str = Field(description="Send it back with the true label as feedback.")
    model: str
    version: str = Field(description="The version that answered.")
    label: Any = Field(description="Predicted label (classification) or value (regression).")
    proba: dict[str, float | None] | None = Field(
        description="Class probabilities; null for regression."
    )
    uncertainty: float | None = Field(description="1 - the highest probability (least confidence).")
    queued: bool = Field(description="Whether the case was sent to the labelling queue.")


class PredictBatchResponse(BaseModel):
    predictions: list[PredictResponse]


class FeedbackRequest(Strict):
    label: Any = Field(description="The true label (classification) or value (regression).")
    prediction_id: str | None = Field(None, description="The id a predict call returned.")
    features: dict[str, Any] | None = Field(
        None, description="Inline features, for a label with no prediction (or an expired one)."
    )
    source: str = Field(
        "app",
        description="Who gave the label: app, human or weak.",
        json_schema_extra={"enum": [s.value for s in LabelSource]},
    )
    labeller: str | None = Field(None, description="Name of the person or rule that labelled.")
    event_id: str | None = Field(None, description="Idempotency key for inline feedback.")
    correction: bool | None = Field(
        None,
        description="True: replace a different label recorded before for this prediction or "
        "event (a correction, its own log event); without it such a label is refused with 409.",
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"prediction_id": "0192f3c4a1b2...", "label": True}]},
    )


class FeedbackBatchRequest(Strict):
    items: list[FeedbackRequest]
    wait: bool = Field(
        True, description="Answer only once the labels were applied (read-your-writes)."
    )


class FeedbackResponse(BaseModel):
    seq: int = Field(description="Position of the label event in the model's log.")
    version: str = Field(description="The champion version when answering.")
    durable: bool = Field(
        description="The label event is in the log (always true in a 200): every process "
        "following the log learns it, and a restart does not lose it."
    )
    applied: bool = Field(
        description="This process's model has learned the label. False with `?wait=false` "
        "until the learner gets to it, or when the wait for it ran out; the label is durable "
        "either way and will be learned."
    )
    correction: bool | None = Field(
        None, description="Present and true when the label is recorded as a correction."
    )


class FeedbackItemResult(BaseModel):
    seq: int | None = None
    version: str | None = None
    durable: bool = Field(False, description="The label event is in the log.")
    applied: bool = Field(False, description="This process's model has learned the label.")
    correction: bool | None = None
    error: dict[str, Any] | None = Field(
        None, description="{status, detail} when this item failed."
    )


class FeedbackBatchResponse(BaseModel):
    results: list[FeedbackItemResult]


class ClaimRequest(Strict):
    limit: int = Field(1, description="How many items to lease.")
    lease_s: float | None = Field(
        None, description="Lease length in seconds (the model's default if absent)."
    )
    labeller: str | None = Field(
        None, max_length=200, description="Who labels: recorded with the label."
    )

    @field_validator("limit", "lease_s", mode="before")
    @classmethod
    def _a_number(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic would read true as 1 and "5" as 5: the document says a number, and the
        # fuzzing's negative-data check holds the server to it. Worded as pydantic words them.
        kind = "int" if info.field_name == "limit" else "float"
        if isinstance(value, bool):
            raise PydanticCustomError(
                f"{kind}_type", "Input should be a valid number, not a boolean"
            )
        if isinstance(value, str):
            raise PydanticCustomError(f"{kind}_parsing", "Input should be a number, not a string")
        return value


class QueueItemOut(BaseModel):
    item_id: str
    prediction_id: str | None
    claim_id: str | None = Field(description="Send it back with the label or skip.")
    features: dict[str, Any]
    proba: list[list[Any]] = Field(description="The current model's [label, probability] pairs.")
    guess: Any = Field(description="The current model's label.")
    uncertainty: float
    reason: str = Field(description="uncertain (the sampler asked) or random (evaluation slice).")
    attempts: int
    lease_expires_at: float | None
    classes: list[Any] | None = Field(description="The model's declared classes, if any.")


class ClaimResponse(BaseModel):
    items: list[QueueItemOut]


class LabelRequest(Strict):
    label: Any = Field(description="The true label.")
    claim_id: str | None = Field(
        None,
        description="The claim_id the claim gave (detects lost leases). Without it, only an "
        "item nobody holds (no live lease) can be labelled.",
    )
    labeller: str | None = Field(None, max_length=200)
    correction: bool = Field(
        False,
        description="True: replace a different label a person gave before (a label from the "
        "application or a weak rule is corrected without it).",
    )


class SkipRequest(Strict):
    claim_id: str | None = Field(
        None,
        description="The claim_id the claim gave. Without it, only an item nobody holds (no "
        "live lease) can be skipped.",
    )
    labeller: str | None = Field(
        None,
        max_length=200,
        description="Who skips (default: the claim's labeller): that labeller's claims pass "
        "the item over, others still get it.",
    )


class SkipResponse(BaseModel):
    item_id: str
    state: str = Field(description="queued (back for others), or skipped (after max_skips).")
    skips: int


class ReleaseRequest(Strict):
    claim_id: str = Field(min_length=1, max_length=100, description="The claim_id the claim gave.")


class ReleaseResponse(BaseModel):
    item_id: str
    state: str = Field(description="queued: anyone may claim it again.")


class PromoteRequest(Strict):
    role: str = Field(description="champion, challenger, shadow or canary")
    share: float | None = Field(None, description="For a canary: the share of requests it answers.")
    reason: str | None = Field(None, max_length=500, description="Why: kept in the audit history.")


class RollbackRequest(Strict):
    reason: str | None = Field(None, max_length=500)


class RetrainRequest(Strict):
    candidates: list[str | dict[str, Any]] | None = Field(
        None,
        description=(
            "What to train, at most 8: ids of candidates the model's config declares "
            "([models.NAME.refit] candidates), catalog pipeline names, or catalog tables such as "
            '{"name": "adaptive_random_forest", "n_models": 20} with bounded parameters '
            "(docs/operations.md#retrain). Code (factory, sklearn) comes from the config file "
            "only. Absent: the config's candidates."
        ),
    )
    passes: int | None = Field(None, description="Passes over the train events, 1 to 20.")
    holdout: float | None = Field(
        None, description="Share of the newest labels held out for the comparison, 0.05 to 0.5."
    )
    metric: str | None = Field(
        None,
        description="accuracy, log_loss, macro_f1 (classification); mae, rmse (regression).",
    )
    max_rows: int | None = Field(
        None, description="Train and evaluate on the newest N label events, 50 to 1,000,000."
    )
    register_anyway: bool = Field(False, description="Register the best even if it loses.")
    reason: str | None = Field(None, max_length=500)
    key: str | None = Field(
        None, max_length=200, description="Idempotency key: the same key, the same job."
    )


class EstimateReconciliation(BaseModel):
    window_labels: int = Field(
        description="Labels per reconciliation window ([models.NAME.monitor] "
        "estimate_window_labels, default 100)."
    )
    windows: int = Field(description="Windows of labels reconciled so far.")
    mean_abs_error: float | None = Field(
        description="Mean over those windows of |estimated - measured accuracy|."
    )
    last: list[dict[str, Any]] = Field(
        description="The last windows: labels, estimated (each label's answer estimated by the "
        "calibration before it learned that label), measured, error (estimated - measured)."
    )


class VersionEstimate(BaseModel):
    estimated_accuracy: float | None = Field(
        description="Mean calibrated confidence of the version's last `window` predictions: "
        "its expected accuracy, before their labels."
    )
    reference_estimated_accuracy: float | None = Field(
        description="The same for its first `reference_size` predictions (the alarm's reference)."
    )
    dropped: bool = Field(description="The estimate is estimate_drop or more below the reference.")
    predictions: int
    window: int = Field(description="Predictions in the estimate's window.")
    calibration_labels: int = Field(description="Labels the calibration holds.")
    calibration_accuracy: float | None = Field(description="Accuracy measured on those labels.")
    expected_calibration_error: float | None = Field(
        description="ECE of the raw confidence on the calibration labels (10 equal-width bins)."
    )
    reconciliation: EstimateReconciliation


class PerformanceEstimate(BaseModel):
    method: str | None = Field(
        description='"confidence-based (CBPE)"; null for a regression model (nothing estimated).'
    )
    calibration_source: str | None = Field(
        description='"random_slice" (the sampler\'s evaluation slice) or "all_labels".'
    )
    window: int | None = None
    versions: dict[str, VersionEstimate] = Field(description="Per served version.")
    detail: str | None = Field(None, description="Why nothing is estimated, when so.")


class DriftResponse(BaseModel):
    """The monitor's report (more fields than listed here: input drift, skew, prediction drift,
    agreement, concept drift, alarms, timeline)."""

    model_config = ConfigDict(extra="allow")

    model: str
    updated_at: float | None
    accuracy: dict[str, float] | None = Field(
        None, description="Prequential accuracy over each served version's last 500 labels."
    )
    estimated_accuracy: dict[str, float | None] | None = Field(
        None, description="Accuracy estimated without labels, per served version."
    )
    performance_estimate: PerformanceEstimate | None = None
