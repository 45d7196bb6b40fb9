"""The example configs: each loads, describes its river data set exactly, is served by a real
``onlearn serve`` and streamed through it by ``onlearn demo``, which prints a sensible summary
(accuracy for classifiers, mean absolute error for the regression model)."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `pytest` (not `python -m pytest`) does not put the root there
    sys.path.insert(0, str(ROOT))

from tests.servers import ServerProcess  # noqa: E402

SCRIPT = Path(sys.executable).parent / "onlearn"
ONLEARN = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "onlearn.tools.cli"]

# example file -> (its model, the river data set the demo streams, the task)
EXAMPLES = {
    "phishing.toml": ("phishing", "phishing", "classification"),
    "trump_approval.toml": ("trump_approval", "trump_approval", "regression"),
    "image_segments.toml": ("image_segments", "image_segments", "classification"),
}
SERVED = ("trump_approval.toml", "image_segments.toml")  # phishing's is in tests/test_cli.py


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_an_example_config_describes_its_data_set_exactly(example):
    """Every row of the data set passes the model's schema as it is, and every label is one
    the model takes: the demo will not meet a 422."""
    from onlearn.config import Task, load_settings
    from onlearn.tools.demo import load_dataset

    name, dataset, task = EXAMPLES[example]
    (model,) = load_settings(ROOT / "examples" / example, environ={}).models
    assert (model.name, model.task.value) == (name, task)
    names = [f.name for f in model.schema.features]
    labels = set()
    for x, y in load_dataset(dataset):
        assert sorted(x) == sorted(names)
        model.schema.validate(x)  # raises SchemaViolation naming the field and the rule
        labels.add(y)
    if model.task is Task.CLASSIFICATION:
        assert set(model.classes) == labels
    else:
        assert model.classes is None and model.active is None
        assert all(isinstance(y, float) for y in labels)


def served_copy(example: str, directory: Path) -> ServerProcess:
    """The example config, copied, with its store in ``directory``; launched, not waited for."""
    db = directory / "onlearn.db"
    text = (ROOT / "examples" / example).read_text()
    assert 'url = "sqlite:///.data/onlearn.db"' in text  # what `make run` uses
    config = directory / example
    config.write_text(text.replace("sqlite:///.data/onlearn.db", f"sqlite:///{db}"))
    return ServerProcess(config, f"sqlite:///{db}").launch()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory):
    """Both examples served at once (each server spends seconds on imports)."""
    running = {e: served_copy(e, tmp_path_factory.mktemp(Path(e).stem)) for e in SERVED}
    try:
        yield running
    finally:
        for server in running.values():
            try:
                server.stop(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()


def demo(server: ServerProcess, model: str, limit: int) -> str:
    """``onlearn demo`` as the example's comment says, without --dataset: the model's name
    picks it."""
    result = subprocess.run(
        [*ONLEARN, "demo", "--url", server.url, "--model", model, "--limit", str(limit)]
        + ["--no-progress"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert f"rows predicted: {limit}   labels sent: {limit}" in result.stdout, result.stdout
    return result.stdout


def halves(out: str) -> tuple[float, float]:
    first, second = re.search(r"first half: (\d+\.\d{3})   second half: (\d+\.\d{3})", out).groups()
    return float(first), float(second)


def test_the_regression_example_serves_and_the_demo_reports_its_mae(servers):
    server = servers["trump_approval.toml"].wait_ready(180)
    out = demo(server, "trump_approval", 400)
    assert "accuracy" not in out, out
    mae = float(re.search(r"mean absolute error: (\d+\.\d{3})", out).group(1))
    first, second = halves(out)
    # Approval ratings are around 40 (%): a model that learned errs by a few points at most,
    # and less in the second half of the stream than in the first.
    assert 0 < mae < 5 and second < first, out
    assert mae == pytest.approx((first + second) / 2, abs=2e-3)
    # The server scored the same answers on its stored predictions: the same MAE.
    metrics = httpx.get(f"{server.url}/models/trump_approval/metrics").json()
    assert metrics["task"] == "regression"
    v1 = metrics["versions"]["v1"]
    assert v1["n"] == 400 and f"{v1['mae']:.3f}" == f"{mae:.3f}"
    # `onlearn models list` shows its live MAE, not an accuracy it does not have.
    listed = subprocess.run(
        [*ONLEARN, "models", "--url", server.url, "list", "trump_approval"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    assert f"mae={v1['mae']:.4g}" in listed.stdout and "accuracy" not in listed.stdout
    # The next day, which it has not seen: a number near the truth, and no probabilities.
    from onlearn.tools.demo import load_dataset

    x, y = next(itertools.islice(load_dataset("trump_approval"), 400, None))
    answer = httpx.post(f"{server.url}/models/trump_approval/predict", json={"features": x}).json()
    assert isinstance(answer["label"], float) and abs(answer["label"] - y) < 5, (answer, y)
    assert answer["proba"] is None


def test_the_multiclass_example_serves_and_the_demo_reports_its_accuracy(servers):
    server = servers["image_segments.toml"].wait_ready(180)
    out = demo(server, "image_segments", 500)
    assert "mean absolute error" not in out, out
    accuracy = float(re.search(r"prequential accuracy: (\d\.\d{3})", out).group(1))
    first, second = halves(out)
    # Seven classes: chance is about 0.14.
    assert 0.6 < accuracy <= 1.0 and second > first, out
    metrics = httpx.get(f"{server.url}/models/image_segments/metrics").json()
    v1 = metrics["versions"]["v1"]
    assert v1["n"] == 500 and f"{v1['accuracy']:.3f}" == f"{accuracy:.3f}"
    assert 0 < v1["macro_f1"] <= 1
    # The answers carry a probability for each of the seven classes.
    described = httpx.get(f"{server.url}/models/image_segments").json()
    assert len(described["classes"]) == 7
