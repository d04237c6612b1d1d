"""A run its own work cannot kill, and no green run without tests.

- A second run into the same --out while one is writing there exits 2 naming its pid.
- The oracle and comparison run in a restartable process under --timeout: a reference
  that takes too long is that case's `timeout` record and the run goes on.
- A case whose judging is estimated to need more than --max-memory is `unsupported`
  with the estimate, before anything runs.
- A named backend on which no selected case ran exits 2 saying why; the default run
  says the same in its summary.
- A reused --out loses the previous run's pages and scripts (and says which); a
  directory that holds something else is refused without --force.
- --resume keeps the original start time, and finds the same findings again.
- Malformed results, baseline and manifest files are one-line exit 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conformance import results, runner
from conformance.cli import console
from conformance.process import memory
from conformance.run.config import RunConfig
from tests._runner_util import BASE, adapter, case_file, run_cli


def _one_line_exit_2(code: int, err: str) -> str:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_a_second_run_into_the_same_out_exits_2_naming_the_first(tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from conformance.run.out_dir import OutLock; l = OutLock(Path(sys.argv[1])); l.acquire(); "
                               "print('locked', flush=True); time.sleep(60)", str(out)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        cases = case_file(tmp_path / "cases.yaml", ["ok-a"])
        code, err = run_cli("run", "--backend", "numpy", "--cases", str(cases), "--out", str(out), "--no-report")
        line = _one_line_exit_2(code, err)
        assert f"another conformance run (pid {holder.pid}) is writing there" in line
    finally:
        holder.kill()
        holder.wait()
    assert not (out / "results.jsonl").exists()  # the first run's stream was never touched


def test_out_that_is_a_regular_file_is_exit_2(tmp_path):
    target = tmp_path / "taken"
    target.write_text("x")
    cases = case_file(tmp_path / "cases.yaml", ["ok-a"])
    line = _one_line_exit_2(*run_cli("run", "--backend", "numpy", "--cases", str(cases), "--out", str(target)))
    assert "expected a directory" in line and "existing file" in line


def _cases(path: Path, entries: list[dict]) -> Path:
    path.write_text(yaml.safe_dump({"defaults": BASE, "cases": entries}))
    return path


def test_an_oracle_past_the_timeout_is_that_cases_timeout_and_the_run_goes_on(tmp_path):
    # "accept" makes the backend answer at once (zeros of 16 MB: well within 2 s even on a
    # loaded machine); the float64 reference of this case (2.7e9 products, compensated)
    # takes about 10 s on a quiet 2-core AMD EPYC, far past a 2 s --timeout anywhere.
    cases = _cases(tmp_path / "cases.yaml", [
        {"name": "accept-slow-oracle", "height": 128, "width": 128, "in_channels": 128, "out_channels": 128,
         "kernel": 5, "dtype": "float64", "padding": "SAME"},
        {"name": "ok-after", "height": 6}])
    out = tmp_path / "out"
    code, err = run_cli("run", "--adapter", adapter("Misbehaving"), "--cases", str(cases), "--out", str(out),
                        "--timeout", "2", "--no-report", "--no-minimise")
    recs = {r["case"]["name"]: r for r in results.load(out / "results.json")["records"]}
    assert recs["accept-slow-oracle"]["status"] == "timeout"
    assert "the oracle and comparison took longer than --timeout 2 s" in recs["accept-slow-oracle"]["message"]
    assert recs["ok-after"]["status"] == "pass"  # the referee was restarted for the next case
    assert code == 1


def test_a_case_over_max_memory_is_unsupported_with_the_estimate_before_it_runs(tmp_path):
    cases = _cases(tmp_path / "cases.yaml", [{"name": "ok-small", "height": 6},
                                              {"name": "segv-huge", "height": 1024, "width": 1024}])
    out = tmp_path / "out"
    code, err = run_cli("run", "--adapter", adapter("Misbehaving"), "--cases", str(cases), "--out", str(out),
                        "--max-memory", "300M", "--no-report")
    recs = {r["case"]["name"]: r for r in results.load(out / "results.json")["records"]}
    huge = recs["segv-huge"]
    assert huge["status"] == "unsupported"  # not crash: the backend was never asked
    assert "needs an estimated" in huge["message"] and "over --max-memory 0.3 GiB" in huge["message"]
    assert recs["ok-small"]["status"] == "pass" and code == 0


def test_memory_estimate_grows_with_input_and_output():
    from conformance.spec import Case

    small = Case(op="conv2d", batch=1, height=8, width=8, in_channels=1, kernel=(3, 3), out_channels=1)
    wide = small.replace(height=8192, width=8192)
    assert memory.memory_estimate(wide) - memory.memory_estimate(small) >= 8192 * 8192 * 128
    assert memory.memory_estimate(small.replace(out_channels=16)) > memory.memory_estimate(small)
    assert memory.parse_memory("1.5G") == 3 << 29 and memory.parse_memory("512M") == 512 << 20


_PEAK = """
import json, resource, sys
import numpy as np
from conformance import record
from conformance.spec import Case
case = Case(**json.loads(sys.argv[1]))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
oracle = record.oracle_for(case)
y = oracle.ref.value.astype(np.float64 if case.dtype == "float64" else np.float32)
y.reshape(-1)[::997] += 1.0  # a divergence: the full comparison and the diagnosis
rec, got = record.record_reply(case, "x", {}, ("output", y, 0.0, []), oracle, 600.0)
assert rec["status"] == "diverge", rec
record.diagnose_into(rec, case, got, oracle)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024)
"""


@pytest.mark.parametrize("spec", [
    dict(op="conv2d", height=512, width=512, in_channels=16, out_channels=2, kernel=1),  # input-heavy
    dict(op="conv2d", height=512, width=512, in_channels=2, out_channels=16, kernel=1),  # output-heavy
    dict(op="depthwise_conv2d", height=512, width=512, in_channels=16, channel_multiplier=1, kernel=3,
         padding="SAME", dtype="float16", bias=True),
], ids=["in-heavy", "out-heavy", "dw-f16-bias"])
def test_the_memory_estimate_bounds_the_referees_measured_peak(spec):
    import json
    import subprocess
    import sys

    from conformance.spec import Case

    case = Case(batch=1, **spec)
    out = subprocess.run([sys.executable, "-c", _PEAK, json.dumps(spec | {"batch": 1})], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    peak = int(out.stdout.split()[-1])
    assert peak <= memory.memory_estimate(case) - memory.ORACLE_FIXED_BYTES, (peak, memory.memory_estimate(case))


@pytest.mark.parametrize("text", ["lots", "-1G", "0"])
def test_max_memory_that_is_not_a_size_is_exit_2(tmp_path, text):
    cases = case_file(tmp_path / "cases.yaml", ["ok-a"])
    line = _one_line_exit_2(*run_cli("run", "--backend", "numpy", "--cases", str(cases), "--out",
                                     str(tmp_path / "o"), f"--max-memory={text}"))
    assert "--max-memory" in line


def test_a_named_backend_on_which_no_case_ran_exits_2_saying_why(tmp_path):
    cases = case_file(tmp_path / "cases.yaml", ["unsupported-a", "unsupported-b"])
    out = tmp_path / "out"
    code, err = run_cli("run", "--adapter", adapter("Misbehaving"), "--cases", str(cases), "--out", str(out),
                        "--no-report")
    assert code == 2
    assert "error: misbehaving: 0 of 2 cases supported: this backend has no such kernel" in err
    assert "conformance: OK" not in err
    assert (out / "results.json").is_file()  # the records are still written


def test_the_default_run_summary_names_a_backend_that_ran_nothing(tmp_path):
    cases = case_file(tmp_path / "cases.yaml", ["unsupported-a", "ok-b"])
    spec = adapter("Misbehaving")
    cfg = RunConfig(specs=[spec, "numpy"], selector=str(cases), out=tmp_path / "out", report=False,
                           quiet=True, named=False)
    from conformance.cases.catalogue import load_file

    only_unsupported = [c for c in load_file(cases) if c.name.startswith("unsupported")]
    outcome = runner.execute(cfg, only_unsupported)
    assert outcome.exit_code == 0 and outcome.errors == []
    assert "! misbehaving: 0 of 1 cases supported: this backend has no such kernel" in console.summary(outcome)


def test_a_reused_out_loses_the_previous_runs_pages_and_scripts_and_says_so(tmp_path):
    cases = case_file(tmp_path / "cases.yaml", ["wrong-a"])
    out = tmp_path / "out"
    run_cli("run", "--adapter", adapter("OffByOne"), "--cases", str(cases), "--out", str(out), "--no-minimise")
    assert (out / "off-by-one.html").is_file() and any((out / "repro").rglob("*.py"))
    (out / "notes.txt").write_text("mine")
    code, err = run_cli("run", "--backend", "numpy", "--cases", str(cases), "--out", str(out))
    assert code == 0
    assert "removed the previous run's" in err and "off-by-one.html" in err and "repro/" in err
    assert not (out / "off-by-one.html").exists() and not (out / "repro").exists()
    assert (out / "numpy.html").is_file() and (out / "notes.txt").read_text() == "mine"


def test_a_non_empty_out_that_holds_no_run_is_refused_without_force(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    cases = case_file(tmp_path / "cases.yaml", ["ok-a"])
    base = ["run", "--backend", "numpy", "--cases", str(cases), "--out", str(out), "--no-report"]
    line = _one_line_exit_2(*run_cli(*base))
    assert "pass --force" in line and "thesis.tex" in line
    assert run_cli(*base, "--force")[0] == 0 and (out / "thesis.tex").read_text() == "precious"


def test_the_checkouts_own_reports_directory_with_its_gitkeep_is_an_empty_out(tmp_path):
    """The README's first command runs into ./reports of a fresh clone, which holds only
    the tracked reports/.gitkeep: that is an empty --out (it exited 2 before), twice over,
    and the placeholder stays."""
    repo_reports = Path(__file__).resolve().parent.parent / "reports"
    assert (repo_reports / ".gitkeep").is_file()  # what a fresh clone's reports/ holds
    out = tmp_path / "reports"
    out.mkdir()
    (out / ".gitkeep").write_text("")
    cases = case_file(tmp_path / "cases.yaml", ["ok-a"])
    base = ["run", "--backend", "numpy", "--cases", str(cases), "--out", str(out)]
    for _ in range(2):
        code, err = run_cli(*base)
        assert code == 0, err
    assert (out / ".gitkeep").exists() and (out / "index.html").exists()


def test_resume_keeps_the_start_time_and_finds_the_same_findings(tmp_path):
    cases = case_file(tmp_path / "cases.yaml", ["wrong-a", "wrong-b"])
    out = tmp_path / "out"
    base = ["run", "--adapter", adapter("OffByOne"), "--cases", str(cases), "--out", str(out), "--no-report",
            "--quiet"]
    run_cli(*base)
    first = results.load(out / "results.json")
    # Interrupted after the first record: a plain stream of the run's state and its first
    # record only (a completed run leaves none: its results.json holds that state).
    header, recs = results.resume_point(results.load(out / "results.json"))
    results.JsonlWriter.replay(out / "results.jsonl", header, recs[:1]).close()
    time.sleep(1.1)  # the start time has second resolution
    assert run_cli(*base, "--resume")[0] == 1
    again = results.load(out / "results.json")
    assert again["run"]["started"] == first["run"]["started"]
    assert again["run"]["wall_s"] > first["run"]["wall_s"] * 0.5 and again["run"]["resumed"] is True
    ids = [{f["id"]: f["count"] for f in doc["findings"]["items"]} for doc in (first, again)]
    assert ids[0] == ids[1] and sum(ids[0].values()) == 2


# ---- malformed input files: one line, exit 2 ------------------------------------------------

def _good_results(tmp_path) -> Path:
    cases = case_file(tmp_path / "cases.yaml", ["ok-a"])
    out = tmp_path / "good"
    run_cli("run", "--backend", "numpy", "--cases", str(cases), "--out", str(out), "--no-report", "--quiet")
    return out / "results.json"


def _broken_variants(tmp_path) -> dict[str, Path]:
    good = json.loads(_good_results(tmp_path).read_text())
    variants = {"random-bytes": os.urandom(4096), "json-list": b"[1, 2]",
                "figures-string": dict(good, records=[dict(good["records"][0], figures="x")]),
                "backends-string": dict(good, backends="numpy"), "records-dict": dict(good, records={}),
                "record-int": dict(good, records=[7]), "fingerprints-list": dict(good, fingerprints=[1])}
    paths = {}
    for name, content in variants.items():
        p = tmp_path / f"{name}.json"
        p.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
        paths[name] = p
    return paths


@pytest.fixture(scope="module")
def broken_files(tmp_path_factory):
    return _broken_variants(tmp_path_factory.mktemp("broken"))


@pytest.mark.parametrize("name", ["random-bytes", "json-list", "figures-string", "backends-string", "records-dict",
                                  "record-int", "fingerprints-list"])
@pytest.mark.parametrize("command", ["report", "baseline", "merge"])
def test_a_malformed_results_file_is_one_line_exit_2(tmp_path, capsys, broken_files, name, command):
    path = broken_files[name]
    if command == "report":
        argv = ["report", str(path), "--out", str(tmp_path / "html")]
    elif command == "merge":
        argv = ["merge", str(path), "--out", str(tmp_path / "m")]
    else:
        cases = case_file(tmp_path / "cases.yaml", ["ok-a"])
        argv = ["run", "--backend", "numpy", "--cases", str(cases), "--out", str(tmp_path / "o"), "--baseline", str(path)]
    code, err = run_cli(*argv)
    err += capsys.readouterr().err  # `conformance report` writes its message to sys.stderr itself
    line = _one_line_exit_2(code, err.replace("conformance report: ", "error: "))
    assert path.name in line


@pytest.mark.parametrize("content", [os.urandom(2048), b"- [unclosed", b"{backend: x}", b"- 7\n"],
                         ids=["random-bytes", "bad-yaml", "mapping", "entry-int"])
def test_a_malformed_manifest_is_one_line_exit_2(tmp_path, content):
    manifest = tmp_path / "m.yaml"
    manifest.write_bytes(content)
    cases = case_file(tmp_path / "cases.yaml", ["ok-a"])
    line = _one_line_exit_2(*run_cli("run", "--backend", "numpy", "--cases", str(cases), "--out", str(tmp_path / "o"),
                                     "--expected", str(manifest)))
    assert "m.yaml" in line


def test_a_malformed_resume_stream_is_one_line_exit_2(tmp_path):
    cases = case_file(tmp_path / "cases.yaml", ["ok-a"])
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.jsonl").write_bytes(os.urandom(1024))
    line = _one_line_exit_2(*run_cli("run", "--backend", "numpy", "--cases", str(cases), "--out", str(out),
                                     "--resume"))
    assert "results.jsonl" in line


def test_dtype_takes_a_comma_separated_list(tmp_path, capsys):
    code, err = run_cli("cases", "smoke", "--dtype", "float16,bfloat16")
    ids = capsys.readouterr().out.split()
    assert code == 0 and ids and all(i.endswith(("-f16", "-bf16")) or "-f16-" in i or "-bf16-" in i for i in ids)
    assert {i for i in ids if "-f16" in i} and {i for i in ids if "-bf16" in i}


def test_an_out_with_only_an_earlier_runs_logs_is_reused_without_force(tmp_path):
    out = tmp_path / "out"
    (out / "logs").mkdir(parents=True)
    (out / "logs" / "x.log").write_text("a failed load left this")
    cases = case_file(tmp_path / "cases.yaml", ["ok-a"])
    code, err = run_cli("run", "--backend", "numpy", "--cases", str(cases), "--out", str(out), "--no-report")
    assert code == 0 and "removed the previous run's logs/" in err
