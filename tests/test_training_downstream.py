"""Everything downstream of the oracle, per op, for the training ops (issue 23): the verdict
and diagnosis of broken backends (tests/training_broken_adapters.py), the run through the
CLI, repro scripts, the manifest's `op:` entries and the report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import training_broken_adapters as T
from _runner_util import run_cli
from conformance import scripts
from conformance.compare import compare
from conformance.diagnose import diagnose
from conformance.expected import load_manifest
from conformance.inputs import make_inputs
from conformance.oracle import reference
from conformance.spec import Case

ADAPTERS = Path(__file__).resolve().parent / "training_broken_adapters.py"

DX = Case(op="conv2d_backprop_input", batch=2, height=8, width=9, in_channels=4, kernel=(3, 3), out_channels=6,
          groups=2, strides=(2, 2), padding=((1, 1), (2, 1)))  # output_padding (1, 1)
DX_SD = Case(op="conv2d_backprop_input", batch=2, height=9, width=9, in_channels=2, kernel=(3, 2), out_channels=3,
             strides=(2, 1), dilations=(1, 2))
DWDX = Case(op="depthwise_conv2d_backprop_input", batch=2, height=8, width=7, in_channels=3, kernel=(3, 3),
            channel_multiplier=2, strides=(2, 2), padding="SAME")
DF = Case(op="conv2d_backprop_filter", batch=3, height=7, width=6, in_channels=4, kernel=(3, 3), out_channels=6,
          groups=2, strides=(2, 1), dilations=(1, 2), padding=((1, 0), (2, 1)))
DWDF = Case(op="depthwise_conv2d_backprop_filter", batch=2, height=8, width=7, in_channels=3, kernel=(3, 3),
            channel_multiplier=2, strides=(2, 2), padding=((0, 1), (1, 1)))
SEP = Case(op="separable_conv2d", batch=2, height=8, width=7, in_channels=3, kernel=(3, 3), channel_multiplier=2,
           out_channels=5, strides=(2, 2), padding="SAME", bias=True)
ALL = [DX, DX_SD, DWDX, DF, DWDF, SEP]

DIAGNOSED = [
    # (backend, case, hypothesis, phrase)
    (T.StridesDilationsSwapped, DX, "strides_dilations_swapped", "strides (1, 1) and dilations (2, 2) swapped"),
    (T.StridesDilationsSwapped, DX_SD, "strides_dilations_swapped", "strides (1, 2) and dilations (2, 1)"),
    (T.StridesDilationsSwapped, DF, "strides_dilations_swapped", "dilation of dy"),
    (T.StridesDilationsSwapped, DWDF, "strides_dilations_swapped", "swapped"),
    (T.PaddingNotCropped, DX, "padding_not_cropped", "applied as padding instead of cropped"),
    (T.PaddingNotCropped, DWDX, "padding_not_cropped", "top 0, left 1"),
    (T.PaddingOtherEnd, DX, "padding_other_end", "top 1, bottom 1, left 1, right 2 instead of"),
    (T.PaddingOtherEnd, DF, "padding_other_end", "padded at the wrong side"),
    (T.OutputPaddingMisplaced, DX, "output_padding_wrong_side", "output_padding (1, 1)"),
    (T.FilterNotFlipped, DX, "filter_not_flipped", "unflipped"),
    (T.FilterNotFlipped, DWDX, "filter_not_flipped", "unflipped"),
    (T.GroupsMixed, DX, "groups_mixed", "2 channel groups reversed"),
    (T.GroupsMixed, DF, "groups_mixed", "2 channel groups reversed"),
    (T.GroupsMixed, DWDX, "groups_mixed", "q*C + k"),
    (T.GroupsMixed, DWDF, "groups_mixed", "q*C + k"),
    (T.MissingLastBatchItem, DF, "grad_filter_batch_missing", "without the last one (2 of 3)"),
    (T.MissingLastBatchItem, DWDF, "grad_filter_batch_missing", "without the last one"),
]


@pytest.mark.parametrize("backend, case, hypothesis, phrase", DIAGNOSED,
                         ids=[f"{b.name}-{c.op}" for b, c, _, _ in DIAGNOSED])
def test_a_planted_gradient_bug_is_flagged_and_diagnosed(backend, case, hypothesis, phrase):
    operands = make_inputs(case)
    y = backend().run(case, *operands)
    verdict = compare(case, y, reference(case, *operands), operands)
    assert not verdict.passed, f"{backend.name} on {case.id}: expected a divergence, received a pass"
    d = diagnose(case, y, operands)
    assert d.hypothesis == hypothesis, f"{case.id}: expected {hypothesis}, received {d.hypothesis} ({d.explanation})"
    assert phrase in d.explanation, d.explanation


@pytest.mark.parametrize("backend", [T.Training, T.BlockedFloat32], ids=lambda b: b.name)
@pytest.mark.parametrize("case", ALL + [DX.replace(dtype="bfloat16"), DF.replace(dtype="float16"),
                                        DWDX.replace(dtype="float64"), SEP.replace(profile="special")],
                         ids=lambda c: c.id)
def test_a_correct_float32_training_backend_passes(backend, case):
    operands = make_inputs(case)
    verdict = compare(case, backend().run(case, *operands), reference(case, *operands), operands)
    assert verdict.passed, f"{backend.name} on {case.id}: {verdict.kind}: {verdict.message}"


def test_a_bug_that_does_not_apply_to_the_op_leaves_it_passing():
    # grad-filter's batch bug on grad-input, an uncropped pad on grad-filter: the op is right.
    for backend, case in ((T.MissingLastBatchItem, DX), (T.PaddingNotCropped, DF), (T.FilterNotFlipped, DWDF)):
        operands = make_inputs(case)
        assert compare(case, backend().run(case, *operands), reference(case, *operands), operands).passed


@pytest.mark.parametrize("backend, case", [(T.Training, c) for c in ALL] + [(T.GroupsMixed, DX), (T.StridesDilationsSwapped, DF)],
                         ids=lambda v: getattr(v, "id", getattr(v, "name", "")))
def test_the_repro_script_runs_standalone_and_agrees_with_the_verdict(tmp_path, backend, case):
    operands = make_inputs(case)
    passed = compare(case, backend().run(case, *operands), reference(case, *operands), operands).passed
    script = scripts.make_script(case, backend(), spec=f"{ADAPTERS}:{backend.__name__}")
    path = tmp_path / "repro.py"
    path.write_text(script)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=120)
    assert proc.returncode == (0 if passed else 1), proc.stdout + proc.stderr
    assert "import conformance" not in script and "from conformance" not in script


def test_the_manifest_accepts_op_entries_and_matches_by_op(tmp_path):
    path = tmp_path / "expected.yaml"
    path.write_text(yaml.safe_dump([{"backend": "x", "op": ["conv2d_backprop_input"], "reason": "dx bug"}]))
    (entry,) = load_manifest(path)
    assert entry.covers("x", "1", DX.id) and not entry.covers("x", "1", DF.id)


def test_the_manifest_refuses_an_unknown_op(tmp_path):
    path = tmp_path / "expected.yaml"
    path.write_text(yaml.safe_dump([{"backend": "x", "op": "conv3d", "reason": "?"}]))
    with pytest.raises(ValueError, match="op: expected one of conv2d, .* received 'conv3d'"):
        load_manifest(path)


def _case_file(path: Path, cases: list[Case]) -> Path:
    path.write_text(yaml.safe_dump({"description": "training downstream", "cases": [c.to_dict() for c in cases]}))
    return path


def test_a_run_flags_each_bug_once_with_the_op_and_renders_the_report(tmp_path):
    cases = _case_file(tmp_path / "cases.yaml", [DX, DWDX, DF, Case(op="conv2d", batch=1, height=5, width=5,
                                                                      in_channels=2, kernel=3, out_channels=2)])
    code, err = run_cli("run", "--adapter", f"{ADAPTERS}:FilterNotFlipped", "--cases", str(cases),
                        "--out", str(tmp_path / "out"))
    assert code == 1, err
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    by_op = {Case.from_dict(data["cases"][r["case_id"]]).op: r for r in data["records"]}
    assert by_op["conv2d"]["status"] == "unsupported" and "does not declare" in by_op["conv2d"]["message"]
    assert by_op["conv2d_backprop_filter"]["status"] == "pass"
    for op in ("conv2d_backprop_input", "depthwise_conv2d_backprop_input"):
        assert by_op[op]["status"] == "diverge" and by_op[op]["diagnosis"]["hypothesis"] == "filter_not_flipped"
    # One transposed-conv routine serves both families' grad-input: one bug, one finding.
    (finding,) = data["findings"]["items"]
    assert finding["predicate"]["text"] == \
        "op in {conv2d_backprop_input, depthwise_conv2d_backprop_input} and kernel >= 2", finding["predicate"]
    assert finding["status"] == "confirmed" and sorted(m["case_id"] for m in finding["members"]) == sorted([DX.id,
                                                                                                          DWDX.id])
    html = "".join(p.read_text() for p in (tmp_path / "out").glob("*.html"))
    assert "conv2d_backprop_input" in html and "convdx-n2-8x9x4" in html


def test_bugs_of_different_ops_of_one_backend_are_separate_findings(tmp_path):
    cases = _case_file(tmp_path / "cases.yaml", [DX, DWDX, DF, DWDF])
    code, err = run_cli("run", "--adapter", f"{ADAPTERS}:BugPerOp", "--cases", str(cases),
                        "--out", str(tmp_path / "out"))
    assert code == 1, err
    items = json.loads((tmp_path / "out" / "results.json").read_text())["findings"]["items"]
    assert [f["status"] for f in items] == ["confirmed"] * 3, items
    found = {f["predicate"]["text"]: [m["case_id"] for m in f["members"]] for f in items}
    assert found == {"op = conv2d_backprop_input and kernel >= 2": [DX.id],
                     "op = conv2d_backprop_filter": [DF.id],
                     "op = depthwise_conv2d_backprop_filter and in_channels >= 2 and per_group_out_channels >= 2":
                         [DWDF.id]}, found
