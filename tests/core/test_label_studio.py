"""The Label Studio backend's core: a retraction is left out by refits (oracle: a refit of a log
where the retracted labels never came), the live model keeps what it learned, the label config
binding, and the model version's epochs. The protocol over HTTP: tests/e2e/test_label_studio.py.
"""

from __future__ import annotations

import asyncio

import pytest

from onlearn.background.refit import refit
from onlearn.config import ModelConfig, settings_from_mapping
from onlearn.engine import Engine
from onlearn.errors import SchemaViolation
from onlearn.label_studio import bind, model_version
from onlearn.label_studio.protocol import EPOCH_STEP, choices_tags, task_features
from onlearn.records import EventKind, FeedbackItem
from onlearn.schema import Schema
from onlearn.store import open_store
from tests.core.conftest import phishing_settings, phishing_stream

MODEL = "phishing"


def labelled(engine: Engine, rows, *, skip: set[int] = frozenset(), first_wrong=()) -> None:
    """Inline labels keyed like Label Studio's annotations (``event:<id>``); the rows in
    ``first_wrong`` get the wrong label first and a correction after."""
    items = [
        FeedbackItem(
            (not y) if i in first_wrong else y, features=x, source="human", event_id=f"a{i}"
        )
        for i, (x, y) in enumerate(rows)
        if i not in skip
    ]
    engine.feedback_many(MODEL, items)
    fixes = [
        FeedbackItem(y, features=x, source="human", event_id=f"a{i}", correction=True)
        for i, (x, y) in enumerate(rows)
        if i in first_wrong and i not in skip
    ]
    if fixes:
        engine.feedback_many(MODEL, fixes)


def refit_of(engine: Engine):
    config = engine.runtime(MODEL).config
    return refit(
        engine.store,
        MODEL,
        schema=config.schema,
        task="classification",
        classes=config.classes,
        champion_state_at=lambda seq: None,
        candidates=[{"name": "logistic_regression"}],
        holdout=0.25,
    )


def test_a_refit_leaves_retracted_labels_out_as_if_they_never_came():
    rows = list(phishing_stream(160))
    retracted = {3, 17, 40, 41, 90, 130}
    corrected = {17, 55}  # a retracted chain with a correction in it, and one kept
    url = "memory://"
    with Engine(phishing_settings(url), open_store(url), secret=b"k") as engine:
        labelled(engine, rows, first_wrong=corrected)
        rt = engine.runtime(MODEL)
        probe = [x for x, _ in rows[:20]]
        before = [rt.champion.predict(x) for x in probe]
        keys = [f"event:a{i}" for i in sorted(retracted)] + ["event:never-labelled"]
        seqs = asyncio.run(engine.retract_async(MODEL, keys, labeller="ann"))
        assert seqs[-1] is None and all(s is not None for s in seqs[:-1])
        again = asyncio.run(engine.retract_async(MODEL, keys[:2]))
        assert again == seqs[:2]  # the same retraction again: the seqs it got
        events = engine.store.log.read(MODEL, after=0, limit=1000)
        assert sum(e.kind is EventKind.RETRACT for e in events) == len(retracted)
        # The live model cannot unlearn: it answers what it answered.
        assert [rt.champion.predict(x) for x in probe] == before
        with_retractions = refit_of(engine)
    with Engine(phishing_settings(url), open_store(url), secret=b"k") as engine:
        labelled(engine, rows, skip=retracted, first_wrong=corrected)
        never_sent = refit_of(engine)
    assert with_retractions.retractions == len(retracted)
    assert with_retractions.train_labels == never_sent.train_labels
    assert with_retractions.holdout_labels == never_sent.holdout_labels == 40 - 2
    (a,), (b,) = with_retractions.candidates, never_sent.candidates
    assert a.correct == b.correct and a.metrics.to_dict() == b.metrics.to_dict()
    assert [a.state.predict(x) for x in probe] == [b.state.predict(x) for x in probe]


CONFIG = """<View><Text name="t" value="$text"/>
  <Choices name="first" toName="t"><Choice value="a"/><Choice value="b"/></Choices>
  <Choices name="flag" toName="t"><Choice value="Yes" alias="TRUE"/><Choice value="false"/></Choices>
</View>"""


def model(classes) -> ModelConfig:
    settings = settings_from_mapping(
        {
            "models": {
                "m": {
                    "task": "classification",
                    "classes": classes,
                    "pipeline": {"name": "logistic_regression"},
                    "features": {"x": {"type": "number"}},
                }
            }
        }
    )
    (config,) = settings.models
    return config


def test_the_tag_whose_choices_are_the_classes_is_bound():
    flags = bind(CONFIG, model([True, False]), ("schema",))
    assert flags.tag.name == "flag"  # the first tag is no fit; the alias names the class
    assert flags.to_class == {"TRUE": True, "false": False}
    assert flags.choice_of(True) == "TRUE" and flags.choice_of(1) is None
    assert bind(CONFIG, model(["a", "b"]), ("schema",)).tag.name == "first"
    with pytest.raises(SchemaViolation) as refused:
        bind(CONFIG, model(["a", "c"]), ("body", "schema"))
    (error,) = refused.value.errors
    assert error.loc == ("body", "schema")
    assert "'b'" in error.msg and "classes with no choice: 'c'" in error.msg
    assert '<Choices name="flag">' in error.msg  # every tag says why it does not fit


def test_the_model_version_moves_with_learning_by_epochs():
    versions = [model_version("v3", seq) for seq in range(0, 5 * EPOCH_STEP)]
    changes = [seq for seq in range(1, len(versions)) if versions[seq] != versions[seq - 1]]
    # Every power of two while young, then every EPOCH_STEP events.
    assert changes == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 3072, 4096]
    assert versions[0] == "v3-0" and versions[1500] == "v3-1024"


def test_task_text_past_pythons_digit_limit_is_left_for_the_schema_to_refuse():
    schema = Schema.from_config({"n": {"type": "integer"}, "x": {"type": "number"}})
    digits = "9" * 5000  # int() refuses past 4300 digits: a 500 of predict and webhook before
    features = task_features({"n": digits, "x": digits}, schema)
    assert features == {"n": digits, "x": digits}
    with pytest.raises(SchemaViolation) as refused:
        schema.validate(features)
    assert [e.loc for e in refused.value.errors] == [("n",), ("x",)]


def test_a_huge_label_config_is_not_kept_in_the_parse_cache():
    from onlearn.label_studio.protocol import CACHED_CONFIG_CHARS, _cached_choices

    padding = "<Text/>" * (CACHED_CONFIG_CHARS // 7 + 1)
    config = CONFIG.replace("</View>", padding + "</View>")
    before = _cached_choices.cache_info().currsize
    for i in range(3):  # each distinct, as a sender making the cache hold its bodies would
        tags = choices_tags(config + " " * i)
        assert [t.name for t in tags] == ["first", "flag"]
    assert _cached_choices.cache_info().currsize == before
    choices_tags(CONFIG + "  ")
    assert _cached_choices.cache_info().currsize == before + 1
