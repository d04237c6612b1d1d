"""results.json follows docs/results-schema.md (written compact, read back whole, schema 2
still read); the stream survives a torn line; junit.xml maps every pair."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conformance import results
from tests._runner_util import adapter, case_file, run_cli

NAMES = ["ok-a", "wrong-b", "raise-c", "invalid-d", "accept-e", "unsupported-f"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("results")
    cases = case_file(tmp / "cases.yaml", NAMES)
    manifest = tmp / "m.yaml"
    manifest.write_text("- {backend: misbehaving, cases: '*', kind: invalid_accepted, reason: returns zeros}\n")
    run_cli("run", "--adapter", adapter("Misbehaving"), "--backend", "numpy", "--cases", str(cases),
            "--out", str(tmp / "out"), "--expected", str(manifest), "--no-report", "--no-minimise", "--quiet")
    return tmp / "out"


def test_results_json_validates_against_the_schema(run_dir):
    run = results.load(run_dir / "results.json")
    assert results.validate(run) == []
    assert len(run["records"]) == 2 * len(NAMES)
    assert set(run["backends"]) == {"misbehaving", "numpy"}


def test_every_record_has_every_documented_field(run_dir):
    run = results.load(run_dir / "results.json")
    for rec in run["records"]:
        assert list(rec) == list(results.RECORD_FIELDS) + list(results.OPTIONAL_RECORD_FIELDS)


@pytest.mark.parametrize("damage, problem", [
    (lambda r: r.pop("records"), "expected top-level field 'records'"),
    (lambda r: r["records"][0].update(status="fine"), "records[0].status: expected one of"),
    (lambda r: r["records"][0].pop("time"), "records[0]: expected fields ['time']"),
    (lambda r: r["records"].append(dict(r["records"][0])), "expected one record per (case, backend)"),
    (lambda r: r["records"][0].update(backend="ghost"), "records[0].backend: expected a key of 'backends'"),
    (lambda r: r["run"].pop("seed"), "run: expected field 'seed'"),
], ids=["no-records", "bad-status", "missing-field", "duplicate-pair", "unknown-backend", "run-field"])
def test_validate_names_each_schema_violation(run_dir, damage, problem):
    run = results.load(run_dir / "results.json")
    damage(run)
    assert any(problem in p for p in results.validate(run)), results.validate(run)


def test_load_refuses_another_schema_version(tmp_path, run_dir):
    run = json.loads((run_dir / "results.json").read_text())
    run["schema_version"] = 99
    path = tmp_path / "r.json"
    path.write_text(json.dumps(run))
    with pytest.raises(results.ResultsError, match="r.json: expected schema_version 2 or 3, received 99"):
        results.load(path)


def test_the_stream_ignores_a_torn_last_line(tmp_path, run_dir):
    header, recs = results.resume_point(results.load(run_dir / "results.json"))
    torn = tmp_path / "results.jsonl"
    results.JsonlWriter.replay(torn, header, recs).close()
    with open(torn, "a") as fh:
        fh.write('{"type": "record", "record": {"case_')
    header, recs = results.read_jsonl(torn)
    assert header["params"]["backends"] == ["numpy", adapter("Misbehaving")]
    assert len(recs) == 2 * len(NAMES)


def test_a_resumed_stream_drops_the_torn_line_before_appending(tmp_path):
    path = tmp_path / "results.jsonl"
    w = results.JsonlWriter(path, {"params": {}})
    w.record({"case_id": "a"})
    w.close()
    with open(path, "a") as fh:
        fh.write('{"type": "rec')
    w = results.JsonlWriter(path, None)
    w.record({"case_id": "b"})
    w.close()
    assert [r["case_id"] for r in results.read_jsonl(path)[1]] == ["a", "b"]


def _testcases(run_dir):
    root = ET.parse(run_dir / "junit.xml").getroot()
    return {(tc.get("classname"), tc.get("name")): tc for tc in root.iter("testcase")
            if not tc.get("classname").endswith(".findings")}


def test_junit_has_one_testcase_per_finding_besides_the_cases(run_dir):
    run = results.load(run_dir / "results.json")
    root = ET.parse(run_dir / "junit.xml").getroot()
    got = {tc.get("name").split(":")[0]: tc for tc in root.iter("testcase") if tc.get("classname").endswith(".findings")}
    found = run["findings"]["items"]
    assert found and set(got) == {f["id"] for f in found}
    for f in found:  # the unexpected 'wrong' case fails its finding; the known invalid_accepted one is skipped
        child = "failure" if f["unexpected"] else "skipped"
        assert got[f["id"]].find(child) is not None, f["id"]


def test_junit_has_one_testcase_per_case_and_backend(run_dir):
    run = results.load(run_dir / "results.json")
    assert set(_testcases(run_dir)) == {(r["backend"], r["case_id"]) for r in run["records"]}
    assert len(_testcases(run_dir)) == len(run["records"])


@pytest.mark.parametrize("name, child, text", [
    ("ok-a", None, None),
    ("wrong-b", "failure", "diverge:"),
    ("raise-c", "failure", "error: RuntimeError: deliberate failure"),
    ("invalid-d", None, None),
    ("accept-e", "skipped", "known invalid_accepted (manifest entry 0): returns zeros"),
    ("unsupported-f", "skipped", "unsupported: this backend has no such kernel"),
])
def test_junit_maps_each_status(run_dir, name, child, text):
    run = results.load(run_dir / "results.json")
    case_id = next(r["case_id"] for r in run["records"] if r["case"].get("name") == name)
    tc = _testcases(run_dir)[("misbehaving", case_id)]
    kids = [k for k in tc if k.tag in ("failure", "skipped", "error")]
    if child is None:
        assert kids == []
    else:
        assert [k.tag for k in kids] == [child]
        assert kids[0].get("message").startswith(text)


# ---- the compact encoding (schema 3) and schema 2 ---------------------------------------------

SCHEMA_2 = Path(__file__).parent / "data" / "results-schema2.json"


def test_the_file_holds_each_case_once_and_leaves_out_default_fields(run_dir):
    doc = json.loads((run_dir / "results.json").read_text())
    assert doc["schema_version"] == 3
    assert set(doc["cases"]) == {r["case_id"] for r in doc["records"]}
    passed = next(r for r in doc["records"] if r["status"] == "pass")
    assert "case" not in passed and None not in passed.values() and "backend_version" not in passed


def test_load_gives_back_what_write_was_given(run_dir, tmp_path):
    run = results.load(run_dir / "results.json")
    results.write(tmp_path / "again.json", run)
    assert results.load(tmp_path / "again.json") == run


def test_a_field_that_differs_from_its_default_is_written(run_dir, tmp_path):
    run = results.load(run_dir / "results.json")
    passed = next(r for r in run["records"] if r["status"] == "pass")
    passed.update(message="", backend_version=None)  # defaults elsewhere, not for a pass of a known backend
    results.write(tmp_path / "r.json", run)
    assert results.load(tmp_path / "r.json") == run


def test_a_worst_elements_actual_is_read_back_exactly_and_figures_to_four_digits(run_dir, tmp_path):
    run = results.load(run_dir / "results.json")
    rec = next(r for r in run["records"] if r["status"] == "diverge" and r["worst"])
    subnormal16 = -1.7881393432617188e-07  # a float16 value whose shortest repr is -2e-07
    for r in run["records"]:  # a float16 case, on every backend
        if r["case_id"] == rec["case_id"]:
            r["case"] = dict(r["case"], dtype="float16")
    rec["worst"][0].update(actual=subnormal16, expected=0.123456789012345, limit=12.345678)
    rec["figures"]["max_abs_error"] = 0.000123456789
    results.write(tmp_path / "r.json", run)
    again = next(r for r in results.load(tmp_path / "r.json")["records"]
                 if (r["case_id"], r["backend"]) == (rec["case_id"], rec["backend"]))
    assert again["worst"][0]["actual"] == subnormal16
    assert again["worst"][0]["expected"] == 0.123456789 and again["worst"][0]["limit"] == 12.35
    assert again["figures"]["max_abs_error"] == 0.0001235


def test_a_schema_2_file_loads_with_every_record_whole():
    run = results.load(SCHEMA_2)
    assert run["schema_version"] == 2 and len(run["records"]) == 6
    assert all(r["case"]["dtype"] for r in run["records"])


def test_a_schema_2_file_merges_into_schema_3(tmp_path):
    code, err = run_cli("merge", str(SCHEMA_2), "--out", str(tmp_path / "m"), "--no-report", "--quiet")
    assert code == 1, err  # its openvino divergences are unexpected
    merged = results.load(tmp_path / "m" / "results.json")
    old = results.load(SCHEMA_2)
    assert merged["schema_version"] == 3
    assert [(r["case_id"], r["backend"], r["status"], r["kind"]) for r in merged["records"]] == \
        [(r["case_id"], r["backend"], r["status"], r["kind"]) for r in old["records"]]


def test_a_schema_2_file_is_a_baseline(tmp_path):
    cases = case_file(tmp_path / "cases.yaml", ["ok-a"])
    code, err = run_cli("run", "--backend", "numpy", "--cases", str(cases), "--out", str(tmp_path / "o"),
                        "--baseline", str(SCHEMA_2), "--no-report", "--quiet")
    assert code == 0, err
    assert results.load(tmp_path / "o" / "results.json")["baseline"]["path"] == str(SCHEMA_2)
