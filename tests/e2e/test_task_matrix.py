"""Every task on every shared backend, end to end: {binary, multiclass, regression} x {SQLite,
Redis}, each through predict, feedback, the labelling queue (classification), a retrain, promote,
rollback, input drift seen by the monitor, ``/metrics`` and the dashboard.

One config holds the three models, so a store costs one deployment: ``onlearn serve`` on a SQLite
file (which runs its worker and monitor as processes beside it), or a serving replica on Redis
with an ``onlearn worker`` and an ``onlearn monitor`` process of their own, as
docs/operations.md deploys it. Each cell walks its own model, so a failure names the task and
the store, and no cell depends on another having run. Small monitor windows keep it fast.
"""

from __future__ import annotations

import json
import math
import random
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.browser import browser_page
from tests.e2e.helpers import (
    READY_TIMEOUT,
    REPLICA_ENV,
    described,
    message,
    shutdown,
    start_role,
    stop_role,
    strict_json,
    wait_until,
    write_config,
)
from tests.servers import ServerProcess

# The queue takes every prediction whose margin uncertainty 1 - (p1 - p2) is above this, and
# only those: a fixed threshold with the whole budget makes the sampler's choice checkable.
THRESHOLD = 0.5
# No random evaluation slice (an active table's default is 0.01): the queue holds exactly the
# uncertain answers.
ACTIVE = (
    f'active = {{ strategy = "fixed_uncertainty", measure = "margin", threshold = {THRESHOLD}, '
    "budget = 1.0, evaluation_rate = 0.0 }"
)
# Windows of 100 predictions against references of 100 labels; a report may follow every 50
# predictions (and after any pause in the traffic).
MONITOR = "window = 100\nreference_size = 100\nreport_every = 50\nmin_report_interval_s = 0.1"
# A number the training data never comes near: the drift phase moves feature `a` by this many
# standard deviations.
SHIFT = 4.0

CONFIG = f"""
[security]
secret_key = "matrix-processes-share-this-key"

[engine]
worker_poll_s = 0.1
poll_interval_ms = 20

[models.binary]
task = "classification"
classes = ["pos", "neg"]
pipeline = {{ name = "logistic_regression", lr = 0.5 }}
{ACTIVE}
[models.binary.monitor]
{MONITOR}
[models.binary.features]
a = {{ type = "number" }}
b = {{ type = "number" }}

[models.multiclass]
task = "classification"
classes = ["a", "b", "c"]
pipeline = {{ name = "logistic_regression", lr = 0.5 }}
{ACTIVE}
[models.multiclass.monitor]
{MONITOR}
[models.multiclass.features]
a = {{ type = "number" }}
b = {{ type = "number" }}
c = {{ type = "number" }}

[models.regression]
task = "regression"
pipeline = {{ name = "linear_regression" }}
[models.regression.monitor]
{MONITOR}
[models.regression.features]
a = {{ type = "number" }}
b = {{ type = "number" }}
"""

TRAIN = 300  # labels given with their features inline: the reference and a model that learned
PREDICT = 100  # then predicted, and labelled by prediction id (the queued ones by a person)
DRIFT = 150  # shifted predictions: the last 100 fill the monitor's window


def gauss(rng: random.Random, shift: float = 0.0, mean_of: str = "a") -> Callable[[str], float]:
    return lambda name: round(rng.gauss(shift if name == mean_of else 0.0, 1), 4)


def binary_rows(rng: random.Random, n: int, shift: float = 0.0) -> list[tuple[dict, Any]]:
    """ "pos" above the line a + b = 0."""
    draw = gauss(rng, shift)
    rows = [{"a": draw("a"), "b": draw("b")} for _ in range(n)]
    return [(r, "pos" if r["a"] + r["b"] > 0 else "neg") for r in rows]


def multiclass_rows(rng: random.Random, n: int, shift: float = 0.0) -> list[tuple[dict, Any]]:
    """The class is the name of the largest feature."""
    draw = gauss(rng, shift)
    rows = [{"a": draw("a"), "b": draw("b"), "c": draw("c")} for _ in range(n)]
    return [(r, max(r, key=r.__getitem__)) for r in rows]


def regression_rows(rng: random.Random, n: int, shift: float = 0.0) -> list[tuple[dict, Any]]:
    draw = gauss(rng, shift)
    rows = [{"a": draw("a"), "b": draw("b")} for _ in range(n)]
    return [(r, round(3 * r["a"] - 2 * r["b"] + 10 + rng.gauss(0, 0.5), 4)) for r in rows]


@dataclass(frozen=True)
class Task:
    model: str
    rows: Callable[..., list[tuple[dict, Any]]]
    classes: tuple | None  # None: regression
    features: tuple[str, ...]

    @property
    def classification(self) -> bool:
        return self.classes is not None


TASKS = {
    "binary": Task("binary", binary_rows, ("pos", "neg"), ("a", "b")),
    "multiclass": Task("multiclass", multiclass_rows, ("a", "b", "c"), ("a", "b", "c")),
    "regression": Task("regression", regression_rows, None, ("a", "b")),
}


# Deployments


@dataclass
class Deployment:
    store: str
    server: ServerProcess
    roles: dict[str, subprocess.Popen] = field(default_factory=dict)  # Redis: worker, monitor
    logs: dict[str, Path] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    def is_worker(self, pid: int) -> bool:
        """Whether ``pid`` is the deployment's worker: the process started on Redis, or on
        SQLite a child of the server other than the server itself."""
        if "worker" in self.roles:
            return pid == self.roles["worker"].pid
        stat = Path(f"/proc/{pid}/stat").read_text()
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        return pid != self.server.proc.pid and parent == self.server.proc.pid

    def output(self) -> str:
        """The tails of every process's log, for a failure message."""
        parts = [f"--- server\n{self.server.output()[-3000:]}"]
        parts += [f"--- {n}\n{p.read_text(errors='replace')[-3000:]}" for n, p in self.logs.items()]
        return "\n".join(parts)


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def deployment(request, tmp_path_factory) -> Iterator[Deployment]:
    directory = tmp_path_factory.mktemp(f"matrix-{request.param}")
    config = write_config(directory, CONFIG)
    if request.param == "sqlite":
        # The embedded store: `onlearn serve` starts the worker and the monitor beside it.
        server = ServerProcess(config, f"sqlite:///{directory}/onlearn.db").launch()
        deployment = Deployment("sqlite", server)
    else:
        # A database of this module's own on the session's private redis-server.
        url = f"{request.getfixturevalue('redis_server')}/3"
        client = redis.Redis.from_url(url, socket_timeout=5)
        try:
            client.flushdb()
        finally:
            client.close()
        # A serving replica runs neither the worker nor the monitor on a shared store: each is a
        # process of its own, started side by side with the server.
        logs = {role: directory / f"{role}.log" for role in ("worker", "monitor")}
        roles = {role: start_role(role, config, url, log) for role, log in logs.items()}
        server = ServerProcess(config, url, env=REPLICA_ENV).launch()
        deployment = Deployment("redis", server, roles, logs)
    try:
        server.wait_ready(READY_TIMEOUT)
        yield deployment
    finally:
        codes = {name: stop_role(process) for name, process in deployment.roles.items()}
        shutdown(server)
    # The worker and the monitor stop cleanly on SIGTERM (None: they had to be killed).
    assert codes == {name: 0 for name in deployment.roles}, (codes, deployment.output())


@pytest.fixture(scope="module")
def page() -> Iterator:
    """One headless browser for the module; each cell opens its model's dashboard in it."""
    with browser_page() as page:
        page.set_viewport_size({"width": 1400, "height": 900})
        yield page


# HTTP steps


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, (response.status_code, response.text)
    return strict_json(response)


def predict_batch(
    api: httpx.Client, task: Task, rows: list[dict], version: str, seen: list[tuple[dict, dict]]
) -> list[dict]:
    """The answers to ``rows`` in one call, each checked for the task's shape and answered by
    ``version``, and kept with their features in ``seen`` (every prediction of the test)."""
    body = {"rows": [{"features": features} for features in rows]}
    answers = ok(api.post(f"/models/{task.model}/predict/batch", json=body))["predictions"]
    assert len(answers) == len(rows)
    for answer in answers:
        assert_answer(task, answer, version)
    seen.extend(zip(rows, answers, strict=True))
    return answers


def assert_answer(task: Task, answer: dict, version: str) -> None:
    """A classifier names one of its classes with a probability for each, summing to 1, and its
    sampler queues the answer exactly when it is uncertain; a regressor answers a number, with
    no probabilities and nothing to ask a person."""
    assert answer["model"] == task.model and answer["version"] == version, answer
    if task.classification:
        assert answer["label"] in task.classes, answer
        assert set(answer["proba"]) == set(task.classes), answer
        assert math.isclose(sum(answer["proba"].values()), 1.0, abs_tol=1e-9), answer
        assert answer["label"] == max(answer["proba"], key=answer["proba"].get), answer
        assert 0.0 <= answer["uncertainty"] <= 1.0
        assert answer["queued"] is (answer["uncertainty"] > THRESHOLD), answer
    else:
        assert isinstance(answer["label"], float) and math.isfinite(answer["label"]), answer
        assert answer["proba"] is None and answer["uncertainty"] is None, answer
        assert answer["queued"] is False, answer


def feedback_batch(api: httpx.Client, task: Task, items: list[dict]) -> list[dict]:
    results = ok(api.post(f"/models/{task.model}/feedback/batch", json={"items": items}))
    results = results["results"]
    assert len(results) == len(items)
    assert all(r.get("applied") is True for r in results), results
    return results


def drift_report(api: httpx.Client, task: Task) -> dict:
    return ok(api.get(f"/models/{task.model}/drift"))


def report_when(
    api: httpx.Client, task: Task, ready: Callable[[dict], Any], what: str, timeout: float = 30.0
) -> dict:
    """The monitor's report once ``ready(report)`` holds (it reads 2 s behind the present)."""
    deadline = time.monotonic() + timeout
    while True:
        report = drift_report(api, task)
        if report.get("updated_at") is not None and ready(report):
            return report
        if time.monotonic() > deadline:
            keys = ("updated_at", "roles", "reference", "validation", "input_drift", "alarms")
            brief = {k: report.get(k) for k in keys}
            raise AssertionError(f"no report with {what} after {timeout} s: {brief}")
        time.sleep(0.3)


def prometheus(api: httpx.Client) -> dict[tuple[str, tuple], float]:
    text = api.get("/metrics")
    assert text.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text.text)
        for sample in family.samples
    }


def of_model(samples: dict, metric: str, model: str) -> dict[tuple, float]:
    return {
        labels: value
        for (name, labels), value in samples.items()
        if name == metric and ("model", model) in labels
    }


def version_metrics(api: httpx.Client, task: Task) -> dict:
    return ok(api.get(f"/models/{task.model}/metrics"))["versions"]


# The matrix


@pytest.mark.parametrize("name", list(TASKS))
def test_a_model_of_each_task_on_each_store(deployment: Deployment, page, name: str) -> None:
    task = TASKS[name]
    m = f"/models/{task.model}"
    rng = random.Random(f"{deployment.store}-{name}")
    with httpx.Client(base_url=deployment.url, timeout=30) as api:
        # (1) Labels with their features inline: the first TRAIN events of the model's log,
        # learned by v1 before each call answers.
        train = task.rows(rng, TRAIN)
        results = feedback_batch(api, task, [{"features": f, "label": y} for f, y in train])
        assert [r["seq"] for r in results] == list(range(1, TRAIN + 1))
        assert {r["version"] for r in results} == {"v1"}

        # (2) Predictions of the task's shape; the sampler queues exactly the uncertain ones.
        seen: list[tuple[dict, dict]] = []
        rows = task.rows(rng, PREDICT)
        answers = predict_batch(api, task, [f for f, _ in rows], "v1", seen)
        truth = {a["prediction_id"]: y for a, (_, y) in zip(answers, rows, strict=True)}
        queued = {a["prediction_id"] for a in answers if a["queued"]}
        if task.classification:
            # A model that learned 300 labels is sure of some answers and unsure of others.
            assert 0 < len(queued) < PREDICT, len(queued)
            correct = sum(a["label"] == truth[a["prediction_id"]] for a in answers)
            assert correct >= 0.8 * PREDICT, correct
        else:
            mae = sum(abs(a["label"] - truth[a["prediction_id"]]) for a in answers) / PREDICT
            assert mae < 1.5, mae  # labels spread over ~3.6 around 10: it learned the plane

        # (3) The true labels of the answers nobody asks a person about, by prediction id.
        items = [{"prediction_id": p, "label": y} for p, y in truth.items() if p not in queued]
        results = feedback_batch(api, task, items)
        assert [r["seq"] for r in results] == list(range(TRAIN + 1, TRAIN + 1 + len(items)))
        labels = TRAIN + len(items)

        # (4) The queue: a person claims an uncertain case and labels it; the model learns it.
        if task.classification:
            stats = wait_until(
                lambda: (s := ok(api.get(f"{m}/queue/stats")))["pushed"] == len(queued) and s,
                timeout=10,
            )
            assert stats["depth"] == len(queued), stats
            (item,) = ok(api.post(f"{m}/queue/claim", json={"limit": 1, "labeller": "ann"}))[
                "items"
            ]
            assert item["prediction_id"] in queued and item["reason"] == "uncertain", item
            assert item["classes"] == list(task.classes)
            body = {"label": truth[item["prediction_id"]], "claim_id": item["claim_id"]}
            label = ok(api.post(f"{m}/queue/{item['item_id']}/label", json=body))
            assert label == {
                "seq": labels + 1,
                "version": "v1",
                "durable": True,
                "applied": True,
            }, label
            labels += 1
            stats = ok(api.get(f"{m}/queue/stats"))
            assert (stats["depth"], stats["labelled"]) == (len(queued) - 1, 1), stats
            # The application sends the label of another queued case: it leaves the queue,
            # answered elsewhere, and no claim hands it to a person (issue 13, section 1).
            elsewhere = next(p for p in sorted(queued) if p != item["prediction_id"])
            app = feedback_batch(
                api, task, [{"prediction_id": elsewhere, "label": truth[elsewhere]}]
            )
            assert app[0]["seq"] == labels + 1
            labels += 1
            stats = ok(api.get(f"{m}/queue/stats"))
            assert (stats["depth"], stats["answered_elsewhere"]) == (len(queued) - 2, 1), stats
            sources = {"app": labels - 1, "human": 1}
        else:
            # Active learning is for classifiers only: a regression model has no queue, and
            # the answer says why rather than suggest a table its config would refuse.
            for response in (
                api.post(f"{m}/queue/claim", json={"limit": 1}),
                api.get(f"{m}/queue/stats"),
            ):
                message(response, 404, "regression model", "classification models only")
            sources = {"app": labels}
        v1 = version_metrics(api, task)["v1"]
        assert v1["n"] == labels and v1["labels_by_source"] == sources, v1
        assert described(api, task.model)["counters"]["labels_applied"] == labels

        # (4b) A label that meets the recorded one (issue 13, section 2): the same label again is
        # idempotent; a different one (a different number, for regression) is 409 naming the
        # recorded label, and not used, unless sent as a correction, which is its own event,
        # learned, and scored once: the prediction's score now uses the corrected label.
        pid, y = items[0]["prediction_id"], items[0]["label"]
        first_seq = results[0]["seq"]
        answered = next(a["label"] for _, a in seen if a["prediction_id"] == pid)
        other = next(c for c in task.classes if c != y) if task.classification else y + 2.5
        same = ok(api.post(f"{m}/feedback", json={"prediction_id": pid, "label": y}))
        assert same == {"seq": first_seq, "version": "v1", "durable": True, "applied": True}, same
        refused = api.post(f"{m}/feedback", json={"prediction_id": pid, "label": other})
        assert refused.status_code == 409, refused.text
        recorded = {"label": y, "source": "app", "labeller": None, "seq": first_seq}
        assert refused.json()["detail"]["recorded"] == recorded, refused.text
        assert refused.json()["detail"]["used"] is False
        batch = ok(
            api.post(
                f"{m}/feedback/batch",
                json={
                    "items": [
                        {"prediction_id": pid, "label": y},
                        {"prediction_id": pid, "label": other},
                    ]
                },
            )
        )["results"]
        assert batch[0]["seq"] == first_seq and batch[1]["error"]["status"] == 409, batch
        assert batch[1]["error"]["detail"]["recorded"] == recorded, batch
        before = version_metrics(api, task)["v1"]
        fix = {
            "prediction_id": pid,
            "label": other,
            "correction": True,
            "source": "human",
            "labeller": "zoe",
        }
        corrected = ok(api.post(f"{m}/feedback", json=fix))
        assert corrected == {
            "seq": labels + 1,
            "version": "v1",
            "durable": True,
            "applied": True,
            "correction": True,
        }
        retried = ok(api.post(f"{m}/feedback", json={"prediction_id": pid, "label": other}))
        assert retried == corrected, retried  # the corrected label again: idempotent
        late = api.post(f"{m}/feedback", json={"prediction_id": pid, "label": y})
        assert late.status_code == 409 and late.json()["detail"]["recorded"]["seq"] == labels + 1
        after = version_metrics(api, task)["v1"]
        assert after["n"] == before["n"] == labels, after  # scored once
        if task.classification:
            delta = (answered == other) - (answered == y)
            assert round((after["accuracy"] - before["accuracy"]) * labels) == delta
        else:
            delta = abs(other - answered) - abs(y - answered)
            assert math.isclose((after["mae"] - before["mae"]) * labels, delta, abs_tol=1e-6)
        assert after["corrections"]["total"] == 1 and after["corrections"]["rescored"] == 1
        assert after["corrections"]["by_labeller"] == {"zoe": 1}
        assert after["corrections"]["corrected_by_source"] == {"app": 1}
        conflicts = 3
        if not task.classification:
            # A regression label is a number: an equal number is the same label (10 is 10.0).
            ten = {"features": train[0][0], "label": 10, "event_id": "ten"}
            assert ok(api.post(f"{m}/feedback", json=ten))["seq"] == labels + 2
            assert ok(api.post(f"{m}/feedback", json={**ten, "label": 10.0}))["seq"] == labels + 2
            refused = api.post(f"{m}/feedback", json={**ten, "label": 10.5})
            assert (
                refused.status_code == 409 and "label not used" in refused.json()["detail"]["msg"]
            )
            labels += 1
            conflicts += 1
        samples = prometheus(api)
        v1_human = (("model", task.model), ("source", "human"), ("version", "v1"))
        assert samples["onlearn_version_corrections", v1_human] == 1
        assert samples["onlearn_label_conflicts_total", (("model", task.model),)] == conflicts
        # An online model cannot unlearn: the correction is one more event it learns.
        assert described(api, task.model)["counters"]["labels_applied"] == labels + 1

        # (5) A retrain, run by the worker process, registers v2 as challenger.
        job = ok(api.post(f"{m}/retrain", json={"register_anyway": True, "reason": "matrix"}), 202)
        # Meanwhile the monitor (2 s behind) profiles v1's first labels: the reference the drift
        # phase is compared with once v1 is champion again. Waited for before any role change:
        # a monitor that starts after the promote and the rollback reads back only the last
        # `reference_size` events of the log, which then hold too few labels for it.
        report = report_when(
            api,
            task,
            lambda r: r["reference"]["ready"],
            "the reference of v1",
        )
        assert report["reference"] == {"version": "v1", "ready": True, "rows": 100}
        job = wait_until(
            lambda: (
                (j := ok(api.get(f"/jobs/{job['job_id']}")))["state"] in ("done", "failed") and j
            ),
            timeout=60,
            every=0.1,
        )
        assert job["state"] == "done", (job, deployment.output())
        # Run by the worker process, not by the server (a worker names itself host:pid:random).
        assert deployment.is_worker(int(job["worker"].split(":")[1])), job["worker"]
        assert job["result"]["registered"] == "v2", job["result"]
        # The refit trained on the log with the correction of (4b) applied.
        assert job["result"]["refit"]["corrections"] == {"events": 1, "applied": 1}
        versions = {v["version"]: v for v in ok(api.get(f"{m}/versions"))["versions"]}
        assert versions["v2"]["lineage"]["source"] == "refit"
        assert versions["v2"]["lineage"]["parent"] == "v1"
        wait_until(lambda: described(api, task.model)["roles"].get("challenger") == "v2")

        # (6) Promote v2: it answers. Roll back: v1 answers again, exactly as before.
        probes = [features for features, _ in task.rows(rng, 5)]
        before = predict_batch(api, task, probes, "v1", seen)
        promoted = ok(api.post(f"{m}/versions/v2/promote", json={"role": "champion"}))
        assert promoted["roles"] == {"champion": "v2", "previous": "v1"}, promoted
        predict_batch(api, task, probes, "v2", seen)
        rolled = ok(api.post(f"{m}/rollback", json={"reason": "matrix"}))
        assert rolled["roles"] == {"champion": "v1"}, rolled
        after = predict_batch(api, task, probes, "v1", seen)
        assert [(a["label"], a["proba"]) for a in after] == [
            (a["label"], a["proba"]) for a in before
        ]

        # (7) Drift: feature `a` moves SHIFT standard deviations in more than a window of
        # traffic; the monitor sees it in `a` alone.
        shifted = [f for f, _ in task.rows(rng, DRIFT, shift=SHIFT)]
        predict_batch(api, task, shifted, "v1", seen)
        predictions = len(seen)
        report = report_when(
            api,
            task,
            lambda r: (
                r["validation"]["rows"] == predictions and (r["input_drift"] or {}).get("alarm")
            ),
            f"input drift, after all {predictions} predictions",
        )
        assert report["task"] == ("classification" if task.classification else "regression")
        assert report["roles"] == {"champion": "v1"}
        assert report["reference"]["version"] == "v1" and report["reference"]["ready"]
        assert report["input_drift"]["drifted"] == ["a"], report["input_drift"]
        assert report["input_drift"]["n"] == 100
        alarms = [a for a in report["alarms"] if a["kind"] == "input_drift"]
        assert alarms and alarms[-1]["features"] == ["a"], report["alarms"]

        # (8) /metrics: the gauges of the task, equal to the monitor's report.
        quality = "accuracy" if task.classification else "mae"
        gauge = f"onlearn_recent_{quality}"
        v1_labels = (("model", task.model), ("version", "v1"))
        samples = wait_until(
            lambda: (s := prometheus(api)).get((gauge, v1_labels)) == report[quality]["v1"] and s,
            timeout=5,
            every=0.5,
        )
        share = (("model", task.model),)
        assert samples["onlearn_drift_share", share] == report["input_drift"]["drift_share"] > 0
        assert samples["onlearn_alarms", (("kind", "input_drift"), ("model", task.model))] >= 1
        # Each version's prequential metrics, as GET /models/{name}/metrics gives them.
        v1 = version_metrics(api, task)["v1"]
        assert samples["onlearn_version_labels", v1_labels] == v1["n"] == labels
        for metric in ("accuracy", "log_loss") if task.classification else ("mae", "rmse"):
            assert samples[f"onlearn_version_{metric}", v1_labels] == v1[metric], metric
        if task.classification:
            assert report["accuracy"]["v1"] >= 0.8, report["accuracy"]
            depth = samples["onlearn_queue_depth", share]
            # Every case the sampler queued (in (2), the probes and the drift phase) waits, but
            # the one labelled; a case asked about again (a probe) is one item.
            # The one labelled and the one the application labelled (4) are not waiting.
            waiting = len({json.dumps(f, sort_keys=True) for f, a in seen if a["queued"]}) - 2
            assert depth == report["queue"]["depth"] == waiting, report["queue"]
            # What happened to the queue's items, as its stats count them: the one labelled
            # through the queue, the one the application's feedback answered (4).
            assert report["queue"]["labelled"] == report["queue"]["answered_elsewhere"] == 1
            for outcome in ("pushed", "labelled", "answered_elsewhere", "skipped", "released"):
                labels_of = (("model", task.model), ("outcome", outcome))
                counted = samples["onlearn_queue_items_total", labels_of]
                assert counted == report["queue"][outcome], outcome
            absent = ("onlearn_recent_mae", "onlearn_recent_rmse", "onlearn_version_mae")
        else:
            assert 0 < report["mae"]["v1"] <= report["rmse"]["v1"] < 1.5, report["mae"]
            assert samples["onlearn_recent_rmse", v1_labels] == report["rmse"]["v1"]
            assert not {"accuracy", "recent_accuracy", "log_loss", "macro_f1"} & set(v1), v1
            absent = (
                "onlearn_recent_accuracy",
                "onlearn_version_accuracy",
                "onlearn_version_log_loss",
                "onlearn_queue_depth",
                "onlearn_queue_items_total",
            )
        for metric in absent:
            assert of_model(samples, metric, task.model) == {}, metric

    # (9) The dashboard draws the task's panels for this model.
    page.js_errors.clear()
    page.goto(f"{deployment.url}/ui/#model={task.model}")
    # The page of the previous task may still be open (a change of hash does not reload it): wait
    # for this model's report to be drawn, not the last one's.
    page.wait_for_function(
        f"document.querySelector('#status')?.textContent.startsWith({json.dumps(task.model + ': report of')})"
    )
    # attached, not visible: a flat line (100% accuracy) has an empty bounding box.
    page.wait_for_selector("#plot-accuracy path.series", state="attached")
    page.wait_for_function(
        "document.querySelector('[data-key=\"Input drift\"]')?.textContent.includes('ALARM')"
    )
    heading = page.locator("#plot-accuracy h2").inner_text()
    lines = page.eval_on_selector_all(
        "#plot-accuracy path.series", "els => els.map(e => e.dataset.series)"
    )
    summary = page.locator("#summary").inner_text()
    if task.classification:
        assert heading.startswith("Accuracy over time"), heading
        # Measured accuracy for v1, the only version with labels; estimated (from probabilities,
        # no labels needed) for v1 and, once the monitor has seen its answers, v2.
        assert [line for line in lines if not line.endswith(" estimated")] == ["v1"], lines
        assert "v1 estimated" in lines and set(lines) <= {"v1", "v1 estimated", "v2 estimated"}
        assert "ACCURACY NOW" in summary.upper() and "MAE NOW" not in summary.upper(), summary
    else:
        assert heading.startswith("Error over time"), heading
        assert sorted(lines) == ["v1", "v1 rmse"], lines
        assert "MAE NOW" in summary.upper() and "ACCURACY NOW" not in summary.upper(), summary
        assert "classification only" in page.locator('[data-key="Prediction drift"]').inner_text()
    queue = page.locator('[data-key="Labelling queue"]').inner_text()
    if task.classification:
        expected = f"{waiting} waiting · 0 claimed · 1 labelled · 1 answered by feedback"
        assert queue.endswith(expected), queue
    else:
        assert queue.endswith("no queue"), queue
    assert page.locator('[data-key="Input drift"]').inner_text().endswith("ALARM: a")
    drift_lines = page.eval_on_selector_all(
        "#plot-drift path.series", "els => els.map(e => e.dataset.series)"
    )
    assert sorted(drift_lines) == list(task.features)
    assert page.js_errors == []
