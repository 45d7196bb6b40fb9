"""The ``onlearn`` command, run as a user runs it: in a subprocess, reading its output.

Refusals of a bad config are also checked through ``main()`` in this process, where the seconds
of imports a subprocess pays are paid once.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `pytest` (not `python -m pytest`) does not put the root there
    sys.path.insert(0, str(ROOT))

from tests.servers import ServerProcess, example_server, free_port  # noqa: E402

SCRIPT = Path(sys.executable).parent / "onlearn"
ONLEARN = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "onlearn.tools.cli"]


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


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("demo", "--limit", "0"), ("--limit", "at least 1, got 0")),
        (("demo", "--limit", "ten"), ("--limit", "whole number, got 'ten'")),
        (("demo", "--delay", "-1"), ("--delay", "at least 0, got -1")),
        (("jobs", "list", "--limit", "0"), ("--limit", "at least 1")),
        (("schema", "infer", "x.csv", "--limit", "0"), ("--limit", "at least 1")),
    ],
)
def test_counts_below_their_minimum_are_refused_before_anything_runs(args, words):
    # ``--limit 0`` used to read as "no limit": the demo streamed the whole dataset.
    result = onlearn(*args)
    assert result.returncode == 2
    failed_cleanly(result, *words)


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


def test_version_prints_the_package_version():
    from importlib.metadata import version

    result = onlearn("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"onlearn {version('onlearn')}\n"


def parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ("onlearn",)):
    """Every parser of the command line, with the words that reach it: (path, parser)."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from parsers(sub, (*path, name))


def test_every_option_argument_and_command_has_help():
    from onlearn.tools.cli import build_parser

    missing = []
    for path, parser in parsers(build_parser()):
        for action in parser._actions:
            name = "/".join(action.option_strings) or action.dest
            if isinstance(action, argparse._SubParsersAction):
                helped = {choice.dest for choice in action._choices_actions}
                missing += [f"{' '.join(path)} {c}" for c in action.choices if c not in helped]
            elif not action.help:  # argparse.SUPPRESS (hidden on purpose) is a non-empty help
                missing.append(f"{' '.join(path)} {name}")
    assert not missing, f"no help text: {missing}"


def test_the_options_of_every_command_group_also_come_after_its_subcommand():
    from onlearn.tools.cli import build_parser

    parser = build_parser()
    checked = []
    for path, group in parsers(parser):
        subcommands = [a for a in group._actions if isinstance(a, argparse._SubParsersAction)]
        shared = [
            a
            for a in group._actions
            if a.option_strings
            and not isinstance(a, argparse._HelpAction | argparse._VersionAction)
        ]
        if not subcommands or not shared:
            continue
        for name, sub in subcommands[0].choices.items():
            positionals = [
                "v1" for a in sub._actions if not a.option_strings and a.nargs is None
            ]  # a model name, a version, a file: any word parses
            for option in shared:
                value = option.choices[-1] if option.choices else "http://given:1"
                given = [option.option_strings[-1]] + ([] if option.nargs == 0 else [value])
                expected = option.const if option.nargs == 0 else value
                words = [*path[1:], name, *positionals]
                before = parser.parse_args([*path[1:], *given, name, *positionals])
                after = parser.parse_args([*words, *given])
                default = parser.parse_args(words)
                assert getattr(before, option.dest) == expected, (path, name, option.dest)
                assert getattr(after, option.dest) == expected, (path, name, option.dest)
                assert getattr(default, option.dest) == option.default, (path, name, option.dest)
                checked.append(f"{' '.join(words[: len(path)])} {option.option_strings[-1]}")
    assert "models list --url" in checked and "models promote --api-key" in checked, checked


def test_url_and_api_key_given_after_the_subcommand_reach_the_command():
    from onlearn.tools.cli import build_parser

    parse = build_parser().parse_args
    after = parse(["models", "list", "phishing", "--url", "http://h:1", "--api-key", "k"])
    assert (after.url, after.api_key, after.model) == ("http://h:1", "k", "phishing")
    before = parse(["models", "--url", "http://h:1", "--api-key", "k", "list", "phishing"])
    assert (before.url, before.api_key) == ("http://h:1", "k")
    both = parse(["models", "--url", "http://h:1", "rollback", "phishing", "--url", "http://h:2"])
    assert both.url == "http://h:2"  # the last one given wins, as for any option
    assert parse(["models", "history", "phishing"]).url == "http://127.0.0.1:8000"


def test_output_into_a_pipe_its_reader_closed_ends_quietly():
    # `onlearn models history m | head -1`: head leaves, and the rest of the output has nowhere
    # to go. Not an error worth a traceback.
    process = subprocess.Popen(
        [*ONLEARN, "keys", "new", "--name", "app", "--roles", "predict"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    process.stdout.close()  # long before the command, still importing, prints anything
    stderr = process.stderr.read().decode()
    assert process.wait(60) == 1, stderr
    assert stderr == "", stderr


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


def house_prices(n: int = 60) -> str:
    """A CSV whose target is a continuous quantity (a price), written by the test."""
    import random

    rng = random.Random(4)
    lines = ["sqft,rooms,city,price"]
    for _ in range(n):
        sqft, rooms = rng.randint(500, 3000), rng.randint(1, 6)
        price = round(120.5 * sqft + 9000 * rooms + rng.gauss(0, 5000), 2)
        lines.append(f"{sqft},{rooms},{rng.choice(['lyon', 'paris', 'nice'])},{price}")
    return "\n".join(lines) + "\n"


def test_schema_infer_calls_a_continuous_target_regression(tmp_path: Path):
    from onlearn.config import Task, settings_from_mapping

    path = tmp_path / "houses.csv"
    path.write_text(house_prices())
    result = onlearn("schema", "infer", str(path), "--target", "price", "--model", "houses")
    assert result.returncode == 0, result.stderr
    assert 'task = "regression"' in result.stdout
    assert "# task inferred from 'price': 60 values, 60 distinct numbers" in result.stdout
    table = tomllib.loads(result.stdout)["models"]["houses"]
    assert table["task"] == "regression" and table["target"] == "price"
    assert table["pipeline"] == {"name": "hoeffding_tree_regressor"}
    assert "classes" not in table
    assert list(table["features"]) == ["sqft", "rooms", "city"]
    # The snippet is a regression model the server would serve, as it is.
    settings = settings_from_mapping({"models": {"houses": table}})
    assert settings.model("houses").task is Task.REGRESSION


def test_schema_infer_takes_an_explicit_task_over_the_inferred_one(tmp_path: Path):
    path = tmp_path / "houses.csv"
    path.write_text(house_prices())
    chosen = onlearn("schema", "infer", str(path), "--target", "price", "--task", "classification")
    assert chosen.returncode == 0, chosen.stderr
    assert tomllib.loads(chosen.stdout)["models"]["my_model"]["task"] == "classification"
    assert "inferred" not in chosen.stdout


def test_schema_infer_names_a_target_that_is_not_a_column(tmp_path: Path):
    path = tmp_path / "churn.csv"
    path.write_text(CSV)
    result = onlearn("schema", "infer", str(path), "--target", "label")
    failed_cleanly(result, "'label'", "not in the header", "churned")


def test_schema_infer_of_a_missing_file_fails_cleanly(tmp_path: Path):
    result = onlearn("schema", "infer", str(tmp_path / "nope.csv"))
    failed_cleanly(result, "nope.csv")


# demo, against a real server


# A second model beside the example's, for the tests that teach, retrain and promote: the demo
# test counts exactly what it sent to "phishing".
CLI_MODEL = "phishing_cli"


def phishing_server(directory: Path) -> ServerProcess:
    """The example config with a copy of its model as CLI_MODEL; launched, not waited for."""
    text = (ROOT / "examples" / "phishing.toml").read_text()
    model = text[text.index("[models.phishing]") :]
    return example_server(
        directory, extra="\n" + model.replace("models.phishing", f"models.{CLI_MODEL}")
    )


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


def readable(output: str) -> str:
    """Output for people: no Python repr of a dict, a list, None or a boolean in it."""
    for repr_ in ("{'", "['", "[]", "{}", "None", "True", "False"):
        assert repr_ not in output, (repr_, output)
    return output


def test_demo_of_a_single_row_prints_a_dash_for_the_half_it_has_not(phishing: ServerProcess):
    result = onlearn(
        "demo", "--url", phishing.url, "--model", CLI_MODEL, "--limit", "1", "--no-progress"
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert re.search(r"^first half: -   second half: \d\.\d{3}$", result.stdout, re.M), (
        result.stdout
    )
    readable(result.stdout)


def test_a_refusal_with_field_errors_is_printed_as_sentences(phishing: ServerProcess):
    # The bananas data set has other features than the model: the server answers 422 with a
    # list of field errors.
    result = onlearn(
        "demo", "--url", phishing.url, "--model", CLI_MODEL, "--dataset", "bananas",
        "--limit", "1", "--no-progress",
    )  # fmt: skip
    failed_cleanly(result, "HTTP 422")
    assert re.search(r"HTTP 422: features\.\w+: \w+ is", result.stderr), result.stderr
    readable(result.stderr)


def test_the_labeller_shows_no_empty_probabilities_for_a_model_that_learned_nothing():
    from onlearn.tools.labeller import render

    item = {
        "item_id": "01a2",
        "reason": "uncertain",
        "uncertainty": 1.0,
        "features": {"https": 0.0},
        "guess": None,
        "proba": [],  # what a fresh model answers
    }
    shown = render(item, [True, False])
    assert "model's guess: (nothing learned yet)\n" in shown, shown
    readable(shown)


@pytest.fixture(scope="module")
def two_versions(phishing: ServerProcess) -> ServerProcess:
    """CLI_MODEL with a challenger v2, made by ``onlearn retrain`` on labels of the data set."""
    from river import datasets

    from onlearn.tools.client import Client

    rows = itertools.islice(datasets.Phishing(), 60)  # the refit needs 50 labels
    with Client(phishing.url) as client:
        client.feedback_batch(CLI_MODEL, [{"features": x, "label": y} for x, y in rows])
    result = onlearn(
        "retrain", "--model", CLI_MODEL, "--register-anyway", "--url", phishing.url, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "registered v2 as challenger" in readable(result.stdout), result.stdout
    return phishing


def test_the_models_commands_take_the_url_last_and_print_readable_lines(
    two_versions: ServerProcess,
):
    def models(*args: str) -> str:
        result = onlearn("models", *args, "--url", two_versions.url)
        assert result.returncode == 0, result.stderr
        return readable(result.stdout)

    def roles(line: str, said: str) -> set[str]:
        found = re.fullmatch(rf"{said} \(seq \d+\): (.+)\n", line)
        assert found, line
        return set(found.group(1).split(", "))

    promoted = models("promote", CLI_MODEL, "v2", "--role", "canary", "--share", "0.25")
    assert roles(promoted, "roles now") == {
        "champion v1",
        "challenger v2",
        "canary v2 (share 0.25)",
    }
    promoted = models("promote", CLI_MODEL, "v2")
    assert roles(promoted, "roles now") == {"champion v2", "previous v1"}
    rolled_back = models("rollback", CLI_MODEL, "--reason", "checking the CLI")
    assert roles(rolled_back, "rolled back") == {"champion v1"}

    history = models("history", CLI_MODEL).splitlines()
    when = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
    assert re.fullmatch(rf"{when}  seq=-  champion: - -> v1  by config: first start", history[0])
    back = rf"{when}  seq=\d+  champion: v2 -> v1  by api: checking the CLI"
    assert any(re.fullmatch(back, line) for line in history), history
    assert any(re.fullmatch(rf"{when}  seq=\d+  previous: v1 -> -  by .*", x) for x in history)

    listing = models("list", CLI_MODEL).splitlines()
    assert re.fullmatch(
        r"\s+v1  champion\s+source=config  parent=-  trained on seq \d+\.\.now  accuracy=\d\.\d{3}",
        listing[0],
    ), listing
    assert re.fullmatch(
        r"\s+v2  -\s+source=refit  parent=v1  trained on seq \d+\.\.\d+  accuracy=(\d\.\d{3}|-)",
        listing[1],
    ), listing


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

    from onlearn.tools.cli import main

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
