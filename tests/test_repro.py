"""Repro scripts and bug reports: they run standalone and tell a divergence from a pass."""

from __future__ import annotations

import importlib.util
import ast
import subprocess
import sys
from pathlib import Path

import pytest

from conformance import bug_reports, scripts
from conformance.adapters.registry import load
from conformance.cases.sets import select
from conformance.cli import main
from conformance.process.isolated import IsolatedBackend
from conformance.spec import Case

BROKEN = str(Path(__file__).with_name("broken_adapters.py"))
SMOKE = {c.id: c for c in select("smoke")}

# Runs a script with `conformance` made unimportable, from an empty directory and with no
# PYTHONPATH: what a framework maintainer without this suite has.
_BLOCKED_RUN = """
import runpy, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "conformance" or name.startswith("conformance."):
            raise ImportError(f"the repro script imported {name}")
sys.meta_path.insert(0, Block())
runpy.run_path(sys.argv[1], run_name="__main__")
"""


def _smoke(pred) -> Case:
    return next(c for c in SMOKE.values() if pred(c))


def run_script(tmp_path: Path, text: str, *, block_ours: bool = True) -> subprocess.CompletedProcess:
    script = tmp_path / "repro.py"
    script.write_text(text)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    argv = [sys.executable, "-c", _BLOCKED_RUN, str(script)] if block_ours else [sys.executable, str(script)]
    return subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


PLAIN = _smoke(lambda c: c.op == "conv2d" and c.kernel == (3, 3) and c.profile == "normal" and c.dtype == "float32"
               and c.groups == 1)


def test_broken_adapter_script_prints_the_divergence_and_exits_1(tmp_path):
    script = scripts.make_script(PLAIN, load(f"{BROKEN}:FlippedKernel"))
    done = run_script(tmp_path, script)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "DIVERGES" in done.stdout
    assert "max normalised error" in done.stdout and "expected" in done.stdout


def test_adapter_without_repro_code_is_loaded_by_spec(tmp_path):
    spec = f"{BROKEN}:NoRepro"
    script = scripts.make_script(PLAIN, load(spec), spec=spec)
    assert f"SPEC = {spec!r}" in script
    done = run_script(tmp_path, script)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "DIVERGES" in done.stdout


def test_spec_of_a_file_adapter_defaults_to_its_file():
    # What the runner's workers get: make_script(case, adapter) with no spec.
    script = scripts.make_script(PLAIN, load(f"{BROKEN}:NoRepro"))
    assert f"SPEC = {BROKEN + ':NoRepro'!r}" in script


NUMPY_CASES = {
    "plain-f32": PLAIN,
    "bf16-bias": _smoke(lambda c: c.dtype == "bfloat16" and c.bias),
    "f64": _smoke(lambda c: c.dtype == "float64"),
    "special-values": _smoke(lambda c: c.profile == "special"),
    "subnormal": _smoke(lambda c: c.profile == "subnormal"),
    "explicit-pads": _smoke(lambda c: not isinstance(c.padding, str)),
    "invalid-raises": _smoke(lambda c: not c.is_valid),
}


@pytest.mark.parametrize("case", NUMPY_CASES.values(), ids=NUMPY_CASES.keys())
def test_numpy_backend_script_passes(tmp_path, case):
    # The NumPy backend's repro imports our oracle (it *is* the oracle), so no blocking here.
    done = run_script(tmp_path, scripts.make_script(case, load("numpy")), block_ours=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK" in done.stdout


TORCH_CASES = {"plain-f32": PLAIN, "bf16-bias": NUMPY_CASES["bf16-bias"]}


@pytest.mark.framework
@pytest.mark.parametrize("case", TORCH_CASES.values(), ids=TORCH_CASES.keys())
def test_torch_script_passes_without_conformance(tmp_path, case):
    pytest.importorskip("torch")
    script = scripts.make_script(case, load("torch"))
    done = run_script(tmp_path, script)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK: within tolerance" in done.stdout


@pytest.mark.framework
def test_torch_script_imports_only_numpy_and_torch():
    pytest.importorskip("torch")
    tree = ast.parse(scripts.make_script(PLAIN, load("torch")))
    modules = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
               for alias in node.names}
    modules |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert modules <= {"base64", "math", "sys", "zlib", "numpy", "torch", "ml_dtypes"}, modules


@pytest.mark.framework
def test_tensorflow_depthwise_stride_and_dilation_reproduces_the_wrong_shape(tmp_path):
    # TensorFlow's depthwise_conv2d with strides > 1 and dilations > 1 only warns and, here,
    # returns a 6x6 output where SAME with stride 2 on 10x10 gives 5x5.
    # Only look for TensorFlow: importing it into this pytest process, after another test
    # imported torch there, can abort the process (the script runs it in its own).
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("tensorflow is not installed")
    case = Case(op="depthwise_conv2d", batch=1, height=10, width=10, in_channels=2, kernel=3, channel_multiplier=1,
                strides=2, dilations=2, padding="SAME")
    done = run_script(tmp_path, scripts.make_script(case, load("tensorflow")))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "DIVERGES: expected output shape (1, 5, 5, 2), received (1, 6, 6, 2)" in done.stdout


# 2 MiB of float32 input: above MAX_INLINE_BYTES, so the script regenerates it.
BIG = Case(op="conv2d", batch=1, height=256, width=256, in_channels=8, kernel=3, out_channels=8, padding="SAME",
           bias=True)


def test_large_inputs_are_regenerated_from_the_seed_and_checked_not_inlined(tmp_path):
    script = scripts.make_script(BIG, load(f"{BROKEN}:FlippedKernel"))
    # The script carries the suite's rule (~20 kB of source) but not the 2 MiB of inputs.
    assert len(script) < 64_000, "megabytes of inputs must not be inlined"
    assert "SEED = 0x" in script and "INPUTS_SHA256" in script
    done = run_script(tmp_path, script)
    assert done.returncode == 1, done.stdout + done.stderr  # the flipped kernel still diverges
    assert "DIVERGES" in done.stdout


def test_large_inputs_the_script_cannot_regenerate_exactly_stop_it_with_exit_2(tmp_path):
    from conformance.inputs import make_inputs

    script = scripts.make_script(BIG, load(f"{BROKEN}:FlippedKernel"))
    good = scripts.inputs_checksum(*make_inputs(BIG))
    assert good in script  # the checksum is of the very inputs the suite judged
    done = run_script(tmp_path, script.replace(good, "0" * 64))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "CANNOT JUDGE" in done.stdout


def test_large_inputs_of_a_profile_the_script_cannot_regenerate_are_refused_with_advice():
    big = BIG.replace(profile="wide_range")
    with pytest.raises(scripts.ReproError, match="minimised case"):
        scripts.make_script(big, load("numpy"))


@pytest.fixture
def flipped(tmp_path):
    """FlippedKernel in its worker process, as `conformance repro` runs it."""
    backend = IsolatedBackend(f"{BROKEN}:FlippedKernel", tmp_path / "logs")
    backend.start()
    backend.ready()
    yield backend
    backend.stop()


def test_bug_report_carries_environment_case_figures_and_diagnosis(flipped):
    text = bug_reports.bug_report(PLAIN, flipped.record(PLAIN), flipped)
    for expected in ("### Environment", "| flipped | 0.1 |", "| Device | cpu |", PLAIN.id, "max_normalised_error",
                     "| threshold |", "### Diagnosis", "flipped", "[::-1, ::-1]", "<summary>repro.py</summary>"):
        assert expected in text, f"expected {expected!r} in the bug report"


@pytest.mark.parametrize("backend, code", [(f"{BROKEN}:FlippedKernel", 1), ("numpy", 0)],
                         ids=["diverges-exit-1", "passes-exit-0"])
def test_cli_writes_script_and_report_and_exits_with_the_verdict(tmp_path, capsys, backend, code):
    out, report = tmp_path / "r.py", tmp_path / "r.md"
    assert main(["repro", PLAIN.id, "--backend", backend, "--out", str(out), "--report", str(report)]) == code
    assert "reference" in out.read_text() and PLAIN.id in report.read_text()


ADAPTERS = Path(__file__).with_name("adapters_for_tests.py")
BF16 = _smoke(lambda c: c.dtype == "bfloat16" and c.op == "conv2d")
F16 = _smoke(lambda c: c.dtype == "float16" and c.op == "conv2d")


def test_a_case_that_crashes_the_backend_has_its_script_report_and_exit_1(tmp_path, capsys):
    out, report = tmp_path / "r.py", tmp_path / "r.md"
    code = main(["repro", BF16.id, "--backend", f"{ADAPTERS}:SegfaultsOnBfloat16", "--out", str(out),
                 "--report", str(report)])
    err = capsys.readouterr().err
    assert code == 1, err
    assert BF16.id in out.read_text(), "the script is written before the case runs"
    assert f"{BF16.id} crashes segfaults-on-bf16 here" in err and "SIGSEGV" in err
    text = report.read_text()
    assert "crashes the process" in text and "Segmentation fault" in text and "<summary>repro.py</summary>" in text


def test_a_case_on_which_the_backend_hangs_has_its_script_and_exit_1(tmp_path, capsys):
    out = tmp_path / "r.py"
    code = main(["repro", F16.id, "--backend", f"{ADAPTERS}:HangsOnFloat16", "--out", str(out), "--timeout", "1"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert F16.id in out.read_text()
    assert f"{F16.id} does not finish on hangs-on-f16 here (no result within 1 s" in err


@pytest.mark.parametrize("argv, message", [
    (["repro", "conv-no-such-case", "--backend", "numpy"], "conv-no-such-case"),
    (["repro", PLAIN.id, "--backend", "no-such-backend"], "no-such-backend"),
], ids=["unknown-case", "unknown-backend"])
def test_cli_usage_errors_exit_2(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err
