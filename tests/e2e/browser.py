"""Debian's chromium, headless, driven by Playwright (no browser download)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Without the background-networking flags, chromium's own calls home are refused by a closed
# network, many at a time; a fresh profile per run keeps runs independent.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def browser_page() -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.js_errors = errors
            yield page
        finally:
            browser.close()


LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


def block_network(page) -> list[str]:
    """Abort every request that would leave the machine, as on a host without internet; the
    returned list fills with the URLs the page tried (anything but loopback, data: and blob:)."""
    from urllib.parse import urlsplit

    tried: list[str] = []

    def leaves(url: str) -> bool:
        parts = urlsplit(url)
        return parts.scheme not in ("data", "blob", "about") and parts.hostname not in LOOPBACK

    def route(route) -> None:
        if leaves(route.request.url):
            route.abort("internetdisconnected")
        else:
            route.continue_()

    page.on("request", lambda r: tried.append(r.url) if leaves(r.url) else None)
    page.on("websocket", lambda ws: tried.append(ws.url) if leaves(ws.url) else None)
    page.context.route("**/*", route)
    return tried
