"""The baseline: a bare FastAPI app with the shape of onlearn's predict endpoint.

``POST /predict`` takes the same body (``{"features": {...}}``, validated by a pydantic model
with ``features: dict[str, Any]``) and answers a dict of the size and shape of onlearn's predict
answer, without a model, a store or any middleware. What onlearn adds on top of this (schema
validation, the model, the prediction record, its routing) is what the ratio measures.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from serving.telemetry import fastapi_kwargs


class PredictRequest(BaseModel):
    features: dict[str, Any]


# The same FastAPI telemetry rule as onlearn's app: hooks only with a configured provider.
app = FastAPI(title="bare baseline", **fastapi_kwargs())


@app.post("/predict")
async def predict(body: PredictRequest) -> dict[str, Any]:
    # A fresh id per call, as a real endpoint would make; the rest is the size of onlearn's answer.
    return {
        "prediction_id": os.urandom(16).hex(),
        "model": "phishing",
        "version": "v1",
        "label": True,
        "proba": {"true": 0.7310585786300049, "false": 0.2689414213699951},
        "uncertainty": 0.2689414213699951,
        "queued": len(body.features) < 0,
    }


@app.get("/readyz")
async def readyz() -> dict[str, str]:
    return {"status": "ready"}
