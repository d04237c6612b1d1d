"""The training ops on numpy, onnxruntime, openvino, litert, paddle and tinygrad: each
computes them with its framework's own API where the framework has one, agreeing with the
oracle under `strict`, and refuses the rest in the framework's own words.

What is pinned here
- Every supported (backend, case) pair over the five training ops, across strides,
  dilations, groups and multipliers, SAME / VALID / asymmetric explicit pads,
  output_padding != 0, NCHW and the four dtypes, passes under `strict`, or diverges in
  a way examples/known-divergences.yaml names for this backend, version and kernel path
  (then it is an xfail carrying the manifest's reason: the finding stays visible).
- Each backend computes exactly the ops its framework has (`COMPUTES`): a probe that
  refused everything would otherwise make the agreement test vacuous.
- An op the framework lacks is refused by `supports()` with the framework's message
  (`REFUSALS`: a fragment of it), not a silent skip.
Each backend runs in a fresh interpreter, once per session (`results`): Paddle
segfaults on import in a process that has torch and TensorFlow loaded. Frameworks that
are not installed are skipped, never failed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.adapters import registry
from conformance.expected import load_manifest
from conformance.spec import FORWARD_OPS, OPS, Case

pytestmark = pytest.mark.framework

TRAINING_OPS = tuple(op for op in OPS if op not in FORWARD_OPS)
BACKENDS = ["numpy", "onnxruntime", "onnxruntime[auto_pad]", "onnxruntime[no_opt]", "onnxruntime[opt_all]",
            "openvino", "openvino[f32]", "litert", "litert[reference]", "litert[builtin]", "paddle", "tinygrad"]
MANIFEST = load_manifest(Path(__file__).resolve().parent.parent / "examples" / "known-divergences.yaml")

#: (strides, dilations, padding, data_format, dtype, height, width): each geometry once
#: per op, grouped (conv2d) or with multiplier 2 (depthwise) on every other one.
GEOMETRIES = [
    ((1, 1), (1, 1), "SAME", "NHWC", "float32", 7, 6),
    ((2, 2), (1, 1), "VALID", "NHWC", "float32", 8, 7),  # output_padding (1, 0)
    ((2, 3), (1, 1), ((1, 0), (2, 1)), "NHWC", "float32", 7, 8),  # asymmetric pads, output_padding (1, 0)
    ((1, 1), (2, 1), "SAME", "NHWC", "float32", 7, 6),
    ((2, 2), (2, 2), ((2, 1), (0, 1)), "NHWC", "float32", 9, 8),  # output_padding (0, 1)
    ((2, 1), (1, 1), "SAME", "NCHW", "float32", 7, 6),
    ((1, 1), (1, 1), "VALID", "NHWC", "float16", 6, 6),
    ((2, 2), (1, 1), "SAME", "NHWC", "float64", 7, 7),
    ((1, 1), (1, 1), "SAME", "NHWC", "bfloat16", 6, 5),
]


def _cases() -> list[Case]:
    cases = []
    for op in TRAINING_OPS:
        for i, (strides, dilations, padding, layout, dtype, h, w) in enumerate(GEOMETRIES):
            common = dict(op=op, batch=2, height=h, width=w, kernel=(3, 3) if i % 3 else (3, 2), strides=strides,
                          dilations=dilations, padding=padding, data_format=layout, dtype=dtype)
            if op.startswith("conv2d"):
                case = Case(in_channels=4, out_channels=6, groups=2 if i % 2 else 1, **common)
            elif op == "separable_conv2d":
                case = Case(in_channels=3, channel_multiplier=2 if i % 2 else 1, out_channels=5, bias=i % 2 == 0,
                            **common)
            else:
                case = Case(in_channels=3, channel_multiplier=2 if i % 2 else 1, **common)
            assert case.is_valid, case.invalid_reason
            cases.append(case)
    return cases


CASES = _cases()

#: The training ops each backend's framework computes (its API is in the adapter's docstring).
COMPUTES = {
    "numpy": set(TRAINING_OPS),
    "onnxruntime": {"conv2d_backprop_input", "depthwise_conv2d_backprop_input", "separable_conv2d"},
    "openvino": {"conv2d_backprop_input", "depthwise_conv2d_backprop_input", "separable_conv2d"},
    "litert": {"conv2d_backprop_input", "separable_conv2d"},
    "paddle": set(TRAINING_OPS),
    "tinygrad": set(TRAINING_OPS),
}

#: (backend base name, op) -> a fragment of the framework's own refusal, for every case of that op.
REFUSALS = {
    ("onnxruntime", "conv2d_backprop_filter"): "com.microsoft:ConvGrad(-1) is not a registered function/op",
    ("onnxruntime", "depthwise_conv2d_backprop_filter"): "com.microsoft:ConvGrad(-1) is not a registered function/op",
    ("openvino", "conv2d_backprop_filter"): "has no convolution filter-gradient operation in opset1..",
    ("openvino", "depthwise_conv2d_backprop_filter"): "has no convolution filter-gradient operation in opset1..",
    ("litert", "conv2d_backprop_filter"): "'tf.Conv2DBackpropFilter' op is neither a custom op nor a flex op",
    ("litert", "depthwise_conv2d_backprop_filter"):
        "'tf.DepthwiseConv2dNativeBackpropFilter' op is neither a custom op nor a flex op",
    ("litert", "depthwise_conv2d_backprop_input"):
        "'tf.DepthwiseConv2dNativeBackpropInput' op is neither a custom op nor a flex op",
}

#: Judges every case on one backend in a fresh interpreter, as a worker does.
SCRIPT = r"""
import json, sys, warnings
from conformance import fingerprint
from conformance.adapters import registry
from conformance.compare import compare
from conformance.inputs import make_inputs
from conformance.oracle import reference
from conformance.spec import GRADIENT_OPS, Case

a = registry.load(sys.argv[1])
out = {"version": a.version(), "ops": list(a.ops), "facts": fingerprint.facts(fingerprint.fingerprint(a)),
       "cases": {}}
for text in json.loads(sys.stdin.read()):
    case = Case.from_json(text)
    rec = out["cases"][case.id] = {"supports": registry.checked_supports(a, case)}
    if case.op in GRADIENT_OPS:
        rec["forward_supports"] = registry.checked_supports(a, case.replace(op=case.forward_op))
    if rec["supports"] is None:
        operands = make_inputs(case)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y = a.run(case, *operands)
        result = compare(case, y, reference(case, *operands), operands)
        rec.update(passed=result.passed, kind=result.kind, message=result.message)
print("RESULT " + json.dumps(out, default=str))
"""

_RESULTS: dict[str, dict] = {}


def results(name: str) -> dict:
    """Every case of CASES judged on the built-in `name` in a fresh interpreter, once per
    test session; skipped when its framework is not installed."""
    missing = registry.unavailable(name)
    if missing:
        pytest.skip(f"{name}: {missing}")
    if name not in _RESULTS:
        proc = subprocess.run([sys.executable, "-c", SCRIPT, name], input=json.dumps([c.to_json() for c in CASES]),
                              capture_output=True, text=True, timeout=900)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        assert proc.returncode == 0 and lines, f"{name}: exit {proc.returncode}\n{proc.stderr[-3000:]}"
        _RESULTS[name] = json.loads(lines[-1][len("RESULT "):])
    return _RESULTS[name]


def known(name: str, got: dict, case: Case, kind: str | None):
    """The manifest entry that explains `kind` on `case` for this backend and kernel path, or None."""
    return next((e for e in MANIFEST if e.explains_case(name, got["version"], case, kind, got["facts"])), None)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("name", BACKENDS)
def test_supported_training_case_agrees_with_the_oracle_under_strict(name, case):
    got = results(name)
    rec = got["cases"][case.id]
    if rec["supports"] is not None:
        pytest.skip(f"unsupported: {rec['supports']}")
    if not rec["passed"]:
        entry = known(name, got, case, rec["kind"])
        if entry is not None:
            pytest.xfail(f"known divergence ({rec['kind']}): {entry.reason}")
    assert rec["passed"], f"{name} on {case.id}: expected a pass under strict, received {rec['kind']}: " \
                          f"{rec['message']}"


@pytest.mark.parametrize("name", BACKENDS)
def test_backend_computes_exactly_the_training_ops_its_framework_has(name):
    got = results(name)
    assert set(TRAINING_OPS) <= set(got["ops"]), f"{name}: expected to declare every training op, received {got['ops']}"
    computed = {case.op for case in CASES if got["cases"][case.id]["supports"] is None}
    assert computed == COMPUTES[name.split("[")[0]], f"{name}: computes {sorted(computed)}"


@pytest.mark.parametrize("name,op", [(name, op) for name in BACKENDS for (base, op) in REFUSALS
                                     if name.split("[")[0] == base])
def test_missing_training_op_is_refused_in_the_framework_words(name, op):
    got = results(name)
    fragment = REFUSALS[(name.split("[")[0], op)]
    # Where the framework refuses the forward op's kind of case already (a dtype it has no
    # kernels for), that reason comes first; the op's own refusal is asked elsewhere.
    for case in (c for c in CASES if c.op == op and got["cases"][c.id]["forward_supports"] is None):
        reason = got["cases"][case.id]["supports"]
        assert reason is not None and fragment in reason, \
            f"{name} on {case.id}: expected a refusal containing {fragment!r}, received {reason!r}"


def test_litert_refuses_a_transposed_convolution_its_converter_cannot_lower():
    # TRANSPOSE_CONV has no dilation and no explicit pads: the converter keeps the TF op,
    # which a builtins-only model cannot hold; grouped, the interpreter refuses the weights.
    got = results("litert")
    for case in (c for c in CASES if c.op == "conv2d_backprop_input" and c.dtype == "float32"):
        reason = got["cases"][case.id]["supports"]
        lowerable = isinstance(case.padding, str) and case.dilations == (1, 1) and case.groups == 1
        assert (reason is None) == lowerable, f"{case.id}: {reason!r}"
        if not lowerable:
            assert "Conv2DBackpropInput" in reason or "TRANSPOSE_CONV" in reason, f"{case.id}: {reason!r}"
