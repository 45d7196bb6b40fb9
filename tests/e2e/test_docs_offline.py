"""The API's documentation pages and the UI pages on a machine without internet: a headless
browser whose every request beyond loopback is aborted still renders Swagger UI's operations
and ReDoc's, and no page even tries to reach a CDN (serving/docs.py)."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.e2e.browser import block_network, browser_page

# A model's predict path: /models/{name}/predict when the document is generic (keys set),
# /models/<model>/predict when each model is typed (serving/typed_openapi.py).
PREDICT = re.compile(r"/models/[^/]+/predict\b")


@pytest.fixture(params=["server", "auth_server"])
def url(request) -> str:
    """The main server, and one with API keys: the pages and their assets are open there too."""
    return request.getfixturevalue(request.param).url


def test_swagger_ui_renders_every_operation_offline(url):
    documented = httpx.get(f"{url}/openapi.json", timeout=30).json()["paths"]
    with browser_page() as page:
        tried = block_network(page)
        page.goto(f"{url}/docs")
        page.wait_for_selector(".opblock-summary-path", timeout=30_000)
        # Swagger UI renders a long document (each model typed) only near the viewport: scroll
        # through it, a screen at a time, and collect every path listed on the way.
        shown: set[str] = set()
        at_end = False
        for _ in range(400):
            page.wait_for_timeout(100)
            shown.update(
                page.eval_on_selector_all(
                    ".opblock-summary-path", "els => els.map(e => e.dataset.path)"
                )
            )
            if at_end:
                break
            at_end = page.evaluate(
                "() => { window.scrollBy(0, window.innerHeight);"
                " return window.innerHeight + window.scrollY >= document.body.scrollHeight; }"
            )
        assert page.js_errors == []
    assert any(PREDICT.fullmatch(path) for path in shown), "\n".join(shown)
    assert set(shown) == set(documented), "every documented path has its operations listed"
    assert tried == [], f"requests that left the machine: {tried}"


def test_redoc_renders_its_operations_offline(url):
    with browser_page() as page:
        tried = block_network(page)
        page.goto(f"{url}/redoc")
        page.wait_for_selector('[data-section-id^="operation/"]', timeout=30_000)
        sections = page.eval_on_selector_all('[data-section-id^="operation/"]', "els => els.length")
        text = page.locator(".api-content").inner_text()
        assert page.js_errors == []
    assert sections >= 20
    assert PREDICT.search(text) and "prediction_id" in text
    assert tried == [], f"requests that left the machine: {tried}"


def test_the_assets_are_the_distributions_and_nothing_else_is_served(server):
    with httpx.Client(base_url=server.url, timeout=30) as api:
        page = api.get("/docs").text
        assert "/docs/assets/swagger-ui-bundle.js" in page and "cdn" not in page.lower()
        assert "cdn" not in api.get("/redoc").text.lower()
        script = api.get("/docs/assets/swagger-ui-bundle.js")
        assert script.status_code == 200 and "SwaggerUIBundle" in script.text
        assert script.headers["content-type"].startswith("text/javascript")
        assert api.get("/docs/assets/redoc.standalone.js").status_code == 200
        assert api.get("/docs/assets/swagger-ui.css").headers["content-type"].startswith("text/css")
        # Only the pages' files: nothing else of the package, and no path out of its folder.
        assert api.get("/docs/assets/__init__.py").status_code == 404
        assert api.get("/docs/assets/..%2Fstandalone_docs.py").status_code == 404
        assert api.get("/redoc/logo-mini.svg").headers["content-type"] == "image/svg+xml"
        assert api.get("/docs/oauth2-redirect").status_code == 200


@pytest.mark.parametrize("path", ["/ui/", "/ui/label", "/ui/label/shapes"])
def test_the_pages_load_nothing_from_outside(server, path):
    with browser_page() as page:
        tried = block_network(page)
        page.goto(f"{server.url}{path}", wait_until="networkidle")
        loaded = page.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
    assert loaded, "the page loads its script from this server"
    assert tried == [], f"requests that left the machine: {tried}"
