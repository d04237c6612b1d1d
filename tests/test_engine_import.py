"""The engine imports and runs with NumPy alone: no framework is pulled in.

Every module under conformance/ (the package directory and its sub-packages, not the
adapters or cases packages that install beneath it) is imported in a fresh interpreter, which then
reports which frameworks ended up in sys.modules. A framework imported at module level
anywhere in the engine, even indirectly, makes this fail and names the culprit.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import conformance
from conformance.adapters.registry import BUILTINS

#: Every module a built-in adapter declares it needs (adapters/registry.py derives them).
FRAMEWORKS = tuple(sorted({m for b in BUILTINS.values() for m in b.requires}))
ENGINE_DIR = Path(conformance.__file__).parent

PROBE = """
import importlib, json, sys
importlib.import_module({module!r})
print(json.dumps(sorted(m for m in {frameworks!r} if m in sys.modules)))
"""


def engine_modules() -> list[str]:
    """conformance and every module beneath its directory, sub-packages (cli, process, run) included."""
    names = ["conformance"]
    for info in pkgutil.walk_packages([str(ENGINE_DIR)], prefix="conformance."):
        names.append(info.name)
    return sorted(names)


def test_core_engine_modules_are_present():
    expected = {f"conformance.{m}" for m in ("spec", "dtypes", "inputs", "oracle", "tolerance", "compare")}
    missing = expected - set(engine_modules())
    assert not missing, f"expected engine modules {sorted(expected)}, received none for {sorted(missing)}"


@pytest.mark.parametrize("module", engine_modules())
def test_import_pulls_in_no_framework(module):
    code = PROBE.format(module=module, frameworks=FRAMEWORKS)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"importing {module} failed:\n{proc.stderr}"
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert loaded == [], f"expected no framework after importing {module}, received {loaded} in sys.modules"


def test_judging_a_case_pulls_in_no_framework():
    """Not just the imports: building inputs, the oracle and a verdict stay NumPy-only."""
    code = (
        "import json, sys\n"
        "from conformance.spec import Case\n"
        "from conformance import inputs, oracle, compare\n"
        "c = Case(op='depthwise_conv2d', batch=1, height=5, width=5, in_channels=2, kernel=3,"
        " channel_multiplier=2, padding='SAME', dtype='bfloat16')\n"
        "x, w, b = inputs.make_inputs(c)\n"
        "ref = oracle.reference(c, x, w, b)\n"
        "assert compare.compare(c, ref.value.astype(x.dtype), ref, (x, w, b)).passed\n"
        f"print(json.dumps(sorted(m for m in {FRAMEWORKS!r} if m in sys.modules)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"judging a case failed:\n{proc.stderr}"
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert loaded == [], f"expected no framework after judging a case, received {loaded} in sys.modules"
