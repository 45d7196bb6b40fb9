"""The ``onlearn`` command, run as a user runs it: in a subprocess, reading its output.

Refusals of a bad config are also checked through ``main()`` in this process, where the seconds
of imports a subprocess pays are paid once.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `pytest` (not `python -m pytest`) does not put the root there
    sys.path.insert(0, str(ROOT))

from tests.servers import ServerProcess, free_port  # noqa: E402

SCRIPT = Path(sys.executable).parent / "onlearn"
ONLEARN = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "onlearn.cli"]


def onlearn(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*ONLEARN, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def failed_cleanly(result: subprocess.CompletedProcess, *words: str) -> None:
    """A non-zero exit with an ``error:`` line naming ``words`` and no traceback."""
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert "error:" in result.stderr, result.stderr
    for word in words:
        assert word in result.stderr, (word, result.stderr)


@pytest.fixture(scope="module", autouse=True)
def background(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """The slow processes of the selected tests, launched at once (each spends seconds on
    imports): the phishing server and ``onlearn serve`` on the IN_SUBPROCESS bad configs."""
    used = {
        name
        for item in request.session.items
        if getattr(item, "module", None) is request.module
        for name in item.fixturenames
    }
    running: dict = {}
    try:
        if "phishing" in used:
            running["phishing"] = phishing_server(tmp_path_factory.mktemp("phishing"))
        if "refused" in used:
            directory = tmp_path_factory.mktemp("bad-configs")
            for case in IN_SUBPROCESS:
                running[case] = refusing(directory, case)
        yield running
    finally:
        for process in running.values():
            if isinstance(process, ServerProcess):
                try:
                    process.stop(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
            elif process.poll() is None:
                process.kill()
                process.communicate()


# Help


def test_help_lists_the_commands():
    result = onlearn("--help")
    assert result.returncode == 0, result.stderr
    for command in ("serve", "worker", "monitor", "retrain", "models", "demo", "label", "schema"):
        assert re.search(rf"^\s+{command}\s+\S", result.stdout, re.MULTILINE), result.stdout
    assert "onlearn serve --config examples/phishing.toml" in result.stdout  # the examples


def test_every_sidecar_command_parses_what_serve_passes_it():
    # serve --workers N starts `onlearn worker` and `onlearn monitor` with these arguments
    for role in ("worker", "monitor"):
        result = onlearn(role, "--log-level", "warning", "--help")
        assert result.returncode == 0, result.stderr


def test_without_a_command_the_help_is_printed():
    result = onlearn()
    assert result.returncode == 2
    assert "serve" in result.stdout and "demo" in result.stdout


def test_serve_help_lists_its_options():
    result = onlearn("serve", "--help")
    assert result.returncode == 0
    for option in (
        "--config",
        "--store",
        "--host",
        "--port",
        "--workers",
        "--no-worker",
        "--no-monitor",
    ):
        assert option in result.stdout


# schema infer

CSV = '''age,income,city,member,comment,churned
34,52000.5,paris,yes,"likes it, mostly",1
51,,lyon,no,too slow,0
29,38000,paris,Yes,,0
42,61000.25,lyon,no,"said ""fine""",1
38,45000,paris,yes,call back,0
'''


def test_schema_infer_prints_toml_that_the_config_accepts(tmp_path: Path):
    from onlearn.config import settings_from_mapping
    from onlearn.schema import Schema

    path = tmp_path / "churn.csv"
    path.write_text(CSV)
    result = onlearn("schema", "infer", str(path), "--target", "churned", "--model", "churn")
    assert result.returncode == 0, result.stderr
    table = tomllib.loads(result.stdout)["models"]["churn"]
    assert table["target"] == "churned"
    features = table["features"]
    assert list(features) == ["age", "income", "city", "member", "comment"]  # not the target
    schema = Schema.from_config(features)
    assert schema["age"].type.value == "integer" and not schema["age"].nullable
    assert schema["income"].type.value == "number" and schema["income"].nullable
    assert schema["city"].type.value == "category"
    assert schema["city"].values == ("lyon", "paris")
    assert schema["member"].type.value == "boolean"
    assert schema["comment"].type.value == "string" and schema["comment"].nullable
    # With a pipeline added, the snippet is a model the server would serve.
    table.setdefault("pipeline", {"name": "logistic_regression"})
    settings = settings_from_mapping({"models": {"churn": table}})
    assert settings.model("churn").schema == schema


def test_schema_infer_names_a_target_that_is_not_a_column(tmp_path: Path):
    path = tmp_path / "churn.csv"
    path.write_text(CSV)
    result = onlearn("schema", "infer", str(path), "--target", "label")
    failed_cleanly(result, "'label'", "not in the header", "churned")


def test_schema_infer_of_a_missing_file_fails_cleanly(tmp_path: Path):
    result = onlearn("schema", "infer", str(tmp_path / "nope.csv"))
    failed_cleanly(result, "nope.csv")


# demo, against a real server


def phishing_server(directory: Path) -> ServerProcess:
    """The example config, copied, with its store in ``directory``; launched, not waited for."""
    db = directory / "onlearn.db"
    config = directory / "phishing.toml"
    shutil.copy(ROOT / "examples" / "phishing.toml", config)
    text = config.read_text()
    assert 'url = "sqlite:///.data/onlearn.db"' in text
    config.write_text(text.replace("sqlite:///.data/onlearn.db", f"sqlite:///{db}"))
    return ServerProcess(config, f"sqlite:///{db}").launch()


@pytest.fixture(scope="module")
def phishing(background: dict) -> ServerProcess:
    return background["phishing"].wait_ready(180)


def test_demo_streams_the_dataset_and_prints_an_accuracy(phishing: ServerProcess):
    result = onlearn(
        "demo",
        "--url",
        phishing.url,
        "--model",
        "phishing",
        "--limit",
        "200",
        "--no-progress",
        "--delay",
        "5",
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "rows predicted: 200   labels sent: 200" in result.stdout, result.stdout
    accuracy = float(re.search(r"prequential accuracy: (\d\.\d{3})", result.stdout).group(1))
    assert 0.6 < accuracy <= 1.0, result.stdout
    assert re.search(r"first half: \d\.\d{3}   second half: \d\.\d{3}", result.stdout)
    # The server scored the same answers on its stored predictions: the same accuracy.
    metrics = httpx.get(f"{phishing.url}/models/phishing/metrics").json()["versions"]["v1"]
    assert metrics["n"] == 200
    assert metrics["scored_on_stored_prediction"] == 200
    assert f"{metrics['accuracy']:.3f}" == f"{accuracy:.3f}"
    assert metrics["label_delay_s"]["n"] == 200


def test_demo_of_a_model_the_server_does_not_serve_fails_cleanly(phishing: ServerProcess):
    result = onlearn("demo", "--url", phishing.url, "--model", "nope", "--no-progress")
    failed_cleanly(result, "404", "'nope'")


def test_demo_without_a_server_fails_cleanly():
    url = f"http://127.0.0.1:{free_port()}"
    result = onlearn("demo", "--url", url, "--limit", "5", "--no-progress")
    failed_cleanly(result, f"is `onlearn serve` running at {url}?")


# serve, with a config it cannot serve

GOOD_MODEL = (
    '[models.m]\npipeline = { name = "logistic_regression" }\n'
    '[models.m.features]\nx = { type = "number" }\n'
)
# case -> (config text or None for a missing file, extra arguments, words of the message)
BAD_CONFIGS = {
    "missing-file": (None, [], ["does not exist", "absent.toml"]),
    "not-toml": ("[models.m\n", [], ["not valid TOML"]),
    "bad-type": (
        GOOD_MODEL.replace('"number"', '"float"'),
        [],
        ["'x'", "unknown type 'float'", "did you mean number"],
    ),
    "bad-pipeline": (
        GOOD_MODEL.replace("logistic_regression", "deep_net"),
        [],
        ["'deep_net'", "logistic_regression"],
    ),
    "no-models": ("[server]\nport = 8000\n", [], ["no models configured", "--config"]),
    "workers-without-shared-store": (
        GOOD_MODEL,
        ["--store", "memory://", "--workers", "2"],
        ["--workers", "shared store"],
    ),
}
# Run as real processes, side by side (each pays seconds of imports); the others in-process.
IN_SUBPROCESS = ("bad-type", "bad-pipeline")


def serve_args(directory: Path, case: str) -> list[str]:
    text, extra, _ = BAD_CONFIGS[case]
    path = directory / (f"{case}.toml" if text is not None else "absent.toml")
    if text is not None:
        path.write_text(text)
    store = f"sqlite:///{directory / case}.db"
    return ["serve", "--config", str(path), "--store", store, "--port", "0", *extra]


def refusing(directory: Path, case: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*ONLEARN, *serve_args(directory, case)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(scope="module")
def refused(background: dict) -> dict[str, subprocess.CompletedProcess]:
    """How ``onlearn serve`` ended on each bad config of IN_SUBPROCESS."""
    results = {}
    for case in IN_SUBPROCESS:
        process = background[case]
        try:  # a config wrongly accepted would serve for ever
            stdout, stderr = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
        results[case] = subprocess.CompletedProcess(
            process.args, process.returncode, stdout, stderr
        )
    return results


@pytest.mark.parametrize("case", IN_SUBPROCESS)
def test_serve_with_a_bad_config_exits_with_a_clear_message(refused, case):
    failed_cleanly(refused[case], *BAD_CONFIGS[case][2])


@pytest.mark.parametrize("case", sorted(set(BAD_CONFIGS) - set(IN_SUBPROCESS)))
def test_serve_refuses_a_bad_config_before_serving(tmp_path: Path, capsys, monkeypatch, case):
    """The same through ``main()``, as the ``onlearn`` script calls it, in this process."""
    import uvicorn

    from onlearn.cli import main

    def serve(*args, **kwargs):
        raise AssertionError("the bad config was accepted: the server would start")

    monkeypatch.setattr(uvicorn, "run", serve)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        code = main(serve_args(tmp_path, case))  # returns before serving: a refusal
    finally:  # main() configures logging for the command it runs; leave ours as it was
        root.handlers[:], root.level = handlers, level
    out, err = capsys.readouterr()
    failed_cleanly(subprocess.CompletedProcess([], code, out, err), *BAD_CONFIGS[case][2])
