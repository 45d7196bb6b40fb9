"""onlearn as the ML backend of a real Label Studio, end to end (`make e2e-label-studio`).

Starts Label Studio (its own venv, .venv-label-studio: its many pins stay out of the project's)
and `onlearn serve` on free loopback ports, then does through Label Studio's own API what a user
does in its UI: creates a project with a choices label config, imports tasks (a CSV file, and
JSON whose values are strings), connects onlearn as ML backend (HTTP Basic, the password an API
key), adds the key to the webhook Label Studio created for the backend, retrieves predictions,
annotates tasks, updates one annotation and deletes another. Then checks what onlearn learned:
every annotation once, as a person's label with the annotator as labeller, the update as a
correction, the deletion as a retraction, a new model version, and fresh predictions whose
scores order the tasks by uncertainty. With --screenshots DIR, headless Chromium takes pictures
of Label Studio's pages along the way (docs/label-studio.md shows them).

Exits 1 when a check fails; prints a summary (and writes it with --summary FILE).
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from onlearn.access import toml_entry  # noqa: E402
from tests.servers import free_port  # noqa: E402

LS_TOKEN = "0e2e1ab5c0ffee0e2e1ab5c0ffee0e2e1ab5c0ff"  # the admin's legacy API token, this run's
LS_USER, LS_PASSWORD = "admin@example.com", "onlearn-e2e-password"
KEY = "onl_e2e-label-studio-" + os.urandom(8).hex()
MODEL = "diagonal"
LABEL_CONFIG = """<View>
  <Header value="Which side of the diagonal x + y = 0 is the point on?"/>
  <Text name="point" value="x = $x, y = $y"/>
  <Choices name="side" toName="point" choice="single" showInLine="true">
    <Choice value="pos"/>
    <Choice value="neg"/>
  </Choices>
</View>"""
ONLEARN_CONFIG = f"""
[security]
api_keys = [ {toml_entry("label-studio", KEY, ["label"])} ]

[models.{MODEL}]
task = "classification"
classes = ["pos", "neg"]
pipeline = {{ name = "logistic_regression", lr = 0.5 }}
[models.{MODEL}.features]
x = {{ type = "number", min = -10, max = 10 }}
y = {{ type = "number", min = -10, max = 10 }}
"""


# Data Manager tab: the score shown, ordered lowest first; the columns that say nothing here hidden.
UNCERTAIN_FIRST = {
    "title": "Least confident first",
    "ordering": ["tasks:predictions_score"],
    "hiddenColumns": {
        "explore": [
            f"tasks:{c}"
            for c in (
                "inner_id", "annotations_results", "annotations_ids", "predictions_results",
                "file_upload", "storage_filename", "created_at", "updated_at", "updated_by",
                "avg_lead_time", "draft_exists", "cancelled_annotations", "total_predictions",
                "comment_count", "unresolved_comment_count", "comment_authors",
                "last_comment_updated_at", "annotators", "completed_at",
            )
        ],
        "labeling": [],
    },
}  # fmt: skip


class Checks:
    def __init__(self) -> None:
        self.passed: list[str] = []
        self.failed: list[str] = []

    def __call__(self, ok: bool, what: str, detail: object = "") -> None:
        (self.passed if ok else self.failed).append(what)
        print(f"{'ok  ' if ok else 'FAIL'} {what}" + (f": {detail}" if not ok and detail else ""))


def wait_http(url: str, timeout: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args[0]} exited; its log:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise SystemExit(f"{url} did not answer in {timeout:.0f} s; log:\n{log.read_text()[-3000:]}")


def start(cmd: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        cmd,
        stdout=open(log, "ab"),  # noqa: SIM115 - the child holds it
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def points(n: int, seed: int) -> list[tuple[float, float, str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        x, y = round(rng.uniform(-1, 1), 3), round(rng.uniform(-1, 1), 3)
        out.append((x, y, "pos" if x + y > 0 else "neg"))
    return out


def choice(label: str) -> list[dict]:
    return [
        {"from_name": "side", "to_name": "point", "type": "choices", "value": {"choices": [label]}}
    ]


def run(args: argparse.Namespace, work: Path, check: Checks) -> dict:
    ls_bin = Path(args.label_studio_venv) / "bin" / "label-studio"
    ls_port, onlearn_port = free_port(), free_port()
    ls_url, onlearn_url = f"http://127.0.0.1:{ls_port}", f"http://127.0.0.1:{onlearn_port}"
    (work / "onlearn.toml").write_text(ONLEARN_CONFIG)
    onlearn = start(
        [sys.executable, "-m", "onlearn.tools.cli", "serve", "--config", str(work / "onlearn.toml"),
         "--store", f"sqlite:///{work}/onlearn.db", "--port", str(onlearn_port), "--log-level", "warning"],
        work / "onlearn.log",
    )  # fmt: skip
    label_studio = start(
        [str(ls_bin), "start", "--no-browser", "--data-dir", str(work / "label-studio"),
         "--internal-host", "127.0.0.1", "--port", str(ls_port), "--username", LS_USER,
         "--password", LS_PASSWORD, "--user-token", LS_TOKEN, "--enable-legacy-api-token"],
        work / "label-studio.log",
        env={
            # onlearn runs on loopback here: Label Studio refuses local addresses for ML backends
            # and webhooks unless told otherwise (its SSRF protection).
            "ML_BLOCK_LOCAL_IP": "false",
            "SSRF_PROTECTION_ENABLED": "false",
            "SENTRY_DSN": "",  # no calls home from a test run
            "FRONTEND_SENTRY_DSN": "",
            "LABEL_STUDIO_BASE_DATA_DIR": str(work / "label-studio"),
        },
    )  # fmt: skip
    try:
        wait_http(f"{onlearn_url}/readyz", 120, onlearn, work / "onlearn.log")
        wait_http(f"{ls_url}/health", 300, label_studio, work / "label-studio.log")
        return loop(args, ls_url, onlearn_url, check)
    finally:
        stop(label_studio)
        stop(onlearn)


def loop(args, ls_url: str, onlearn_url: str, check: Checks) -> dict:
    ls = httpx.Client(base_url=ls_url, headers={"Authorization": f"Token {LS_TOKEN}"}, timeout=120)
    on = httpx.Client(base_url=onlearn_url, headers={"X-API-Key": KEY}, timeout=30)
    version = ls.get("/api/version").json().get("release")

    project = ls.post(
        "/api/projects", json={"title": "Diagonal (onlearn)", "label_config": LABEL_CONFIG}
    )
    check(project.status_code == 201, "project created with a <Choices> label config", project.text)
    pid = project.json()["id"]

    data = points(24, seed=7)
    csv = "x,y\n" + "\n".join(f"{x},{y}" for x, y, _ in data[:20])
    imported = ls.post(
        f"/api/projects/{pid}/import", files={"file": ("points.csv", csv, "text/csv")}
    )
    check(imported.status_code == 201, "20 tasks imported from a CSV file", imported.text)
    as_text = [{"x": str(x), "y": str(y)} for x, y, _ in data[20:]]
    imported = ls.post(f"/api/projects/{pid}/import", json=as_text)
    check(imported.status_code == 201, "4 tasks imported as JSON with string values", imported.text)
    tasks = ls.get("/api/tasks", params={"project": pid, "page_size": 100}).json()["tasks"]
    tasks.sort(key=lambda t: t["id"])
    truth = {t["id"]: label for t, (_, _, label) in zip(tasks, data, strict=True)}

    ml = ls.post(
        "/api/ml",
        json={"url": f"{onlearn_url}/label-studio/{MODEL}", "project": pid, "title": "onlearn",
              "auth_method": "BASIC_AUTH", "basic_auth_user": "label-studio",
              "basic_auth_pass": KEY, "is_interactive": False},
    )  # fmt: skip
    backend = ml.json()
    check(
        ml.status_code == 201 and backend.get("readable_state") == "Connected",
        "onlearn connected as ML backend (HTTP Basic; health and setup answered)",
        ml.text,
    )
    first_version = backend.get("model_version")
    check(first_version == "v1-0", "setup answered the model version v1-0", first_version)

    hooks = ls.get("/api/webhooks", params={"project": pid}).json()
    hook = next((h for h in hooks if h["url"].endswith(f"/label-studio/{MODEL}/webhook")), None)
    check(hook is not None, "Label Studio created the backend's webhook", hooks)
    basic = "Basic " + base64.b64encode(f"label-studio:{KEY}".encode()).decode()
    patched = ls.patch(f"/api/webhooks/{hook['id']}", json={"headers": {"Authorization": basic}})
    check(patched.status_code == 200, "the key added to the webhook's headers", patched.text)

    retrieve = {"selectedItems": {"all": True, "excluded": []}}
    got = ls.post(
        "/api/dm/actions",
        params={"id": "retrieve_tasks_predictions", "project": pid},
        json=retrieve,
    )
    predictions = ls.get("/api/predictions", params={"project": pid}).json()
    check(
        got.status_code == 200 and len(predictions) == len(tasks),
        f"predictions retrieved for all {len(tasks)} tasks",
        got.text,
    )
    if args.screenshots:
        shots.before_labelling(args.screenshots, ls_url, pid, tasks[0]["id"])

    labelled = tasks[:16]
    annotation_ids = []
    for t in labelled:
        made = ls.post(f"/api/tasks/{t['id']}/annotations", json={"result": choice(truth[t["id"]])})
        annotation_ids.append(made.json().get("id"))
    check(all(annotation_ids), f"{len(labelled)} annotations submitted")
    metrics = on.get(f"/models/{MODEL}/metrics").json()["versions"]["v1"]
    check(
        metrics["labels_by_source"] == {"human": len(labelled)},
        "onlearn learned each annotation once, as a person's label",
        metrics["labels_by_source"],
    )
    check(
        list(metrics["labels_by_labeller"]) == ["label-studio:user:1"],
        "the annotator is the labeller",
        metrics["labels_by_labeller"],
    )

    wrong = "neg" if truth[labelled[0]["id"]] == "pos" else "pos"
    ls.patch(f"/api/annotations/{annotation_ids[0]}", json={"result": choice(wrong)})
    ls.patch(
        f"/api/annotations/{annotation_ids[0]}", json={"result": choice(truth[labelled[0]["id"]])}
    )
    ls.delete(f"/api/annotations/{annotation_ids[1]}")
    answer = on.get(f"/models/{MODEL}/metrics").json()
    metrics = answer["versions"]["v1"]
    check(
        metrics["corrections"]["total"] == 2,
        "two updates learned as corrections",
        metrics["corrections"],
    )
    # 16 labels, 2 corrections, 1 retraction: the log's position.
    check(
        answer["applied_seq"] == 19,
        "the deletion logged as a retraction (seq 19)",
        answer["applied_seq"],
    )

    got = ls.post(
        "/api/dm/actions",
        params={"id": "retrieve_tasks_predictions", "project": pid},
        json=retrieve,
    )
    backend = ls.get(f"/api/ml/{backend['id']}").json()
    new_version = backend["model_version"]
    check(new_version == "v1-16", "the model version moved with learning (v1-16)", new_version)
    fresh = [
        p
        for p in ls.get("/api/predictions", params={"project": pid}).json()
        if p["model_version"] == new_version
    ]
    check(len(fresh) == len(tasks), "stale predictions refreshed under the new version", len(fresh))
    strings = [t["id"] for t in tasks if isinstance(t["data"]["x"], str)]
    check(
        len(strings) == 4 and all(p["result"] for p in fresh),
        f"every task has the model's choice, the {len(strings)} with string values too",
        [p for p in fresh if not p["result"]],
    )
    right = sum(
        p["result"] and p["result"][0]["value"]["choices"][0] == truth[p["task"]] for p in fresh
    )
    check(
        right >= 0.75 * len(tasks),
        f"the refreshed predictions are right for {right} of {len(tasks)} tasks",
    )
    by_score = sorted(fresh, key=lambda p: p["score"])
    margin = {
        p["task"]: abs(
            sum(map(float, next(t for t in tasks if t["id"] == p["task"])["data"].values()))
        )
        for p in fresh
    }
    low, high = by_score[: len(by_score) // 3], by_score[-len(by_score) // 3 :]
    mean = lambda ps: sum(margin[p["task"]] for p in ps) / len(ps)  # noqa: E731
    check(
        mean(low) < mean(high),
        "lowest scores are the points nearest the diagonal (uncertainty sampling)",
        (mean(low), mean(high)),
    )
    # What a user does for uncertainty sampling: picks the current version as the project's
    # (Settings > Annotation; the Data Manager scores that version's predictions), and a Data
    # Manager tab ordered by prediction score, lowest first ("Label All Tasks" follows it).
    chosen = ls.patch(f"/api/projects/{pid}", json={"model_version": new_version})
    check(chosen.status_code == 200, f"{new_version} chosen as the project's version", chosen.text)
    view = ls.post("/api/dm/views", json={"project": pid, "data": UNCERTAIN_FIRST})
    check(view.status_code == 201, "a Data Manager tab ordered by score, lowest first", view.text)
    ordered = ls.get(
        "/api/tasks",
        params={"project": pid, "view": view.json()["id"], "page_size": 100, "fields": "all"},
    ).json()["tasks"]
    score_of = {p["task"]: p["score"] for p in fresh}
    scores = [score_of[t["id"]] for t in ordered if not t["is_labeled"]]
    check(
        len(scores) == len(tasks) - len(labelled) + 1 and scores == sorted(scores),
        "the unlabelled tasks come least confident first",
        scores,
    )
    if args.screenshots:
        shots.after_labelling(
            args.screenshots, ls_url, pid, view.json()["id"], ordered[0]["id"], new_version
        )
    return {
        "label_studio": version,
        "model_version": new_version,
        "right": right,
        "tasks": len(tasks),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label-studio-venv", default=str(ROOT / ".venv-label-studio"))
    parser.add_argument("--screenshots", type=Path, help="save pictures of Label Studio here")
    parser.add_argument("--summary", type=Path, help="write the summary (markdown) here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    check = Checks()
    work = Path(tempfile.mkdtemp(prefix="onlearn-label-studio-"))
    started = datetime.now(UTC)
    try:
        facts = run(args, work, check)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"work directory kept: {work}")
    from importlib.metadata import version

    summary = (
        f"Run {started:%Y-%m-%d %H:%M} UTC: Label Studio {facts['label_studio']} (PyPI), onlearn "
        f"{version('onlearn')}, Python {sys.version.split()[0]}: "
        f"{len(check.passed)} checks passed, {len(check.failed)} failed.\n\n"
        + "\n".join(
            f"- {'passed' if w in check.passed else 'FAILED'}: {w}"
            for w in check.passed + check.failed
        )
        + "\n"
    )
    print("\n" + summary)
    if args.summary:
        args.summary.write_text(summary)
    return 1 if check.failed else 0


import label_studio_shots as shots  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
