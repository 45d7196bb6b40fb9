"""A small Python client for the onlearn HTTP API.

Usage, against a running server::

    with Client("http://127.0.0.1:8000") as client:
        p = client.predict("phishing", {"https": 1.0, "long_url": 0.0, ...})
        client.feedback("phishing", label=True, prediction_id=p["prediction_id"])

With access control on, pass ``api_key=`` (or set ``$ONLEARN_API_KEY``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import httpx


class ClientError(Exception):
    """The server refused a request; ``status`` and ``detail`` say why (``str()`` of it reads
    as a sentence, for people)."""

    def __init__(self, status: int, detail: Any):
        self.status = status
        self.detail = detail
        super().__init__(f"HTTP {status}: {readable_detail(detail)}")


def readable_detail(detail: Any) -> str:
    """An error answer's ``detail`` as one line for people: a validation error's list of field
    errors becomes ``field: message; ...`` (a printed list of dicts is hard to read).

    >>> readable_detail([{"loc": ["body", "features", "age"], "msg": "age must be <= 130"}])
    'features.age: age must be <= 130'
    >>> readable_detail("model 'nope' is not served")
    "model 'nope' is not served"
    """
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list) and detail:
        return "; ".join(_field_error(error) for error in detail)
    if isinstance(detail, dict) and isinstance(detail.get("msg"), str):
        return detail["msg"]  # e.g. a 409 for a label that was not used: the rest is data
    return json.dumps(detail)


def _field_error(error: Any) -> str:
    if not isinstance(error, dict) or "msg" not in error:
        return readable_detail(error)
    loc = [str(part) for part in error.get("loc") or []]
    if loc[:1] == ["body"]:  # every field error is in the body: it says nothing
        loc = loc[1:]
    return f"{'.'.join(loc)}: {error['msg']}" if loc else str(error["msg"])


class Client:
    def __init__(self, url: str, *, api_key: str | None = None, timeout: float = 30.0) -> None:
        """``api_key``: for a server with access control; ``$ONLEARN_API_KEY`` if not given."""
        api_key = api_key or os.environ.get("ONLEARN_API_KEY")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        response = self._http.request(method, path, json=body, params=params or None)
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text
            raise ClientError(response.status_code, detail)
        return response.json()

    def health(self) -> dict:
        return self._call("GET", "/healthz")

    def models(self) -> list[dict]:
        return self._call("GET", "/models")["models"]

    def model(self, name: str) -> dict:
        return self._call("GET", f"/models/{name}")

    def metrics(self, name: str) -> dict:
        return self._call("GET", f"/models/{name}/metrics")

    def predict(self, model: str, features: Mapping[str, Any]) -> dict:
        return self._call("POST", f"/models/{model}/predict", {"features": dict(features)})

    def predict_batch(self, model: str, rows: Sequence[Mapping[str, Any]]) -> list[dict]:
        body = {"rows": [{"features": dict(f)} for f in rows]}
        return self._call("POST", f"/models/{model}/predict/batch", body)["predictions"]

    def feedback(
        self,
        model: str,
        label: Any,
        *,
        prediction_id: str | None = None,
        features: Mapping[str, Any] | None = None,
        source: str = "app",
        labeller: str | None = None,
        event_id: str | None = None,
        wait: bool = True,
        correction: bool = False,
    ) -> dict:
        body = _without_none(
            label=label,
            prediction_id=prediction_id,
            features=dict(features) if features is not None else None,
            source=source,
            labeller=labeller,
            event_id=event_id,
            correction=correction or None,
        )
        body["label"] = label  # a null label is the server's to refuse, not ours to drop
        return self._call("POST", f"/models/{model}/feedback", body, wait=str(wait).lower())

    def feedback_batch(
        self, model: str, items: Sequence[Mapping[str, Any]], *, wait: bool = True
    ) -> list[dict]:
        body = {"items": [dict(i) for i in items], "wait": wait}
        return self._call("POST", f"/models/{model}/feedback/batch", body)["results"]

    # The labelling queue

    def claim(
        self,
        model: str,
        *,
        limit: int = 1,
        lease_s: float | None = None,
        labeller: str | None = None,
    ) -> list[dict]:
        body = _without_none(limit=limit, lease_s=lease_s, labeller=labeller)
        return self._call("POST", f"/models/{model}/queue/claim", body)["items"]

    def label(
        self,
        model: str,
        item_id: str,
        label: Any,
        *,
        claim_id: str | None = None,
        labeller: str | None = None,
        correction: bool = False,
    ) -> dict:
        body = {
            "label": label,
            **_without_none(claim_id=claim_id, labeller=labeller, correction=correction or None),
        }
        return self._call("POST", f"/models/{model}/queue/{item_id}/label", body)

    def skip(
        self, model: str, item_id: str, *, claim_id: str | None = None, labeller: str | None = None
    ) -> dict:
        body = _without_none(claim_id=claim_id, labeller=labeller)
        return self._call("POST", f"/models/{model}/queue/{item_id}/skip", body)

    def release(self, model: str, item_id: str, *, claim_id: str) -> dict:
        """Give a claim back without a label: the item is queued again for anyone."""
        body = {"claim_id": claim_id}
        return self._call("POST", f"/models/{model}/queue/{item_id}/release", body)

    def queue_stats(self, model: str) -> dict:
        return self._call("GET", f"/models/{model}/queue/stats")

    # Versions, roles, jobs

    def versions(self, model: str) -> list[dict]:
        return self._call("GET", f"/models/{model}/versions")["versions"]

    def history(self, model: str) -> list[dict]:
        return self._call("GET", f"/models/{model}/history")["history"]

    def promote(
        self,
        model: str,
        version: str,
        role: str,
        *,
        share: float | None = None,
        reason: str | None = None,
    ) -> dict:
        body = {"role": role, **_without_none(share=share, reason=reason)}
        return self._call("POST", f"/models/{model}/versions/{version}/promote", body)

    def rollback(self, model: str, *, reason: str | None = None) -> dict:
        return self._call("POST", f"/models/{model}/rollback", _without_none(reason=reason))

    def retrain(self, model: str, **options: Any) -> dict:
        return self._call("POST", f"/models/{model}/retrain", _without_none(**options))

    def job(self, job_id: str) -> dict:
        return self._call("GET", f"/jobs/{job_id}")

    def jobs(self, model: str | None = None, limit: int = 50) -> list[dict]:
        return self._call("GET", "/jobs", **_without_none(model=model, limit=limit))["jobs"]

    def cancel_job(self, job_id: str) -> dict:
        return self._call("POST", f"/jobs/{job_id}/cancel")


def _without_none(**fields: Any) -> dict:
    return {k: v for k, v in fields.items() if v is not None}
