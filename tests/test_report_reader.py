"""The pages as a new reader meets them: known and FIXED with a manifest, sections in
reading order, non-passing rows first, collapsed repro scripts behind a real link, cards
that say what was expected, and captions rendered from the criteria the records carry.

Built from tests/test_report.py's synthetic run (real compare() records).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
import pytest

from conformance import report
from conformance.spec import Case
from tests.test_report import CASES, EVIL, GOOD, judged_record, make_run, parse

KNOWN = {"reason": "flipped kernel, filed upstream", "link": "https://example.org/issue/1", "manifest_entry": 0}


def with_manifest(run: dict) -> dict:
    """The run as `--expected` leaves it: the first two divergences known, one FIXED entry, one unmatched."""
    run = copy.deepcopy(run)
    diverging = [r for r in run["records"] if r["status"] == "diverge"]
    for rec in diverging[:2]:
        rec["known"] = dict(KNOWN)
    run["expected"] = {"path": "examples/known.yaml", "unmatched": [4],
                       "fixed": [{"case_id": CASES[0].id, "backend": GOOD, "manifest_entry": 3,
                                  "reason": "was wrong in 0.9, passes now"}]}
    return run


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("reader")
    run = with_manifest(make_run(out))
    report.write_reports(run, out)
    return out, run


def _text(site, page: str) -> str:
    return (site[0] / page).read_text(encoding="utf-8")


def _evil(site) -> str:
    return _text(site, report.page_names([EVIL])[EVIL])


def _backend_row(index_html: str, name_fragment: str) -> str:
    rows = re.findall(r"<tr><td><a href=[^>]*>([^<]*)</a></td>(.*?)</tr>", index_html.split('id="backend-table"')[1])
    return next(cells for name, cells in rows if name_fragment in name)


def test_the_index_has_a_known_column_when_a_manifest_was_used(site):
    text = _text(site, "index.html")
    head = text.split('id="backend-table"')[1].split("</thead>")[0]
    assert "<th class=\"n\">known</th>" in head
    cells = _backend_row(text, "evil")
    diverge = re.search(r'class="n c-diverge">(?:<span class="b b-diverge">(\d+)</span>)?</td>', cells).group(1)
    known = re.search(r'class="n c-known"><span class="b b-known">(\d+)</span>', cells).group(1)
    assert (diverge, known) == (str(len(CASES) - 2), "2"), "expected unexpected and known divergences counted apart"


def test_group_tables_count_known_apart(site):
    groups = _text(site, "index.html").split('id="groups"')[1].split('id="cross"')[0]
    assert '<span class="b b-known" title="known">' in groups


def test_without_a_manifest_there_is_no_known_column(tmp_path):
    report.write_reports(make_run(tmp_path), tmp_path)
    head = (tmp_path / "index.html").read_text(encoding="utf-8").split('id="backend-table"')[1].split("</thead>")[0]
    assert ">known<" not in head


def test_the_index_lists_fixed_manifest_entries(site):
    text = _text(site, "index.html")
    section = text.split('id="manifest"')[1].split('id="groups"')[0]
    assert "FIXED:" in section and "examples/known.yaml" in section
    fixed = section.split('id="fixed"')[1]
    assert CASES[0].id in fixed and "was wrong in 0.9, passes now" in fixed and GOOD in fixed
    assert "match no case of this run: 4" in section


def test_cross_view_labels_are_short_with_the_full_id_on_hover(site):
    section = _text(site, "index.html").split('id="cross"')[1]
    labels = dict(re.findall(r'<td class="id" title="([^"]+)">([^<]+)</td>', section))
    assert labels and all(len(short) < len(full) and full.startswith(short.split("-")[0]) for full, short in labels.items())
    assert all("-s1x1" not in short and "-d1x1" not in short for short in labels.values()), labels


def test_cross_view_cells_never_repeat_kind_and_diagnosis(tmp_path):
    run = make_run(tmp_path)
    rec = next(r for r in run["records"] if r["status"] == "diverge")
    rec["kind"], rec["diagnosis"] = "subnormal_flush", {"hypothesis": "subnormal_flush", "explanation": "FTZ"}
    report.write_reports(run, tmp_path)
    text = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert "subnormal_flush: subnormal_flush" not in text and "subnormal_flush" in text


def test_agreement_counts_backends_per_verdict_with_names_on_hover(tmp_path):
    run = make_run(tmp_path)
    extra = []
    for i in range(4):  # four more correct backends: the passing group is "5 backends", not five names
        for r in (r for r in run["records"] if r["backend"] == GOOD):
            extra.append(dict(copy.deepcopy(r), backend=f"ok{i}"))
        run["backends"][f"ok{i}"] = dict(run["backends"][GOOD], name=f"ok{i}")
    run["records"] += extra
    report.write_reports(run, tmp_path)
    section = (tmp_path / "index.html").read_text(encoding="utf-8").split('id="cross"')[1]
    assert '<span class="g">5 × pass</span>' in section and '<span class="g">1 × value: flipped_kernel</span>' in section
    assert "numpy-ok = ok0 = ok1 = ok2 = ok3: pass" in section  # on hover
    assert "numpy-ok = ok0" not in re.sub(r'title="[^"]*"', "", section)


def test_a_backend_page_puts_divergences_before_the_table_of_all_cases(site):
    text = _evil(site)
    order = [text.index(f'id="{s}"') for s in ("summary", "divergences", "errors", "all-cases", "environment")]
    assert order == sorted(order), "expected summary, divergences, errors, all cases, environment in that order"


def test_the_findings_partial_is_included_at_the_top_of_both_pages():
    root = Path(report.__file__).parent / "templates"
    backend, index = (root / "backend.html").read_text(), (root / "index.html").read_text()
    assert backend.index('{% include "backend_findings.html" ignore missing %}') < backend.index('id="summary"')
    assert index.index('{% include "index_findings.html" ignore missing %}') < index.index('id="backends"')


def test_the_all_cases_table_hides_passing_rows_by_default(site):
    out, _ = site
    text = _text(site, report.page_names([GOOD])[GOOD])
    rows = re.findall(r'<tr class="s-(\w+)"( hidden)?>', text)
    assert rows and all(bool(hidden) == (status == "pass") for status, hidden in rows), rows
    assert 'id="show-all"' in text and f"Show all {len(rows)} cases" in text
    assert '<option value="!pass" selected>not passing</option>' in text


def test_repro_scripts_are_collapsed_behind_a_relative_link_to_the_file(site):
    out, _ = site
    page = out / report.page_names([EVIL])[EVIL]
    text = page.read_text(encoding="utf-8")
    block = text.split('<details class="repro">')[1].split("</details>")[0]
    assert '<pre id="repro-d0" class="repro">' in block, "expected the script inside the collapsed block"
    href = re.search(r'<summary>Repro script: <a href="([^"]+)">', block).group(1)
    assert not href.startswith(("/", "file:")) and (page.parent / href).is_file(), href


def test_repro_links_work_when_the_pages_are_written_elsewhere(tmp_path):
    run = make_run(tmp_path / "run")
    report.write_reports(run, tmp_path / "html", repro_dir=tmp_path / "run")
    page = tmp_path / "html" / report.page_names([EVIL])[EVIL]
    href = re.search(r'<summary>Repro script: <a href="([^"]+)">', page.read_text(encoding="utf-8")).group(1)
    assert href.startswith("../run/") and (page.parent / href).resolve().is_file(), href


def test_an_invalid_case_card_says_an_error_was_expected_and_an_array_received(tmp_path):
    invalid = Case(op="conv2d", batch=1, height=1, width=1, in_channels=1, kernel=(2, 1), out_channels=1)
    run = make_run(tmp_path)
    from conformance.compare import compare
    from conformance.results import new_record

    comp = compare(invalid, np.zeros((1, 0, 1, 1), np.float32), None)
    run["records"].append(new_record(invalid.to_dict(), invalid.id, EVIL, status="diverge", kind=comp.kind,
                                     message=comp.message, figures=comp.figures))
    report.write_reports(run, tmp_path)
    text = (tmp_path / report.page_names([EVIL])[EVIL]).read_text(encoding="utf-8")
    assert "expected: an error (invalid case: empty output" in text
    assert "; received: an array of shape (1, 0, 1, 1)</p>" in text
    assert "expected shape <code>(1, 0, 1, 1)</code>, actual shape" not in text


def test_worst_elements_are_sorted_by_severity_with_the_sigma_figure(tmp_path):
    run = make_run(tmp_path)
    rec = next(r for r in run["records"] if r["status"] == "diverge" and r["worst"])
    rec["worst"] = [  # shuffled: the page sorts by error over limit, not by the error alone
        {"index": [0, 0, 0, 0], "expected": 1.0, "actual": 1.1, "magnitude": 2.0, "normalised_error": 50.0,
         "limit": 100.0, "sigma_error": 3.0},
        {"index": [0, 0, 0, 1], "expected": 1.0, "actual": 1.2, "magnitude": 2.0, "normalised_error": 20.0,
         "limit": 2.0, "sigma_error": 40.0},
        {"index": [0, 0, 0, 2], "expected": 1.0, "actual": 1.3, "magnitude": 2.0, "normalised_error": 30.0,
         "limit": 10.0, "sigma_error": 25.0},
    ]
    report.write_reports(run, tmp_path)
    text = (tmp_path / report.page_names([EVIL])[EVIL]).read_text(encoding="utf-8")
    table = text.split('<table class="worst">')[1].split("</table>")[0]
    assert "<th class=\"n\">error in σ</th>" in table
    order = re.findall(r"<tr><td>\(0, 0, 0, (\d)\)</td>", table)
    assert order == ["1", "2", "0"], f"expected the most severe (error / limit) first, received {order}"
    assert '<td class="n">40</td><td class="n">10</td></tr>' in table  # σ figure, then severity


def test_captions_are_rendered_from_the_criteria_the_records_carry(tmp_path):
    run = make_run(tmp_path)
    for rec in run["records"]:
        if rec["figures"]:
            rec["figures"].update(sigma_limit=7.5, rounding_bias_z_limit=4.25)
    report.write_reports(run, tmp_path)
    text = (tmp_path / report.page_names([EVIL])[EVIL]).read_text(encoding="utf-8")
    caption = text.split('class="note caption"')[1].split("</p>")[0]
    assert "7.5 σ" in caption and "|z| = 4.25" in caption, caption
    card = text.split('class="criteria note"')[1].split("</p>")[0]
    assert "threshold" in card and "7.5 σ" in card and "|z| ≤ 4.25" in card and "Fails: threshold" in card, card


def test_a_card_that_fails_only_the_sigma_bound_says_so(tmp_path):
    run = make_run(tmp_path)
    rec = next(r for r in run["records"] if r["status"] == "diverge" and r["figures"].get("threshold"))
    rec["figures"].update(max_normalised_error=rec["figures"]["threshold"] / 2, max_sigma_error=30.0, sigma_limit=12)
    report.write_reports(run, tmp_path)
    text = (tmp_path / report.page_names([EVIL])[EVIL]).read_text(encoding="utf-8")
    assert "<strong>Fails: sigma</strong> (up to 30 σ)" in text


def test_effective_bits_are_na_without_finite_elements_and_marked_with_some(tmp_path):
    run = make_run(tmp_path)
    diverging = [r for r in run["records"] if r["status"] == "diverge" and "effective_bits" in r["figures"]]
    diverging[0]["figures"].update(effective_bits=None, nonfinite_mismatches=12)
    diverging[1]["figures"].update(effective_bits=20.5, nonfinite_mismatches=3)
    report.write_reports(run, tmp_path)
    text = (tmp_path / report.page_names([EVIL])[EVIL]).read_text(encoding="utf-8")
    table = text.split('id="cases"')[1].split("</table>")[0]
    cells = [row.split("<td>")[-2] for row in re.findall(r"<tr class=[^\n]*", table)]  # eff. bits, then time
    assert "n/a" in cells and "20.5*" in cells, cells
    assert "effective bits n/a" in text and "over the finite elements only (3 non-finite mismatches)" in text
