"""What the suite says about what an adapter returned, and how a worker died.

An adapter's `run` must return a numpy.ndarray. A list, None or any other object is a
`dtype` divergence whose message names what came back (with the values judged when there
are some); an invalid case that returns anything is `invalid_accepted`. A worker killed
with SIGKILL is named as a likely out-of-memory kill, with the memory it had reached.
"""

from __future__ import annotations

import numpy as np
import pytest

from conformance import oracle
from conformance.compare import compare
from conformance.dtypes import np_dtype
from conformance.inputs import make_inputs
from conformance.spec import Case
from tests._runner_util import adapter, by_name, case_file, run_cli

CASE64 = Case(op="conv2d", batch=1, height=5, width=5, in_channels=2, out_channels=2, kernel=3, dtype="float64")
CASE32 = CASE64.replace(dtype="float32")


def _judge(case, y):
    inputs = make_inputs(case)
    return compare(case, y, oracle.reference(case, *inputs), inputs)


def _right(case):
    inputs = make_inputs(case)
    return oracle.convolve(case, *inputs).astype(np_dtype(case.dtype))


@pytest.mark.parametrize("case", [CASE64, CASE32], ids=["float64", "float32"])
def test_a_list_is_a_dtype_divergence_that_says_list(case):
    comp = _judge(case, _right(case).tolist())
    assert not comp.passed and comp.kind == "dtype", comp.message
    assert comp.message.startswith("expected a numpy.ndarray, received a list"), comp.message


def test_none_is_a_dtype_divergence_that_says_none():
    comp = _judge(CASE32, None)
    assert (comp.passed, comp.kind) == (False, "dtype")
    assert comp.message.startswith("expected a numpy.ndarray, received None"), comp.message
    assert "dtype object" not in comp.message


def test_another_object_is_a_dtype_divergence_that_names_its_type():
    class Tensor:
        pass

    comp = _judge(CASE32, Tensor())
    assert (comp.passed, comp.kind) == (False, "dtype")
    assert "received an object of type" in comp.message and "Tensor" in comp.message, comp.message


@pytest.mark.parametrize("case", [CASE64, CASE32], ids=["float64", "float32"])
def test_a_list_with_the_right_values_says_they_are_right(case):
    comp = _judge(case, _right(case).tolist())
    assert "its values, converted, are within tolerance" in comp.message, comp.message


def test_an_invalid_case_that_returns_none_is_invalid_accepted_naming_none():
    invalid = Case(op="conv2d", batch=1, height=2, width=2, in_channels=2, out_channels=2, kernel=3)
    assert not invalid.is_valid
    comp = compare(invalid, None, None)
    assert comp.kind == "invalid_accepted" and "returned None instead of an error" in comp.message, comp.message


def test_an_all_nan_output_has_no_effective_bits():
    comp = _judge(CASE32, np.full(CASE32.output_shape, np.nan, np.float32))
    assert comp.figures["effective_bits"] is None
    assert "effective bits n/a" in comp.message and "24.0 of 24" not in comp.message, comp.message


def test_effective_bits_of_a_partly_nan_output_are_said_to_be_over_the_finite_elements():
    y = _right(CASE64)
    y[0, 0, 0, 0] = np.nan
    comp = _judge(CASE64, y)
    assert comp.kind == "nonfinite"
    assert "over the finite elements only (1 non-finite mismatches)" in comp.message, comp.message


def test_worst_elements_carry_their_sigma_figure():
    y = _right(CASE64)
    y[0, 1, 1, 0] *= 1 + 1e-9
    comp = _judge(CASE64, y)
    assert comp.worst and all("sigma_error" in w for w in comp.worst), comp.worst
    assert comp.worst[0]["sigma_error"] > comp.figures["sigma_limit"]


@pytest.fixture(scope="module")
def other_returns_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("returns")
    cases = case_file(tmp / "cases.yaml", ["list-a", "none-b", "object-c", "ok-d"])
    code, err = run_cli("run", "--adapter", adapter("ReturnsOther"), "--cases", str(cases), "--out", str(tmp / "out"),
                        "--no-report", "--no-minimise")
    return code, err, by_name(tmp / "out" / "results.json", "returns-other")


@pytest.mark.parametrize("name, said", [("list-a", "received a list"), ("none-b", "received None"),
                                        ("object-c", "received an object of type")])
def test_the_worker_passes_on_what_the_adapter_returned(other_returns_run, name, said):
    _, _, recs = other_returns_run
    rec = recs[name]
    assert (rec["status"], rec["kind"]) == ("diverge", "dtype"), rec["message"]
    assert said in rec["message"], rec["message"]
    assert recs["ok-d"]["status"] == "pass"


def test_a_sigkilled_worker_is_named_an_out_of_memory_kill_with_its_memory(tmp_path):
    cases = case_file(tmp_path / "cases.yaml", ["oom-a"])
    code, err = run_cli("run", "--adapter", adapter("EatsMemory"), "--cases", str(cases), "--out",
                        str(tmp_path / "out"), "--no-report", "--no-minimise", "--timeout", "20")
    rec = by_name(tmp_path / "out" / "results.json", "eats-memory")["oom-a"]
    assert rec["status"] == "crash" and rec["exit"]["signal"] == "SIGKILL"
    assert "SIGKILL: killed, most likely by the out-of-memory killer" in rec["message"], rec["message"]
    assert rec["exit"]["peak_rss_bytes"] >= 250 * 2 ** 20, rec["exit"]
    assert "MiB" in rec["message"] or "GiB" in rec["message"]
