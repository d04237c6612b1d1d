"""Findings in a run: characterised by experiment on the live worker, published once, stable.

A `conformance run` of NumPy backends with planted bugs (tests/broken_adapters.py) and a
correct one: its results.json findings section, its repro folder, console, junit and
pages, `merge` of its shards, a baseline, manifest pins and the bug report. The engine
itself (experiments, vocabulary) is tested in tests/test_discover.py and test_predicate.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conformance import expected, findings, results
from conformance.predicate import parse
from conformance.protocol import answer
from conformance.record import oracle_for, record_reply
from conformance.results import new_record
from conformance.scripts import exit_code_for, make_short_script
from conformance.spec import Case
from tests._runner_util import run_cli

BROKEN = Path(__file__).resolve().parent / "broken_adapters.py"
KINDS = Path(__file__).resolve().parent / "kind_adapters.py"

_DW = {"op": "depthwise_conv2d", "batch": 1, "height": 9, "width": 9, "in_channels": 2, "kernel": 3,
       "channel_multiplier": 1, "padding": "SAME"}
_CV = {"op": "conv2d", "batch": 1, "height": 7, "width": 6, "in_channels": 2, "kernel": 3, "out_channels": 2}
CASES = [
    {**_DW, "strides": 2, "dilations": 2}, {**_DW, "strides": 2, "dilations": 2, "padding": "VALID"},
    {**_DW, "strides": [2, 1], "dilations": [1, 2], "padding": "VALID", "height": 11}, {**_DW, "strides": 2},
    {**_DW, "dilations": 2}, {**_CV, "strides": 2, "dilations": 2, "height": 9, "width": 9},
    {**_CV, "in_channels": 3}, {**_CV, "in_channels": 11, "out_channels": 3}, {**_CV, "in_channels": 4},
    {**_CV, "dtype": "bfloat16", "bias": True}, {**_CV, "dtype": "bfloat16"}, {**_CV, "bias": True},
    {**_CV, "in_channels": 5, "groups": 2, "expect": "error"}, {**_CV, "height": 2, "width": 2, "expect": "error"},
    {**_DW, "dtype": "float64"}, {**_CV, "padding": "SAME"},
]
PREDICATES = {"op = depthwise_conv2d and stride >= 2 and dilation >= 2", "op = conv2d and per_group_channels % 8 = 3",
              "dtype = bfloat16 and bias",
              "validity in {groups_exceed_in_channels, groups_not_dividing_in_channels}"}


def _write_cases(tmp: Path) -> Path:
    path = tmp / "cases.yaml"
    path.write_text(yaml.safe_dump({"description": "findings test cases", "cases": CASES}))
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("findings")
    argv = ["run", "--backend", "numpy", "--adapter", f"{BROKEN}:FourBugs", "--cases", str(_write_cases(tmp)),
            "--out", str(tmp / "out"), "--confirm-budget", "60"]
    code, err = run_cli(*argv)
    assert code == 1, err
    return tmp / "out", results.load(tmp / "out" / "results.json"), err


def _of(doc, backend):
    return [f for f in doc["findings"]["items"] if f["backend"] == backend]


def test_a_run_publishes_one_confirmed_finding_per_bug(run):
    _, doc, _ = run
    found = _of(doc, "four-bugs")
    assert {f["predicate"]["text"] for f in found} == PREDICATES
    assert all(f["status"] == "confirmed" and f["confirmation"]["status"] == "confirmed" for f in found)
    flagged = {r["case_id"] for r in doc["records"] if r["backend"] == "four-bugs" and r["status"] == "diverge"}
    assert {m["case_id"] for f in found for m in f["members"]} == flagged


def test_a_correct_backend_has_no_findings(run):
    assert _of(run[1], "numpy") == []


def test_no_refuted_predicate_is_published_anywhere(run):
    out, doc, err = run
    texts = [p.read_text() for p in [out / "results.json", out / "junit.xml", out / "index.html",
                                     out / "four-bugs.html"]] + [err]
    assert not any("refuted" in t for t in texts)
    assert doc["findings"]["version"] == findings.FINDINGS_VERSION


def test_the_section_says_what_the_experiments_cost(run):
    _, doc, _ = run
    sec = doc["findings"]
    assert sec["budget"]["seconds_per_finding"] == 60 and sec["experiments"]["backend_calls"] > 0
    assert all(f["cost"]["probes"] > 0 and f["experiments"] for f in _of(doc, "four-bugs"))


def test_scripts_are_written_for_each_finding_s_minimal_case_only(run):
    out, doc, _ = run
    written = sorted(p.relative_to(out).as_posix() for p in (out / "repro").rglob("*.py"))
    expect = sorted({f["repro"] for f in doc["findings"]["items"]}
                    | {f["short_repro"]["path"] for f in doc["findings"]["items"]})
    assert written == expect and all(r["repro"] is None for r in doc["records"])


def test_each_short_repro_exits_with_the_verdict_on_its_minimal_case(run, tmp_path):
    out, doc, _ = run
    for f in _of(doc, "four-bugs"):
        script = (out / f["short_repro"]["path"]).read_text()
        assert "import conformance" not in script and "from conformance" not in script
        path = tmp_path / "short.py"
        path.write_text(script)
        proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 1, (f["id"], proc.stdout, proc.stderr)


def test_the_console_lists_bugs_not_rows(run):
    _, doc, err = run
    lines = err.splitlines()
    head = next(i for i, line in enumerate(lines) if " bugs (" in line)
    table = next(i for i, line in enumerate(lines) if line.startswith("backend "))
    assert head < table and table - head - 1 == len(_of(doc, "four-bugs")) + 1
    assert not any(r["case_id"] in err for r in doc["records"] if r["status"] == "diverge")


def test_junit_carries_the_same_findings(run):
    out, doc, _ = run
    text = (out / "junit.xml").read_text()
    for f in doc["findings"]["items"]:
        assert f"{f['id']}: " in text


def test_pages_open_with_the_bugs_linked_to_each_finding(run):
    out, doc, _ = run
    index, page = (out / "index.html").read_text(), (out / "four-bugs.html").read_text()
    assert index.index('id="findings"') < index.index('id="backends"')
    for f in _of(doc, "four-bugs"):
        assert f'href="four-bugs.html#finding-{f["id"]}"' in index and f'id="finding-{f["id"]}"' in page


def test_merge_of_the_run_s_own_results_keeps_every_finding_id(run, tmp_path):
    out, doc, _ = run
    code, err = run_cli("merge", str(out / "results.json"), "--out", str(tmp_path / "m"), "--no-report", "--quiet")
    merged = results.load(tmp_path / "m" / "results.json")
    assert code in (0, 1), err
    assert [(f["id"], f["status"]) for f in merged["findings"]["items"]] == \
           [(f["id"], f["status"]) for f in doc["findings"]["items"]]


def test_merge_of_shards_in_any_order_gives_the_ids_of_the_whole_run(run, tmp_path):
    _, doc, _ = run
    shards = []
    for i in (1, 2):
        out = tmp_path / f"shard{i}"
        code, err = run_cli("run", "--adapter", f"{BROKEN}:FourBugs", "--cases", str(_write_cases(tmp_path)),
                            "--shard", f"{i}/2", "--out", str(out), "--no-report", "--confirm-budget", "60")
        assert code in (0, 1), err
        shards.append(out / "results.json")
    whole = {f["id"]: sorted(m["case_id"] for m in f["members"]) for f in _of(doc, "four-bugs")}
    for order in (shards, shards[::-1]):
        out = tmp_path / f"merged-{order[0].parent.name}"
        code, err = run_cli("merge", *map(str, order), "--out", str(out), "--no-report", "--quiet")
        merged = results.load(out / "results.json")
        assert {f["id"]: sorted(m["case_id"] for m in f["members"]) for f in merged["findings"]["items"]} == whole


def test_repro_finding_writes_a_short_bug_report(run, tmp_path):
    out, doc, _ = run
    f = next(f for f in _of(doc, "four-bugs") if "bias" in f["predicate"]["text"])
    report, script = tmp_path / "issue.md", tmp_path / "short.py"
    code, err = run_cli("repro", "--finding", f["id"], "--backend", f"{BROKEN}:FourBugs",
                        "--results", str(out / "results.json"), "--report", str(report), "--out", str(script))
    assert code == 0, err
    text = report.read_text()
    assert f["title"] in text and f["predicate"]["text"] in text and script.read_text().rstrip() in text
    assert len(text.splitlines()) <= 90 and "refuted" not in text


def test_repro_finding_names_an_unknown_id(run):
    out, _, _ = run
    code, err = run_cli("repro", "--finding", "F0000000000", "--backend", "numpy", "--results", str(out / "results.json"))
    assert code == 2 and "--finding: expected a finding id" in err


# ---- findings as data: plain records, no backend ------------------------------------------

def _rec(case: Case, backend: str, status: str, kind: str | None = None) -> dict:
    return new_record(case.to_dict(), case.id, backend, backend_version="1.0", device="cpu", status=status, kind=kind)


def _dw(**kw) -> Case:
    return Case(**{**_DW, "kernel": (3, 3), **kw})


PRED = parse("op = depthwise_conv2d and stride >= 2 and dilation >= 2")


def _records() -> list[dict]:
    bad = [_dw(strides=(2, 2), dilations=(2, 2)), _dw(strides=(2, 2), dilations=(2, 2), height=10),
           _dw(strides=(3, 3), dilations=(2, 2), width=8)]
    good = [_dw(strides=(2, 2)), _dw(dilations=(2, 2)), _dw()]
    return [_rec(c, "tf", "diverge", "shape") for c in bad] + [_rec(c, "tf", "pass") for c in good]


def _finding(recs: list[dict]) -> dict:
    c = _dw(strides=(2, 2), dilations=(2, 2))
    f = findings.confirmed("tf", PRED, minimal=c, base=c, started_from=c.id, necessary=["op", "strides", "dilations"],
                           experiments=[], confirmation={"status": "confirmed", "rows": []}, cost={}, version="1.0")
    return findings.with_members([f], recs)[0]


def test_members_and_title_come_from_the_predicate():
    f = _finding(_records())
    assert f["count"] == 3 and f["summary"] == "wrong shape on 3 cases"
    assert f["title"] == "depthwise_conv2d with strides > 1 and dilations > 1 returns an output of the wrong shape"
    assert f["id"] == findings.finding_id("tf", PRED)


def test_divergences_no_finding_covers_are_one_uncharacterised_finding_per_backend():
    recs = _records() + [_rec(_dw(profile="subnormal"), "tf", "diverge", "subnormal_flush")]
    found = findings.with_members([_finding(_records())], recs)
    assert [f["status"] for f in found] == ["confirmed", "uncharacterised"]
    assert found[1]["predicate"] is None and found[1]["count"] == 1
    assert found[1]["id"] == findings.finding_id("tf", None)


def test_a_document_without_a_findings_section_reads_as_uncharacterised():
    found = findings.items({"records": _records()})
    assert [(f["status"], f["count"]) for f in found] == [("uncharacterised", 3)]


def test_a_manifest_pins_a_finding_by_predicate_wherever_it_holds(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(f"- {{backend: tf, finding: '{PRED.text()}', reason: dw bug}}\n")
    (entry,) = expected.load_manifest(path)
    assert [entry.explains(r) for r in _records()] == [r["status"] == "diverge" for r in _records()]
    drawn = _dw(strides=(4, 4), dilations=(3, 3), height=30, width=30)  # a case no run has seen
    assert entry.explains_case("tf", "1.0", drawn, "value") and not entry.explains_case("tf", "1.0", _dw(), "value")


def test_a_manifest_pins_a_finding_by_id(tmp_path):
    recs = _records()
    f = _finding(recs)
    path = tmp_path / "m.yaml"
    path.write_text(f"- {{backend: tf, finding: {f['id']}, reason: dw bug}}\n")
    entries = expected.load_manifest(path)
    expected.pin_findings(entries, recs, [f])
    assert all(r["known"] for r in recs if r["status"] == "diverge") and f["unexpected"] == 0


@pytest.mark.parametrize("onednn, known", [(True, True), (False, False)])
def test_a_finding_pinned_by_id_is_known_only_where_its_when_conditions_hold(tmp_path, onednn, known):
    recs = _records()
    for r in recs:
        r["fingerprint"] = "fp1"
    fingerprints = {"fp1": {"frameworks": {"tensorflow": {"onednn": onednn}}}}
    f = _finding(recs)
    path = tmp_path / "m.yaml"
    path.write_text(f"- {{backend: tf, finding: {f['id']}, when: {{tensorflow.onednn: true}}, reason: oneDNN only}}\n")
    expected.pin_findings(expected.load_manifest(path), recs, [f], fingerprints)
    diverging = [r for r in recs if r["status"] == "diverge"]
    assert all(bool(r.get("known")) == known for r in diverging)
    assert f["unexpected"] == (0 if known else len(diverging))


def test_a_malformed_finding_pin_names_the_entry(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("- {backend: tf, finding: 'stride is big', reason: x}\n")
    with pytest.raises(expected.ManifestError, match="entry 0: finding: predicate 'stride is big'"):
        expected.load_manifest(path)


def test_baseline_reports_new_and_fixed_findings_by_id():
    recs = _records()
    f = _finding(recs)
    baseline = {"records": recs, "findings": findings.section([f], budget=None)}
    now = [r if r["status"] == "pass" else _rec(Case.from_dict(r["case"]), "tf", "pass") for r in recs]
    extra = _rec(_dw(profile="subnormal"), "tf", "diverge", "subnormal_flush")
    diff = findings.baseline_diff(baseline, findings.with_members([], now + [extra]))
    assert [r["id"] for r in diff["fixed"]] == [f["id"]]
    assert [r["status"] for r in diff["new"]] == ["uncharacterised"]
    assert findings.baseline_diff(baseline, [], backends={"other"}) == {"new": [], "fixed": []}


def test_pages_escape_what_a_finding_says(tmp_path):
    from conformance.report import write_reports

    recs = _records()
    f = _finding(recs)
    f["title"] = "<script>alert(1)</script>"
    run_doc = {"schema_version": 2, "tool": {}, "environment": {}, "run": {}, "records": recs,
               "backends": {"tf": {"name": "tf", "version": "1.0", "device": "cpu", "spec": "tf", "error": None}},
               "findings": findings.section([f], budget=None)}
    write_reports(run_doc, tmp_path)
    for text in ((tmp_path / "tf.html").read_text(), (tmp_path / "index.html").read_text()):
        assert "<script>alert(1)" not in text and "&lt;script&gt;alert(1)" in text


def test_variants_sharing_a_finding_are_one_line():
    recs = _records()
    rows = [dict(r, backend=b) for b in ("tf", "tf[onednn]") for r in recs]
    found = []
    for b in ("tf", "tf[onednn]"):
        c = _dw(strides=(2, 2), dilations=(2, 2))
        found += findings.with_members([findings.confirmed(b, PRED, minimal=c, base=c, started_from=c.id, necessary=[],
                                                           experiments=[], confirmation={}, cost={}, version="1")],
                                       [r for r in rows if r["backend"] == b])
    lines = findings.console_lines(found)
    assert len(lines) == 2 and "tf, tf[onednn]" in lines[1]


# ---- the short repro: the one rule, for every kind ----------------------------------------

KIND_CASES = {
    "wrong": (Case(**{**_CV, "kernel": 3}), 1), "truncate": (Case(**{**_CV, "in_channels": 8, "height": 12}), 1),
    "nan": (Case(**_CV), 1), "transpose": (Case(**_CV), 1), "float64": (Case(**_CV), 1),
    "ownacc": (Case(**{**_CV, "dtype": "float16", "in_channels": 64}), 1), "ok": (Case(**_CV), 0),
    "accept": (Case(**{**_CV, "height": 2, "padding": "VALID"}), 1),  # an empty output
}


@pytest.mark.parametrize("mode", list(KIND_CASES))
def test_a_short_script_exits_with_the_suite_s_verdict_for_every_kind(mode):
    import importlib.util

    spec = importlib.util.spec_from_file_location("kinds_for_findings", KINDS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    case, want = KIND_CASES[mode]
    case = Case.from_dict({**case.to_dict(), "name": f"{mode}-case"})
    adapter = module.Kinds()
    oracle = oracle_for(case)  # the suite's record of the case, called in this process, and its output
    rec, y = record_reply(case, "kinds", {"version": "0", "device": "cpu"}, answer(adapter, case, oracle.inputs),
                          oracle, 0.0, "strict")
    assert (rec["status"] == "diverge") == bool(want), (mode, rec["status"], rec["kind"])
    script = make_short_script(case, adapter)
    assert "T * (U" not in script  # no rule of its own: the suite's, embedded
    if case.is_valid:
        assert exit_code_for(script, y) == want
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=str(KINDS.parent), env={"PYTHONPATH": str(KINDS.parent), "PATH": ""})
    assert proc.returncode == want, (mode, proc.stdout, proc.stderr)


def test_a_short_script_is_at_most_40_lines_for_a_framework_call_of_ten():
    from conformance.adapters.registry import load

    case = _dw(strides=(2, 2), dilations=(2, 2))
    script = make_short_script(case, load("numpy"), header="title\nfinding F0123456789, case " + case.id)
    assert len(script.splitlines()) <= 40
