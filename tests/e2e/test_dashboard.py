"""The dashboard in a real headless browser, over a model driven into drift: stationary traffic
with labels, a challenger, then one feature shifted by four standard deviations and the labels
flipped. The server's monitor (in the background, embedded store) writes the report it draws."""

from __future__ import annotations

import os
import random
import re
import shutil
import time
from pathlib import Path

import httpx

from tests.e2e.browser import browser_page
from tests.e2e.configs import DASHBOARD_MODEL as M
from tests.e2e.helpers import strict_json, wait_until

DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"
PLOTS = ("plot-accuracy", "plot-labels", "plot-drift")
BATCH = 40


def rows(rng: random.Random, n: int, *, shift: float = 0.0, flip: bool = False):
    """(features, label): "pos" above the line a + b = shift; ``a`` moved by ``shift`` std."""
    out = []
    for _ in range(n):
        a, b, c = rng.gauss(shift, 1), rng.gauss(0, 1), rng.gauss(0, 1)
        label = (a + b > shift) != flip
        features = {"a": round(a, 4), "b": round(b, 4), "c": round(c, 4)}
        features["color"] = rng.choice(["red", "green", "blue"])
        out.append((features, "pos" if label else "neg"))
    return out


def send(api: httpx.Client, batches: int, rng: random.Random, **shape) -> None:
    """Predict a batch, then give each prediction's label by its id; paced, so the monitor's
    reports (every 50 predictions) spread over time."""
    for _ in range(batches):
        batch = rows(rng, BATCH, **shape)
        answer = api.post(
            f"/models/{M}/predict/batch", json={"rows": [{"features": f} for f, _ in batch]}
        )
        assert answer.status_code == 200, answer.text
        items = [
            {"prediction_id": p["prediction_id"], "label": label}
            for p, (_, label) in zip(answer.json()["predictions"], batch, strict=True)
        ]
        ack = api.post(f"/models/{M}/feedback/batch", json={"items": items})
        assert ack.status_code == 200, ack.text
        assert not any(r.get("error") for r in ack.json()["results"]), ack.text
        time.sleep(0.2)


def add_challenger(api: httpx.Client) -> str:
    started = api.post(
        f"/models/{M}/retrain",
        json={"candidates": [{"name": "hoeffding_tree"}], "register_anyway": True},
    )
    assert started.status_code == 202, started.text
    job_id = started.json()["job_id"]
    job = wait_until(
        lambda: (j := api.get(f"/jobs/{job_id}").json())["state"] in ("done", "failed") and j,
        timeout=30,
        every=0.1,
    )
    assert job["state"] == "done", job
    return job["result"]["registered"]


def accuracy_points(report: dict) -> dict[str, int]:
    """Per served version, how many timeline points carry its accuracy: the plot draws a line
    only through two or more (the challenger joins the timeline a report later than v1)."""
    served = set((report.get("roles") or {}).values())
    timeline = report.get("timeline", [])
    return {
        v: sum(1 for p in timeline if (p.get("accuracy") or {}).get(v) is not None) for v in served
    }


def wait_for_drift(api: httpx.Client, timeout: float = 30.0) -> dict:
    """The monitor's report once it raised input drift, with a timeline and both versions (it
    reads the traffic 2 s behind the present and reports every 50 predictions)."""
    deadline = time.monotonic() + timeout
    while True:
        report = strict_json(api.get(f"/models/{M}/drift"))
        kinds = {a["kind"] for a in report.get("alarms", [])}
        if (
            "input_drift" in kinds
            and (report.get("input_drift") or {}).get("alarm")
            and len(report.get("timeline", [])) >= 5
            and len(report.get("accuracy", {})) == 2
            and all(n > 1 for n in accuracy_points(report).values())
        ):
            return report
        if time.monotonic() > deadline:
            brief = {k: report.get(k) for k in ("updated_at", "detail", "accuracy", "reference")}
            raise AssertionError(
                f"no input drift alarm after {timeout} s (is the server running the monitor?): "
                f"{brief}, alarms {sorted(kinds)}, {len(report.get('timeline', []))} points, "
                f"accuracy points {accuracy_points(report)}"
            )
        time.sleep(0.5)


def points(page, selector: str) -> list[int]:
    """The number of points of each path matching ``selector``."""
    return page.eval_on_selector_all(
        selector, "els => els.map(e => (e.getAttribute('d').match(/[ML]/g) || []).length)"
    )


def test_dashboard_shows_drift_accuracy_labels_and_alarms(dashboard_server, tmp_path):
    rng = random.Random(7)
    with httpx.Client(base_url=dashboard_server.url, timeout=30) as api:
        send(api, 10, rng)  # 400 rows: the reference (200 labels) and a model that learned
        challenger = add_challenger(api)
        send(api, 4, rng)
        send(api, 8, rng, shift=4.0, flip=True)
        report = wait_for_drift(api)
    assert set(report["roles"].values()) == {"v1", challenger}
    drifted = {f["name"] for f in report["input_drift"]["features"] if f["drifted"]}
    assert "a" in drifted

    with browser_page() as page:
        console = []
        page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
        page.set_viewport_size({"width": 1400, "height": 900})

        # /ui goes to the dashboard, which opens on the first model: no report for it yet.
        page.goto(f"{dashboard_server.url}/ui")
        page.wait_for_selector("#notice:not([hidden])")
        assert page.url.endswith("/ui/#model=quiet")
        assert "onlearn monitor" in page.locator("#notice").inner_text()
        assert "no report yet" in page.locator("#plot-drift svg").text_content()

        # Select the drifting model: the hash remembers it.
        page.select_option("#model", M)
        page.wait_for_selector("#plot-drift path.series")
        page.wait_for_selector("#notice", state="hidden")
        assert page.evaluate("location.hash") == f"#model={M}"

        # (1)-(3) lines with points, in every plot
        for plot in PLOTS:
            counts = points(page, f"#{plot} path.series")
            assert counts and all(n > 1 for n in counts), (plot, counts)
        # One accuracy line per served version, and one of its accuracy estimated without
        # labels, named in the legend.
        lines = page.eval_on_selector_all(
            "#plot-accuracy path.series", "els => els.map(e => e.dataset.series)"
        )
        served = set(report["roles"].values())
        assert sorted(lines) == sorted(served | {f"{v} estimated" for v in served})
        legend = page.locator("#plot-accuracy .legend").inner_text()
        assert "v1 (champion)" in legend and f"{challenger} (challenger)" in legend
        assert "v1 (champion) estimated" in legend
        assert "estimated accuracy" in page.locator("#summary").inner_text().lower()
        # One drift line per feature; the axis says what it shows.
        lines = page.eval_on_selector_all(
            "#plot-drift path.series", "els => els.map(e => e.dataset.series)"
        )
        assert sorted(lines) == ["a", "b", "c", "color"]
        assert "PSI" in page.locator("#plot-drift svg").text_content()
        # The time axis reads HH:MM:SS.
        ticks = page.locator("#plot-accuracy svg .axis text").all_text_contents()
        assert any(re.fullmatch(r"\d\d:\d\d:\d\d", t) for t in ticks), ticks

        # (4) alarms marked on every plot, the input drift one with its kind and detail
        for plot in PLOTS:
            titles = page.eval_on_selector_all(
                f"#{plot} g.alarm > title", "els => els.map(e => e.textContent)"
            )
            assert titles, plot
            assert any("input_drift" in t and "features drifting: a" in t for t in titles), titles

        # The p-values on a log scale, with the level alpha
        page.select_option("#drift-scale", "p")
        page.wait_for_function(
            "document.querySelector('#plot-drift svg').textContent.includes('alpha')"
        )
        assert all(n > 1 for n in points(page, "#plot-drift path.series"))
        page.select_option("#drift-scale", "psi")

        # Summary, feature table, alarms, violations
        summary = page.locator("#summary").inner_text()
        assert "champion v1" in summary and f"challenger {challenger}" in summary
        state = page.locator('[data-key="Input drift"]').inner_text()
        assert re.search(r"ALARM: (.*, )?a\b", state), state
        assert "200 rows" in page.locator('[data-key="Reference"]').inner_text()
        row = page.locator('#features tr[data-feature="a"]')
        assert "drifted" in row.inner_text()
        assert page.locator("#features tbody tr").count() == 4
        assert page.locator('#alarms tr[data-kind="input_drift"]').count() >= 1
        assert "No request refused" in page.locator("#violations").inner_text()

        # A refused request shows up as a violation on the next refresh.
        refused = httpx.post(
            f"{dashboard_server.url}/models/{M}/predict",
            json={"features": {"a": "high", "b": 0, "c": 0, "color": "red"}},
        )
        assert refused.status_code == 422
        page.wait_for_function(
            "!document.querySelector('#violations').textContent.includes('No request refused')",
            timeout=10_000,
        )
        assert "a" in page.locator("#violations tbody").inner_text()

        # Opening the page with the hash selects that model at once.
        page.goto(f"{dashboard_server.url}/ui/#model={M}")
        page.wait_for_selector("#plot-accuracy path.series")
        assert page.locator("#model").input_value() == M

        shot = tmp_path / "dashboard.png"
        page.screenshot(path=str(shot), full_page=True)
        print(f"dashboard screenshot: {shot}")
        assert shot.stat().st_size > 10_000, "a blank page makes a tiny PNG"
        if os.environ.get("ONLEARN_UPDATE_SCREENSHOTS"):  # refresh the one in the docs
            shutil.copyfile(shot, DOCS_SCREENSHOT)

        assert page.js_errors == []
        assert console == []
