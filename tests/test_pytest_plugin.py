"""The pytest plugin: `pytest --conformance --backend B` collects and judges (case, backend) tests.

Every run is a subprocess (pytester.runpytest_subprocess): the plugin loads hypothesis
profiles and frameworks, which must not leak into this test session.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conformance.cases.sets import select
from conformance.spec import OPS

pytest_plugins = ["pytester"]

BROKEN = Path(__file__).with_name("broken_adapters.py")
ADAPTERS = Path(__file__).with_name("adapters_for_tests.py")
SMOKE = select("smoke")
#: `-k` for the forward conv2d property item alone (the training ops' ids contain "conv2d" too).
ONLY_CONV2D_PROPERTY = "test_property and conv2d and not depthwise and not backprop and not separable"
PLAIN = next(c for c in SMOKE if c.op == "conv2d" and c.kernel == (3, 3) and c.profile == "normal"
             and c.dtype == "float32" and c.groups == 1)
BF16 = next(c for c in SMOKE if c.op == "conv2d" and c.dtype == "bfloat16")
F16 = next(c for c in SMOKE if c.op == "conv2d" and c.dtype == "float16")
BASE = ("-p", "no:cacheprovider", "--hypothesis-profile", "ci")


def conformance(pytester, *args):
    return pytester.runpytest_subprocess("--conformance", *BASE, *args)


@pytest.fixture
def broken(pytester) -> str:
    shutil.copy(BROKEN, pytester.path / "broken.py")
    return "broken.py:FlippedKernel"


def test_numpy_smoke_set_passes(pytester):
    result = conformance(pytester, "--backend", "numpy", "--conformance-cases", "smoke")
    # + property tests: one per op, and invalid. The numpy adapter computes every op.
    result.assert_outcomes(passed=len(SMOKE) + len(OPS) + 1)


def test_ids_are_one_per_case_and_backend_in_set_order(pytester):
    result = conformance(pytester, "--backend", "numpy", "--conformance-cases", "smoke", "--co", "-q")
    ids = [line for line in result.outlines if line.startswith("conformance::")]
    assert ids == [f"conformance::test_conformance[numpy-{c.id}]" for c in SMOKE] + [
        f"conformance::test_property[numpy-{op}]" for op in OPS] + ["conformance::test_property_invalid[numpy]"]


def test_without_the_option_nothing_is_collected_or_imported(pytester, monkeypatch):
    monkeypatch.delenv("CONFORMANCE_HYPOTHESIS_PROFILE", raising=False)  # (it asks for hypothesis)
    pytester.makepyfile(test_one="""
        import sys
        def test_plain():
            loaded = [m for m in ("conformance._pytest_cases", "hypothesis", "torch", "tensorflow") if m in sys.modules]
            assert loaded == []
    """)
    # (Not -v: hypothesis's own plugin imports hypothesis for its verbose header line.)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--backend", "numpy")
    result.assert_outcomes(passed=1)
    listed = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--backend", "numpy", "--co", "-q")
    assert [line for line in listed.outlines if "::" in line] == ["test_one.py::test_plain"]


def test_conformance_without_a_backend_is_a_usage_error(pytester):
    result = pytester.runpytest_subprocess("--conformance", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*expected at least one --backend or --adapter*"])


def test_broken_adapter_fails_with_case_figures_diagnosis_and_repro(pytester, broken):
    result = conformance(pytester, "--adapter", broken, "--conformance-cases", PLAIN.id,
                         "--conformance-no-properties")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    for expected in (f"flipped diverges (value) on case {PLAIN.id}", '"kernel": [3, 3]', "max_normalised_error=",
                     "vs threshold", "diagnosis: flipped_kernel", "repro: "):
        assert expected in out, f"expected {expected!r} in the failure message"
    assert (pytester.path / "test-artifacts" / "conformance" / f"flipped-{PLAIN.id}.py").is_file()


@pytest.fixture
def misbehaving(pytester) -> str:
    """tests/adapters_for_tests.py as misbehaving.py: backends that crash, hang or log their cases."""
    shutil.copy(ADAPTERS, pytester.path / "misbehaving.py")
    return "misbehaving.py"


def _junit(pytester) -> dict[str, str]:
    """junit.xml's testcases: name -> "failure", "skipped" or "passed"."""
    out = {}
    for tc in ET.parse(pytester.path / "junit.xml").getroot().iter("testcase"):
        tags = {child.tag for child in tc}
        out[tc.get("name")] = "failure" if "failure" in tags else "skipped" if "skipped" in tags else "passed"
    return out


def test_a_backend_that_segfaults_fails_the_case_and_the_session_goes_on(pytester, misbehaving):
    # The crash comes first: the pair after it still runs, on a restarted worker.
    result = conformance(pytester, "--adapter", f"{misbehaving}:SegfaultsOnBfloat16", "--conformance-cases",
                         f"{BF16.id},{PLAIN.id}", "--conformance-no-properties", "--junitxml", "junit.xml")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines([f"segfaults-on-bf16 crash on case {BF16.id}",
                                 "worker process died with signal SIGSEGV while running the case*"])
    assert _junit(pytester) == {f"test_conformance[segfaults-on-bf16-{BF16.id}]": "failure",
                                f"test_conformance[segfaults-on-bf16-{PLAIN.id}]": "passed"}
    assert (pytester.path / "test-artifacts" / "conformance" / f"segfaults-on-bf16-{BF16.id}.py").is_file()


def test_a_backend_that_hangs_fails_the_case_as_a_timeout_and_the_session_goes_on(pytester, misbehaving):
    result = conformance(pytester, "--adapter", f"{misbehaving}:HangsOnFloat16", "--conformance-cases",
                         f"{F16.id},{PLAIN.id}", "--conformance-no-properties", "--conformance-timeout", "1",
                         "--junitxml", "junit.xml")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines([f"hangs-on-f16 timeout on case {F16.id}", "no result within 1 s*"])
    assert _junit(pytester)[f"test_conformance[hangs-on-f16-{F16.id}]"] == "failure"


def test_a_case_over_the_memory_budget_is_skipped_as_run_refuses_it(pytester):
    result = conformance(pytester, "--backend", "numpy", "--conformance-cases", PLAIN.id,
                         "--conformance-no-properties", "--conformance-max-memory", "1M", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*needs an estimated * to judge (oracle and comparison), over --max-memory 1 MiB*"])


def test_a_malformed_memory_budget_is_a_usage_error_naming_the_option(pytester):
    result = conformance(pytester, "--backend", "numpy", "--conformance-max-memory", "lots")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--conformance-max-memory: expected a size like 8G*'lots'*"])


_NO_SHRINKING = """
from hypothesis import HealthCheck, Phase, settings
settings.register_profile("no-shrinking", phases=[Phase.generate], deadline=None, max_examples=20,
                          suppress_health_check=[HealthCheck.too_slow])
"""


def test_a_property_test_that_draws_a_crashing_case_fails_naming_it(pytester, misbehaving):
    # No shrinking: each smaller crashing case would cost a restart of the worker.
    pytester.makeconftest(_NO_SHRINKING)
    result = pytester.runpytest_subprocess("--conformance", "-p", "no:cacheprovider", "--hypothesis-profile",
                                           "no-shrinking", "--adapter", f"{misbehaving}:SegfaultsOnBfloat16",
                                           "--conformance-cases", PLAIN.id, "-k",
                                           ONLY_CONV2D_PROPERTY, "--junitxml", "junit.xml")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["segfaults-on-bf16 crash on case conv-*-bf16*", "*SIGSEGV*",
                                 "hypothesis seed: *"])
    assert list(_junit(pytester).values()) == ["failure"]


def test_a_failing_property_test_prints_the_command_that_draws_its_cases_again(pytester, misbehaving, monkeypatch):
    log = pytester.path / "cases.log"
    monkeypatch.setenv("CONFORMANCE_TEST_CASE_LOG", str(log))
    # `dev` draws from a fresh random seed each run: only the printed one gives the same cases.
    first = pytester.runpytest_subprocess("--conformance", "-p", "no:cacheprovider", "--hypothesis-profile", "dev",
                                          "--adapter", f"{misbehaving}:LogsCases", "--conformance-cases", PLAIN.id,
                                          "-k", ONLY_CONV2D_PROPERTY)
    first.assert_outcomes(failed=1)
    # One seed line per failure; pytest repeats a failure's whole message in its short summary when
    # $CI is set (it truncates it to the terminal's width otherwise), so the same line may come twice.
    (line,) = {ln for ln in first.outlines if ln.startswith("hypothesis seed: ")}
    seed = re.match(r"hypothesis seed: (\d+); this test's draws again: (.*)$", line)
    command = shlex.split(seed.group(2))
    assert command[:3] == ["python", "-m", "pytest"] and f"--hypothesis-seed={seed.group(1)}" in command
    assert command[-2:] == ["-k", "test_property[logs-cases-conv2d]"]
    drawn = log.read_text().splitlines()
    log.unlink()
    shutil.rmtree(pytester.path / ".hypothesis", ignore_errors=True)  # no replay from the example database
    again = pytester.runpytest_subprocess(*command[3:])
    again.assert_outcomes(failed=1)
    assert log.read_text().splitlines() == drawn and len(drawn) > 1


def _manifest(pytester, **entry) -> str:
    lines = "\n".join(f"  {k}: {v!r}" for k, v in entry.items())
    pytester.makefile(".yaml", expected="- " + lines.lstrip())
    return "expected.yaml"


def test_known_divergence_is_xfailed(pytester, broken):
    manifest = _manifest(pytester, backend="flipped", cases=PLAIN.id, reason="kernel is flipped (known)")
    result = conformance(pytester, "--adapter", broken, "--conformance-cases", PLAIN.id,
                         "--conformance-no-properties", "--conformance-expected", manifest, "-rx")
    result.assert_outcomes(xfailed=1)
    result.stdout.fnmatch_lines(["*kernel is flipped (known)*"])


def test_known_divergence_of_another_kind_still_fails(pytester, broken):
    manifest = _manifest(pytester, backend="flipped", cases=PLAIN.id, kind="shape", reason="wrong shape (known)")
    result = conformance(pytester, "--adapter", broken, "--conformance-cases", PLAIN.id,
                         "--conformance-no-properties", "--conformance-expected", manifest)
    result.assert_outcomes(failed=1)


def test_manifest_entry_for_a_passing_case_is_a_strict_xpass_failure(pytester):
    manifest = _manifest(pytester, backend="numpy", cases=PLAIN.id, reason="was broken once")
    result = conformance(pytester, "--backend", "numpy", "--conformance-cases", PLAIN.id,
                         "--conformance-no-properties", "--conformance-expected", manifest)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*XPASS(strict)*was broken once*"])


def test_a_glob_entry_xfails_the_divergences_it_explains_and_lets_passes_pass(pytester, broken):
    manifest = _manifest(pytester, backend="*", cases="*", kind="value", reason="flipped everywhere (known)")
    result = conformance(pytester, "--adapter", broken, "--backend", "numpy", "--conformance-cases", PLAIN.id,
                         "--conformance-no-properties", "--conformance-expected", manifest, "-rx")
    result.assert_outcomes(xfailed=1, passed=1)  # flipped diverges as explained; numpy passes
    result.stdout.fnmatch_lines(["*flipped everywhere (known)*"])


@pytest.mark.parametrize("with_manifest", [False, True], ids=["no-manifest", "manifest"])
def test_property_tests_honour_the_manifest(pytester, broken, with_manifest):
    args = ["--adapter", broken, "--conformance-cases", PLAIN.id, "-k", ONLY_CONV2D_PROPERTY]
    if with_manifest:
        # Any kind: the flipped kernel also misplaces NaN/Inf (nonfinite) where a draw has them.
        args += ["--conformance-expected", _manifest(pytester, backend="flipped", cases="*",
                                                     reason="flipped everywhere (known)")]
    result = conformance(pytester, *args)
    if with_manifest:
        result.assert_outcomes(passed=1)  # every drawn divergence is one the manifest names
    else:
        result.assert_outcomes(failed=1)


@pytest.mark.parametrize("predicate, outcome", [("kernel >= 2", "passed"), ("kernel >= 7", "failed")],
                         ids=["covering", "too-narrow"])
def test_a_finding_predicate_pin_explains_every_drawn_case_it_covers(pytester, broken, predicate, outcome):
    # A flipped kernel shows on every kernel wider than one tap; a pinned finding's predicate
    # covers the cases the property tests draw, which no manifest could list by id.
    manifest = _manifest(pytester, backend="flipped", finding=predicate, reason="flipped (pinned finding)")
    result = conformance(pytester, "--adapter", broken, "--conformance-cases", PLAIN.id, "--conformance-expected",
                         manifest, "-k", ONLY_CONV2D_PROPERTY)
    result.assert_outcomes(**{outcome: 1})


@pytest.mark.skipif(importlib.util.find_spec("xdist") is None, reason="pytest-xdist is not installed")
def test_xdist_workers_agree_and_junit_has_one_testcase_per_pair(pytester):
    result = conformance(pytester, "--backend", "numpy", "--conformance-cases", "smoke",
                         "--conformance-no-properties", "-n", "2", "--junitxml", "junit.xml")
    result.assert_outcomes(passed=len(SMOKE))
    names = [tc.get("name") for tc in ET.parse(pytester.path / "junit.xml").getroot().iter("testcase")]
    assert sorted(names) == sorted(f"test_conformance[numpy-{c.id}]" for c in SMOKE)


@pytest.mark.framework
def test_tensorflow_findings_fail_and_never_pass(pytester):
    # Only look for TensorFlow: importing it into this pytest process, after another test
    # imported torch there, can abort the process (the script runs it in its own).
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("tensorflow is not installed")
    findings = [c for c in SMOKE if c.profile == "subnormal" or
                (c.op == "depthwise_conv2d" and c.strides == (2, 2) and c.dilations == (2, 2))]
    assert len(findings) == 2
    result = conformance(pytester, "--backend", "tensorflow", "--conformance-cases", ",".join(c.id for c in findings),
                         "--conformance-no-properties")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines([f"FAILED conformance::test_conformance[tensorflow-{c.id}]*" for c in findings],
                                consecutive=False)


_PRINT_PROFILE = """
    from hypothesis import settings
    def test_profile():
        print("PROFILE", settings.get_current_profile_name(), settings.default.max_examples,
              settings.default.derandomize)
"""


@pytest.mark.parametrize("env, args, expected", [
    ("", ("--hypothesis-profile", "ci"), "PROFILE ci 50 True"),
    ("nightly", (), "PROFILE nightly 2000 False"),
    ("nightly", ("--hypothesis-profile", "dev"), "PROFILE dev 100 False"),
], ids=["option", "environment", "option-wins"])
def test_hypothesis_profiles_are_chosen_by_option_or_environment(pytester, monkeypatch, env, args, expected):
    monkeypatch.setenv("CONFORMANCE_HYPOTHESIS_PROFILE", env)
    pytester.makepyfile(test_profile=_PRINT_PROFILE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s", *args)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*{expected}*"])


def test_unknown_profile_in_the_environment_is_a_usage_error(pytester, monkeypatch):
    monkeypatch.setenv("CONFORMANCE_HYPOTHESIS_PROFILE", "weekly")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*CONFORMANCE_HYPOTHESIS_PROFILE: expected one of ci, dev, nightly*'weekly'*"])
