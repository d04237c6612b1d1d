"""The built-in framework adapters compute the training ops as the oracle does.

For each of torch, tensorflow, jax and keras (and every variant whose path differs),
each training op (dx, dfilters, separable) over strides, dilations, groups and channel
multipliers, SAME / VALID / explicit asymmetric pads, output_padding != 0, NCHW and
float64 is judged by the suite's verdict under `strict`, against the oracle. A
backend x case pair is its own test:
- a case the framework cannot compute is skipped with the framework's own reason
  (supports() must give a non-empty one);
- a computed case passes, or diverges exactly as an entry of
  examples/known-divergences.yaml explains (a framework finding, pinned there with its
  conditions: when the framework fixes it, the manifest says FIXED in runs).
Each backend computes all its cases in one fresh interpreter (environment switches such as
TF_ENABLE_ONEDNN_OPTS and KERAS_BACKEND are read at import).
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.adapters import registry
from conformance.expected import load_manifest
from conformance.spec import Case

pytestmark = pytest.mark.framework

MANIFEST = Path(__file__).resolve().parents[1] / "examples" / "known-divergences.yaml"

BACKENDS = ["torch", "torch[mkldnn_off]", "torch[channels_last]", "torch[native_pad]",
            "tensorflow[onednn]", "tensorflow[eigen]", "tensorflow[xla]", "tensorflow[native_pad]",
            "jax", "keras", "keras[backend=jax]", "keras[backend=torch]"]

GEOMETRIES = [
    dict(strides=(1, 1), dilations=(1, 1), padding="VALID"),
    dict(strides=(2, 2), dilations=(1, 1), padding="SAME"),  # odd SAME totals: asymmetric pads
    dict(strides=(2, 3), dilations=(1, 1), padding="VALID"),  # output_padding 1x0
    dict(strides=(1, 1), dilations=(2, 1), padding="SAME"),
    dict(strides=(2, 1), dilations=(1, 1), padding=((1, 0), (2, 1))),  # explicit asymmetric
    dict(strides=(2, 2), dilations=(2, 2), padding=((1, 1), (1, 1))),
]


def _training_cases() -> list[Case]:
    shape = dict(batch=2, height=8, width=7, kernel=(3, 2))
    cases = []
    for i, geo in enumerate(GEOMETRIES):
        fmt = dict(data_format="NCHW") if i in (1, 4) else {}
        for op in ("conv2d_backprop_input", "conv2d_backprop_filter"):
            cases += [Case(op=op, in_channels=4, out_channels=6, groups=g, **shape, **geo, **fmt) for g in (1, 2)]
        for op in ("depthwise_conv2d_backprop_input", "depthwise_conv2d_backprop_filter"):
            cases.append(Case(op=op, in_channels=3, channel_multiplier=2, **shape, **geo, **fmt))
        cases.append(Case(op="separable_conv2d", in_channels=3, channel_multiplier=2, out_channels=5, bias=True,
                          **shape, **geo, **fmt))
    base = GEOMETRIES[1]
    cases += [Case(op="conv2d_backprop_input", in_channels=4, out_channels=6, dtype="float64", **shape, **base),
              Case(op="conv2d_backprop_filter", in_channels=4, out_channels=6, dtype="float64", **shape, **base),
              Case(op="depthwise_conv2d_backprop_input", in_channels=3, channel_multiplier=2, dtype="float64",
                   **shape, **base),
              Case(op="depthwise_conv2d_backprop_filter", in_channels=3, channel_multiplier=2, dtype="float64",
                   **shape, **base),
              Case(op="separable_conv2d", in_channels=3, channel_multiplier=2, out_channels=5, dtype="float64",
                   **shape, **base)]
    for dtype in ("float16", "bfloat16"):
        cases += [Case(op=op, in_channels=4, out_channels=6, dtype=dtype, **shape, **base)
                  for op in ("conv2d_backprop_input", "conv2d_backprop_filter")]
        cases.append(Case(op="separable_conv2d", in_channels=3, channel_multiplier=2, out_channels=5, bias=True,
                          dtype=dtype, **shape, **base))
    return cases


CASES = _training_cases()

SCRIPT = r"""
import json, sys, warnings
from conformance.adapters import registry
from conformance.compare import compare
from conformance.fingerprint import facts, fingerprint
from conformance.inputs import make_inputs
from conformance.oracle import reference
from conformance.spec import Case

a = registry.load(sys.argv[1])
out = {"version": a.version(), "facts": facts(fingerprint(a)), "cases": {}}
for line in sys.stdin:
    case = Case.from_json(line)
    rec = {"supports": a.supports(case)}
    if rec["supports"] is None:
        operands = make_inputs(case)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                y = a.run(case, *operands)
            except Exception as exc:
                rec["raised"] = f"{type(exc).__name__}: {exc}"[:500]
            else:
                v = compare(case, y, reference(case, *operands), operands)
                rec["kind"], rec["message"] = v.kind, v.message
    out["cases"][case.id] = rec
print("RESULT " + json.dumps(out, default=str))
"""


@functools.lru_cache(maxsize=None)
def _results(name: str) -> dict:
    """Every case of CASES computed by backend `name` in a fresh interpreter."""
    cases = "\n".join(c.to_json() for c in CASES) + "\n"
    proc = subprocess.run([sys.executable, "-c", SCRIPT, name], input=cases, capture_output=True, text=True,
                          timeout=900)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"{name}: exit {proc.returncode}\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT "):])


def _explained(name: str, got: dict, case: Case, kind: str) -> bool:
    return any(e.explains_case(name, got["version"], case, kind, got["facts"]) for e in load_manifest(MANIFEST))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
@pytest.mark.parametrize("name", BACKENDS)
def test_training_op_matches_the_oracle_or_a_known_finding(name, case):
    missing = registry.unavailable(name)
    if missing:
        pytest.skip(f"{name}: {missing}")
    assert case.op in registry.load(name).ops, f"{name} does not declare {case.op}"
    got = _results(name)
    rec = got["cases"][case.id]
    if rec["supports"] is not None:
        assert rec["supports"].strip(), f"{name} declined {case.id} without a reason"
        pytest.skip(f"{name} cannot compute it: {rec['supports']}")
    assert "raised" not in rec, f"{name} raised on a case it supports: {rec.get('raised')}"
    kind = rec["kind"]
    assert kind is None or _explained(name, got, case, kind), f"{name} on {case.id}: {kind}: {rec['message']}"
