"""The runner contains every misbehaviour of a backend to the one (case, backend) pair.

A backend that segfaults, aborts, exits or hangs on some cases gives crash/timeout for
exactly those cases and normal verdicts for the rest; in the default run, one that cannot
start gives an error for each of its cases at once (a named one is refused with exit 2:
tests/test_cli.py); an interrupted run resumes to the verdicts of an
uninterrupted one; shards merged give the verdicts of one run.
"""

from __future__ import annotations

import hashlib
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conformance import results
from conformance.run.progress import Progress
from conformance.run.selection import shard_of
from conformance.spec import Case
from tests._runner_util import adapter, by_name, case_file, run_cli, verdicts

NAMES = ["ok-a", "segv-b", "abort-c", "exit-d", "hang-e", "raise-f", "wrong-g", "ok-h", "accept-i", "invalid-j",
         "unsupported-k"]


@pytest.fixture(scope="module")
def misbehaving_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("misbehaving")
    cases = case_file(tmp / "cases.yaml", NAMES)
    out = tmp / "out"
    t0 = time.monotonic()
    code, err = run_cli("run", "--adapter", adapter("Misbehaving"), "--adapter", adapter("Raises"),
                        "--cases", str(cases), "--out", str(out),
                        "--timeout", "2", "--no-report", "--no-minimise")
    return {"code": code, "err": err, "out": out, "cases": cases, "seconds": time.monotonic() - t0}


EXPECTED = {  # case name -> (status, kind or None, exit code, signal)
    "ok-a": ("pass", None),
    "segv-b": ("crash", None),
    "abort-c": ("crash", None),
    "exit-d": ("crash", None),
    "hang-e": ("timeout", None),
    "raise-f": ("error", None),
    "wrong-g": ("diverge", "value"),
    "ok-h": ("pass", None),
    "accept-i": ("diverge", "invalid_accepted"),
    "invalid-j": ("pass", None),
    "unsupported-k": ("unsupported", None),
}


@pytest.mark.parametrize("name", NAMES)
def test_each_misbehaviour_is_confined_to_its_case(misbehaving_run, name):
    rec = by_name(misbehaving_run["out"] / "results.json", "misbehaving")[name]
    assert (rec["status"], rec["kind"]) == EXPECTED[name], f"{name}: {rec['message']}"


@pytest.mark.parametrize("name, exit_info", [
    ("segv-b", {"exitcode": -11, "signal": "SIGSEGV"}),
    ("abort-c", {"exitcode": -6, "signal": "SIGABRT"}),
    ("exit-d", {"exitcode": 7, "signal": None}),
])
def test_a_crash_records_how_the_worker_died(misbehaving_run, name, exit_info):
    rec = by_name(misbehaving_run["out"] / "results.json", "misbehaving")[name]
    assert {k: rec["exit"][k] for k in exit_info} == exit_info
    assert "worker process died" in rec["message"]


def test_a_segfault_keeps_the_python_stack_of_the_adapter(misbehaving_run):
    rec = by_name(misbehaving_run["out"] / "results.json", "misbehaving")["segv-b"]
    assert "Fatal Python error: Segmentation fault" in rec["message"]
    assert "adapters_for_tests.py" in rec["error"]["traceback"]


def test_a_hang_is_a_timeout_naming_the_limit(misbehaving_run):
    rec = by_name(misbehaving_run["out"] / "results.json", "misbehaving")["hang-e"]
    assert "no result within 2 s" in rec["message"]


def test_an_exception_on_a_valid_case_is_an_error_with_type_and_traceback(misbehaving_run):
    rec = by_name(misbehaving_run["out"] / "results.json", "misbehaving")["raise-f"]
    assert rec["error"]["type"] == "RuntimeError"
    assert "deliberate failure" in rec["message"]
    assert "adapters_for_tests.py" in rec["error"]["traceback"]


def test_an_invalid_case_rejected_with_an_exception_passes_and_keeps_the_message(misbehaving_run):
    rec = by_name(misbehaving_run["out"] / "results.json", "misbehaving")["invalid-j"]
    assert rec["status"] == "pass"
    assert "rejected the invalid case" in rec["message"] and "ValueError" in rec["message"]


def test_unsupported_carries_the_backends_reason(misbehaving_run):
    rec = by_name(misbehaving_run["out"] / "results.json", "misbehaving")["unsupported-k"]
    assert rec["message"] == "this backend has no such kernel"


def test_an_adapter_that_always_raises_errors_on_valid_and_passes_invalid_cases(misbehaving_run):
    recs = by_name(misbehaving_run["out"] / "results.json", "raises")
    statuses = {name: rec["status"] for name, rec in recs.items()}
    invalid = {"accept-i", "invalid-j"}
    assert {n for n, s in statuses.items() if s == "pass"} == invalid
    assert {n for n, s in statuses.items() if s == "error"} == set(NAMES) - invalid


@pytest.fixture(scope="module")
def default_run_with_a_broken_backend(tmp_path_factory):
    """`conformance run` without --backend, where one default backend cannot be built."""
    from conformance.adapters import registry

    tmp = tmp_path_factory.mktemp("broken-default")
    cases = case_file(tmp / "cases.yaml", ["ok-a", "ok-b", "invalid-c"])
    with pytest.MonkeyPatch.context() as mp:  # the default set is the registry's; a broken install is simulated
        mp.setattr(registry, "default_specs", lambda: ["numpy", adapter("FailsToImport")])
        code, err = run_cli("run", "--cases", str(cases), "--out", str(tmp / "out"), "--no-report")
    return {"code": code, "err": err, "out": tmp / "out"}


def test_a_default_backend_that_cannot_be_built_gives_an_error_for_every_case(default_run_with_a_broken_backend):
    recs = by_name(default_run_with_a_broken_backend["out"] / "results.json", adapter("FailsToImport"))
    assert sorted(recs) == ["invalid-c", "ok-a", "ok-b"]
    assert {r["status"] for r in recs.values()} == {"error"}
    assert all("conformance_test_framework_that_does_not_exist" in r["message"] for r in recs.values())


def test_a_default_backend_that_cannot_be_built_does_not_stop_the_others(default_run_with_a_broken_backend):
    recs = by_name(default_run_with_a_broken_backend["out"] / "results.json", "numpy")
    assert {name: r["status"] for name, r in recs.items()} == {"ok-a": "pass", "ok-b": "pass", "invalid-c": "pass"}
    assert default_run_with_a_broken_backend["code"] == 1


def test_a_default_backend_that_cannot_be_built_is_one_summary_line(default_run_with_a_broken_backend):
    err = default_run_with_a_broken_backend["err"]
    listed = [ln for ln in err.splitlines() if ln.startswith(f"  {adapter('FailsToImport')}  ")]
    assert len(listed) == 1, err
    assert listed[0].startswith(f"  {adapter('FailsToImport')}  all 3 cases: error: ")
    assert "conformance_test_framework_that_does_not_exist" in listed[0]


def test_a_misbehaving_run_exits_1_and_lists_the_unexpected(misbehaving_run):
    assert misbehaving_run["code"] == 1
    assert "crash: worker process died with signal SIGSEGV" in misbehaving_run["err"]


def test_a_completed_run_leaves_no_stream_and_results_json_holds_what_resume_needs(misbehaving_run):
    out = misbehaving_run["out"]
    assert not (out / "results.jsonl").exists() and not (out / "results.jsonl.gz").exists()
    header, records = results.resume_point(results.load(out / "results.json"))
    assert header["params"]["backends"] == [adapter("Misbehaving"), adapter("Raises")]
    assert len(records) == 2 * len(NAMES)


# ---- interruption and resume ------------------------------------------------------------

RESUME_NAMES = [f"ok-{i}" for i in range(10)] + ["wrong-x", "invalid-y"]


def _records_in(stream: Path) -> int:
    """Records in the stream (there while the run goes and after an interruption)."""
    path = results.stream_path(stream)
    try:
        return len(results.read_jsonl(path)[1]) if path else 0
    except results.ResultsError:  # not even its header written yet
        return 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_an_interrupted_run_resumes_to_the_verdicts_of_one_run(tmp_path, sig):
    cases = case_file(tmp_path / "cases.yaml", RESUME_NAMES)
    out = tmp_path / "out"
    params = ["--adapter", adapter("Slow"), "--cases", str(cases), "--timeout", "5", "--no-report", "--no-minimise",
              "--quiet"]
    argv = [sys.executable, "-m", "conformance", "run", *params, "--out", str(out)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # Generous: on a loaded machine (the suite's other worker, CI) starting the run's
    # processes alone can take tens of seconds; the loop ends at the third record.
    deadline = time.monotonic() + 120
    while _records_in(out / "results.jsonl") < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert (out / "results.jsonl").exists()  # an interrupted or killed run keeps its plain stream
    partial = _records_in(out / "results.jsonl")
    assert 3 <= partial < len(RESUME_NAMES), "expected the interrupt to land mid-run"
    if sig == signal.SIGINT:
        assert proc.returncode == 130, err
        run = results.load(out / "results.json")
        assert run["run"]["interrupted"] is True and len(run["records"]) == partial
    else:
        assert proc.returncode == -signal.SIGKILL
    code, _ = run_cli("run", *params, "--out", str(out), "--resume")
    assert code == 1  # wrong-x diverges
    assert not (out / "results.jsonl").exists()  # completed now: results.json holds every record
    assert len(results.load(out / "results.json")["records"]) == len(RESUME_NAMES)
    # The reference: one uninterrupted run of the same behaviour without the sleeps.
    fast = [adapter("Misbehaving") if p == adapter("Slow") else p for p in params]
    run_cli("run", *fast, "--out", str(tmp_path / "one"))
    strip = lambda v: {case_id: verdict for (case_id, _), verdict in v.items()}  # noqa: E731 (slow vs misbehaving)
    assert strip(verdicts(out / "results.json")) == strip(verdicts(tmp_path / "one" / "results.json"))
    assert len(verdicts(out / "results.json")) == len(RESUME_NAMES)


def test_resume_with_other_parameters_is_refused(tmp_path):
    cases = case_file(tmp_path / "cases.yaml", ["ok-a", "ok-b"])
    out = tmp_path / "out"
    base = ["run", "--backend", "numpy", "--cases", str(cases), "--out", str(out), "--no-report", "--quiet"]
    assert run_cli(*base)[0] == 0
    code, err = run_cli(*base, "--seed", "5", "--resume")
    assert code == 2
    assert "--resume" in err and "seed 0" in err and "seed 5" in err


def test_resume_of_a_finished_run_runs_nothing_again(tmp_path):
    cases = case_file(tmp_path / "cases.yaml", ["ok-a", "ok-b"])
    out = tmp_path / "out"
    base = ["run", "--backend", "numpy", "--cases", str(cases), "--out", str(out), "--no-report", "--quiet"]
    run_cli(*base)

    before = results.load(out / "results.json")["records"]
    assert run_cli(*base, "--resume")[0] == 0
    assert results.load(out / "results.json")["records"] == before


# ---- shards -------------------------------------------------------------------------------

SHARD_NAMES = ["ok-a", "segv-b", "raise-c", "wrong-d", "ok-e", "accept-f", "invalid-g", "ok-h", "ok-i"]


def test_shards_partition_the_cases_by_a_stable_hash():
    ids = [f"case-{i}" for i in range(200)]
    shards = [shard_of(i, 3) for i in ids]
    assert set(shards) == {1, 2, 3}
    assert shards == [shard_of(i, 3) for i in ids]  # no dependence on Python's hash seed
    # The documented formula (docs/running.md): first 8 bytes of SHA-256(id), big-endian, mod N, plus 1.
    digest = hashlib.sha256(b"conv-n1-5x5x2-k3x3-o2-s1x1-d1x1-valid-f32").digest()
    assert shard_of("conv-n1-5x5x2-k3x3-o2-s1x1-d1x1-valid-f32", 4) == int.from_bytes(digest[:8], "big") % 4 + 1


def test_merged_shards_give_the_verdicts_of_one_run(tmp_path):
    cases = case_file(tmp_path / "cases.yaml", SHARD_NAMES)
    common = ["--adapter", adapter("Misbehaving"), "--backend", "numpy", "--cases", str(cases), "--timeout", "5",
              "--no-report", "--no-minimise", "--quiet"]
    run_cli("run", *common, "--out", str(tmp_path / "one"))
    parts = []
    for i in (1, 2, 3):
        run_cli("run", *common, "--out", str(tmp_path / f"s{i}"), "--shard", f"{i}/3")
        parts.append(str(tmp_path / f"s{i}" / "results.json"))
    code, err = run_cli("merge", *parts, "--out", str(tmp_path / "merged"), "--no-report", "--quiet")
    assert code == 1, err
    assert verdicts(tmp_path / "merged" / "results.json") == verdicts(tmp_path / "one" / "results.json")
    sizes = [len(results.load(p)["records"]) for p in parts]
    assert sum(sizes) == 2 * len(SHARD_NAMES) and 0 not in sizes


# ---- progress lines -------------------------------------------------------------------------

class _Tty:
    def __init__(self):
        self.text = ""

    def isatty(self):
        return True

    def write(self, s):
        self.text += s

    def flush(self):
        pass


def _feed(progress, backends=("numpy", "torch")):
    for status in ("pass", "diverge"):
        for b in backends:
            progress.add({"backend": b, "status": status, "known": None})
        progress.case_done()


def test_progress_in_a_log_is_one_plain_line_for_all_backends_with_counts():
    import io

    stream = io.StringIO()
    progress = Progress(4, stream)
    _feed(progress)
    progress.draw(final=True)
    lines = stream.getvalue().splitlines()
    assert "\x1b" not in stream.getvalue() and "\r" not in stream.getvalue()
    assert lines and "2/4 cases on 2 backends; diverge 2, pass 2" in lines[-1]


def test_progress_in_a_log_writes_at_most_one_line_per_fifth_of_the_cases():
    import io

    stream = io.StringIO()
    progress = Progress(200, stream)
    for _ in range(100):
        _feed(progress, backends=("numpy",))
        progress.draw()
    progress.draw(final=True)
    assert len(stream.getvalue().splitlines()) <= Progress.PLAIN_STEPS + 1


def test_progress_on_a_terminal_redraws_its_lines_in_place():
    tty = _Tty()
    progress = Progress(4, tty)
    _feed(progress)
    # The second draw moves the cursor up over the two backend lines it drew before.
    assert tty.text.count("\x1b[2F") == 1
    assert tty.text.count("\x1b[2K") == 4


def test_quiet_progress_writes_nothing():
    import io

    stream = io.StringIO()
    progress = Progress(4, stream, quiet=True)
    _feed(progress)
    progress.draw(final=True)
    assert stream.getvalue() == ""


# ---- minimising -------------------------------------------------------------------------------

def test_a_divergence_is_minimised_once_per_backend_kind_and_diagnosis(tmp_path):
    cases = case_file(tmp_path / "cases.yaml", ["big-a", "big-b"])
    code, err = run_cli("run", "--adapter", adapter("OffByOne"), "--cases", str(cases), "--out", str(tmp_path / "o"),
                        "--no-report", "--quiet")
    assert code == 1, err
    first, second = results.load(tmp_path / "o" / "results.json")["records"]
    assert first["status"] == second["status"] == "diverge"
    smaller = Case.from_dict(first["minimised"])
    original = Case.from_dict(first["case"])
    assert math.prod(smaller.output_shape) * smaller.reduction_size < math.prod(original.output_shape) * original.reduction_size
    assert second["minimised"] is None
    assert any(first["case_id"] in note and "finding" in note for note in second["notes"])


def test_no_minimise_leaves_divergences_as_they_are(tmp_path):
    cases = case_file(tmp_path / "cases.yaml", ["big-a"])
    run_cli("run", "--adapter", adapter("OffByOne"), "--cases", str(cases), "--out", str(tmp_path / "o"),
            "--no-report", "--quiet", "--no-minimise")
    (rec,) = results.load(tmp_path / "o" / "results.json")["records"]
    assert rec["status"] == "diverge" and rec["minimised"] is None


@pytest.mark.parametrize("preset", [None, "ACTIVE"])
def test_workers_idle_threads_sleep_unless_the_user_chose_a_wait_policy(tmp_path, monkeypatch, preset):
    """15 backends share the cores: a worker's thread pools sleep between cases (OpenMP
    passive, OpenBLAS's shortest spin), but a policy the user exported is kept."""
    if preset is None:
        monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    else:
        monkeypatch.setenv("OMP_WAIT_POLICY", preset)
    monkeypatch.delenv("OPENBLAS_THREAD_TIMEOUT", raising=False)
    cases = case_file(tmp_path / "cases.yaml", ["ok-a"])
    code, err = run_cli("run", "--adapter", adapter("SaysWaitPolicy"), "--cases", str(cases),
                        "--out", str(tmp_path / "out"), "--no-report")
    run = results.load(tmp_path / "out" / "results.json")
    assert code == 0, err
    assert run["records"][0]["backend_version"] == f"{preset or 'PASSIVE'}/4"
