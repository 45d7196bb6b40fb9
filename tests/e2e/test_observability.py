"""/metrics as an operator's Prometheus sees it, on a real server: RED metrics by route template
(fast routes and FastAPI's, answers given before routing, bounded labels), learning lag,
snapshot and queue ages, and every metric the shipped dashboard and alert rules use."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.configs import OBS_MAX_BODY_BYTES, OBS_MODEL
from tests.e2e.helpers import READY_TIMEOUT, xy_rows
from tests.servers import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "docs" / "grafana" / "onlearn.json"
ALERTS = ROOT / "docs" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "tests" / "prometheus" / "alerts_test.yml"
REQUESTS = "onlearn_http_requests_total"
PREDICT = "/models/{name}/predict"


# When the module's server answered first: no prediction of the module is older, so no queue
# item is (the queue keeps the items of the tests before, too).
SERVED_SINCE: dict[str, float] = {}


@pytest.fixture(scope="module")
def obs(launched: dict[str, ServerProcess]) -> Iterator[httpx.Client]:
    server = launched["observability"].wait_ready(READY_TIMEOUT)
    SERVED_SINCE["obs"] = time.time()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


Samples = dict[tuple[str, tuple], float]


def scrape(api: httpx.Client) -> tuple[Samples, dict[str, str]]:
    """The samples by (name, sorted labels), and the declared families by name -> type."""
    response = api.get("/metrics")
    assert response.status_code == 200, response.text
    families = list(text_string_to_metric_families(response.text))
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples
    }
    return samples, {f.name: f.type for f in families}


def red(route: str, method: str, status: int) -> tuple[str, tuple]:
    return REQUESTS, (("method", method), ("route", route), ("status", str(status)))


def delta(before: Samples, after: Samples, key: tuple[str, tuple]) -> float:
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_requests_are_counted_and_timed_by_route_template_method_and_status(obs):
    before, _ = scrape(obs)
    features = xy_rows(3, seed=1)
    answers = [
        obs.post(f"/models/{OBS_MODEL}/predict", json={"features": x}).json() for x, _ in features
    ]
    ack = obs.post(
        f"/models/{OBS_MODEL}/feedback",
        json={"prediction_id": answers[0]["prediction_id"], "label": features[0][1]},
    )
    calls = [
        # (request, the status it must get, the route it is counted under)
        (lambda: ack, 200, "POST", "/models/{name}/feedback"),
        (
            lambda: obs.post(f"/models/{OBS_MODEL}/predict", json={"features": 3}),
            422,
            "POST",
            PREDICT,
        ),
        (lambda: obs.post("/models/nope/predict", json={"features": {}}), 404, "POST", PREDICT),
        (lambda: obs.get(f"/models/{OBS_MODEL}"), 200, "GET", "/models/{name}"),
        (lambda: obs.get("/models/nope"), 404, "GET", "/models/{name}"),
        (lambda: obs.delete(f"/models/{OBS_MODEL}/predict"), 405, "DELETE", PREDICT),
        # Refused by the size limit before any route ran: still counted under its template.
        (
            lambda: obs.post(
                f"/models/{OBS_MODEL}/predict",
                content=b'{"features": {"x": "' + b"9" * OBS_MAX_BODY_BYTES + b'"}}',
                headers={"content-type": "application/json"},
            ),
            413,
            "POST",
            PREDICT,
        ),
    ]
    for call, status, _, _ in calls[1:]:
        assert call().status_code == status
    assert ack.status_code == 200, ack.text
    after, families = scrape(obs)
    assert delta(before, after, red(PREDICT, "POST", 200)) == 3, "the fast predict route"
    for _, status, method, route in calls:
        assert delta(before, after, red(route, method, status)) == 1, (route, method, status)
    assert families["onlearn_http_request_duration_seconds"] == "histogram"
    # The histogram agrees with the counter, cumulatively, for every series.
    for (name, labels), count in after.items():
        if name != REQUESTS:
            continue
        buckets = sorted(
            (float(dict(lb)["le"]), value)
            for (n, lb), value in after.items()
            if n == "onlearn_http_request_duration_seconds_bucket"
            and tuple(p for p in lb if p[0] != "le") == labels
        )
        assert buckets and buckets[-1] == (float("inf"), count), labels
        assert [v for _, v in buckets] == sorted(v for _, v in buckets), "cumulative"
        assert after["onlearn_http_request_duration_seconds_count", labels] == count
        assert after["onlearn_http_request_duration_seconds_sum", labels] > 0
    routes = {dict(labels)["route"] for name, labels in after if name == REQUESTS}
    assert not any({OBS_MODEL, "nope"} & set(r.split("/")) for r in routes), routes


def test_paths_no_route_serves_make_one_series(obs):
    before, _ = scrape(obs)
    for _ in range(30):
        token = uuid.uuid4().hex
        assert obs.get(f"/{token}").status_code == 404
        assert obs.post(f"/models/{OBS_MODEL}/{token}/x", json={}).status_code == 404
    after, _ = scrape(obs)
    assert delta(before, after, red("other", "GET", 404)) == 30
    assert delta(before, after, red("other", "POST", 404)) == 30
    new = {key for key in after if key[0] == REQUESTS} - {key for key in before}
    assert new <= {red("other", "GET", 404), red("other", "POST", 404), red("/metrics", "GET", 200)}


def _wait_for(api: httpx.Client, ready, timeout: float = 30.0) -> Samples:
    deadline = time.monotonic() + timeout
    while True:
        samples, _ = scrape(api)
        if ready(samples):
            return samples
        assert time.monotonic() < deadline, "the metrics never settled"
        time.sleep(0.2)


def test_learning_lag_snapshot_age_and_queue_age(obs):
    model = (("model", OBS_MODEL),)
    started = time.time()
    # Predictions without labels wait in the queue (every prediction is asked for).
    for x, _ in xy_rows(2, seed=5):
        assert obs.post(f"/models/{OBS_MODEL}/predict", json={"features": x}).status_code == 200
    # Labels with their features: the log grows past the snapshot interval (5 events).
    for x, y in xy_rows(12, seed=6):
        body = {"features": x, "label": y}
        assert obs.post(f"/models/{OBS_MODEL}/feedback", json=body).status_code == 200
    applied = obs.get(f"/models/{OBS_MODEL}").json()["applied_seq"]
    assert applied >= 12

    def settled(s: Samples) -> bool:
        return (
            s.get(("onlearn_log_head_seq", model), 0) >= applied
            and ("onlearn_snapshot_age_seconds", model) in s
        )

    first = _wait_for(obs, settled)
    assert first["onlearn_learning_lag_events", model] == max(
        first["onlearn_log_head_seq", model] - first["onlearn_applied_seq", model], 0
    )
    assert first["onlearn_learning_lag_events", model] == 0, "read-your-writes: all applied"
    snapshot_age = first["onlearn_snapshot_age_seconds", model]
    assert 0 <= snapshot_age <= time.time() - started + 1
    queue_age = first["onlearn_queue_oldest_age_seconds", model]
    assert 0 < queue_age <= time.time() - SERVED_SINCE["obs"] + 1
    time.sleep(1.0)
    second, _ = scrape(obs)
    assert second["onlearn_queue_oldest_age_seconds", model] >= queue_age + 0.9, "it grows"


# --- the dashboard and the alert rules --------------------------------------------------------

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_METRIC = re.compile(r"\b(?:onlearn|process)_[a-zA-Z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: label values (quoted) and label names
    aside, every name onlearn exports starts with ``onlearn_`` or ``process_``.

    >>> sorted(metric_names('sum(rate(onlearn_http_requests_total{route="/x",status=~"5.."}[5m]))'))
    ['onlearn_http_requests_total']
    """
    return set(_METRIC.findall(_STRINGS.sub('""', expr)))


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = []

    def walk(panels: list) -> None:
        for panel in panels:
            exprs.extend(t["expr"] for t in panel.get("targets", []) if t.get("expr"))
            walk(panel.get("panels", []))

    walk(dashboard["panels"])
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        if variable.get("type") == "query":
            exprs.append(query["query"] if isinstance(query, dict) else query)
    return exprs


def alert_rules() -> list[dict]:
    document = yaml.safe_load(ALERTS.read_text())
    assert set(document) == {"groups"}
    rules = []
    for group in document["groups"]:
        assert set(group) <= {"name", "interval", "rules"} and group["name"], group
        for rule in group["rules"]:
            rules.append(rule)
    return rules


def test_the_alert_rules_are_well_formed():
    rules = alert_rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names)) and len(rules) >= 5
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}
        assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", rule["alert"]), rule["alert"]
        assert metric_names(rule["expr"]), f"{rule['alert']}: no onlearn metric"
        assert rule.get("for") is None or re.fullmatch(r"[0-9]+[smhd]", rule["for"])
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]


def test_the_dashboard_is_importable():
    """What Grafana's import needs: unique panel ids, placed panels, queries on the data source
    variable, and only the variables the dashboard defines."""
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "model", "instance"} <= variables
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]) and panel["gridPos"]["w"] <= 24
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"], panel["title"]
        for target in panel["targets"]:
            used = set(re.findall(r"\$(\w+)", target["expr"])) - {"__rate_interval"}
            assert used <= variables, (panel["title"], used)


def test_every_metric_of_the_dashboard_and_the_alert_rules_exists(obs):
    # A little traffic, so that the series appear (predict, feedback, a 404).
    for x, y in xy_rows(25, seed=9):
        answer = obs.post(f"/models/{OBS_MODEL}/predict", json={"features": x}).json()
        obs.post(
            f"/models/{OBS_MODEL}/feedback",
            json={"prediction_id": answer["prediction_id"], "label": y},
        )
    obs.get("/nowhere")
    _, families = scrape(obs)
    exported = set()
    for name, kind in families.items():
        exported.add(name)
        if kind == "counter":
            exported |= {f"{name}_total", f"{name}_created"}
        elif kind == "histogram":
            exported |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    used: dict[str, set[str]] = {}
    exprs = dashboard_exprs() + [r["expr"] for r in alert_rules()]
    assert len(exprs) >= 10
    for expr in exprs:
        for name in metric_names(expr):
            used.setdefault(name, set()).add(expr)
    missing = {name: sorted(where) for name, where in used.items() if name not in exported}
    assert not missing, f"metrics used but not exported: {missing}"
    # What the issue asks the dashboard and the rules to watch.
    for needed in (
        "onlearn_learning_lag_events",
        "onlearn_alarms",
        "onlearn_estimated_accuracy",
        "onlearn_http_requests_total",
        "onlearn_http_request_duration_seconds_bucket",
    ):
        assert needed in used, needed


def test_promtool_accepts_the_alert_rules_and_their_unit_tests():
    """Prometheus's own checks (promtool, from Debian's prometheus package, which
    scripts/ensure-system-deps installs for `make test`)."""
    promtool = shutil.which("promtool")
    assert promtool, (
        "promtool is missing: run scripts/ensure-system-deps (apt-get install prometheus)"
    )
    done = subprocess.run([promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    # The rules' behaviour on made-up series: each fires when it should, and only then.
    done = subprocess.run(
        [promtool, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_readme_prometheus_config_loads_the_shipped_rules():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Metrics, dashboard and alerts\n", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```yaml\n(.*?)```", section, re.S)
    config = yaml.safe_load(block)
    (job,) = config["scrape_configs"]
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:8000"]
    assert [ROOT / path for path in config["rule_files"]] == [ALERTS]
    assert "docs/grafana/onlearn.json" in section and DASHBOARD.is_file()
