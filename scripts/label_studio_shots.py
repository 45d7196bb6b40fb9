"""Pictures of Label Studio's pages for docs/label-studio.md, taken by headless Chromium
(tests/e2e/browser.py) while scripts/e2e_label_studio.py runs the loop."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.browser import browser_page  # noqa: E402

USER, PASSWORD = "admin@example.com", "onlearn-e2e-password"
SIZE = {"width": 1400, "height": 860}


def _login(page, url: str) -> None:
    page.set_viewport_size(SIZE)
    page.goto(f"{url}/user/login/")
    page.fill("input[name=email]", USER)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda u: "/user/login" not in u, timeout=60_000)


def _shoot(page, url: str, path: Path, settle_ms: int = 2500) -> None:
    page.goto(url)
    page.wait_for_load_state("networkidle", timeout=60_000)
    page.wait_for_timeout(settle_ms)
    page.screenshot(path=str(path))
    print(f"screenshot {path}")


def before_labelling(directory: Path, url: str, project: int, task: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    with browser_page() as page:
        _login(page, url)
        _shoot(page, f"{url}/projects/{project}/settings/ml", directory / "1-model-connected.png")
        page.goto(f"{url}/projects/{project}/settings/webhooks")
        page.wait_for_load_state("networkidle", timeout=60_000)
        try:  # open the webhook: its form shows the Authorization header
            page.get_by_text("/webhook", exact=False).first.click(timeout=5000)
            page.wait_for_timeout(2000)
        except Exception as e:  # noqa: BLE001 - the picture is taken either way
            print(f"webhook not opened: {e}")
        page.screenshot(path=str(directory / "2-webhook.png"))
        print(f"screenshot {directory / '2-webhook.png'}")


def after_labelling(
    directory: Path, url: str, project: int, view: int, task: int, version: str
) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    with browser_page() as page:
        _login(page, url)
        _shoot(page, f"{url}/projects/{project}/data?tab={view}", directory / "3-scores.png")
        page.goto(f"{url}/projects/{project}/data?task={task}")
        page.wait_for_load_state("networkidle", timeout=60_000)
        page.wait_for_timeout(3000)
        try:  # the prediction's tab, to show the choice it made and its score
            page.get_by_text(version, exact=True).first.click(timeout=5000)
            page.wait_for_timeout(1500)
        except Exception as e:  # noqa: BLE001 - the picture is taken either way
            print(f"prediction tab not clicked: {e}")
        page.screenshot(path=str(directory / "4-prediction.png"))
        print(f"screenshot {directory / '4-prediction.png'}")
