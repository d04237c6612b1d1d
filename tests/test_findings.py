"""Findings: divergences grouped into bugs, characterised, confirmed, with a short repro.

The run uses NumPy-only backends with one bug each (tests/broken_adapters.py), so what a
finding must say is known exactly, on any machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from _runner_util import run_cli
from conformance import findings
from conformance.run import findings_step
from conformance.adapters.registry import load
from conformance.inprocess import run_case
from conformance.scripts import make_short_script
from conformance.spec import Case

BROKEN = Path(__file__).resolve().parent / "broken_adapters.py"
BUGGY = ("DropsDilation", "FlushesSubnormals", "AcceptsEmptyOutput")

_DW = {"op": "depthwise_conv2d", "batch": 1, "height": 9, "width": 9, "in_channels": 2, "kernel": 3,
       "channel_multiplier": 1, "padding": "SAME"}
_CONV = {"op": "conv2d", "batch": 1, "height": 7, "width": 6, "in_channels": 2, "kernel": 3, "out_channels": 2}
CASES = [
    # depthwise with strides > 1 and dilations > 1, and its neighbours
    {**_DW, "strides": 2, "dilations": 2}, {**_DW, "strides": 2, "dilations": 2, "channel_multiplier": 2},
    {**_DW, "strides": [2, 1], "dilations": 2, "padding": "VALID", "height": 11},
    {**_DW, "strides": 2}, {**_DW, "dilations": 2}, {**_DW, "strides": 3, "profile": "small_integers"},
    {**_CONV, "strides": 2, "dilations": 2, "height": 9, "width": 9}, {**_CONV, "dilations": 2, "padding": "SAME"},
    # subnormal values, and the same shapes without them
    {**_CONV, "profile": "subnormal"}, {**_CONV, "profile": "subnormal", "dtype": "float64"},
    {**_DW, "profile": "subnormal"}, {**_CONV, "profile": "small_integers"}, {**_CONV, "dtype": "float64"},
    {**_CONV, "bias": True}, {**_CONV, "padding": "SAME", "dtype": "float16"}, {**_DW, "bias": True},
    # invalid: empty outputs, and groups that do not divide the channels
    {**_CONV, "height": 2, "width": 2, "expect": "error"},
    {**_DW, "height": 1, "width": 4, "padding": "VALID", "expect": "error"},
    {**_CONV, "in_channels": 3, "groups": 2, "expect": "error"},
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("findings")
    (tmp / "cases.yaml").write_text(yaml.safe_dump({"description": "findings test cases", "cases": CASES}))
    argv = ["run", "--backend", "numpy", "--cases", str(tmp / "cases.yaml"), "--out", str(tmp / "out"),
            "--no-report", "--confirm-budget", "20"]
    for cls in BUGGY:
        argv += ["--adapter", f"{BROKEN}:{cls}"]
    code, err = run_cli(*argv)
    assert code == 1, err
    doc = json.loads((tmp / "out" / "results.json").read_text())
    return tmp / "out", doc, err


def _of(doc, backend):
    return [f for f in doc["findings"]["items"] if f["backend"] == backend]


@pytest.mark.parametrize("backend, kinds, predicate", [
    ("drops-dilation", {"shape", "value"}, "op = depthwise_conv2d and strided and dilated"),
    ("flushes-subnormals", {"subnormal_flush"}, "profile = subnormal"),
    ("accepts-empty", {"invalid_accepted"}, "empty_output"),
], ids=["dilation", "flush", "accept"])
def test_each_bug_is_one_finding_per_kind_with_its_predicate(run, backend, kinds, predicate):
    _, doc, _ = run
    found = _of(doc, backend)
    assert {f["kind"] for f in found} == kinds
    assert {f["predicate"] for f in found} == {predicate}
    diverging = {r["case_id"] for r in doc["records"] if r["backend"] == backend and r["status"] == "diverge"}
    assert {c for f in found for c in f["cases"]} == diverging


def test_a_correct_backend_has_no_findings(run):
    assert _of(run[1], "numpy") == []


def test_predicates_are_confirmed_on_new_cases_and_near_misses(run):
    _, doc, _ = run
    for f in doc["findings"]["items"]:
        conf = f["confirmation"]
        assert conf["status"] == "confirmed", (f["id"], conf)
        run_ids = {r["case_id"] for r in doc["records"]}
        assert conf["inside"] and all(r["as_expected"] for r in conf["inside"] + conf["near_misses"])
        assert not run_ids & {r["case_id"] for r in conf["inside"] + conf["near_misses"]}  # new cases
        for row in conf["inside"]:
            assert findings.holds([findings.Atom.from_dict(a) for a in f["atoms"]], Case.from_dict(row["case"]))


def test_finding_ids_depend_on_backend_kind_hypothesis_and_predicate_only(run):
    _, doc, _ = run
    recs = doc["records"]
    again = findings.build(list(reversed(recs)))
    assert {f["id"] for f in again} == {f["id"] for f in doc["findings"]["items"]}
    for f in again:
        assert f["id"] == findings.finding_id(f["backend"], f["kind"], f["hypothesis"], f["predicate"])


def test_the_summary_lists_findings_first(run):
    _, doc, err = run
    lines = err.splitlines()
    head = next(i for i, line in enumerate(lines) if line.endswith("findings:"))
    table = next(i for i, line in enumerate(lines) if line.startswith("backend "))
    assert head < table
    for f in doc["findings"]["items"]:
        assert any(f["id"] in line and f["predicate"] in line for line in lines[head:table])


def _short_scripts(doc):
    return [(f, f["short_repro"]) for f in doc["findings"]["items"]]


def test_every_finding_has_a_short_repro_of_a_case_the_suite_judged_diverging(run):
    out, doc, _ = run
    for f, sr in _short_scripts(doc):
        assert sr is not None, f
        assert (sr["status"], sr["kind"]) == ("diverge", f["kind"])
        assert (out / sr["path"]).read_text() == sr["script"]
        assert "conformance" not in sr["script"].replace("conv-conformance", "")  # NumPy and the framework only
    small = [sr for f, sr in _short_scripts(doc) if f["kind"] in findings_step.SMALL_INTEGER_KINDS]
    assert small and all(sr["case"]["profile"] == "small_integers" for sr in small)


def _exit_code(script: str, tmp_path: Path) -> int:
    path = tmp_path / "short.py"
    path.write_text(script)
    return subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=120).returncode


@pytest.mark.parametrize("cls", BUGGY + ("FlippedKernel",))
def test_short_scripts_exit_as_the_suite_judges(run, cls, tmp_path):
    """Each finding's short-repro case, scripted for each broken backend and a correct one:
    exit 1 exactly where the suite's verdict is a divergence."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("broken_for_findings", BROKEN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for adapter in (getattr(module, cls)(), load("numpy")):
        for f, sr in _short_scripts(run[1]):
            case = Case.from_dict(sr["case"])
            verdict = run_case(case, adapter, want_diagnosis=False)
            if verdict.status == "unsupported":
                continue
            code = _exit_code(make_short_script(case, adapter), tmp_path)
            assert code == (1 if verdict.status == "diverge" else 0), (adapter.name, case.id, verdict.status)


def test_predicates_read_back_and_reject_nonsense():
    atoms = findings.parse_predicate("op = depthwise_conv2d and strided and not bias and K <= 9 "
                                     "and dtype in {float32, float64}")
    assert findings.predicate_text(atoms) == ("op = depthwise_conv2d and strided and not bias and K <= 9 "
                                              "and dtype in {float32, float64}")
    with pytest.raises(ValueError, match="expected atoms like"):
        findings.parse_predicate("stride is big")


def test_a_group_no_conjunction_separates_is_split_or_said_so():
    a = findings.features(Case(op="conv2d", batch=1, height=5, width=5, in_channels=1, kernel=3, out_channels=1))
    b = findings.features(Case(op="conv2d", batch=1, height=5, width=5, in_channels=1, kernel=3, out_channels=1,
                               dtype="float64"))
    assert findings.characterise([a], [a]) == [(None, [0])]  # the same features passed: nothing separates them
    rules = findings.characterise([a, b], [])
    assert rules == [([], [0, 1])]  # nothing passed: "true" separates


def test_repro_finding_writes_one_bug_report_with_the_short_script(run, tmp_path):
    out, doc, _ = run
    f = next(f for f in doc["findings"]["items"] if f["backend"] == "flushes-subnormals")
    report, script = tmp_path / "issue.md", tmp_path / "short.py"
    code, err = run_cli("repro", "--finding", f["id"], "--backend", f"{BROKEN}:FlushesSubnormals",
                        "--results", str(out / "results.json"), "--report", str(report), "--out", str(script))
    assert code == 0, err
    text = report.read_text()
    assert f["title"] in text and f["predicate"] in text and script.read_text().rstrip() in text
    assert "<details>" in text  # the full report stays available
    assert _exit_code(script.read_text(), tmp_path) == 1


def test_repro_finding_names_an_unknown_id(run, capsys):
    out, _, _ = run
    code, _ = run_cli("repro", "--finding", "F0000000000", "--backend", "numpy", "--results", str(out / "results.json"))
    assert code == 2 and "expected a finding id" in capsys.readouterr().err


# ---- pure functions on plain records ----------------------------------------------------

from conformance import expected  # noqa: E402
from conformance.results import new_record  # noqa: E402


def _rec(case: Case, backend: str, status: str, kind: str | None = None, hypothesis: str | None = None) -> dict:
    return new_record(case.to_dict(), case.id, backend, backend_version="1.0", device="cpu", status=status,
                      kind=kind, diagnosis={"hypothesis": hypothesis, "explanation": ""} if hypothesis else None)


def _dw(**kw) -> Case:
    return Case(**{"op": "depthwise_conv2d", "batch": 1, "height": 9, "width": 9, "in_channels": 2, "kernel": (3, 3),
                   "channel_multiplier": 1, "padding": "SAME", **kw})


def _records() -> list[dict]:
    bad = [_dw(strides=(2, 2), dilations=(2, 2)), _dw(strides=(2, 2), dilations=(2, 2), height=10),
           _dw(strides=(3, 3), dilations=(2, 2), width=8)]
    good = [_dw(strides=(2, 2)), _dw(dilations=(2, 2)), _dw(), _dw(strides=(2, 2), dilations=(2, 2), op="conv2d",
                                                                 channel_multiplier=None, out_channels=2)]
    return ([_rec(c, "tf", "diverge", "shape", "wrong_shape_subblock") for c in bad]
            + [_rec(c, "tf", "pass") for c in good])


def test_build_characterises_from_plain_records():
    (f,) = findings.build(_records())
    assert f["predicate"] == "op = depthwise_conv2d and strided and dilated"
    assert f["title"].startswith("depthwise_conv2d with strides > 1 and dilations > 1 returns an output of the wrong shape")
    assert f["count"] == 3 and f["passed_on_backend"] == 4


def test_a_manifest_pins_a_finding_by_predicate(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("- {backend: tf, finding: 'op = depthwise_conv2d and strided and dilated', reason: dw bug}\n")
    (entry,) = expected.load_manifest(path)
    recs = _records()
    assert [entry.explains(r) for r in recs] == [r["status"] == "diverge" for r in recs]


def test_a_manifest_pins_a_finding_by_id(tmp_path):
    recs = _records()
    (f,) = findings.build(recs)
    path = tmp_path / "m.yaml"
    path.write_text(f"- {{backend: tf, finding: {f['id']}, reason: dw bug}}\n")
    entries = expected.load_manifest(path)
    expected.pin_findings(entries, recs, [f])
    assert all(r["known"] for r in recs if r["status"] == "diverge") and f["unexpected"] == 0
    assert expected.audit(entries, recs)["fixed"] == []


@pytest.mark.parametrize("onednn, known", [(True, True), (False, False)])
def test_a_finding_pinned_by_id_is_known_only_where_its_when_conditions_hold(tmp_path, onednn, known):
    recs = _records()
    for r in recs:
        r["fingerprint"] = "fp1"
    fingerprints = {"fp1": {"frameworks": {"tensorflow": {"onednn": onednn}}}}
    (f,) = findings.build(recs)
    path = tmp_path / "m.yaml"
    path.write_text(f"- {{backend: tf, finding: {f['id']}, when: {{tensorflow.onednn: true}}, reason: oneDNN only}}\n")
    entries = expected.load_manifest(path)
    expected.pin_findings(entries, recs, [f], fingerprints)
    diverging = [r for r in recs if r["status"] == "diverge"]
    assert all(bool(r.get("known")) == known for r in diverging)
    assert f["unexpected"] == (0 if known else len(diverging))


def test_a_malformed_finding_pin_names_the_entry(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("- {backend: tf, finding: 'stride is big', reason: x}\n")
    with pytest.raises(expected.ManifestError, match="entry 0: finding: predicate 'stride is big'"):
        expected.load_manifest(path)


def test_baseline_reports_new_and_fixed_findings():
    recs = _records()
    (f,) = findings.build(recs)
    now = [r if r["status"] == "pass" else _rec(Case.from_dict(r["case"]), "tf", "pass") for r in recs]
    extra = _rec(Case(op="conv2d", batch=1, height=5, width=5, in_channels=1, kernel=(3, 3), out_channels=1,
                      profile="subnormal"), "tf", "diverge", "subnormal_flush", "subnormal_flush")
    diff = findings.baseline_diff({"records": recs}, findings.build(now + [extra]))
    assert [r["id"] for r in diff["fixed"]] == [f["id"]]
    assert [r["kind"] for r in diff["new"]] == ["subnormal_flush"]


def test_pages_open_with_the_findings_escaped_and_linked(tmp_path):
    from conformance.report import write_reports

    recs = _records()
    found = findings.build(recs)
    found[0]["title"] = "<script>alert(1)</script>"
    run = {"schema_version": 2, "tool": {}, "environment": {}, "run": {}, "records": recs,
           "backends": {"tf": {"name": "tf", "version": "1.0", "device": "cpu", "spec": "tf", "error": None}},
           "findings": findings.section(found, confirm_enabled=False, budget_s=None)}
    write_reports(run, tmp_path)
    page, index = (tmp_path / "tf.html").read_text(), (tmp_path / "index.html").read_text()
    for text in (page, index):
        assert "<script>alert(1)" not in text and "&lt;script&gt;alert(1)" in text
        assert text.index('id="findings"') < text.index("<h2", text.index('id="findings"') + 30)
    assert f'id="finding-{found[0]["id"]}"' in page and f'href="tf.html#finding-{found[0]["id"]}"' in index
    anchors = {a.split('"')[0] for a in page.split('id="')[1:]}
    for cid in found[0]["cases"]:
        link = page.split(f">{cid}</a>")[0].rsplit('href="#', 1)[1].split('"')[0]
        assert link in anchors


def test_a_short_script_judges_a_given_output_without_the_framework():
    from conformance.inputs import make_inputs
    from conformance.oracle import convolve
    from conformance.scripts import exit_code_for

    case = _dw(strides=(2, 2), profile="small_integers")
    script = make_short_script(case, load("numpy"))
    right = convolve(case, *make_inputs(case)).astype("float32")
    assert exit_code_for(script, right) == 0
    assert exit_code_for(script, right + 1) == 1
    assert exit_code_for(script, right[:, :1]) == 1


def test_a_backend_not_in_this_run_has_no_fixed_findings():
    recs = _records()
    assert findings.baseline_diff({"records": recs}, [], backends={"other"}) == {"new": [], "fixed": []}


def test_a_catalogue_only_profile_is_characterised_and_every_finding_covers_cases():
    # subnormal_weights is a catalogue profile, not a sweep level: a group that contains it
    # once produced rules covering no case, and building the findings raised (a default run
    # lost its results.json to it).
    flushed = [_dw(profile="subnormal_weights"), _dw(profile="subnormal_weights", bias=True),
               _dw(profile="subnormal"), _dw(profile="subnormal", height=10)]
    good = [_dw(), _dw(height=10), _dw(profile="wide_range"), _dw(profile="special")]
    found = findings.build([_rec(c, "lite", "diverge", "subnormal_flush", "subnormal_flush") for c in flushed]
                           + [_rec(c, "lite", "pass") for c in good])
    assert found and all(f["count"] >= 1 and f["cases"] for f in found)
    assert sorted(cid for f in found for cid in f["cases"]) == sorted(c.id for c in flushed)


def test_a_findings_step_that_fails_loses_no_verdict(tmp_path, monkeypatch):
    def broken(records):
        raise ValueError("characterisation exploded")

    monkeypatch.setattr(findings, "build", broken)
    out = tmp_path / "out"
    code, err = run_cli("run", "--adapter", f"{Path(__file__).parent / 'broken_adapters.py'}:FlippedKernel",
                        "--cases", "smoke", "--out", str(out), "--no-minimise", "--no-report")
    assert code == 1, err  # the flipped kernel still diverges, and the run says so
    assert "findings could not be built (ValueError: characterisation exploded)" in err
    doc = json.loads((out / "results.json").read_text())
    assert len(doc["records"]) == 26 and any(r["status"] == "diverge" for r in doc["records"])


def test_findings_of_different_backends_are_worked_on_together_never_two_of_one_backend(monkeypatch):
    import threading
    import time as time_mod

    active: dict[str, int] = {}
    overlap = {"same": 0, "other": 0}
    lock = threading.Lock()

    def fake_confirm(f, record_case, tried, bases, *, budget_s, also_kinds):
        with lock:
            if active.get(f["backend"]):
                overlap["same"] += 1
            if any(v for k, v in active.items() if k != f["backend"]):
                overlap["other"] += 1
            active[f["backend"]] = active.get(f["backend"], 0) + 1
        time_mod.sleep(0.05)
        with lock:
            active[f["backend"]] -= 1
        f["confirmation"] = {"status": "confirmed", "inside": [], "near_misses": []}
        return f["confirmation"]

    def fake_short_repro(f, b, record_case, out, bases):
        f["short_repro"] = {"backend": b.name}

    class Live:
        failed = None

        def __init__(self, name):
            self.name = name

    monkeypatch.setattr(findings_step, "confirm", fake_confirm)
    monkeypatch.setattr(findings_step, "short_repro_for", fake_short_repro)
    found = [{"backend": name, "predicate": f"p{i}", "kind": "value", "cases": [], "id": f"{name}-{i}"}
             for i in range(4) for name in ("a", "b", "c")]
    stdout = sys.stdout
    findings_step.enrich(found, {n: Live(n) for n in "abc"}, [], confirm_budget_s=4.0)
    assert sys.stdout is stdout
    assert all(f["confirmation"]["status"] == "confirmed" and f["short_repro"]["backend"] == f["backend"]
               for f in found)
    assert overlap["same"] == 0
    assert overlap["other"] > 0
