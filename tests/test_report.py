"""write_reports(): the HTML pages of a run, from records built by the real compare().

The synthetic run has three backends: one that is right, one with real bugs (flipped
kernel, SAME split, TensorFlow's wrongly shaped depthwise output) whose name carries a
script-injection payload, and one that raises errors whose text carries payloads too.
`make_run` is shared with test_report_browser.py.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from conformance import cli, findings, oracle, report
from conformance.cli import report as report_cli
from conformance.compare import compare
from conformance.diagnose import diagnose
from conformance.dtypes import np_dtype
from conformance.inputs import make_inputs
from conformance.results import SCHEMA_VERSION, new_record
from conformance.spec import Case

SCRIPT = "<script>window.__pwned = 1; alert(1)</script>"
IMG = '"><img src=x onerror="window.__pwned = 2; alert(1)">'
GOOD, EVIL, FAILING = "numpy-ok", f"evil{SCRIPT}", "raiser"

CASES = [
    Case(op="conv2d", batch=2, height=9, width=8, in_channels=3, kernel=(3, 2), out_channels=4, padding="SAME"),
    Case(op="conv2d", batch=1, height=12, width=10, in_channels=2, kernel=(3, 3), out_channels=5, strides=(2, 1)),
    Case(op="depthwise_conv2d", batch=1, height=9, width=10, in_channels=2, kernel=(3, 3), channel_multiplier=2,
         strides=(2, 2), dilations=(2, 2), padding="SAME"),
    Case(op="conv2d", batch=1, height=6, width=6, in_channels=4, kernel=(3, 3), out_channels=4, dtype="float16"),
]


def _oracle(case, x, w, b, **geometry):
    g = dict(strides=case.strides, dilations=case.dilations, padding=case.padding)
    g.update(geometry)
    if case.op == "conv2d":
        return oracle.conv2d(x, w, groups=case.groups, bias=b, **g)
    return oracle.depthwise_conv2d(x, w, bias=b, **g)


def _broken(case, x, w, b):
    """Flipped kernel for conv2d; TensorFlow's strided+dilated depthwise rows/cols for depthwise."""
    if case.op == "conv2d":
        return _oracle(case, x, np.flip(w, axis=(0, 1)), b)
    full = _oracle(case, x, w, b, strides=(1, 1))
    return full[:, [r for r in range(full.shape[1]) if r % 4 < 2]][:, :, [c for c in range(full.shape[2]) if c % 4 < 2]]


def judged_record(case: Case, backend: str, y, out_dir: Path | None = None) -> dict:
    """A record as the runner makes it: compare(), and diagnose() for a divergence."""
    inputs = make_inputs(case)
    y = np.asarray(y, dtype=np.float64).astype(np_dtype(case.dtype))
    comp = compare(case, y, oracle.reference(case, *inputs), inputs)
    rec = new_record(case.to_dict(), case.id, backend, backend_version="1.0" + IMG, device="cpu",
                     status="pass" if comp.passed else "diverge", kind=comp.kind, message=comp.message,
                     figures=comp.figures, worst=comp.worst, heatmap=comp.heatmap, channel_errors=comp.channel_errors,
                     time={"backend_s": 0.001, "oracle_s": 0.002, "compare_s": 0.0005}, notes=list(comp.notes))
    if not comp.passed:
        rec["diagnosis"] = diagnose(case, y, inputs).to_dict()
        if out_dir is not None:
            rel = Path("repro") / "evil" / f"{case.id}.py"
            (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            (out_dir / rel).write_text(f"# repro for {case.id}\nimport numpy as np\nprint({SCRIPT!r})\n", encoding="utf-8")
            rec["repro"] = rel.as_posix()
            rec["minimised"] = case.replace(batch=1).to_dict()
    return rec


def error_record(case: Case, status: str) -> dict:
    return new_record(case.to_dict(), case.id, FAILING, backend_version="2.0", device="cpu", status=status,
                      message=f"backend raised {SCRIPT}",
                      error={"type": "RuntimeError", "message": f"kernel failed {SCRIPT} {IMG}",
                             "traceback": f"Traceback (most recent call last):\n  ...\nRuntimeError: {IMG}"},
                      exit={"exitcode": -11, "signal": "SIGSEGV"} if status == "crash" else None)


def make_run(out_dir: Path) -> dict:
    """A JSON round-tripped run dict with real records for three backends."""
    records = []
    for case in CASES:
        x, w, b = make_inputs(case)
        records.append(judged_record(case, GOOD, _oracle(case, x, w, b)))
        records.append(judged_record(case, EVIL, _broken(case, x, w, b), out_dir))
    records.append(error_record(CASES[0], "error"))
    records.append(error_record(CASES[1], "crash"))
    records.append(new_record(CASES[2].to_dict(), CASES[2].id, FAILING, status="unsupported",
                              message="dilations > 1 with strides > 1 are not supported"))
    records.append(error_record(CASES[3], "timeout"))
    run = {
        "schema_version": SCHEMA_VERSION, "tool": {"name": "conv-conformance", "version": "0.1.0"},
        "environment": {"os": "Linux" + IMG, "cpu": "x86_64", "python": "3.11", "numpy": "2.0", "hostname": "h"},
        "run": {"started": "2026-11-27T18:00:00Z", "finished": "2026-11-27T18:01:00Z", "selector": "smoke",
                "seed": 0, "budget": None, "shard": None, "argv": ["conformance", "run"]},
        "backends": {
            GOOD: {"name": GOOD, "version": "1.0", "device": "cpu", "spec": "numpy"},
            EVIL: {"name": EVIL, "version": "1.0" + IMG, "device": "cpu" + SCRIPT, "spec": "x.py:Evil"},
            FAILING: {"name": FAILING, "version": "2.0", "device": "cpu", "spec": "y.py:Raiser"},
        },
        "records": records,
    }
    return json.loads(json.dumps(run, allow_nan=False))


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def parse(path: Path) -> _Collector:
    p = _Collector()
    p.feed(path.read_text(encoding="utf-8"))
    p.close()
    return p


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    run = make_run(out)
    return out, run, report.write_reports(run, out)


def test_one_page_per_backend_and_an_index(written):
    out, run, paths = written
    names = sorted(p.name for p in paths)
    assert names == sorted(["index.html", "numpy-ok.html", "evil_script_window.__pwned_1_alert_1_script.html",
                            "raiser.html"]), f"expected a page per backend and index.html, received {names}"
    assert all(p.is_file() and p.parent == out for p in paths)


def test_index_links_to_every_backend_page(written):
    out, run, paths = written
    hrefs = {a.get("href") for tag, a in parse(out / "index.html").tags if tag == "a"}
    for p in paths:
        if p.name != "index.html":
            assert p.name in hrefs, f"expected index.html to link {p.name}, received links {sorted(hrefs)}"


@pytest.mark.parametrize("page", ["index.html", "numpy-ok.html", "raiser.html"])
def test_pages_parse_as_html_with_only_our_one_script(written, page):
    out, _, _ = written
    tags = parse(out / page).tags
    assert [t for t, _ in tags].count("script") == 1, f"{page}: expected exactly one <script>"
    assert not [a for t, a in tags if t == "img"], f"{page}: expected no <img>, received some"


def test_injected_markup_appears_escaped_never_raw(written):
    out, _, paths = written
    for p in paths:
        text = p.read_text(encoding="utf-8")
        assert SCRIPT not in text and "<img" not in text, f"{p.name}: raw payload in the page"
    evil = (out / report.page_names([EVIL])[EVIL]).read_text(encoding="utf-8")
    assert "evil&lt;script&gt;window.__pwned = 1; alert(1)&lt;/script&gt;" in evil
    assert "&#34;&gt;&lt;img src=x onerror=&#34;window.__pwned = 2; alert(1)&#34;&gt;" in evil
    errors = (out / "raiser.html").read_text(encoding="utf-8")
    assert "kernel failed &lt;script&gt;" in errors, "expected the exception text, escaped, on the error page"


def test_pages_are_self_contained(written):
    out, _, paths = written
    for p in paths:
        for tag, attrs in parse(p).tags:
            for key in ("src", "href"):
                v = attrs.get(key)
                assert v is None or not re.match(r"^(https?:)?//", v), f"{p.name}: external {key}={v!r} on <{tag}>"
        assert "Content-Security-Policy" in p.read_text(encoding="utf-8")


def test_a_divergence_gets_heatmap_bars_worst_elements_diagnosis_and_repro(written):
    out, _, _ = written
    page = out / report.page_names([EVIL])[EVIL]
    text = page.read_text(encoding="utf-8")
    tags = parse(page).tags
    sections = [a["id"] for t, a in tags if t == "section" and re.fullmatch(r"d\d+", a.get("id", ""))]
    assert len(sections) == len(CASES), f"expected a detail section per divergence, received {sections}"
    labels = [a.get("aria-label") for t, a in tags if t == "svg"]
    assert "error heatmap over output H x W" in labels and "worst error per output channel" in labels
    assert "flipped_kernel" in text and "wrong_shape_subblock" in text
    assert "# repro for conv-n2-9x8x3-k3x2-o4-s1x1-d1x1-same-f32" in text
    assert [a for t, a in tags if t == "button" and a.get("class") == "copy"], "expected a copy button for the repro"


def test_wrong_shape_divergence_shows_expected_and_actual_shape(written):
    out, _, _ = written
    text = (out / report.page_names([EVIL])[EVIL]).read_text(encoding="utf-8")
    assert "expected shape <code>(1, 5, 5, 4)</code>, actual shape <code>(1, 5, 6, 4)</code>" in text


def test_errors_crashes_and_timeouts_are_listed_with_messages(written):
    out, _, _ = written
    text = (out / "raiser.html").read_text(encoding="utf-8")
    for status in ("error", "crash", "timeout"):
        assert f'<span class="b b-{status}">{status}</span> RuntimeError' in text, f"expected a {status} group"
    assert "exit code -11, signal SIGSEGV" in text


def test_index_cross_view_counts_every_case_where_some_backend_diverges_once(written):
    out, _, _ = written
    text = (out / "index.html").read_text(encoding="utf-8")
    section = text[text.index('id="cross"'):]
    rows = re.findall(r'<tr><td class="id" title="([^"]+)">[^<]*</td><td class="n"[^>]*>(\d+)</td>', section)
    assert rows and sum(int(n) for _, n in rows) == len(CASES), f"expected all {len(CASES)} cases counted, received {rows}"
    assert {i for i, _ in rows} <= {c.id for c in CASES}
    assert '<td class="cell-pass">pass</td>' in section


def test_index_cross_view_shows_cases_with_the_same_verdicts_as_one_row(tmp_path):
    run = synthetic_run(40, 30, tmp_path)
    report.write_reports(run, tmp_path)
    section = (tmp_path / "index.html").read_text(encoding="utf-8").split('id="cross"')[1]
    rows = re.findall(r'<tr><td class="id" title="([^"]+)">[^<]*</td><td class="n"( title="[^"]*")?>(\d+)</td>', section)
    assert [(i, n) for i, _, n in rows] == [(run["records"][0]["case_id"], "30")], rows
    assert "30 cases with these verdicts; also" in rows[0][1] and "(24 more)" in rows[0][1]


def test_repro_outside_the_run_directory_is_not_read(tmp_path):
    run = make_run(tmp_path)
    secret = tmp_path.parent / "secret.txt"
    secret.write_text("TOP-SECRET", encoding="utf-8")
    for rec in run["records"]:
        if rec["repro"]:
            rec["repro"] = "../secret.txt"
    report.write_reports(run, tmp_path)
    text = (tmp_path / report.page_names([EVIL])[EVIL]).read_text(encoding="utf-8")
    assert "TOP-SECRET" not in text and "outside the run directory" in text


def test_javascript_links_from_results_are_not_rendered_as_links(tmp_path):
    run = make_run(tmp_path)
    rec = next(r for r in run["records"] if r["status"] == "diverge")
    rec["known"] = {"reason": "known bug", "link": "javascript:alert(1)", "manifest_entry": "x"}
    report.write_reports(run, tmp_path)
    page = tmp_path / report.page_names([EVIL])[EVIL]
    hrefs = [a.get("href", "") for t, a in parse(page).tags if t == "a"]
    assert not [h for h in hrefs if h.lower().startswith("javascript:")], hrefs


def test_page_names_are_safe_and_unique():
    names = report.page_names(["torch", "torch[native_pad]", "torch:cuda", "torch_cuda", "index", "../x", ""])
    assert names["torch[native_pad]"] == "torch_native_pad.html"
    assert len(set(n.lower() for n in names.values())) == len(names)
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+\.html", n) and not n.startswith(".") for n in names.values()), names
    assert names["index"] != "index.html"


def synthetic_run(n_cases: int, n_divergent: int, out_dir: Path) -> dict:
    """`n_cases` records for one backend: real records cloned under distinct ids, worst-case maps."""
    base = make_run(out_dir)
    passing = next(r for r in base["records"] if r["status"] == "pass")
    diverging = next(r for r in base["records"] if r["status"] == "diverge" and r["heatmap"])
    rng = np.random.default_rng(0)
    records = []
    for i in range(n_cases):
        rec = copy.deepcopy(diverging if i < n_divergent else passing)
        rec["backend"], rec["case_id"] = GOOD, f"{rec['case_id']}-{i:05d}"
        if i < n_divergent:  # full-size noisy maps: the most markup a detail section can need
            rec["heatmap"] = (rng.random((64, 64)) * 10.0 ** rng.integers(-1, 7, (64, 64))).tolist()
            rec["channel_errors"] = (rng.random(256) * 1e4).tolist()
        records.append(rec)
    base["records"] = records
    base["backends"] = {GOOD: base["backends"][GOOD]}
    return base


def test_a_5000_case_report_with_400_divergences_stays_under_2_mb(tmp_path):
    run = synthetic_run(5000, 400, tmp_path)
    paths = report.write_reports(run, tmp_path)
    sizes = {p.name: p.stat().st_size for p in paths}
    assert max(sizes.values()) < 2 * 1024 * 1024, f"expected every page < 2 MB, received {sizes}"


def _anchored(page: Path) -> tuple[list[str], list[str]]:
    """(ids of the detail sections, ids of the case-table rows) that are divergence anchors."""
    tags = parse(page).tags
    ids = [(t, a.get("id", "")) for t, a in tags if re.fullmatch(r"d\d+", a.get("id") or "")]
    return [i for t, i in ids if t == "section"], [i for t, i in ids if t == "tr"]


def test_only_a_bounded_number_of_divergences_get_a_detail_section_and_the_page_says_so(tmp_path):
    report.write_reports(synthetic_run(600, 400, tmp_path), tmp_path)
    page = tmp_path / "numpy-ok.html"
    sections, _ = _anchored(page)
    assert 0 < len(sections) <= report.DETAIL_LIMIT, sections
    assert f"shown for {len(sections)} of the 400 divergences" in page.read_text(encoding="utf-8")


def test_every_divergence_has_an_anchor_its_section_or_its_table_row(tmp_path):
    report.write_reports(synthetic_run(600, 400, tmp_path), tmp_path)
    sections, rows = _anchored(tmp_path / "numpy-ok.html")
    assert sorted(sections + rows) == sorted(f"d{i}" for i in range(400)), (len(sections), len(rows))


def test_a_findings_minimal_case_gets_a_detail_section_however_mild(tmp_path):
    run = synthetic_run(600, 400, tmp_path)
    mildest = run["records"][399]
    mildest["figures"]["max_normalised_error"] = mildest["figures"]["threshold"] * 1.01
    found = findings.with_members([], run["records"])
    found[0]["minimal_case_id"] = mildest["case_id"]
    run["findings"] = findings.section(found, budget=None)
    report.write_reports(run, tmp_path)
    text = (tmp_path / "numpy-ok.html").read_text(encoding="utf-8")
    assert re.search(rf'<section class="detail" id="d\d+">\s*<h3><code>{re.escape(mildest["case_id"])}</code>', text), \
        "expected the minimal case of the finding to have a detail section"


def test_a_divergence_free_report_is_small(tmp_path):
    run = synthetic_run(300, 0, tmp_path)
    paths = report.write_reports(run, tmp_path)
    size = (tmp_path / "numpy-ok.html").stat().st_size
    assert size < 200 * 1024, f"expected a 300-case divergence-free page < 200 KB, received {size} bytes"
    assert "None: every supported case is within tolerance." in (tmp_path / "numpy-ok.html").read_text(encoding="utf-8")
    assert len(paths) == 2


def test_report_command_renders_a_saved_results_file(tmp_path, capsys):
    run = make_run(tmp_path)
    src = tmp_path / "results.json"
    src.write_text(json.dumps(run), encoding="utf-8")
    parser = argparse.ArgumentParser()
    report_cli.add_arguments(parser)
    code = report_cli.run(parser.parse_args([str(src), "--out", str(tmp_path / "html")]))
    assert code == 0 and (tmp_path / "html" / "index.html").is_file()
    text = (tmp_path / "html" / report.page_names([EVIL])[EVIL]).read_text(encoding="utf-8")
    assert "# repro for" in text, "expected repro scripts read relative to the results file"


def test_report_command_rejects_an_unreadable_results_file(tmp_path, capsys):
    bad = tmp_path / "results.json"
    bad.write_text("{not json", encoding="utf-8")
    assert cli.main(["report", str(bad)]) == 2
    assert "results.json" in capsys.readouterr().err
