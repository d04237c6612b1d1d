"""Run-to-run repeats (issue 22): the same inputs must give the same bits on every call.

Pinned:
- through `conformance run` with its default options, on cases of the default set, a
  backend whose result changes from call to call (an ulp flipped every other call; a
  float32 sum in another order each call) is `nondeterministic`, a deterministic one
  passes with every case repeated, and a first output that already diverges keeps its
  kind with the difference in the record;
- the record says how the calls differ; `conformance repro` writes a script of a
  nondeterministic divergence that calls twice and exits 1; junit, the HTML report and
  the console show it;
- through the pytest plugin (which repeats as a default run does), the same; the minimiser
  keeps a nondeterministic divergence nondeterministic; `--repeats 0` judges the first
  call alone;
- what counts: values, shape, dtype and a later exception do; NaN payloads and the sign
  of zero do not; an adapter that writes into its inputs does not make calls differ (each
  call has its own copy);
- the policy: small cases, a stable sample of the others up to SAMPLED_OUTPUTS output
  elements, never past half the timeout.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conformance import expected, repeats, results
from conformance.cases.sets import select
from conformance.inputs import make_inputs
from conformance.minimise import cost, minimise, same_divergence
from conformance.oracle import reference
from conformance.record import record_here
from conformance.spec import Case
from conformance.verdict import judge
from tests._runner_util import ADAPTERS, adapter, run_cli

sys.path.insert(0, str(ADAPTERS.parent))
from adapters_for_tests import Faithful, FlipsAnUlp  # noqa: E402

pytest_plugins = ["pytester"]

#: Cases of the default set: small float32 3x3 convolutions (nine taps: two ShuffledSum calls
#: were never bitwise alike in 1000 tries on any of these, AMD EPYC, 2026-12-07), and one exact
#: small-integer case.
NORMAL = ["conv-n1-6x6x1-k3x3-o1-s1x1-d1x1-same-f32", "conv-n1-6x6x2-k3x3-o2-s2x2-d1x1-same-f32",
          "dw-n1-8x8x2-k3x3-m1-s2x2-d1x1-same-f32", "dw-n1-5x5x1-k3x3-m5-s1x1-d1x1-valid-f32"]
EXACT = "conv-n1-7x6x1-k1x1-o1-s2x2-d3x1-valid-f32-nchw-smallintegers-bias"
SELECTOR = ",".join(NORMAL + [EXACT])


def test_the_cases_are_in_the_default_set():
    assert set(NORMAL + [EXACT]) <= {c.id for c in select("default")}


@pytest.fixture(scope="module")
def repeat_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("repeats") / "out"
    code, err = run_cli("run", "--adapter", adapter("FlipsAnUlp"), "--adapter", adapter("ShuffledSum"),
                        "--adapter", adapter("Faithful"), "--adapter", adapter("WritesIntoInputs"),
                        "--cases", SELECTOR, "--out", str(out),
                        "--no-minimise", "--no-confirm")
    run = results.load(out / "results.json")
    by = {(r["backend"], r["case_id"]): r for r in run["records"]}
    return code, err, out, run, by


def test_a_backend_that_flips_an_ulp_every_other_call_is_nondeterministic(repeat_run):
    code, _, _, _, by = repeat_run
    assert code == 1
    assert [by["flips-an-ulp", c]["kind"] for c in NORMAL] == ["nondeterministic"] * len(NORMAL)


def test_a_float32_sum_in_another_order_each_call_is_nondeterministic(repeat_run):
    by = repeat_run[4]
    assert [by["shuffled-sum", c]["kind"] for c in NORMAL] == ["nondeterministic"] * len(NORMAL)


def test_a_deterministic_backend_passes_with_every_case_repeated(repeat_run):
    recs = [r for r in repeat_run[3]["records"] if r["backend"] == "faithful"]
    assert [(r["status"], r["repeat"]["calls"], r["repeat"]["identical"]) for r in recs] == \
        [("pass", 2, True)] * len(recs)


def test_an_adapter_that_writes_into_its_inputs_is_given_fresh_copies_each_call(repeat_run):
    recs = [r for r in repeat_run[3]["records"] if r["backend"] == "writes-into-inputs"]
    assert [(r["status"], r["repeat"]["identical"]) for r in recs] == [("pass", True)] * len(recs)


def test_a_first_output_that_diverges_keeps_its_kind_with_the_repeat_noted(repeat_run):
    rec = repeat_run[4]["flips-an-ulp", EXACT]  # the flipped ulp is wrong where the result is exact
    assert (rec["kind"], rec["repeat"]["differing"]) == ("inexact", 1)
    assert any(n.startswith("also not deterministic: call 2 of 2") for n in rec["notes"])


def test_the_record_says_where_and_by_how_much_the_calls_differ(repeat_run):
    r = repeat_run[4]["flips-an-ulp", NORMAL[2]]["repeat"]
    assert (r["call"], r["differs_in"], r["differing"], r["max_ulp"]) == (2, "values", 1, 1.0)
    assert r["positions"][0]["index"] == [0, 0, 0, 0] and r["positions"][0]["first"] != r["positions"][0]["other"]
    assert 0 < r["max_normalised_error"] < 3  # one ulp: within any correct sum's error
    assert r["other_verdict"]["passed"] is True


def test_a_nondeterministic_divergence_gets_no_diagnosis_of_its_right_first_output(repeat_run):
    assert repeat_run[4]["flips-an-ulp", NORMAL[0]]["diagnosis"] is None


def test_conformance_repro_writes_a_script_that_calls_twice_and_exits_1(tmp_path):
    script = tmp_path / "repro.py"
    code, _ = run_cli("repro", NORMAL[3], "--backend", adapter("ShuffledSum"), "--out", str(script))
    assert code == 1 and "CALLS = 2" in script.read_text()  # 1: the verdict's exit code, as for any divergence
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "DIVERGES: not deterministic: call 1 is within tolerance, but call 2 of 2" in done.stdout


def test_junit_fails_the_case_with_the_kind_and_the_difference(repeat_run):
    import xml.etree.ElementTree as ET

    root = ET.parse(repeat_run[2] / "junit.xml").getroot()
    case = root.find(f".//testcase[@classname='flips-an-ulp'][@name='{NORMAL[0]}']")
    failure = case.find("failure")
    assert failure.get("type") == "nondeterministic" and "repeats: call 2 of 2" in failure.text


def test_the_html_report_shows_the_difference(repeat_run):
    page = (repeat_run[2] / "flips-an-ulp.html").read_text()
    assert "Not deterministic:" in page and "Largest differences between call 1 and call 2" in page
    assert "Repeats: 5 cases run again with the same inputs; 5 gave another result" in page


def test_the_console_lists_each_backends_repeats(repeat_run):
    err = repeat_run[1]
    assert "repeats (1 more call with the same inputs of every valid case of at most 1,048,576 multiply-adds" in err
    # Backends whose repeats all matched share one line; one that differed has its own.
    assert re.search(r"\n  \d backends?: 5 cases repeated each, none differed \([^)]*\bfaithful\b[^)]*\)\n", err), err
    assert re.search(r"\n  flips-an-ulp +5 cases repeated, 5 differed: ", err), err


def test_the_run_states_its_repeat_policy(repeat_run):
    stated = repeat_run[3]["run"]["repeats"]
    assert (stated["calls"], stated["every"], stated["small_macs"], stated["sample"]) == \
        (1, False, repeats.SMALL_MACS, repeats.SAMPLE)


def test_a_manifest_entry_can_name_the_kind(repeat_run, tmp_path):
    path = tmp_path / "known.yaml"
    path.write_text("- backend: flips-an-ulp\n  cases: '*'\n  kind: nondeterministic\n  reason: flips an ulp\n")
    entries = expected.load_manifest(path)
    by = repeat_run[4]
    assert expected.match(entries, by["flips-an-ulp", NORMAL[0]])["reason"] == "flips an ulp"
    assert expected.match(entries, by["flips-an-ulp", EXACT]) is None  # inexact, not nondeterministic


def test_a_nondeterministic_entry_is_untested_where_nothing_was_repeated(repeat_run, tmp_path):
    path = tmp_path / "known.yaml"
    path.write_text("- backend: faithful\n  cases: '*'\n  kind: nondeterministic\n  reason: was flaky\n")
    recs = [dict(r, repeat=None) for r in repeat_run[3]["records"] if r["backend"] == "faithful"]
    audit = expected.audit(expected.load_manifest(path), recs)
    assert (audit["untested"], audit["fixed"]) == ([0], [])


def test_repeats_0_judges_the_first_call_alone(tmp_path):
    code, _ = run_cli("run", "--adapter", adapter("FlipsAnUlp"), "--cases", NORMAL[0], "--out", str(tmp_path / "o"),
                      "--repeats", "0", "--no-report", "--quiet")
    rec = results.load(tmp_path / "o" / "results.json")["records"][0]
    assert (code, rec["status"], rec["repeat"]) == (0, "pass", None)


def test_repeat_all_with_repeats_0_is_a_usage_error(tmp_path):
    code, err = run_cli("run", "--adapter", adapter("Faithful"), "--cases", NORMAL[0], "--out", str(tmp_path / "o"),
                        "--repeats", "0", "--repeat-all")
    assert code == 2 and "--repeat-all: expected --repeats of at least 1" in err


# ---- the pytest plugin --------------------------------------------------------------------

def test_the_plugin_fails_a_nondeterministic_backend_and_passes_a_deterministic_one(pytester):
    shutil.copy(ADAPTERS, pytester.path / "adapters_for_tests.py")
    result = pytester.runpytest_subprocess(
        "--conformance", "-p", "no:cacheprovider", "--adapter", "adapters_for_tests.py:FlipsAnUlp",
        "--adapter", "adapters_for_tests.py:Faithful", "--conformance-cases", NORMAL[2],
        "--conformance-no-properties")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([f"*flips-an-ulp diverges (nondeterministic) on case {NORMAL[2]}*",
                                 "*repeats: call 2 of 2 with the same inputs differs from the first in 1 of*",
                                 "*at (0, 0, 0, 0): call 1 gave*"])
    script = pytester.path / "test-artifacts" / "conformance" / f"flips-an-ulp-{NORMAL[2]}.py"
    assert "CALLS = 2" in script.read_text()


# ---- in this process: the minimiser, what counts as a difference ------------------------------

def test_the_minimiser_keeps_a_nondeterministic_divergence_nondeterministic():
    case = next(c for c in select("default") if c.id == NORMAL[3])
    smaller = minimise(case, same_divergence(FlipsAnUlp(), "nondeterministic"), time_limit=20)
    assert cost(smaller) < cost(case)
    assert record_here(smaller, FlipsAnUlp())["kind"] == "nondeterministic"


CASE = Case(op="conv2d", batch=1, height=5, width=5, in_channels=2, kernel=3, out_channels=2)


def _judged(second, first=None, error=None):
    """The verdict on a right first output whose repeat gave `second` (or raised `error`)."""
    inputs = make_inputs(CASE)
    ref = reference(CASE, *inputs)
    y = Faithful().run(CASE, *inputs) if first is None else first
    differ = error is not None or not repeats.same_bits(y, second)
    rep = repeats.Repeated(2, "small", 0.0, int(differ), 2 if differ else None, second if differ else None, error)
    return judge(CASE, ("output", y, 0.0, [], rep), ref, inputs)


def _with_bits(y, index, value):
    out = y.copy()
    out.reshape(-1)[index] = value
    return out


def _difference(first, other):
    rep = repeats.Repeated(2, "small", 0.0, 1, 2, np.asarray(other, dtype=np.float32))
    return repeats.difference(CASE, np.asarray(first, dtype=np.float32), rep)


def test_zero_signs_that_differ_are_counted_but_not_judged():
    fields = _difference([0.0, 1.0], [-0.0, 1.0])
    assert (fields["zero_sign"], fields["differing"], repeats.differs(fields)) == (1, 0, False)


def test_nan_payloads_that_differ_are_counted_but_not_judged():
    nans = np.array([0x7FC00000, 0x7FC00001], dtype=np.uint32).view(np.float32)
    fields = _difference([nans[0], 1.0], [nans[1], 1.0])
    assert (fields["nan_payload"], fields["differing"], repeats.differs(fields)) == (1, 0, False)


def test_a_nan_against_a_number_is_a_difference():
    fields = _difference([np.nan, 1.0], [2.0, 1.0])
    assert (fields["differing"], fields["max_ulp"], repeats.differs(fields)) == (1, "inf", True)


def test_bits_only_differences_leave_the_verdict_and_add_a_note():
    y = Faithful().run(CASE, *make_inputs(CASE))
    nans = np.array([0x7FC00000, 0x7FC00001], dtype=np.uint32).view(np.float32)
    v = _judged(y, first=y)  # identical: nothing to say
    assert (v.status, v.notes) == ("pass", [])
    first, other = _with_bits(y, 0, nans[0]), _with_bits(y, 0, nans[1])
    v = _judged(other, first=first)
    assert (v.kind, v.repeat["nan_payload"]) == ("nonfinite", 1)  # the NaN is wrong: the first output's own kind
    assert any("differs from the first in bits only" in n for n in v.notes)


def test_a_later_call_that_raises_is_nondeterministic():
    v = _judged(None, error={"type": "RuntimeError", "message": "scratch buffer busy", "traceback": ""})
    assert (v.status, v.kind) == ("diverge", "nondeterministic")
    assert "raised RuntimeError: scratch buffer busy where the first call returned" in v.message


def test_a_later_output_of_another_shape_is_nondeterministic():
    v = _judged(np.zeros((1, 3, 3, 1), dtype=np.float32))
    assert (v.kind, v.repeat["differs_in"]) == ("nondeterministic", "shape")


def test_identical_repeats_leave_the_verdict_as_it_was():
    v = _judged(Faithful().run(CASE, *make_inputs(CASE)))
    assert (v.status, v.kind, v.repeat["identical"]) == ("pass", None, True)


# ---- the policy ---------------------------------------------------------------------------

def test_a_small_case_is_repeated_however_long_its_first_call_took():
    assert repeats.DEFAULT.reason(CASE, 30.0) == "small"


def test_larger_cases_are_repeated_in_a_stable_sample_of_about_one_in_sample():
    policy = repeats.Policy(small_macs=0)  # every case is a larger one
    cases = [c for c in select("default") if c.is_valid]
    chosen = [c.id for c in cases if policy.reason(c, 1.0) == "sampled"]
    assert chosen == [c.id for c in cases if policy.reason(c, 5.0) == "sampled"]  # by the case, not the time
    assert len(cases) / repeats.SAMPLE * 0.6 < len(chosen) < len(cases) / repeats.SAMPLE * 1.4


def test_a_case_above_sampled_outputs_is_repeated_only_with_every():
    policy = repeats.Policy(small_macs=0, sample=1)  # every case is a larger one, and each is in the sample
    huge = [c for c in select("default") if c.is_valid and np.prod(c.output_shape) > repeats.SAMPLED_OUTPUTS]
    assert huge and [policy.reason(c, 0.0) for c in huge] == [None] * len(huge)
    assert [repeats.Policy(every=True).reason(c, 0.0) for c in huge] == ["all"] * len(huge)


def test_a_repeat_never_takes_a_case_past_half_its_timeout():
    policy = repeats.Policy(every=True, budget_s=10.0)
    assert (policy.reason(CASE, 2.0), policy.reason(CASE, 3.0)) == ("all", None)


def test_repeats_off_and_invalid_cases_are_never_repeated():
    invalid = Case(op="conv2d", batch=1, height=1, width=1, in_channels=1, kernel=3, out_channels=1, padding="VALID")
    assert (repeats.OFF.reason(CASE, 0.0), repeats.Policy(every=True).reason(invalid, 0.0)) == (None, None)
