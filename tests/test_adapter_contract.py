"""The adapter contract is hard to misuse, and the built-ins are declared in one place.

- supports() is type-checked: anything but None or a non-empty str is the adapter's
  `error` (naming it), whatever the case; an exception inside supports() is an `error`
  that says so; a crash or hang inside supports() is recorded as being inside supports().
- Adapter options reach the adapter in its worker and are recorded in results.json
  (`--adapter file.py:Class --adapter-option k=v`, `--backend 'torch[memory=channels_last]'`).
- `probe_reason` / `framework_reason` give the framework's first meaningful line.
- The registry is derived from the adapter classes; the pyproject extras and tox agree with
  it (the docs' backend tables: tests/test_docs.py).
None of these tests needs a framework.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import numpy as np
import pytest
import yaml

from conformance import results
from conformance.adapters import registry
from conformance.adapters._base import framework_reason, probe_reason
from conformance.spec import Case
from tests._runner_util import adapter, by_name, case_file, run_cli

ROOT = Path(__file__).resolve().parents[1]


# ---- supports() misuse, through `conformance run` ------------------------------------

NAMES = ["answer42-a", "empty-b", "supportsraise-c", "supportssegv-d", "supportshang-e", "ok-f", "answer42-invalid-g"]


@pytest.fixture(scope="module")
def bad_supports_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad-supports")
    cases = case_file(tmp / "cases.yaml", NAMES[:-1])
    # An invalid case whose supports() answer is ill-typed: still the adapter's error, not a pass.
    doc = yaml.safe_load(cases.read_text())
    doc["cases"].append({"name": "answer42-invalid-g", "height": 2, "width": 9, "expect": "error"})
    cases.write_text(yaml.safe_dump(doc))
    out = tmp / "out"
    code, err = run_cli("run", "--adapter", adapter("BadSupports"), "--cases", str(cases), "--out", str(out),
                        "--timeout", "3", "--no-report", "--no-minimise")
    return {"code": code, "err": err, "records": by_name(out / "results.json", "bad-supports")}


@pytest.mark.parametrize("name,returned", [("answer42-a", "int 42"), ("empty-b", "an empty str")])
def test_an_ill_typed_supports_answer_is_the_adapters_error(bad_supports_run, name, returned):
    rec = bad_supports_run["records"][name]
    assert rec["status"] == "error", rec
    assert "adapter 'bad-supports': supports() returned" in rec["message"] and returned in rec["message"]
    assert rec["error"]["type"] == "SupportsError"


def test_an_ill_typed_supports_answer_on_an_invalid_case_is_not_a_pass(bad_supports_run):
    rec = bad_supports_run["records"]["answer42-invalid-g"]
    assert rec["status"] == "error" and "supports() returned int 42" in rec["message"]


def test_an_exception_inside_supports_is_an_error_that_says_so(bad_supports_run):
    rec = bad_supports_run["records"]["supportsraise-c"]
    assert rec["status"] == "error"
    assert rec["message"].startswith("adapter 'bad-supports': supports() raised KeyError")
    assert "adapters_for_tests.py" in rec["error"]["traceback"]


def test_a_crash_inside_supports_is_recorded_as_inside_supports(bad_supports_run):
    rec = bad_supports_run["records"]["supportssegv-d"]
    assert rec["status"] == "crash"
    assert "inside the adapter's supports(), before the case ran" in rec["message"]


def test_a_hang_inside_supports_is_a_timeout_that_says_so(bad_supports_run):
    rec = bad_supports_run["records"]["supportshang-e"]
    assert rec["status"] == "timeout" and "inside the adapter's supports()" in rec["message"]


def test_a_well_behaved_case_of_the_same_adapter_passes_and_the_run_fails(bad_supports_run):
    assert bad_supports_run["records"]["ok-f"]["status"] == "pass"
    assert bad_supports_run["code"] == 1  # never "OK" with exit 0


def test_checked_supports_in_process():
    class Answer:
        name = "answer"

        def supports(self, case):
            return 42

    with pytest.raises(registry.SupportsError, match=r"adapter 'answer': supports\(\) returned int 42"):
        registry.checked_supports(Answer(), Case(op="conv2d", batch=1, height=3, width=3, in_channels=1, kernel=(1, 1),
                                                 out_channels=1))


# ---- adapter options ----------------------------------------------------------------------


def test_adapter_options_reach_the_worker_and_are_recorded(tmp_path):
    cases = case_file(tmp_path / "cases.yaml", ["ok-a"])
    out = tmp_path / "out"
    code, err = run_cli("run", "--adapter", adapter("WithOptions"), "--adapter-option", "scale=2",
                        "--adapter-option", "label=doubled", "--cases", str(cases), "--out", str(out),
                        "--no-report", "--no-minimise")
    run = results.load(out / "results.json")
    info = run["backends"]["with-options-doubled"]
    assert info["options"] == {"scale": "2", "label": "doubled"}
    assert info["spec"].endswith("WithOptions[scale=2,label=doubled]")
    rec = run["records"][0]
    assert rec["status"] == "diverge" and code == 1  # the scale reached run(): every result doubled


def test_an_adapter_option_before_any_adapter_is_refused():
    code, err = run_cli("run", "--adapter-option", "scale=2", "--cases", "smoke")
    assert code == 2 and "expected it after the --adapter it belongs to" in err


def test_an_adapter_option_without_a_value_is_refused():
    code, err = run_cli("run", "--adapter", adapter("WithOptions"), "--adapter-option", "scale", "--cases", "smoke")
    assert code == 2 and "expected NAME=VALUE" in err


def test_options_a_class_does_not_take_are_refused_naming_them():
    with pytest.raises(registry.BackendError, match=r"accepting the options colour="):
        registry.load(f"{adapter('WithOptions')}[colour=red]")


# ---- built-in parameters ----------------------------------------------------------------


@pytest.mark.parametrize("spec,name", [
    ("torch[memory=channels_last]", "torch[channels_last]"),
    ("torch[channels_last]", "torch[channels_last]"),
    ("torch[native_pad=false]", "torch"),
    ("keras[backend=jax]", "keras[backend=jax]"),
    ("keras[backend=tensorflow]", "keras"),
    ("tensorflow[jit_compile=true]", "tensorflow[xla]"),
    ("onnxruntime[optimization=disable]", "onnxruntime[no_opt]"),
    ("torch[native_pad,mkldnn=false]", "torch[native_pad=true,mkldnn=false]"),
])
def test_builtin_parameters_name_the_adapter_canonically(spec, name):
    cls = registry._builtin_class(registry._BASES[spec.partition("[")[0]])
    base, options, _ = registry.parse_spec(spec)
    params = {}
    for k, v in options.items():
        params.update(cls.variants[k].params if v is None else {k: v})
    assert cls(**params).name == name  # constructing imports no framework


@pytest.mark.parametrize("spec,complaint", [
    ("torch[memory=diagonal]", "parameter memory: expected one of auto, channels_last, contiguous, received 'diagonal'"),
    ("torch[colour=red]", "expected parameters native_pad, memory, mkldnn, received colour"),
    ("torch[fast]", "unknown variant 'fast' of torch"),
    ("torch[channels_last]:tpu", "unknown device 'tpu' of torch"),
])
def test_bad_builtin_parameters_are_refused_clearly(spec, complaint, monkeypatch):
    monkeypatch.setattr(registry, "_not_installed", lambda *a: None)  # no framework needed to refuse
    with pytest.raises(registry.BackendError) as err:
        registry.load(spec)
    assert complaint in str(err.value)


def test_an_unknown_parameterised_backend_on_the_cli_exits_2(tmp_path):
    code, err = run_cli("run", "--backend", "torch[memory=diagonal]", "--cases", "smoke", "--no-report",
                        "--out", str(tmp_path / "out"))
    assert code == 2


# ---- the framework's own reason -----------------------------------------------------------

TF_WRAPPED = """in user code:

    File "/x/keras/src/ops/nn.py", line 1187, in conv  *
        return backend.nn.conv(
    File "/x/keras/src/backend/tensorflow/nn.py", line 301, in conv
        raise ValueError(

    ValueError: `strides > 1` not supported in conjunction with `dilation_rate > 1`. Received: strides=[2 2]
"""
OV_WRAPPED = """Exception from src/inference/src/cpp/core.cpp:112:
Exception from src/plugins/intel_cpu/src/node.cpp:77:
Unsupported operation of type: Convolution name: conv
"""
PADDLE_WRAPPED = """

--------------------------------------
C++ Traceback (most recent call last):
--------------------------------------
0   paddle::Tensor::numpy()

----------------------
Error Message Summary:
----------------------
(NotFound) The kernel with key (CPU, Undefined(AnyLayout), float16) of kernel `conv2d` is not registered.
"""


@pytest.mark.parametrize("text,exc_type,expected", [
    (TF_WRAPPED, ValueError, "ValueError: `strides > 1` not supported in conjunction with `dilation_rate > 1`"),
    (OV_WRAPPED, RuntimeError, "RuntimeError: Unsupported operation of type: Convolution name: conv"),
    (PADDLE_WRAPPED, RuntimeError, "RuntimeError: The kernel with key (CPU, Undefined(AnyLayout), float16)"),
    ("{{function_node __wrapped__Conv2D}} Conv2D only supports NHWC [Op:Conv2D]", RuntimeError,
     "RuntimeError: Conv2D only supports NHWC"),
])
def test_framework_reason_unwraps_wrappers(text, exc_type, expected):
    assert framework_reason(exc_type(text)).startswith(expected)


def test_probe_reason_runs_a_tiny_case_of_the_same_kind_once():
    seen = []

    def run(case, x, f, b):
        seen.append(case)
        if case.dtype == "float64":
            raise TypeError("in user code:\n\n    File \"a.py\", line 1\n\n    TypeError: no float64 kernel\n")
        return np.zeros(case.output_shape, x.dtype)

    cache: dict = {}
    big = Case(op="conv2d", batch=4, height=64, width=64, in_channels=16, kernel=(5, 5), out_channels=32,
               dtype="float64")
    assert probe_reason(run, big, cache=cache) == "TypeError: no float64 kernel"
    assert probe_reason(run, big.replace(height=50), cache=cache) == "TypeError: no float64 kernel"
    assert len(seen) == 1 and seen[0].height < 10 and seen[0].dtype == "float64"
    assert probe_reason(run, big.replace(dtype="float32"), cache=cache) is None
    invalid = big.replace(height=2, width=2)
    assert probe_reason(run, invalid, cache=cache) is None  # run, and judged, not declared unsupported


# ---- one place per backend ----------------------------------------------------------------


def test_every_builtin_is_derived_from_its_class_declarations():
    for cls in registry.adapter_classes():
        assert cls.base_name in registry.BUILTINS
        for v in cls.variants:
            assert f"{cls.base_name}[{v}]" in registry.BUILTINS
        for d in cls.devices:
            assert f"{cls.base_name}:{d}" in registry.BUILTINS
    assert len(registry.BUILTINS) == sum(1 + len(c.variants) + len(c.devices) for c in registry.adapter_classes())


def test_every_extra_is_in_pyproject_and_in_all():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    every = {b.extra for b in registry.BUILTINS.values() if b.extra}
    assert every <= set(extras), f"missing extras: {sorted(every - set(extras))}"
    listed = re.search(r"\[(.*)\]", extras["all"][0]).group(1).split(",")
    assert every <= set(listed), f"extras missing from all: {sorted(every - set(listed))}"


def test_an_adapter_file_may_import_a_helper_module_beside_it(tmp_path):
    # A backend team keeps its kernel in one module and the adapter in another, side by side.
    (tmp_path / "my_kernel_helpers.py").write_text(
        "from conformance.oracle import convolve\n"
        "def conv(case, x, f, b):\n"
        "    return convolve(case, x, f, b).astype(x.dtype)\n")
    (tmp_path / "my_adapter.py").write_text(
        "import my_kernel_helpers\n"
        "class Mine:\n"
        "    name = 'mine'\n"
        "    def version(self): return '1'\n"
        "    def device(self): return 'cpu'\n"
        "    def supports(self, case): return None\n"
        "    def run(self, case, x, filters, bias): return my_kernel_helpers.conv(case, x, filters, bias)\n")
    cases = case_file(tmp_path / "cases.yaml", ["ok-a"])
    out = tmp_path / "out"
    code, err = run_cli("run", "--adapter", f"{tmp_path / 'my_adapter.py'}:Mine", "--cases", str(cases),
                        "--out", str(out), "--no-report", "--no-minimise")
    assert code == 0, err
    assert results.load(out / "results.json")["records"][0]["status"] == "pass"


def test_what_conformance_backends_prints_states_facts_not_internal_references():
    for name, b in registry.BUILTINS.items():
        for text in (b.excluded or "", b.doc):
            assert not re.search(r"\bissue \d+|README", text), f"{name}: {text}"


def test_a_program_a_backend_declares_is_required_like_its_modules(monkeypatch):
    # tinygrad's CPU device compiles with clang: without it the backend is unavailable, and says why.
    monkeypatch.setattr(registry, "_missing_module", lambda modules: None)
    monkeypatch.setattr(registry.shutil, "which", lambda program: None)
    needing = {n: b.executables for n, b in registry.BUILTINS.items() if b.executables}
    assert "tinygrad" in needing
    for name, programs in needing.items():
        assert registry.unavailable(name) == f"not installed: no {programs[0]!r} on PATH"
        with pytest.raises(registry.BackendError, match=f"backend '{re.escape(name)}' is not installed: no"):
            registry.load(name)
