"""The report in a real browser: headless Debian Chromium driven by Playwright.

Nothing is downloaded: Chromium is /usr/bin/chromium and the browser is launched with a
fresh user-data directory and the background-networking features off. Every request the
page makes is recorded; a self-contained report makes none beyond its own file:// URL.
The run carries script-injection payloads in a backend name, a version and exception
text: they must show as text and never run (`window.__pwned` stays undefined).

Screenshots go to $CONFORMANCE_ARTIFACTS (default: test-artifacts/ at the repository
root): report.png and, from an eight-backend run with a manifest, index-8-backends.png. With
CONFORMANCE_SCREENSHOT_RUN=DIR (the --out of a real `conformance run`), its index.html and
largest backend page are saved as run-index.png and run-backend.png.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conformance import report
from tests.test_report import EVIL, GOOD, SCRIPT, make_run  # the shared synthetic run
from tests.test_report_reader import with_manifest

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
    assert not repro.is_visible(), "expected the repro script collapsed behind its link"
    page.locator("details.repro > summary").first.click()
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


#: Backend names as long as real variants get; with EVIL's payload, eight columns.
WIDE = ["torch", "torch[native_pad]", "torch[channels_last]", "onnxruntime[no_graph_opt]", "tensorflow[xla]",
        "jax", "openvino"]


@pytest.fixture(scope="module")
def wide_site(tmp_path_factory):
    """Eight backends (seven copies of the correct one under long names) and a manifest."""
    out = tmp_path_factory.mktemp("report-wide")
    run = with_manifest(make_run(out))
    good = [r for r in run["records"] if r["backend"] == GOOD]
    run["records"] = [r for r in run["records"] if r["backend"] == EVIL]
    run["backends"] = {EVIL: run["backends"][EVIL]}
    for name in WIDE:
        run["backends"][name] = {"name": name, "version": "1.0", "device": "cpu", "spec": name}
        run["records"] += [dict(r, backend=name) for r in good]
    report.write_reports(run, out)
    return out


@pytest.fixture()
def wide_index(wide_site, browser):
    context, _ = browser
    page = context.new_page()
    page.set_viewport_size({"width": 1400, "height": 900})
    page.goto((wide_site / "index.html").as_uri())
    page.wait_for_load_state("load")
    yield page
    page.close()


def test_index_shows_the_known_column_with_its_count(wide_index):
    headers = wide_index.locator("#backend-table thead th").all_inner_texts()
    assert "known" in headers, headers
    known = wide_index.locator("#backend-table tbody tr").first.locator("td.c-known")
    assert known.is_visible() and known.inner_text() == "2"


def test_index_shows_the_fixed_manifest_entries(wide_index):
    section = wide_index.locator("#manifest-section")
    assert section.is_visible() and "FIXED:" in section.inner_text()
    assert wide_index.locator("#fixed tbody tr").count() == 1


def test_index_fits_1400_px_without_horizontal_overflow(wide_index):
    width = wide_index.evaluate("document.documentElement.scrollWidth")
    assert width <= 1400, f"expected no horizontal overflow at 1400 px, received a page {width} px wide"
    heights = [box["height"] for box in (r.bounding_box() for r in wide_index.locator("#cross-table tbody tr").all())]
    assert heights and max(heights) < 60, f"expected rows of one or two lines in the cross view, received {heights}"
    cut = wide_index.locator("#cross-table td.agree").evaluate_all(
        "cells => cells.filter(e => e.scrollWidth > e.clientWidth + 1).length")
    assert cut == 0, f"expected no agreement cell cut off, received {cut}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    wide_index.screenshot(path=str(ARTIFACTS / "index-8-backends.png"), full_page=True)


def test_backend_page_sections_come_in_reading_order(browser_page):
    page, _, _, _ = browser_page
    ids = ["summary", "divergences", "errors", "all-cases", "environment"]
    tops = [page.locator(f"#{i}").bounding_box()["y"] for i in ids]
    assert tops == sorted(tops), dict(zip(ids, tops))


def test_all_cases_table_shows_non_passing_rows_until_show_all_is_clicked(site, browser):
    context, _ = browser
    page = context.new_page()
    page.goto((site / report.page_names([GOOD])[GOOD]).as_uri())
    rows = page.locator("#cases tbody tr")
    before = page.locator("#cases tbody tr:not([hidden])").count()
    page.click("#show-all")
    after, total = page.locator("#cases tbody tr:not([hidden])").count(), rows.count()
    page.close()
    assert before == 0 and after == total > 0, (before, after, total)


def test_screenshots_of_a_real_run(browser):
    run_dir = os.environ.get("CONFORMANCE_SCREENSHOT_RUN")
    if not run_dir:
        pytest.skip("set CONFORMANCE_SCREENSHOT_RUN to the --out of a real run to screenshot its pages")
    run_dir = Path(run_dir)
    # The page with the most to show: the largest one.
    backend = max((p for p in run_dir.glob("*.html") if p.name != "index.html"), key=lambda p: p.stat().st_size)
    context, _ = browser
    page = context.new_page()
    page.set_viewport_size({"width": 1400, "height": 1000})
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for source, target in ((run_dir / "index.html", "run-index.png"), (backend, "run-backend.png")):
        page.goto(source.as_uri())
        assert page.evaluate("document.documentElement.scrollWidth") <= 1400, source.name
        page.screenshot(path=str(ARTIFACTS / target), full_page=False)
        assert (ARTIFACTS / target).stat().st_size > 0
    page.close()


def test_index_sections_come_in_reading_order(wide_index):
    ids = ["backends", "manifest", "groups", "cross", "environment"]
    tops = [wide_index.locator(f"#{i}").bounding_box()["y"] for i in ids]
    assert tops == sorted(tops), dict(zip(ids, tops))
