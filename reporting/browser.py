"""Open a report in headless Chromium and say what a reader's browser would see: console errors, network
requests, charts drawn, time to draw them. Used by the report's tests and its render benchmark.

Needs the `dev` extra (playwright) and a Chromium binary (Debian's `chromium`, installed by .ci/system-packages);
playwright drives it over its DevTools protocol, so no browser download is involved.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Chromium on a machine without network: no sandbox (we run as root in CI), no GPU, and none of the background
# services that would otherwise try to reach Google's hosts at start-up.
CHROMIUM_FLAGS = ("--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic", "--disable-default-apps")
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class PageCheck:
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)  # anything but the report file itself
    chart_containers: int = 0
    rendered_charts: int = 0
    render_ms: float | None = None  # navigation start → every chart drawn
    first_screen_ms: float | None = None  # navigation start → the charts of the first screen drawn
    text: str = ""


@contextmanager
def open_report(report: Path, timeout_s: float = 60.0, width: int = 1400) -> Iterator[tuple[Any, PageCheck]]:
    """Load the report from disk as a user would and wait until its charts are drawn; yields the playwright
    page (for a test to click around) and what has happened so far."""
    from playwright.sync_api import sync_playwright

    executable = find_chromium()
    if executable is None:
        raise FileNotFoundError(f"no Chromium found (looked for {', '.join(CHROMIUM_NAMES)}); "
                                "install Debian's chromium package")
    url = Path(report).resolve().as_uri()
    check = PageCheck()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=list(CHROMIUM_FLAGS))
        try:
            page = browser.new_page(viewport={"width": width, "height": 900}, accept_downloads=True)
            page.on("console", lambda m: check.console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda error: check.page_errors.append(str(error)))
            page.on("dialog", lambda dialog: (check.dialogs.append(dialog.message), dialog.dismiss()))
            page.on("request", lambda r: check.external_requests.append(r.url) if r.url != url else None)
            page.goto(url, wait_until="load", timeout=timeout_s * 1000)
            page.wait_for_function("document.body.dataset.rendered === 'true'", timeout=timeout_s * 1000)
            check.render_ms = page.evaluate("window.accelbenchRenderedAt")
            check.first_screen_ms = page.evaluate("window.accelbenchFirstScreenAt")
            check.chart_containers = page.locator(".chart").count()
            check.rendered_charts = page.locator(".chart.js-plotly-plot:has(svg.main-svg)").count()
            check.text = page.inner_text("body")
            yield page, check
        finally:
            browser.close()


def screenshot_page(page: Any, path: Path) -> None:
    """The whole page in one picture. Playwright's full_page capture resizes the viewport while it shoots, and
    plotly's responsive charts re-lay themselves out mid-capture (charts land on top of each other): grow the
    viewport to the page's height first, let the charts settle, then shoot."""
    width = page.viewport_size["width"]
    for _ in range(3):  # the height changes once the charts are laid out again
        height = page.evaluate("document.documentElement.scrollHeight")
        if height == page.viewport_size["height"]:
            break
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(300)
    page.screenshot(path=str(path))


def check_report(report: Path, screenshot: Path | None = None, timeout_s: float = 60.0) -> PageCheck:
    """What a reader's browser sees of the report; with a full-page screenshot where asked."""
    with open_report(report, timeout_s) as (page, check):
        if screenshot is not None:
            screenshot_page(page, screenshot)
    return check
