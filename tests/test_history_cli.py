"""``onlearn export`` and ``onlearn import`` as a user runs them (through ``main()`` in this
process: the same parser and command functions, without a subprocess's seconds of imports)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from onlearn.config import load_settings
from onlearn.engine import Engine, FeedbackItem
from onlearn.tools.cli import main

CONFIG = """
[store]
url = "{url}"

[security]
secret_key = "test"

[models.m]
classes = [true, false]
pipeline = {{ name = "logistic_regression" }}

[models.m.features]
x = "number"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config on a SQLite file whose model learned 50 labels."""
    path = tmp_path / "onlearn.toml"
    path.write_text(CONFIG.format(url=f"sqlite:///{tmp_path}/source.db"))
    with Engine.from_settings(load_settings(path)) as engine:
        engine.feedback_many(
            "m",
            [
                FeedbackItem(label=i % 3 == 0, features={"x": i / 10}, event_id=f"e{i}")
                for i in range(50)
            ],
        )
    return path


def test_export_to_parquet_then_import_elsewhere(config, tmp_path, capsys):
    out, other = tmp_path / "h.parquet", f"sqlite:///{tmp_path}/other.db"
    assert main(["export", "--model", "m", "--config", str(config), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "50 label events (0 corrections), seq 1..50" in err and "no event was trimmed" in err
    args = ["import", str(out), "--model", "m", "--config", str(config), "--store", other]
    assert main(args) == 0
    assert "50 rows read, 50 label events appended (0 corrections) at seq 1..50" in (
        capsys.readouterr().out
    )
    assert main(args) == 0
    assert "0 label events appended (0 corrections); 50 already in the log" in (
        capsys.readouterr().out
    )


def test_export_writes_json_lines_to_standard_output(config, capsys):
    argv = ["export", "--model", "m", "--config", str(config), "--since", "41", "--until", "45"]
    assert main(argv) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["seq"], r["event_id"], r["features"]) for r in rows] == [
        (s, f"e{s - 1}", {"x": (s - 1) / 10}) for s in range(41, 46)
    ]


def test_a_bad_row_fails_the_import_naming_its_line_and_field(config, tmp_path, capsys):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"features": {"x": 1}, "label": true}\n{"features": {"x": 1}, "label": 3}\n')
    argv = ["import", str(path), "--model", "m", "--config", str(config)]
    assert main(argv) == 1
    assert f"error: {path} line 2: label: label must be one of True, False; got 3" in (
        capsys.readouterr().err
    )
    assert main([*argv, "--skip-invalid"]) == 0
    captured = capsys.readouterr()
    assert f"skipped: {path} line 2: label:" in captured.err
    assert "1 label events appended" in captured.out and "1 bad rows skipped" in captured.out


def test_rows_left_out_as_conflicts_fail_the_import_with_a_count(config, tmp_path, capsys):
    """Two rows whose event ids the log holds with the other label: the rest goes in, the exit
    code says something was left out, and a rerun appends nothing twice."""
    path = tmp_path / "mixed.jsonl"
    rows = [
        {"event_id": "e0", "features": {"x": 0.0}, "label": False},  # the log says True
        {"event_id": "e1", "features": {"x": 0.1}, "label": False},  # as in the log
        {"event_id": "e3", "features": {"x": 0.3}, "label": False},  # the log says True
        {"event_id": "new", "features": {"x": 9.0}, "label": True},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = ["import", str(path), "--model", "m", "--config", str(config)]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "1 label events appended" in captured.out and "1 already in the log" in captured.out
    assert "error: 2 rows were not imported" in captured.err
    assert main(argv) == 1
    assert "0 label events appended" in capsys.readouterr().out
    with Engine.from_settings(load_settings(config)) as engine:
        events = engine.store.log.read("m", after=0, limit=100)
    assert len(events) == 51 and events[-1].payload["label"] is True


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["export", "--model", "nope"], "model 'nope' is not in the config"),
        (["export", "--model", "m", "--since", "last week"], "--since: 'last week' is neither"),
        (["export", "--model", "m", "--format", "parquet"], "give --out FILE.parquet"),
        (["import", "missing.jsonl", "--model", "m"], "missing.jsonl: no such file"),
        (["export", "--model", "m", "--until", "9" * 5000], "has more digits than any seq"),
        (["export", "--model", "m", "--since", "²"], "--since: '²' is neither"),
        (["export", "--model", "m", "--since", "5", "--until", "2"], "is after --until 2"),
        (
            ["export", "--model", "m", "--since", "2026-02-01", "--until", "2026-01-01"],
            "the window holds no event",
        ),
        (["export", "--model", "m", "--out", "/"], "--out / is a directory"),
        (["export", "--model", "m", "--out", "/no/such/dir/h.jsonl"], "cannot write it"),
        (["export", "--model", "m", "--store", "sqlite:///typo.db"], "typo.db does not exist"),
    ],
)
def test_mistakes_are_refused_with_a_sentence(argv, words, config, capsys):
    assert main([*argv, "--config", str(config)]) == 1
    assert words in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b'{"features": {"x": 1}, "label": "\xff"}\n', "line 1: row: not UTF-8 text"),
        ('{"features": {"x": 1}, "label": true}'.encode("utf-16"), "line 1: row: not UTF-8"),
        (
            b'{"features": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",
            "line 1: row: not valid JSON: nested",
        ),
    ],
    ids=["latin-1", "utf-16", "deep"],
)
def test_a_hostile_file_is_a_line_error_not_a_traceback(content, words, config, tmp_path, capsys):
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(content)
    assert main(["import", str(path), "--model", "m", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert f"error: {path} {words}" in err and "Traceback" not in err


def test_a_utf8_byte_order_mark_is_read_past(config, tmp_path, capsys):
    path = tmp_path / "excel.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"features": {"x": 1}, "label": true, "event_id": "bom"}\n')
    assert main(["import", str(path), "--model", "m", "--config", str(config)]) == 0
    assert "1 label events appended" in capsys.readouterr().out


def test_the_readme_example_runs_and_prints_what_it_shows(tmp_path, monkeypatch, capsys, redis_url):
    """The README's commands, as written, on the example config's store after the demo's 1250
    labels (the Redis of the example replaced by the test's own)."""
    import itertools
    import re
    import shlex

    from river import datasets

    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    start = readme.index("\n## Move the labelled history (export, import)\n")
    block = re.findall(r"```sh\n(.*?)```", readme[start : readme.index("\n## ", start + 1)], re.S)[
        0
    ]
    for name in ("ONLEARN_CONFIG", "ONLEARN_STORE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "examples").symlink_to(root / "examples")
    with Engine.from_settings(load_settings("examples/phishing.toml")) as engine:
        items = [
            FeedbackItem(label=y, features=x)
            for x, y in itertools.islice(datasets.Phishing(), None)
        ]
        engine.feedback_many("phishing", items)
    commands = re.findall(r"^(onlearn .*)\n((?:# .*\n)*)", block, re.M)
    assert len(commands) == 3
    for command, shown in commands:
        argv = shlex.split(command.replace("redis://localhost:6379/0", redis_url))[1:]
        assert main(argv) == 0, command
        captured = capsys.readouterr()
        if shown:
            assert shown[2:].strip() in captured.err + captured.out, command
    assert (tmp_path / "phishing.parquet").is_file() and (tmp_path / "week.jsonl").is_file()
