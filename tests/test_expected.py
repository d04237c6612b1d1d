"""Known divergences explain a verdict without changing it; baselines say what is new or fixed."""

from __future__ import annotations

import json

import pytest

from conformance import expected, results
from tests._runner_util import adapter, case_file, run_cli

OK_ID = "conv-n1-5x5x2-k3x3-o2-s1x1-d1x1-valid-f32"
WRONG_ID = "conv-n1-6x5x2-k3x3-o2-s1x1-d1x1-valid-f32"


def _rec(case_id=WRONG_ID, backend="misbehaving", version="1.2.0", status="diverge", kind="value"):
    return {"case_id": case_id, "backend": backend, "backend_version": version, "status": status, "kind": kind,
            "message": ""}


def _manifest(tmp_path, text):
    path = tmp_path / "expected.yaml"
    path.write_text(text)
    return expected.load_manifest(path)


@pytest.mark.parametrize("entry, matches", [
    ("{backend: misbehaving, cases: 'conv-n1-6x5x2-*', reason: r}", True),
    ("{backend: 'misbehav*', cases: ['nope', 'conv-*-f32'], reason: r}", True),
    ("{backend: misbehaving, cases: '*', version: '>=1.2,<2', reason: r}", True),
    ("{backend: misbehaving, cases: '*', version: '>=2.16', reason: r}", False),
    ("{backend: misbehaving, cases: '*', kind: value, reason: r}", True),
    ("{backend: misbehaving, cases: '*', kind: [shape, nonfinite], reason: r}", False),
    ("{backend: torch, cases: '*', reason: r}", False),
    ("{backend: misbehaving, cases: 'dw-*', reason: r}", False),
], ids=["id-glob", "backend-glob-and-id-list", "version-in-range", "version-out-of-range", "kind-matches",
        "kind-differs", "other-backend", "other-cases"])
def test_an_entry_explains_a_divergence_when_every_rule_matches(tmp_path, entry, matches):
    entries = _manifest(tmp_path, f"- {entry}\n")
    assert (expected.match(entries, _rec()) is not None) is matches


def test_an_unparseable_backend_version_satisfies_no_range(tmp_path):
    entries = _manifest(tmp_path, "- {backend: '*', cases: '*', version: '>=1', reason: r}\n")
    assert expected.match(entries, _rec(version="unknown")) is None


def test_a_pass_is_never_explained(tmp_path):
    entries = _manifest(tmp_path, "- {backend: '*', cases: '*', reason: r}\n")
    assert expected.match(entries, _rec(status="pass", kind=None)) is None


@pytest.mark.parametrize("text, rule", [
    ("{backend: x}", "expected a YAML list of entries, received dict"),
    ("- {backend: x, cases: '*'}", "entry 0: expected a 'reason' key"),
    ("- {backend: x, cases: '*', reason: r, flavour: y}", "entry 0: expected keys among"),
    ("- {backend: x, cases: '*', reason: r, version: 'not a range'}", "entry 0: version: expected a PEP 440 range"),
    ("- {backend: x, cases: [], reason: r}", "entry 0: cases: expected a non-empty string or list"),
    ("- {backend: x, cases: '*', reason: r}\n- 3", "entry 1: expected a mapping"),
    ("- [unclosed", "expected YAML"),
], ids=["not-a-list", "no-reason", "unknown-key", "bad-version", "empty-cases", "second-entry", "yaml-syntax"])
def test_a_malformed_manifest_names_the_entry_and_the_rule(tmp_path, text, rule):
    with pytest.raises(expected.ManifestError) as err:
        _manifest(tmp_path, text + "\n")
    assert "expected.yaml" in str(err.value) and rule in str(err.value)


def test_baseline_diff_reports_new_and_fixed_pairs():
    baseline = {"records": [_rec(OK_ID, status="diverge"), _rec("gone", status="diverge"),
                            _rec(WRONG_ID, status="pass", kind=None)]}
    now = [_rec(OK_ID, status="pass", kind=None), _rec(WRONG_ID), _rec("brand-new", status="crash", kind=None)]
    diff = expected.baseline_diff(baseline, now)
    assert [(r["case_id"], r["was"]) for r in diff["new"]] == [(WRONG_ID, "pass"), ("brand-new", None)]
    assert [(r["case_id"], r["was"]) for r in diff["fixed"]] == [(OK_ID, "diverge")]


# ---- through the command line --------------------------------------------------------

@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return case_file(tmp_path_factory.mktemp("expected") / "cases.yaml", ["ok-a", "wrong-b"])


def _run(tmp_path, cases, *extra):
    out = tmp_path / "out"
    code, err = run_cli("run", "--adapter", adapter("Misbehaving"), "--cases", str(cases), "--out", str(out),
                        "--no-report", "--no-minimise", *extra)
    return code, err, results.load(out / "results.json")


def test_a_known_divergence_stays_a_divergence_and_does_not_fail_the_run(tmp_path, cases):
    manifest = tmp_path / "m.yaml"
    manifest.write_text(f"- {{backend: misbehaving, cases: '{WRONG_ID}', reason: adds one, link: 'https://x/1'}}\n")
    code, err, run = _run(tmp_path, cases, "--expected", str(manifest))
    assert code == 0, err
    rec = next(r for r in run["records"] if r["case_id"] == WRONG_ID)
    assert rec["status"] == "diverge" and rec["kind"] == "value"
    assert rec["known"] == {"reason": "adds one", "link": "https://x/1", "manifest_entry": 0}


def test_a_known_divergence_that_now_passes_is_reported_fixed(tmp_path, cases):
    manifest = tmp_path / "m.yaml"
    manifest.write_text(f"- {{backend: misbehaving, cases: '{WRONG_ID}', reason: adds one}}\n"
                        f"- {{backend: misbehaving, cases: '{OK_ID}', reason: was broken once}}\n")
    code, err, run = _run(tmp_path, cases, "--expected", str(manifest))
    assert code == 0
    assert "KNOWN DIVERGENCE(S) NOW PASS" in err and OK_ID in err
    assert run["expected"]["fixed"] == [{"case_id": OK_ID, "backend": "misbehaving", "manifest_entry": 1,
                                         "reason": "was broken once"}]


def test_strict_expected_fails_the_run_on_a_fixed_entry(tmp_path, cases):
    manifest = tmp_path / "m.yaml"
    manifest.write_text(f"- {{backend: misbehaving, cases: '{WRONG_ID}', reason: adds one}}\n"
                        f"- {{backend: misbehaving, cases: '{OK_ID}', reason: was broken once}}\n")
    code, _, _ = _run(tmp_path, cases, "--expected", str(manifest), "--strict-expected")
    assert code == 1


def test_a_glob_entry_that_explains_a_divergence_does_not_call_its_other_passing_cases_fixed(tmp_path, cases):
    manifest = tmp_path / "m.yaml"
    manifest.write_text("- {backend: misbehaving, cases: '*', kind: value, reason: adds one somewhere}\n")
    code, err, run = _run(tmp_path, cases, "--expected", str(manifest), "--strict-expected")
    assert code == 0, err
    assert run["expected"]["fixed"] == []


def test_a_glob_entry_that_explains_nothing_any_more_is_fixed_as_a_whole(tmp_path, cases):
    manifest = tmp_path / "m.yaml"
    manifest.write_text(f"- {{backend: misbehaving, cases: '{WRONG_ID}', reason: adds one}}\n"
                        "- {backend: misbehaving, cases: '*', kind: nonfinite, reason: NaN once}\n")
    code, err, run = _run(tmp_path, cases, "--expected", str(manifest))
    assert code == 0, err
    assert [(f["case_id"], f["manifest_entry"]) for f in run["expected"]["fixed"]] == [("*", 1)]
    assert "no case this entry covers diverges any more" in err


@pytest.mark.parametrize("kind", ["subnormal_flush", "invalid_accepted"])
def test_a_glob_entry_whose_kind_no_case_of_the_run_can_show_is_not_fixed(tmp_path, cases, kind):
    # Normal float32 inputs hold no subnormal and every case is valid: a flush (an accepted
    # invalid case) cannot be seen here, so its passing is no news about it.
    manifest = tmp_path / "m.yaml"
    manifest.write_text(f"- {{backend: misbehaving, cases: '{WRONG_ID}', reason: adds one}}\n"
                        f"- {{backend: misbehaving, cases: '*', kind: {kind}, reason: once}}\n")
    code, err, run = _run(tmp_path, cases, "--expected", str(manifest), "--strict-expected")
    assert code == 0, err
    assert run["expected"]["fixed"] == [] and run["expected"]["untested"] == [1]
    assert "NOW PASS" not in err and "entries [1] cover no case of this run that could show their kind" in err


def test_kind_possible_follows_what_the_inputs_can_hold():
    from conformance.compare import kind_possible
    from conformance.inputs import make_inputs
    from conformance.dtypes import has_subnormal
    from conformance.spec import PROFILES, Case

    base = Case(op="conv2d", batch=1, height=40, width=40, in_channels=16, out_channels=16, kernel=3)
    for dtype in ("float32", "float64", "bfloat16", "float16"):
        for profile in PROFILES:
            case = base.replace(dtype=dtype, profile=profile)
            if has_subnormal(make_inputs(case), case.dtype):  # never claim impossible what these inputs show
                assert kind_possible("subnormal_flush", case), case.id
    assert not kind_possible("subnormal_flush", base) and kind_possible("subnormal_flush", base.replace(profile="subnormal"))
    invalid = base.replace(height=1, width=1)
    assert kind_possible("invalid_accepted", invalid) and not kind_possible("invalid_accepted", base)
    assert not kind_possible("value", invalid) and kind_possible("crash", invalid)


def test_the_baseline_section_lists_new_and_fixed(tmp_path, cases):
    code, _, first = _run(tmp_path, cases)
    # Pretend the earlier run had it the other way round.
    for rec in first["records"]:
        rec.update(status="pass", kind=None) if rec["case_id"] == WRONG_ID else rec.update(status="diverge", kind="value")
    base = tmp_path / "baseline.json"
    base.write_text(json.dumps(first))
    _, err, run = _run(tmp_path, cases, "--baseline", str(base))
    assert [r["case_id"] for r in run["baseline"]["new"]] == [WRONG_ID]
    assert [r["case_id"] for r in run["baseline"]["fixed"]] == [OK_ID]
    assert "1 new, 1 fixed" in err


def test_an_entry_naming_a_precision_explains_only_records_judged_under_it(tmp_path):
    from conformance.expected import load_manifest, match

    path = tmp_path / "m.yaml"
    path.write_text("- {backend: tf, cases: '*', kind: precision, precision: strict, reason: f16 accumulation}\n")
    entries = load_manifest(path)
    rec = {"status": "diverge", "backend": "tf", "backend_version": "2.21", "case_id": "dw-x", "kind": "precision",
           "precision": "strict"}
    assert match(entries, rec) is not None
    assert match(entries, dict(rec, precision="relaxed")) is None


def test_an_unknown_precision_in_a_manifest_is_refused(tmp_path):
    from conformance.expected import ManifestError, load_manifest

    path = tmp_path / "m.yaml"
    path.write_text("- {backend: tf, cases: '*', precision: exact, reason: r}\n")
    from conformance.tolerance import PRECISIONS

    with pytest.raises(ManifestError, match=f"precision: expected one of {', '.join(PRECISIONS)}, received 'exact'"):
        load_manifest(path)
