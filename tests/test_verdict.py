"""One verdict everywhere (issue 10).

Pinned:
- `conformance run`, the path of the pytest plugin, explore and repro (each backend in its
  worker, `process.isolated`) and an adapter called in this process (`record.record_here`,
  the minimiser's) give every broken backend in tests/ the same status, kind and message,
  case by case, under the default contract and under `any`; a crash too, on the two paths
  that survive one;
- every repro script's exit code is the suite's verdict, for every divergence kind, for
  passing cases and on the overflow profile, and it never prints OK on a divergence;
- the minimiser shrinks a precision divergence (and keeps it one);
- a `supports()` that raises is an `error` on every path.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conformance import runner, scripts
from conformance.cli import console
from conformance.minimise import minimise, same_divergence
from conformance.process.isolated import IsolatedBackend
from conformance.record import record_here
from conformance.run.config import RunConfig
from conformance.spec import Case
from tests.kind_adapters import Kinds, OwnAccumulation, SupportsRaises

HERE = Path(__file__).resolve().parent

BASE = dict(op="conv2d", batch=1, height=6, width=6, in_channels=4, kernel=3, out_channels=4, padding="SAME")
DW = dict(op="depthwise_conv2d", batch=1, height=12, width=12, in_channels=8, kernel=5, channel_multiplier=1,
          padding="SAME")

def _named(rows):
    """Cases with distinct ids (the name is not part of the id): each one row taller."""
    out = []
    for i, (name, kw, kind) in enumerate(rows):
        kw = dict(kw)
        kw["height"] = kw["height"] + i
        out.append((Case(**kw, name=name), kind))
    return out


INVALID = {**BASE, "height": 1, "width": 2, "padding": "VALID"}
#: (case, the kind `Kinds` must produce on it under `strict`: None for a pass).
KIND_CASES = _named([
    ("ok-f32", BASE, None),
    ("ok-f16-bias", dict(BASE, dtype="float16", bias=True), None),
    ("ok-bf16", dict(BASE, dtype="bfloat16"), None),
    ("ok-f64", dict(BASE, dtype="float64"), None),
    ("ok-overflow", dict(BASE, dtype="float16", profile="overflow"), None),
    ("wrong-f32", BASE, "value"),
    ("truncate-f32", dict(BASE, height=16, width=16, out_channels=8), "rounding_bias"),
    ("ownacc-f16", dict(DW, dtype="float16"), "precision"),
    ("ownacc-bf16-bias", dict(DW, dtype="bfloat16", bias=True), "precision"),
    ("nan-f32", BASE, "nonfinite"),
    ("transpose-f32", BASE, "shape"),
    ("float64-f32", BASE, "dtype"),
    ("flush-f16", dict(BASE, dtype="float16", profile="subnormal", bias=True), "subnormal_flush"),
    ("bump-f32", dict(BASE, profile="small_integers"), "inexact"),
    ("saturate-overflow", dict(BASE, dtype="float16", profile="overflow"), "value"),
])
# Invalid cases (an empty output) keep height 1: one accepted, one rejected.
KIND_CASES += [(Case(**INVALID, name="accept-invalid"), "invalid_accepted"),
               (Case(**{**INVALID, "width": 1}, name="reject-invalid"), None)]
CASES = [c for c, _ in KIND_CASES]


def _spec(path: str, cls: str) -> str:
    return f"{HERE / path}:{cls}"


#: Every broken backend in tests/ (and a faithful one), by spec.
BACKENDS = [_spec("kind_adapters.py", "Kinds"), _spec("kind_adapters.py", "SupportsRaises"),
            _spec("kind_adapters.py", "OwnAccumulation"),
            _spec("broken_adapters.py", "FlippedKernel"), _spec("broken_adapters.py", "NoRepro"),
            _spec("adapters_for_tests.py", "Misbehaving"), _spec("adapters_for_tests.py", "Raises"),
            _spec("adapters_for_tests.py", "OffByOne"), _spec("adapters_for_tests.py", "Faithful")]


def _verdict(case: Case, adapter, precision: str = "strict") -> dict:
    return record_here(case, adapter, precision=precision, diagnose=False)


@pytest.mark.parametrize("case, kind", KIND_CASES, ids=[c.name for c in CASES])
def test_the_kind_adapter_produces_each_kind(case, kind):
    rec = _verdict(case, Kinds())
    assert (rec["status"], rec["kind"]) == ("pass" if kind is None else "diverge", kind), rec["message"]


#: A case on which `Misbehaving` segfaults: the paths with a worker record the crash.
SEGV = Case(**dict(BASE, height=40), name="segv-f32")


def _verdicts(records) -> dict:
    return {(r["case_id"], r["backend"]): (r["status"], r["kind"], r["message"]) for r in records}


@pytest.mark.parametrize("precision", ["strict", "any"])
def test_run_the_tools_and_the_in_process_path_agree_record_for_record(tmp_path, precision):
    from conformance.adapters.registry import load

    cases = CASES + [SEGV]
    cfg = RunConfig(specs=BACKENDS, out=tmp_path / "run", report=False, minimise=False, quiet=True, named=True,
                    precision=precision)
    outcome = runner.execute(cfg, cases)
    assert all(r["precision"] == precision for r in outcome.run["records"])
    by_run = _verdicts(outcome.run["records"])
    assert len(by_run) == len(BACKENDS) * len(cases)
    assert by_run[(SEGV.id, "misbehaving")][0] == "crash"
    tools = []
    backends = [IsolatedBackend(spec, tmp_path / "tools", precision=precision) for spec in BACKENDS]
    for backend in backends:  # the pytest plugin's, explore's and repro's path; all start at once
        backend.start()
    for backend in backends:
        backend.ready()
        tools += [backend.record(case, diagnose=False) for case in cases]
        backend.stop()
    assert _verdicts(tools) == by_run
    for spec in BACKENDS:  # an adapter called here (the minimiser's predicate): no crash case
        adapter = load(spec)
        for case in CASES:
            got = _verdicts([_verdict(case, adapter, precision)])
            assert got == {k: v for k, v in by_run.items() if k == (case.id, adapter.name)}, (spec, case.name)


def test_supports_that_raises_is_an_error_on_every_path():
    case = Case(**BASE, name="ok-f32")
    assert _verdict(case, SupportsRaises())["status"] == "error"
    assert not same_divergence(SupportsRaises(), None)(case)


def test_any_accepts_accumulation_in_the_dtype_strict_names_it():
    case = Case(**DW, dtype="float16", name="ownacc-f16")
    strict = _verdict(case, Kinds())
    assert strict["kind"] == "precision" and "not `strict`: consistent with" in strict["message"]
    assert _verdict(case, Kinds(), "any")["status"] == "pass"


def _run_script(tmp_path: Path, case: Case, precision: str) -> subprocess.CompletedProcess:
    script = tmp_path / f"{case.name}-{precision}.py"
    script.write_text(scripts.make_script(case, Kinds(), precision=precision), encoding="utf-8")
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)


@pytest.mark.parametrize("precision", ["strict", "any"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_repro_scripts_exit_code_is_the_suites_verdict(tmp_path, case, precision):
    rec = _verdict(case, Kinds(), precision)
    done = _run_script(tmp_path, case, precision)
    expected = 0 if rec["status"] == "pass" else 1
    assert done.returncode == expected, (rec["status"], rec["kind"], done.stdout[-2000:], done.stderr[-2000:])
    if expected:
        assert "OK" not in done.stdout and "DIVERGES" in done.stdout, done.stdout


def test_the_minimiser_shrinks_a_precision_divergence():
    case = Case(**{**DW, "height": 16, "width": 16, "in_channels": 16, "batch": 2}, dtype="float16")
    adapter = OwnAccumulation()
    assert _verdict(case, adapter)["kind"] == "precision"
    smaller = minimise(case, same_divergence(adapter, "precision"), time_limit=60)
    assert smaller.id != case.id
    assert smaller.batch * smaller.height * smaller.width * smaller.in_channels < \
        case.batch * case.height * case.width * case.in_channels
    assert _verdict(smaller, adapter)["kind"] == "precision"


def test_the_precision_profile_is_in_results_console_and_every_page(tmp_path):

    cases = [Case(**dict(DW, height=12 + i), dtype="float16") for i in range(2)] + [Case(**BASE)]
    specs = [_spec("kind_adapters.py", "OwnAccumulation"), _spec("adapters_for_tests.py", "Faithful")]
    cfg = RunConfig(specs=specs, out=tmp_path, minimise=False, quiet=True, named=True)
    outcome = runner.execute(cfg, cases)
    profile = outcome.run["precision_profile"]
    assert outcome.run["run"]["precision"] == "strict"
    assert profile["faithful"]["float16"]["meets"] == "strict"
    own = profile["own-accumulation"]["float16"]
    assert own["meets"] in ("relaxed", "any") and own["max_normalised_error"] > 0
    assert profile["own-accumulation"]["float32"]["meets"] == "strict"
    summary = console.summary(outcome)
    assert "precision profile" in summary and f"float16: {own['meets']}" in summary
    for page in ("index.html", "own-accumulation.html"):
        html = (tmp_path / page).read_text()
        assert "Precision profile" in html and "consistent with" in html and "run precision" in html


def test_bitwise_identical_outputs_share_one_verdict_and_nothing_else(tmp_path):
    """In a run, a backend whose output equals another's byte for byte gets that verdict and
    diagnosis (compare_s 0) with its own identity and time; a different output is judged anew."""
    specs = [_spec("adapters_for_tests.py", "Faithful"), _spec("adapters_for_tests.py", "Misbehaving"),
             _spec("adapters_for_tests.py", "OffByOne")]
    cases = [Case(**BASE, name="ok-a"), Case(**dict(BASE, height=7), name="wrong-b")]
    cfg = RunConfig(specs=specs, out=tmp_path, report=False, minimise=False, quiet=True, named=True)
    recs = {(r["case"]["name"], r["backend"]): r for r in runner.execute(cfg, cases).run["records"]}
    verdict_fields = ("status", "kind", "message", "figures", "worst", "heatmap", "channel_errors", "diagnosis",
                      "precision_met")

    def same(a, b):
        return all(a[k] == b[k] for k in verdict_fields)

    # ok-a: faithful == misbehaving (both the oracle's float32), off-by-one differs.
    first, second, other = recs["ok-a", "faithful"], recs["ok-a", "misbehaving"], recs["ok-a", "off-by-one"]
    assert first["status"] == "pass" and same(first, second) and second["time"]["compare_s"] == 0.0
    assert first["time"]["compare_s"] > 0 and second["time"]["backend_s"] is not None
    assert other["status"] == "diverge" and other["time"]["compare_s"] > 0 and other["diagnosis"]
    # wrong-b: misbehaving adds 1, as off-by-one does: one divergence, judged and diagnosed once.
    wrong, twin = recs["wrong-b", "misbehaving"], recs["wrong-b", "off-by-one"]
    assert wrong["status"] == "diverge" and wrong["diagnosis"] and same(wrong, twin)
    assert twin["time"]["compare_s"] == 0.0 and wrong["time"]["compare_s"] > 0
    assert (twin["backend"], twin["backend_version"]) == ("off-by-one", "1.2.0")
    assert recs["wrong-b", "faithful"]["status"] == "pass"


def test_the_verdict_memo_tells_outputs_apart_by_every_byte():
    import numpy as np

    from conformance import verdict
    from conformance.inputs import make_inputs
    from conformance.oracle import convolve, reference

    case = Case(**BASE)
    inputs = make_inputs(case)
    ref = reference(case, *inputs)
    y = convolve(case, *inputs).astype(np.float32)
    memo: dict = {}
    a = verdict.judge(case, ("output", y, 0.1, ["mine"]), ref, inputs, memo=memo)
    bumped = y.copy()
    bumped.flat[7] = np.nextafter(bumped.flat[7], np.float32(np.inf))
    b = verdict.judge(case, ("output", bumped, 0.2, []), ref, inputs, memo=memo)
    c = verdict.judge(case, ("output", y.copy(), 0.3, ["theirs"]), ref, inputs, memo=memo)
    d = verdict.judge(case, ("output", y, 0.4, []), ref, inputs, precision="any", memo=memo)
    assert len(memo) == 3 and b.compare_s > 0 and d.compare_s > 0  # a new byte or contract: judged anew
    assert c.compare_s == 0.0 and c.comparison is a.comparison and c.backend_s == 0.3
    assert c.notes == ["theirs"] + list(a.comparison.notes) and a.notes[0] == "mine"
    assert b.comparison.figures != a.comparison.figures
