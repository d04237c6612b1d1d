"""The report in a real browser: headless Debian Chromium driven by Playwright.

Nothing is downloaded: Chromium is /usr/bin/chromium and the browser is launched with a
fresh user-data directory and the background-networking features off. Every request the
page makes is recorded; a self-contained report makes none beyond its own file:// URL.
The run carries script-injection payloads in a backend name, a version and exception
text: they must show as text and never run (`window.__pwned` stays undefined).

A screenshot goes to $CONFORMANCE_ARTIFACTS/report.png (default: test-artifacts/ at the
repository root).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conformance import report

from test_report import EVIL, SCRIPT, make_run  # noqa: E402 (shared synthetic run)

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(os.environ.get("CONFORMANCE_ARTIFACTS", Path(__file__).resolve().parent.parent / "test-artifacts"))


def _sync_playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("browser test skipped: the playwright Python package is not installed")
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"browser test skipped: no Chromium executable at {CHROMIUM}")
    return sync_playwright


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("report-browser")
    report.write_reports(make_run(out), out)
    return out


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """(context, requests): one Chromium with a fresh profile; every request it makes is recorded."""
    sync_playwright = _sync_playwright()
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, args=ARGS,
                                                        headless=True, viewport={"width": 1280, "height": 900})
        requests: list[str] = []
        context.on("request", lambda r: requests.append(r.url))
        try:
            yield context, requests
        finally:
            context.close()


@pytest.fixture(scope="module")
def browser_page(site, browser):
    """(page, requests, console errors, page errors) with the divergent backend's report loaded."""
    context, requests = browser
    page = context.new_page()
    console_errors, page_errors = [], []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page_errors.append(str(e)))
    page.goto((site / report.page_names([EVIL])[EVIL]).as_uri())
    page.wait_for_load_state("load")
    return page, requests, console_errors, page_errors


def test_page_loads_without_console_errors(browser_page):
    _, _, console_errors, page_errors = browser_page
    assert console_errors == [] and page_errors == [], f"expected no errors, received {console_errors + page_errors}"


def test_page_makes_no_request_beyond_its_own_file(browser_page):
    page, requests, _, _ = browser_page
    others = [u for u in requests if not u.startswith("file://")]
    assert requests and others == [], f"expected only file:// requests, received {others}"


def test_injected_script_is_text_and_never_runs(browser_page):
    page, _, _, _ = browser_page
    assert page.evaluate("typeof window.__pwned") == "undefined", "an injected script ran"
    assert SCRIPT in page.locator("h1").inner_text(), "expected the backend name shown as text, payload included"


def test_text_filter_narrows_the_table(browser_page):
    page, _, _, _ = browser_page
    rows = page.locator("#cases tbody tr")
    total = rows.count()
    page.fill("#q", "dw-")
    visible = page.locator("#cases tbody tr:not([hidden])").count()
    page.fill("#q", "")
    assert 0 < visible < total, f"expected the filter to narrow {total} rows, received {visible}"


def test_status_filter_shows_only_that_status(browser_page):
    page, _, _, _ = browser_page
    page.select_option("#st", "pass")
    passing = page.locator("#shown").inner_text()
    page.select_option("#st", "diverge")
    diverging = page.locator("#cases tbody tr:not([hidden]) td:nth-child(4)").all_inner_texts()
    page.select_option("#st", "")
    assert passing == "0", f"expected no passing case on the broken backend, received {passing}"
    assert diverging and set(diverging) == {"diverge"}, f"expected only divergences, received {diverging}"


def _as_number(text: str) -> float:
    return float("-inf") if text == "" else float("inf") if text in ("inf", "nan") else float(text)


def test_clicking_a_header_twice_sorts_descending(browser_page):
    page, _, _, _ = browser_page
    page.click("#cases th:nth-child(6)")
    page.click("#cases th:nth-child(6)")
    values = [_as_number(t) for t in page.locator("#cases tbody td:nth-child(6)").all_inner_texts()]
    assert len(set(values)) > 1 and values == sorted(values, reverse=True), f"expected descending, received {values}"


def test_divergence_heatmap_and_repro_are_visible_and_screenshot_saved(browser_page):
    page, _, _, _ = browser_page
    section = page.locator("section.detail").first
    section.scroll_into_view_if_needed()
    heatmap = page.locator("figure.heatmap svg").first
    assert heatmap.is_visible(), "expected a visible heatmap"
    repro = page.locator("pre.repro").first
    assert repro.is_visible() and "# repro for" in repro.inner_text()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    target = ARTIFACTS / "report.png"
    page.locator("figure.heatmap").first.scroll_into_view_if_needed()
    page.screenshot(path=str(target), full_page=False)
    assert target.stat().st_size > 0


def test_index_loads_and_links_to_the_backend_pages(site, browser):
    context, requests = browser
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto((site / "index.html").as_uri())
    link = page.locator(f'a[href="{report.page_names([EVIL])[EVIL]}"]').first
    assert SCRIPT in link.inner_text(), "expected the backend name as link text, payload shown as text"
    link.click()
    page.wait_for_load_state("load")
    assert page.url.endswith(report.page_names([EVIL])[EVIL]), f"expected the backend page, received {page.url}"
    assert errors == [] and page.evaluate("typeof window.__pwned") == "undefined", errors
    assert [u for u in requests if not u.startswith("file://")] == []
