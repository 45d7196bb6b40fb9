from __future__ import annotations

import itertools

import pytest
from river import datasets

from onlearn.config import Settings, settings_from_mapping

PHISHING_FEATURES = {
    name: {"type": "number", "min": 0, "max": 1}
    for name in (
        "empty_server_form_handler",
        "popup_window",
        "https",
        "request_from_other_domain",
        "anchor_from_other_domain",
        "is_popular",
        "long_url",
    )
} | {"age_of_domain": {"type": "integer"}, "ip_in_url": {"type": "integer"}}


def phishing_settings(store_url: str, engine: dict | None = None, **model: object) -> Settings:
    """The phishing model of the example config on ``store_url``; ``model`` overrides entries,
    ``engine`` the [engine] table."""
    table = {
        "task": "classification",
        "classes": [True, False],
        "pipeline": {"name": "logistic_regression"},
        "features": PHISHING_FEATURES,
        **model,
    }
    return settings_from_mapping(
        {
            "store": {"url": store_url},
            "security": {"secret_key": "test"},
            "engine": engine or {},
            "models": {"phishing": table},
        }
    )


def phishing_stream(n: int | None = None):
    return itertools.islice(datasets.Phishing(), n)


class Clock:
    """A clock the test moves by hand (for TTLs), starting now."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path}/onlearn.db"


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store_url(request, tmp_path) -> str:
    """Each store in turn: the in-memory one, a SQLite file, and the tests' Redis."""
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/onlearn.db"
    return request.getfixturevalue("redis_url")
