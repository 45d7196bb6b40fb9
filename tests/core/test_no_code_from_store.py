"""Nothing read from the store can name code: stored jobs and version specs, on SQLite and Redis.

On main 8d6a9de a refit job whose options named ``os:system`` ran the command in the worker
(three times: the job was retried), and a version spec edited in the store ran its factory when
a process started without that version's snapshot. Each test here has a marker file that such
code would create, and checks that it never appears.
"""

from __future__ import annotations

import json
import sqlite3

import pytest

from onlearn.background.worker import REFIT, Worker, new_job
from onlearn.engine import Engine
from onlearn.errors import ArtifactRejected
from onlearn.keys import sqlite_path
from onlearn.models import sign_spec
from onlearn.records import JobState
from onlearn.registry import sign_specs
from onlearn.store import open_store
from tests.core.conftest import Clock, phishing_settings

SECRET = b"test"


@pytest.fixture(params=["sqlite", "redis"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/onlearn.db"
    return request.getfixturevalue("redis_url")


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "pwned"
    yield path
    assert not path.exists(), "code named in the store ran"


def start(url, **model) -> Engine:
    return Engine(
        phishing_settings(url, **model), open_store(url), secret=SECRET, clock=Clock()
    ).start()


def hostile_options(marker) -> list[dict]:
    touch = f"touch {marker}"
    return [
        {"candidates": [{"factory": "os:system", "command": touch}]},
        {"candidates": [{"factory": "subprocess:getoutput", "cmd": touch}]},
        {"candidates": [{"factory": "builtins:exec", "source": f"open({str(marker)!r}, 'w')"}]},
        {"candidates": [{"sklearn": "os:system", "params": {"command": touch}}]},
        {"candidates": [{"sklearn": "sklearn.linear_model:SGDClassifier"}]},
        {"candidates": [{"name": "hoeffding_tree", "splitter": {"factory": "os:system"}}]},
        {"candidates": ["os:system"]},
        {"passes": 1_000_000_000},
    ]


def test_a_stored_job_naming_code_fails_at_once_and_runs_nothing(url, marker):
    """A job written into the store by hand (or by an earlier onlearn) is checked again when a
    worker claims it, and an error that cannot go away fails it at the first attempt."""
    engine = start(url)
    worker = Worker(engine)
    try:
        for options in hostile_options(marker):
            job = engine.store.jobs.enqueue(
                new_job(REFIT, "phishing", {"options": options, "reason": "x"}, at=engine.clock())
            )
            claimed = engine.store.jobs.claim(worker.name, lease_s=60, now=engine.clock())
            assert claimed.job_id == job.job_id
            done = worker.run_job(claimed)
            assert done.state is JobState.FAILED and done.attempts == 1, (options, done)
            assert "candidates" in done.error or "passes" in done.error
            assert engine.store.registry.roles("phishing") == {"champion": "v1"}
        assert engine.store.jobs.claim(worker.name, lease_s=60, now=engine.clock() + 1e6) is None
    finally:
        engine.close()


def _spec(marker, signed_for: str | None = None) -> dict:
    return {
        "task": "classification",
        "pipeline": {"factory": "os:system", "command": f"touch {marker}"},
        "schema": phishing_settings("memory://").models[0].schema.to_config(),
        "classes": [True, False],
    }


def test_a_version_written_into_the_store_is_refused_at_start_with_the_fix(url, marker):
    start(url).close()  # v1, from the config, signed
    with open_store(url) as store:
        bad = store.registry.create_version("phishing", _spec(marker), {"source": "x"}, at=1.0)
        store.registry.set_role("phishing", "champion", bad.version, actor="t", reason="t", at=1.0)
    with pytest.raises(ArtifactRejected) as caught:
        start(url)
    message = str(caught.value)
    assert f"phishing {bad.version}" in message and "not signed" in message
    assert "onlearn store sign-specs" in message
    # A signature made up by whoever wrote it does not help.
    with open_store(url) as store:
        store.registry.set_spec_signature("phishing", bad.version, "00" * 32)
    with pytest.raises(ArtifactRejected, match=f"phishing {bad.version} does not match"):
        start(url)


def _edit_spec_in_place(url: str, version: str, spec: dict) -> None:
    """What someone with write access to the store can do: change a stored spec's JSON."""
    number = int(version.removeprefix("v"))
    if url.startswith("sqlite:"):
        with sqlite3.connect(sqlite_path(url)) as db:
            (text,) = db.execute(
                "SELECT spec FROM versions WHERE model = 'phishing' AND number = ?", (number,)
            ).fetchone()
            assert json.loads(text)["pipeline"]["name"] == "logistic_regression"
            db.execute(
                "UPDATE versions SET spec = ? WHERE model = 'phishing' AND number = ?",
                (json.dumps(spec), number),
            )
        return
    import redis

    from onlearn.store.redis.keys import RedisKeys

    client = redis.Redis.from_url(url)
    key = RedisKeys("onlearn").versions("phishing")
    data = json.loads(client.hget(key, number))
    data["spec"] = spec
    client.hset(key, number, json.dumps(data))
    client.close()


def test_a_signed_spec_edited_in_the_store_is_refused_even_with_its_snapshot(url, marker):
    engine = start(url)
    engine.close()  # writes a snapshot of v1 at shutdown
    _edit_spec_in_place(url, "v1", _spec(marker))
    with pytest.raises(ArtifactRejected, match="phishing v1 does not match its signature"):
        start(url)


def test_sign_specs_upgrades_a_store_of_an_earlier_onlearn_and_lists_each(url, marker):
    settings = phishing_settings(url)
    config = settings.models[0]
    with open_store(url) as store:  # what an earlier onlearn stored: specs without signatures
        v1 = store.registry.create_version("phishing", config.spec(), {"source": "config"}, at=1.0)
        store.registry.set_role("phishing", "champion", v1.version, actor="t", reason="t", at=1.0)
        refit_spec = {**config.spec(), "pipeline": {"name": "hoeffding_tree"}}
        v2 = store.registry.create_version("phishing", refit_spec, {"source": "refit"}, at=2.0)
        v3 = store.registry.create_version("phishing", _spec(marker), {"source": "refit"}, at=3.0)
    with pytest.raises(ArtifactRejected, match="not signed"):
        start(url)
    with open_store(url) as store:
        lines = sign_specs(store, config, SECRET)
        assert [(c.version, c.outcome) for c in lines] == [
            (v1.version, "signed"),
            (v2.version, "signed"),
            (v3.version, "refused"),
        ]
        assert "os:system" in lines[2].text and "does not declare" in lines[2].text
        # Run again: nothing left to do but what stays refused.
        again = [c.outcome for c in sign_specs(store, config, SECRET)]
        assert again == ["already signed", "already signed", "refused"]
        signed = store.registry.get_version("phishing", v2.version)
        assert signed.spec_signature == sign_spec("phishing", refit_spec, SECRET)
    engine = start(url)  # serves again
    try:
        assert engine.runtime("phishing").roles["champion"] == "v1"
    finally:
        engine.close()
