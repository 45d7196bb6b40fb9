"""The labelling web page in a real headless browser: claim, see, label by button and key, skip."""

from __future__ import annotations

from tests.e2e.browser import browser_page
from tests.e2e.helpers import strict_json, wait_until, xy_rows

M = "/models/ui"


def test_label_with_buttons_and_keys_then_skip(queue_server, queue_api, tmp_path):
    api = queue_api
    for features, _ in xy_rows(6, seed=11):
        assert strict_json(api.post(f"{M}/predict", json={"features": features}))["queued"]
    wait_until(lambda: api.get(f"{M}/queue/stats").json()["depth"] >= 6)

    with browser_page() as page:
        page.goto(f"{queue_server.url}/ui/label/ui")
        page.fill("#labeller", "carol")
        page.dispatch_event("#labeller", "change")
        page.wait_for_selector("#card:not([hidden])")
        # The features and the model's probabilities are shown, one button per class.
        assert page.locator("#features tr").count() == 2
        assert page.locator("#features").inner_text().startswith("x")
        assert page.locator("#proba .bar").count() in (0, 2)
        assert page.locator("button.label").all_inner_texts() == ['1"pos"', '2"neg"']
        first = page.locator("#features").inner_text()

        page.click("button.label >> nth=0")  # a button
        page.wait_for_function(
            "document.querySelector('#message').textContent.startsWith('Labelled')"
        )
        page.wait_for_function(f"document.querySelector('#features').innerText !== {first!r}")
        second = page.locator("#features").inner_text()

        page.keyboard.press("2")  # a key
        page.wait_for_function(f"document.querySelector('#features').innerText !== {second!r}")
        page.keyboard.press("s")  # skip
        page.wait_for_function("document.querySelector('#message').textContent === 'Skipped.'")
        page.wait_for_function(
            "document.querySelector('#stats').textContent.includes('2 labelled')"
        )
        page.screenshot(path=str(tmp_path / "label-page.png"))
        assert page.js_errors == []

    stats = api.get(f"{M}/queue/stats").json()
    assert stats["labelled"] == 2 and stats["skipped"] == 1
    metrics = api.get(f"{M}/metrics").json()["versions"]["v1"]
    assert metrics["labels_by_source"] == {"human": 2}


def test_a_model_without_a_queue_says_how_to_turn_it_on(queue_server):
    with browser_page() as page:
        page.goto(f"{queue_server.url}/ui/label/passive")
        page.wait_for_function("document.querySelector('#message').textContent.includes('active')")
        assert "[models.passive.active]" in page.locator("#message").inner_text()
