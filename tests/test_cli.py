"""The `conformance` command line: exit codes 0/1/2, one-line messages, the subcommands."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conformance import results
from tests._runner_util import adapter, case_file, run_cli


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return case_file(tmp_path_factory.mktemp("cli") / "cases.yaml", ["ok-a", "wrong-b", "invalid-c"])


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr, received {len(lines)}:\n{err}"
    assert "Traceback" not in err
    assert lines[0].startswith("error: ")
    return lines[0]


def test_a_conformant_backend_exits_0(tmp_path, cases):
    code, err = run_cli("run", "--backend", "numpy", "--cases", str(cases), "--out", str(tmp_path), "--no-report")
    assert code == 0, err
    assert "conformance: OK" in err


def test_an_unexpected_divergence_exits_1_and_is_listed(tmp_path, cases):
    code, err = run_cli("run", "--adapter", adapter("Misbehaving"), "--cases", str(cases), "--out", str(tmp_path),
                        "--no-report", "--no-minimise")
    assert code == 1
    # The console lists bugs, not rows: the one divergence is one finding of the backend.
    assert "1 bug (" in err
    assert [ln for ln in err.splitlines() if "misbehaving: " in ln and "[1 case]" in ln], err
    assert "conformance: FAILED" in err


def test_the_summary_table_counts_statuses_per_backend(tmp_path, cases):
    _, err = run_cli("run", "--adapter", adapter("Misbehaving"), "--backend", "numpy", "--cases", str(cases),
                     "--out", str(tmp_path), "--no-report", "--no-minimise")
    rows = {ln.split()[0]: ln.split()[1:] for ln in err.splitlines() if ln.startswith(("numpy ", "misbehaving "))}
    # columns: pass diverge unsupported error crash timeout known
    assert rows["numpy"][:2] == ["3", "0"]
    assert rows["misbehaving"][:2] == ["2", "1"]


@pytest.mark.parametrize("argv, needle", [
    (["run", "--backend", "no-such-backend"], "--backend: expected a backend name"),
    (["run", "--backend", "numpy", "--cases", "/nonexistent/cases.yaml"], "/nonexistent/cases.yaml"),
    (["run", "--backend", "numpy", "--cases", "no-such-case-id-or-set"], "no-such-case-id-or-set"),
    (["run", "--backend", "numpy", "--shard", "0/3"], "--shard: expected I/N with 1 <= I <= N"),
    (["run", "--backend", "numpy", "--shard", "4/3"], "received '4/3'"),
    (["run", "--backend", "numpy", "--shard", "two"], "received 'two'"),
    (["run", "--timeout", "-1"], "positive number of seconds"),
    (["run", "--no-such-option"], "received unknown '--no-such-option'"),
    (["frobnicate"], "COMMAND: expected one of run, backends"),
    (["merge", "/nonexistent/results.json"], "/nonexistent/results.json: expected a results.json file to read"),
], ids=["unknown-backend", "missing-case-file", "unknown-selector", "shard-zero", "shard-beyond", "shard-text",
        "negative-timeout", "unknown-option", "unknown-command", "merge-missing-file"])
def test_bad_usage_exits_2_with_one_line(argv, needle, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default --out is ./reports: never the checkout's
    code, err = run_cli(*argv)
    assert code == 2
    assert needle in _one_error_line(err)


# ---- a named backend that cannot be loaded ------------------------------------------------

def _file(tmp_path, name: str, source: str) -> str:
    path = tmp_path / name
    path.write_text(source)
    return str(path)


_NO_RUN = ("class Foo:\n    name = 'foo'\n    def version(self):\n        return '1'\n"
           "    def device(self):\n        return 'cpu'\n    def supports(self, case):\n        return None\n")

UNLOADABLE = {  # id -> (spec made in tmp_path, what the message must say)
    "syntax-error": (lambda t: _file(t, "bad_syntax.py", "class Foo:\n    def run(self)\n        pass\n") + ":Foo",
                     "import failed: SyntaxError: expected ':' (bad_syntax.py, line 2)"),
    "missing-class": (lambda t: adapter("NoSuchClass"), "expected 'NoSuchClass' in"),
    "missing-file": (lambda t: f"{t / 'nowhere.py'}:Foo", "adapter file"),
    "module-import-fails": (lambda t: "conformance_no_such_module_xyz:Foo",
                            "import failed: ModuleNotFoundError: No module named 'conformance_no_such_module_xyz'"),
    "constructor-import-fails": (lambda t: adapter("FailsToImport"),
                                 "No module named 'conformance_test_framework_that_does_not_exist'"),
    "missing-run": (lambda t: _file(t, "no_run.py", _NO_RUN) + ":Foo", "missing: run"),
    "no-class-part": (lambda t: _file(t, "no_class.py", _NO_RUN), "expected 'module:Class' or 'path/to/file.py:Class'"),
}


@pytest.mark.parametrize("make_spec, needle", list(UNLOADABLE.values()), ids=list(UNLOADABLE))
def test_a_named_adapter_that_cannot_be_loaded_exits_2_naming_spec_and_reason(tmp_path, cases, make_spec, needle):
    spec = make_spec(tmp_path)
    code, err = run_cli("run", "--backend", "numpy", "--adapter", spec, "--cases", str(cases),
                        "--out", str(tmp_path / "out"), "--no-report")
    assert code == 2, err
    line = _one_error_line(err)
    assert line.startswith(f"error: --adapter {spec}: "), line
    assert needle in line, line


def test_a_named_adapter_that_cannot_be_loaded_leaves_no_results(tmp_path, cases):
    out = tmp_path / "out"
    code, _ = run_cli("run", "--backend", "numpy", "--adapter", adapter("FailsToImport"), "--cases", str(cases),
                      "--out", str(out))
    assert code == 2
    written = sorted(p.name for p in out.iterdir()) if out.exists() else []
    written = [w for w in written if w != ".conformance.lock"]  # the --out lock (pid inside) stays
    assert written in ([], ["logs"]), f"expected nothing but the worker logs in {out}, received {written}"


def test_a_named_adapter_that_cannot_be_loaded_keeps_the_previous_runs_results_and_pages(tmp_path, cases):
    out = tmp_path / "out"
    assert run_cli("run", "--backend", "numpy", "--cases", str(cases), "--out", str(out))[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != ".conformance.lock"}
    assert "results.json" in before and "index.html" in before
    code, _ = run_cli("run", "--backend", "numpy", "--adapter", adapter("FailsToImport"), "--cases", str(cases),
                      "--out", str(out))
    assert code == 2  # a typo in a backend's name costs nothing already there
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != ".conformance.lock"} == before


# ---- summary ------------------------------------------------------------------------------

def test_an_error_on_every_case_of_a_backend_is_one_summary_line(tmp_path):
    valid_only = case_file(tmp_path / "cases.yaml", ["ok-a", "ok-b", "ok-c"])
    code, err = run_cli("run", "--adapter", adapter("Raises"), "--cases", str(valid_only), "--out", str(tmp_path / "o"),
                        "--no-report", "--no-minimise")
    assert code == 1
    listed = [ln for ln in err.splitlines() if "this backend always fails" in ln]
    assert listed == ["  raises  all 3 cases: error: TypeError: this backend always fails"], err


def test_a_repeated_error_is_one_summary_line_with_its_count(tmp_path, cases):
    code, err = run_cli("run", "--adapter", adapter("Raises"), "--cases", str(cases), "--out", str(tmp_path),
                        "--no-report", "--no-minimise")
    assert code == 1
    listed = [ln for ln in err.splitlines() if "this backend always fails" in ln]
    # the invalid case passes (rejected), so the two errors are not "all" of its cases
    assert listed == ["  raises  2 cases (first conv-n1-5x5x2-k3x3-o2-s1x1-d1x1-valid-f32): error: "
                      "TypeError: this backend always fails"], err


def test_a_malformed_case_file_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("cases:\n  - {op: conv2d, batch: 1, height: 5, width: 5, in_channels: 2, kernel: 3, out_channels: 0}\n")
    code, err = run_cli("run", "--backend", "numpy", "--cases", str(bad), "--out", str(tmp_path / "out"))
    assert code == 2
    line = _one_error_line(err)
    assert "bad.yaml" in line and "out_channels" in line


def test_a_malformed_manifest_exits_2_naming_file_entry_and_rule(tmp_path, cases):
    manifest = tmp_path / "expected.yaml"
    manifest.write_text("- {backend: numpy, cases: '*', reason: fine}\n- {backend: numpy, cases: '*'}\n")
    code, err = run_cli("run", "--backend", "numpy", "--cases", str(cases), "--expected", str(manifest),
                        "--out", str(tmp_path / "out"))
    assert code == 2
    line = _one_error_line(err)
    assert "expected.yaml" in line and "entry 1" in line and "'reason'" in line


def test_backends_lists_versions_devices_and_why_unavailable(capsys):
    code, _ = run_cli("backends")
    out = capsys.readouterr().out
    assert code == 0
    rows = {ln.split()[0]: ln for ln in out.splitlines()[1:]}
    assert rows["numpy"].split()[1] == "yes"
    unavailable = [ln for ln in rows.values() if ln.split()[1] == "no"]
    assert all(len(ln.split()) > 5 for ln in unavailable), "each unavailable backend needs a reason"


def test_cases_lists_the_ids_of_a_selector(capsys, cases):
    code, err = run_cli("cases", str(cases))
    assert code == 0
    assert capsys.readouterr().out.split() == ["conv-n1-5x5x2-k3x3-o2-s1x1-d1x1-valid-f32",
                                               "conv-n1-6x5x2-k3x3-o2-s1x1-d1x1-valid-f32",
                                               "conv-n1-2x4x2-k3x3-o2-s1x1-d1x1-valid-f32"]
    assert "3 cases" in err


def test_an_empty_shard_is_a_run_of_nothing_not_an_error(tmp_path, cases):
    # With 3 cases and 50 shards most shards are empty; a CI matrix must not fail on them.
    from conformance.cases.catalogue import load_file
    from conformance.run.selection import shard_of

    used = {shard_of(c.id, 50) for c in load_file(cases)}
    empty = next(i for i in range(1, 51) if i not in used)
    code, err = run_cli("run", "--backend", "numpy", "--cases", str(cases), "--shard", f"{empty}/50",
                        "--out", str(tmp_path), "--no-report", "--quiet")
    assert code == 0, err
    assert results.load(tmp_path / "results.json")["records"] == []


def test_python_dash_m_conformance_is_the_command(cases):
    proc = subprocess.run([sys.executable, "-m", "conformance", "cases", str(cases)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.split()) == 3


def test_merge_refuses_conflicting_verdicts(tmp_path, cases):
    run_cli("run", "--backend", "numpy", "--cases", str(cases), "--out", str(tmp_path / "a"), "--no-report", "--quiet")
    doc = results.load(tmp_path / "a" / "results.json")
    doc["records"][0].update(status="diverge", kind="value")
    (tmp_path / "b.json").write_text(json.dumps(doc))
    code, err = run_cli("merge", str(tmp_path / "a" / "results.json"), str(tmp_path / "b.json"),
                        "--out", str(tmp_path / "m"))
    assert code == 2
    line = _one_error_line(err)
    assert "conv-n1-5x5x2-k3x3-o2-s1x1-d1x1-valid-f32 on numpy is pass" in line and "diverge/value" in line


def test_merge_refuses_another_schema_version(tmp_path, cases):
    run_cli("run", "--backend", "numpy", "--cases", str(cases), "--out", str(tmp_path / "a"), "--no-report", "--quiet")
    doc = results.load(tmp_path / "a" / "results.json")
    doc["schema_version"] = 99
    (tmp_path / "b.json").write_text(json.dumps(doc))
    code, err = run_cli("merge", str(tmp_path / "a" / "results.json"), str(tmp_path / "b.json"),
                        "--out", str(tmp_path / "m"))
    assert code == 2
    assert "expected schema_version 2 or 3, received 99" in _one_error_line(err)


def test_cases_coverage_prints_pair_and_triple_coverage(capsys):
    code, _ = run_cli("cases", "smoke", "--coverage")
    out = capsys.readouterr().out
    assert code == 0
    assert "pairs over op," in out and "feasible combinations" in out
    assert "triples over" in out


@pytest.mark.parametrize("command", ["run", "backends", "cases", "merge", "repro", "explore", "report"])
def test_every_command_prints_its_help(command):
    # argparse %-formats help strings only when --help is asked for, so a stray % in one stays hidden until a user asks.
    out = subprocess.run([sys.executable, "-m", "conformance", command, "--help"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"usage: conformance {command}" in out.stdout
