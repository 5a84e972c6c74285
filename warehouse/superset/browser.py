"""Superset in a real browser (Playwright driving Debian's Chromium): log in, open dashboards,
tell what each chart shows. Used by the browser tests, `bench/superset_pages.py` and the README
screenshots (`python -m warehouse.superset.browser OUT_DIR`)."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
# Flags that work as root on machines with no network (see ARCHITECTURE.md).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CHART = ".dashboard-component-chart-holder"


@contextmanager
def logged_in(url: str, username: str, password: str) -> Iterator:
    """A Playwright page logged in to Superset at `url`."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: `./run test` installs Debian's chromium")
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            viewport={"width": 1600, "height": 1200},
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(60_000)
            _log_in(page, url, username, password)
            yield page
        finally:
            browser.close()


def _log_in(page, url: str, username: str, password: str, attempts: int = 3) -> None:  # noqa: ANN001 - a Playwright Page
    """Sign in through Superset's login form. A sign-in that lands back on the form (seen once
    in CI on a loaded machine, with nothing said why) is tried again; the last one names what
    the page said."""
    said = ""
    for _ in range(attempts):
        page.goto(f"{url}/login/")
        page.locator("input[type=password]").wait_for()
        page.locator("input[type=text], input:not([type])").first.fill(username)
        page.locator("input[type=password]").fill(password)
        with page.expect_navigation():  # the form's POST, then Superset's redirects
            page.locator("[data-test=login-button]").click()
        if "/login/" not in page.url:
            page.wait_for_url("**/superset/welcome/**")
            return
        refused = page.get_by_text("Invalid username or password")
        said = "it said the username or password is wrong" if _shows(refused) else "no message"
    raise RuntimeError(
        f"Superset at {url} sent {username!r} back to its login page {attempts} times ({said})"
    )


def _shows(locator, seconds: float = 5.0) -> bool:  # noqa: ANN001 - a Playwright Locator
    from playwright.sync_api import TimeoutError as NotShown

    try:
        locator.first.wait_for(timeout=seconds * 1000)
        return True
    except NotShown:
        return False


# the dashboard's charts are on the page and none is loading
READY = (
    f"() => document.querySelectorAll('{CHART}').length > 0 && "
    f"document.querySelectorAll('{CHART} .loading, "
    '[data-test="loading-indicator"]\').length === 0'
)


def open_dashboard(page, url: str, slug: str) -> float:  # noqa: ANN001 - a Playwright Page
    """Open a dashboard and wait until every chart has finished loading; the seconds taken."""
    started = time.monotonic()
    page.goto(f"{url}/superset/dashboard/{slug}/")
    page.wait_for_load_state("networkidle")
    # the grid may mount again once the native filters load: ready twice in a row, same charts
    deadline, charts, ready_at = started + 120, -1, started
    while True:
        left_ms = max(1_000.0, (deadline - time.monotonic()) * 1_000)
        page.wait_for_function(READY, timeout=left_ms)
        now = page.locator(CHART).count()
        if now == charts:
            return ready_at - started  # when the page was first ready as it stayed
        charts, ready_at = now, time.monotonic()
        page.wait_for_timeout(750)


def chart_states(page) -> dict[str, str]:  # noqa: ANN001 - a Playwright Page
    """Each chart on the page by title: 'error', 'empty' (Superset's no-results panel) or
    'data'. Waits (up to 60 s) for the charts to be there and loaded: the grid can mount again
    when Superset rewrites the URL with its native filters' key."""
    page.wait_for_function(READY, timeout=60_000)
    states = {}
    for holder in page.locator(CHART).all():
        text = holder.inner_text()
        title = text.split("\n", 1)[0].strip()
        if holder.locator(".ant-alert-error").count() or "Unexpected error" in text:
            states[title] = "error"
        elif "No results were returned" in text or "No data" in text:
            states[title] = "empty"
        else:
            states[title] = "data"
    return states


def main(out_dir: Path) -> None:
    """Screenshots of every dashboard of the embedded Superset (for the README)."""
    from lakehouse.core.settings import load_settings
    from warehouse.superset.admin import SupersetConfig, secrets_of
    from warehouse.superset.bundle import DATABASES, render

    config = SupersetConfig.from_settings(load_settings())
    _, credentials = secrets_of(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    slugs = [d["slug"] for d in render(dict.fromkeys(DATABASES, "")).dashboards]
    with logged_in(config.url, credentials.username, credentials.password) as p:
        for slug in slugs:
            seconds = open_dashboard(p, config.url, slug)
            p.screenshot(path=str(out_dir / f"{slug}.png"), full_page=True)
            print(json.dumps({"dashboard": slug, "seconds": round(seconds, 2)}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
