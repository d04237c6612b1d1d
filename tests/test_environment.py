"""Same verdicts on every machine: the environment fingerprint and manifest conditions.

- Every backend worker measures its environment (CPU and kernel-selecting flags, threads,
  OS, FTZ/DAZ, the framework's build and kernel path, and the adapter's optional
  fingerprint()) and results.json records it once per distinct fingerprint, each record
  pointing at its own.
- A manifest entry's `when:` conditions are matched against the record's fingerprint:
  where they do not hold the entry neither explains nor is FIXED (it "does not apply").
- Unknown kinds, statuses, keys and condition names are exit 2 naming the entry.
The broken adapters state their kernel path through fingerprint(), so these tests mean
the same on every CPU.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conformance import expected, fingerprint, results
from tests._runner_util import adapter, case_file, run_cli

FAKE = {"cpu": {"arch": "x86_64", "vendor": "GenuineIntel", "model": "Intel Xeon Gold 6338",
                "flags": ["avx2", "avx512f", "avx512bw", "fma"]},
        "threads": {"cpu_count": 8, "usable": 4}, "os": {"system": "Linux"},
        "float": {"ftz": False, "daz": False},
        "frameworks": {"tensorflow": {"onednn": True, "xla": False}, "torch": {"cpu_capability": "AVX512"}}}


def test_fingerprint_of_a_plain_process_is_plain_data_with_every_part():
    out = subprocess.run([sys.executable, "-c", "import json; from conformance.fingerprint import fingerprint; "
                          "print(json.dumps(fingerprint()))"], capture_output=True, text=True, timeout=120)
    fp = json.loads(out.stdout)
    assert set(fp) >= {"cpu", "threads", "os", "float", "env", "frameworks", "python", "numpy"}
    assert fp["cpu"]["arch"] and isinstance(fp["cpu"]["flags"], list)
    assert fp["float"] == {"ftz": False, "daz": False, "measured": fp["float"]["measured"]}  # NumPy's default
    assert fp["frameworks"] == {}  # nothing imported, nothing probed
    assert fingerprint.fingerprint_id(fp) == fingerprint.fingerprint_id(json.loads(json.dumps(fp)))


def test_facts_flatten_a_fingerprint_into_condition_names():
    facts = fingerprint.facts(FAKE)
    assert facts["cpu.flags"] == ["avx2", "avx512f", "avx512bw", "fma"]
    assert facts["tensorflow.onednn"] is True and facts["torch.cpu_capability"] == "AVX512"
    assert facts["threads"] == 4 and facts["ftz"] is False
    assert set(facts) <= set(fingerprint.CONDITIONS)


def test_differences_name_the_kernel_path_and_the_flags():
    other = json.loads(json.dumps(FAKE))
    other["cpu"]["flags"] = ["avx2", "fma"]
    other["frameworks"]["tensorflow"]["onednn"] = False
    diff = fingerprint.differences(FAKE, other)
    assert "tensorflow.onednn: True != False" in diff
    assert any(d.startswith("cpu.flags: avx512bw avx512f only in one") for d in diff)


def _entry(tmp_path: Path, text: str) -> list:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    return expected.load_manifest(path)


@pytest.mark.parametrize("when, holds", [
    ("{tensorflow.onednn: true}", True), ("{tensorflow.onednn: false}", False),
    ("{cpu.flags: avx512f}", True), ("{cpu.flags: [avx512f, avx512bw]}", True), ("{cpu.flags: avx512_bf16}", False),
    ("{cpu.flags: '!avx512f'}", False), ("{cpu.flags: '!amx_tile'}", True), ("{cpu.vendor: Genuine*}", True),
    ("{cpu.model: '*EPYC*'}", False), ("{threads: 4}", True), ("{jax.backend: cpu}", False),  # no jax: unknown
])
def test_conditions_hold_only_on_matching_facts(tmp_path, when, holds):
    [entry] = _entry(tmp_path, f"- {{backend: b, cases: '*', reason: r, when: {when}}}\n")
    assert entry.holds(fingerprint.facts(FAKE)) is holds


@pytest.mark.parametrize("text, message", [
    ("- {backend: b, cases: '*', kind: subnormal_flus, reason: r}", "entry 0: kind: expected one of shape,"),
    ("- {backend: b, cases: '*', reason: r, when: {tensorflow.onedn: true}}",
     "entry 0: when: expected a condition among cpu.vendor"),
    ("- {backend: b, cases: '*', reason: r, when: {tensorflow.onednn: 'yes'}}",
     "entry 0: when.tensorflow.onednn: expected true or false, received 'yes'"),
    ("- {backend: b, cases: '*', reason: r, when: [avx512f]}", "entry 0: when: expected a mapping of conditions"),
    ("- {backend: b, cases: '*', reason: r, status: fixed}", "entry 0: expected keys among"),
])
def test_a_misspelled_manifest_entry_is_exit_2_naming_it(tmp_path, text, message):
    manifest = tmp_path / "m.yaml"
    manifest.write_text(text + "\n")
    cases = case_file(tmp_path / "cases.yaml", ["ok-a"])
    code, err = run_cli("run", "--adapter", adapter("Faithful"), "--cases", str(cases), "--out", str(tmp_path / "o"),
                        "--expected", str(manifest), "--no-report", "--quiet")
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1


def _run(tmp_path, cls, manifest_text, names=("wrong-a",)):
    manifest = tmp_path / "m.yaml"
    manifest.write_text(manifest_text)
    cases = case_file(tmp_path / "cases.yaml", list(names))
    out = tmp_path / "out"
    code, err = run_cli("run", "--adapter", adapter(cls), "--cases", str(cases), "--out", str(out),
                        "--expected", str(manifest), "--no-report", "--no-minimise")
    return code, err, results.load(out / "results.json")


ONEDNN_ONLY = "- {backend: 'says-*', cases: '*', kind: value, reason: oneDNN only, when: {tensorflow.onednn: true}}\n"


def test_results_record_each_workers_fingerprint_and_the_console_shows_it(tmp_path):
    code, err, run = _run(tmp_path, "SaysOneDnn", ONEDNN_ONLY)
    [rec] = run["records"]
    fp = run["fingerprints"][rec["fingerprint"]]
    assert run["backends"]["says-onednn"]["fingerprint"] == rec["fingerprint"]
    assert fp["adapter"] == {"tensorflow.onednn": True, "build": "test"}
    assert "ftz" in fp["float"] and fp["cpu"]["arch"]
    assert "  machine: " in err and "tensorflow.onednn=True" in err


def test_the_console_header_shows_each_kernel_path_once_with_the_backends_on_it(tmp_path):
    cases = case_file(tmp_path / "cases.yaml", ["ok-a"])
    same = [adapter("Faithful"), adapter("OffByOne"), adapter("Raises")]  # no framework: one path
    argv = ["run", "--cases", str(cases), "--out", str(tmp_path / "out"), "--no-report", "--no-minimise"]
    for spec in [*same, adapter("SaysOneDnn")]:
        argv += ["--adapter", spec]
    _, err = run_cli(*argv)
    header = err.split("\n\n")[0].splitlines()
    paths = [ln for ln in header if ln.startswith("  ") and "FTZ " in ln]
    assert len(paths) == 2, err
    assert sum(all(name in ln for name in ("faithful", "off-by-one", "raises")) for ln in paths) == 1, err
    assert sum("says-onednn" in ln and "tensorflow.onednn=True" in ln for ln in paths) == 1, err


def test_an_entry_applies_where_its_conditions_hold(tmp_path):
    code, err, run = _run(tmp_path, "SaysOneDnn", ONEDNN_ONLY)
    assert code == 0 and run["records"][0]["known"]["reason"] == "oneDNN only"


def test_where_conditions_do_not_hold_the_entry_neither_explains_nor_is_fixed(tmp_path):
    code, err, run = _run(tmp_path, "SaysEigen", ONEDNN_ONLY)
    assert code == 1 and run["records"][0]["known"] is None  # the bug on another path is news
    assert run["expected"]["fixed"] == [] and run["expected"]["not_applicable"] == [0]


def test_a_pinned_pair_that_passes_on_another_path_is_not_fixed(tmp_path):
    cases = case_file(tmp_path / "c.yaml", ["ok-a"])
    from conformance.cases.catalogue import load_file

    case_id = load_file(cases)[0].id
    text = f"- {{backend: '*', cases: [{case_id}], kind: value, reason: r, when: {{tensorflow.onednn: true}}}}\n"
    code, err, run = _run(tmp_path, "FaithfulSaysEigen", text, names=["ok-a"])
    assert code == 0 and run["expected"]["fixed"] == []
    assert "do not apply here" in err and "NOW PASS" not in err


def test_fixed_is_still_claimed_where_the_conditions_hold(tmp_path):
    text = "- {backend: '*', cases: '*', kind: value, reason: r, when: {tensorflow.onednn: false}}\n"
    code, err, run = _run(tmp_path, "FaithfulSaysEigen", text, names=["ok-a"])
    assert [f["manifest_entry"] for f in run["expected"]["fixed"]] == [0]


def test_an_adapter_fingerprint_that_raises_is_recorded_not_fatal(tmp_path):
    cases = case_file(tmp_path / "cases.yaml", ["ok-a"])
    out = tmp_path / "out"
    code, _ = run_cli("run", "--adapter", adapter("FingerprintRaises"), "--cases", str(cases), "--out", str(out),
                      "--no-report", "--quiet")
    run = results.load(out / "results.json")
    assert code == 0
    assert list(run["fingerprints"].values())[0]["adapter"] == {"error": "RuntimeError: no environment here"}


def test_baseline_says_when_the_environment_differs(tmp_path):
    cases = case_file(tmp_path / "cases.yaml", ["ok-a"])
    first, second = tmp_path / "one", tmp_path / "two"
    base = ["--cases", str(cases), "--no-report", "--no-minimise"]
    run_cli("run", "--adapter", adapter("SaysOneDnn"), "--out", str(first), *base)
    # The same backend name on the other path: rename through a one-line subclass file.
    other = tmp_path / "other.py"
    other.write_text("from tests.adapters_for_tests import SaysEigen\n"
                     "class Renamed(SaysEigen):\n    name = 'says-onednn'\n")
    code, err = run_cli("run", "--adapter", f"{other}:Renamed", "--out", str(second), "--baseline",
                        str(first / "results.json"), *base)
    run = results.load(second / "results.json")
    assert run["baseline"]["fingerprints_differ"]["says-onednn"] == ["tensorflow.onednn: True != False"]
    assert "environment differs from the baseline for says-onednn: tensorflow.onednn: True != False" in err


def test_pages_and_junit_show_each_backends_environment(tmp_path):
    import xml.etree.ElementTree as ET

    cases = case_file(tmp_path / "cases.yaml", ["ok-a"])
    out = tmp_path / "out"
    code, _ = run_cli("run", "--adapter", adapter("FaithfulSaysEigen"), "--cases", str(cases), "--out", str(out),
                      "--quiet")
    assert code == 0
    page = (out / "faithful-eigen.html").read_text(encoding="utf-8")
    index = (out / "index.html").read_text(encoding="utf-8")
    assert "kernel path" in page and "tensorflow.onednn=False" in page and "FTZ " in page and "DAZ " in page
    assert "kernel path: faithful-eigen" in index
    [suite] = ET.parse(out / "junit.xml").getroot().iter("testsuite")
    props = {p.get("name"): p.get("value") for p in suite.find("properties").iter("property")}
    assert props["fingerprint"] and "tensorflow.onednn=False" in props["kernel_path"] and props["cpu"]
    # once per suite when every record shares the fingerprint, not repeated on each testcase
    assert [tc.find("properties") for tc in suite.iter("testcase")] == [None]
