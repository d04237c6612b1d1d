"""Every CPU built-in, new ones included, behaves as the suite needs on any CPU.

Each backend runs in a fresh interpreter (as in a worker: frameworks that read an
environment switch at import, TF_ENABLE_ONEDNN_OPTS or KERAS_BACKEND, get their own
process). What is pinned is the suite's side of the contract, not what a framework
computes on this CPU (framework findings live in examples/known-divergences.yaml):
- the adapter loads under its registry name and reports a version and a device;
- `supports()` answers None or a non-empty reason, and never declines an invalid case;
- a supported case gives an output of the case's shape, judged by the suite's verdict,
  and `repro_code(case)` run in a fresh namespace defines the same `y` (the repro is the
  code that ran), importing only NumPy, `os`/`sys` (environment switches) and the
  backend's own frameworks;
- a process that imported the framework under another environment switch is refused
  with that reason, not run silently on the wrong path.
The backends are those registry.BUILTINS derives from the adapter classes.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conformance.adapters import registry

pytestmark = pytest.mark.framework

CPU_BUILTINS = [n for n, b in registry.BUILTINS.items() if b.device == "cpu"]

SCRIPT = r"""
import ast, json, sys, warnings
import numpy as np
from conformance.adapters import registry
from conformance.compare import compare
from conformance.inputs import make_inputs
from conformance.oracle import reference
from conformance.spec import Case

name = sys.argv[1]
a = registry.load(name)
out = {"name": a.name, "version": a.version(), "device": a.device(), "cases": []}
CASES = [
    Case(op="conv2d", batch=2, height=7, width=6, in_channels=4, kernel=(3, 3), out_channels=6, padding="SAME",
         bias=True),
    Case(op="conv2d", batch=1, height=7, width=6, in_channels=4, kernel=(3, 2), out_channels=6, groups=2,
         strides=(2, 1), padding=((1, 0), (2, 1))),
    Case(op="depthwise_conv2d", batch=1, height=9, width=9, in_channels=3, kernel=(3, 3), channel_multiplier=2,
         padding="SAME", bias=True),
    Case(op="conv2d", batch=1, height=6, width=6, in_channels=2, kernel=(3, 3), out_channels=2, dtype="float16"),
    Case(op="conv2d", batch=1, height=6, width=6, in_channels=2, kernel=(3, 3), out_channels=2, dtype="bfloat16"),
    Case(op="depthwise_conv2d", batch=1, height=6, width=6, in_channels=2, kernel=(3, 3), channel_multiplier=1,
         dtype="float64", data_format="NCHW"),
    Case(op="conv2d", batch=1, height=2, width=2, in_channels=3, kernel=(3, 3), out_channels=2),  # invalid
]

def roots(source):
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {n.name.split(".")[0] for n in node.names}
        elif isinstance(node, ast.ImportFrom):
            found.add(node.module.split(".")[0])
    return sorted(found)

for case in CASES:
    rec = {"id": case.id, "valid": case.is_valid}
    rec["supports"] = reason = a.supports(case)
    if reason is None and case.is_valid:
        x, f, b = make_inputs(case)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y = a.run(case, x, f, b)
            ns = {"x": x, "filters": f, "bias": b}
            source = a.repro_code(case)
            exec(compile(source, "<repro>", "exec"), ns)
        rec["shape"] = list(np.asarray(y).shape)
        rec["repro_same"] = bool(np.array_equal(np.asarray(ns["y"]), np.asarray(y), equal_nan=True))
        rec["imports"] = roots(source)
        rec["verdict"] = compare(case, y, reference(case, x, f, b), (x, f, b)).kind or "pass"
    out["cases"].append(rec)
print("RESULT " + json.dumps(out))
"""


def _skip_unless_installed(name: str) -> None:
    missing = registry.unavailable(name)  # a module or a program (tinygrad's clang) the class declares
    if missing:
        pytest.skip(f"{name}: {missing}")


def _fresh(name: str, script: str = SCRIPT) -> dict:
    proc = subprocess.run([sys.executable, "-c", script, name], capture_output=True, text=True, timeout=600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"{name}: exit {proc.returncode}\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT "):])


@pytest.mark.parametrize("name", CPU_BUILTINS)
def test_builtin_loads_answers_supports_and_runs_its_repro(name):
    _skip_unless_installed(name)
    got = _fresh(name)
    assert got["name"] == name and got["device"] == "cpu" and got["version"]
    allowed = {"numpy", "os", "sys", "conformance", "ml_dtypes"} | {m.split(".")[0] for m in
                                                                     registry.BUILTINS[name].requires}
    allowed |= {"torch", "jax"} if name.startswith("keras") else set()
    ran = 0
    for rec in got["cases"]:
        reason = rec["supports"]
        assert reason is None or (isinstance(reason, str) and reason.strip()), (name, rec)
        if not rec["valid"]:
            assert reason is None, f"{name} declared the invalid case {rec['id']} unsupported: {reason}"
            continue
        if reason is not None:
            continue
        ran += 1
        assert rec["repro_same"], f"{name} on {rec['id']}: repro_code does not define the y that run returned"
        assert set(rec["imports"]) <= allowed, f"{name}: repro imports {rec['imports']}, expected within {allowed}"
        if rec["verdict"] != "shape":
            expected = rec["id"]  # the shape is the case's: judged element by element
            assert rec["shape"] and len(rec["shape"]) == 4, expected
    assert ran >= 1, f"{name}: expected at least the float32 cases to be supported, received {got['cases']}"


ENV_CLASH = r"""
import os, sys
os.environ.pop("TF_ENABLE_ONEDNN_OPTS", None)
os.environ["KERAS_BACKEND"] = "torch" if sys.argv[1].startswith("keras") else "tensorflow"
import {preload}
from conformance.adapters import registry
from conformance.spec import Case
import json
a = registry.load(sys.argv[1])
case = Case(op="conv2d", batch=1, height=4, width=4, in_channels=1, kernel=(1, 1), out_channels=1)
try:
    reason = a.supports(case)
except Exception as exc:
    reason = f"raised {{type(exc).__name__}}: {{exc}}"
print("RESULT " + json.dumps({{"reason": reason}}))
"""


@pytest.mark.parametrize("name,preload", [("tensorflow[onednn]", "tensorflow"), ("keras", "keras")])
def test_a_process_that_imported_the_framework_under_another_switch_is_refused(name, preload):
    _skip_unless_installed(name)
    if name == "keras":
        _skip_unless_installed("keras[backend=torch]")
    reason = _fresh(name, ENV_CLASH.format(preload=preload))["reason"]
    assert reason and reason.startswith("device cpu unusable: RuntimeError"), reason
    assert "imported" in reason, reason


def test_the_engine_import_test_covers_every_framework_an_adapter_needs():
    from tests.test_engine_import import FRAMEWORKS

    needed = {m for b in registry.BUILTINS.values() for m in b.requires}
    assert needed <= set(FRAMEWORKS), f"not checked: {sorted(needed - set(FRAMEWORKS))}"
