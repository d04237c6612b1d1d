"""The case catalogue and case files: what loads, what is refused and why; case sets."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from conformance.cases import catalogue as cat
from conformance.cases import sets
from conformance.cases.catalogue import CaseFileError, dump_cases, load_catalogue, load_catalogue_entries, load_file
from conformance.cases.sweep import TRAINING_OPS, coverage, padding_kind
from conformance.cases.witnesses import witnesses
from conformance.compare import compare
from conformance.dtypes import np_dtype
from conformance.inputs import make_inputs
from conformance.oracle import reference
from conformance.spec import (ALL_PROFILES, DATA_FORMATS, DTYPES, FORWARD_OPS, GRADIENT_OPS, MAX_ELEMENTS, OP_INFO,
                               OPS, PROFILES, Case)

ENTRIES = load_catalogue_entries()
BY_NAME = {e.case.name: e for e in ENTRIES}


# ---- the catalogue itself -------------------------------------------------------------


def test_every_catalogue_case_is_named_and_explained_in_one_line():
    assert len(ENTRIES) >= 80
    for e in ENTRIES:
        assert e.case.name and e.case.reason and "\n" not in e.case.reason, e.case.id


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.case.name for e in ENTRIES])
def test_catalogue_case_is_judged_correctly_on_the_oracle(entry):
    """The oracle's own answer, rounded to the case dtype, passes; invalid cases say why."""
    case = entry.case
    inputs = make_inputs(case)
    if entry.expect == "error":
        assert case.invalid_reason
        return
    assert case.invalid_reason is None
    ref = reference(case, *inputs)
    with np.errstate(over="ignore"):  # the overflow profile's results beyond the range become Inf
        y = ref.value.astype(np_dtype(case.dtype))
    result = compare(case, y, ref, inputs)
    assert result.passed, result.message


def test_catalogue_has_the_seed_examples():
    ids = {e.case.id for e in ENTRIES}
    for op, extra in (("conv2d", dict(out_channels=64)), ("depthwise_conv2d", dict(channel_multiplier=64))):
        seed = Case(op=op, batch=2, height=14, width=14, in_channels=32, kernel=3, padding="SAME", **extra)
        assert seed.output_channels in (64, 2048) and seed.id in ids
    for extra in (dict(op="conv2d", out_channels=8), dict(op="depthwise_conv2d", channel_multiplier=1),
                  dict(op="depthwise_conv2d", channel_multiplier=3)):
        assert Case(batch=1, height=100, width=100, in_channels=3, kernel=5, padding="SAME", **extra).id in ids


def test_catalogue_spans_every_op_dtype_format_profile_and_bias():
    cases = [e.case for e in ENTRIES]
    for op in FORWARD_OPS:
        assert {c.dtype for c in cases if c.op == op} == set(DTYPES), op
        assert {c.data_format for c in cases if c.op == op} == set(DATA_FORMATS), op
        assert {c.bias for c in cases if c.op == op} == {False, True}, op
    assert {c.profile for c in cases} == set(ALL_PROFILES)
    assert {padding_kind(c) for c in cases if c.is_valid} == {"VALID", "SAME-even", "SAME-odd", "explicit"}


def test_catalogue_has_every_training_op_in_the_main_dtypes_and_both_layouts():
    cases = [e.case for e in ENTRIES]
    for op in TRAINING_OPS:
        assert {"float32", "float16", "bfloat16"} <= {c.dtype for c in cases if c.op == op}, op
        assert {c.data_format for c in cases if c.op == op} == set(DATA_FORMATS), op
    assert {c.dtype for c in cases if c.op in TRAINING_OPS} == set(DTYPES)
    assert {"small_integers", "wide_range", "special", "overflow"} <= {c.profile for c in cases if c.op in TRAINING_OPS}
    assert any(c.bias for c in cases if c.op == "separable_conv2d")


def _stride_dilation_same_axis(c):
    return any(s > 1 and d > 1 for s, d in zip(c.strides, c.dilations))


def _stride_dilation_across_axes(c):
    return (c.strides[0] > 1 and c.dilations[1] > 1 and c.strides[1] == 1 and c.dilations[0] == 1) or \
        (c.strides[1] > 1 and c.dilations[0] > 1 and c.strides[0] == 1 and c.dilations[1] == 1)


#: What a gradient case must have for each classic backward bug to show on it.
GRADIENT_BUG_WITNESSES = {
    "strides and dilations swapped (same axis)": _stride_dilation_same_axis,
    "strides and dilations swapped (across axes)": _stride_dilation_across_axes,
    "stride without dilation": lambda c: max(c.strides) > 1 and c.dilations == (1, 1),
    "padding at the wrong end": lambda c: any(lo != hi for lo, hi in c.geometry.pads),
    "SAME with an odd total pad": lambda c: c.padding == "SAME" and any(sum(p) % 2 for p in c.geometry.pads),
    "filter not flipped": lambda c: min(c.kernel) > 1 and c.profile == "normal",
    "kernel larger than the stride": lambda c: max(c.strides) > 1 and all(k > s for k, s in zip(c.kernel, c.strides)),
    "non-square kernel": lambda c: c.kernel[0] != c.kernel[1],
}
INPUT_BUG_WITNESSES = {
    "output_padding on one axis": lambda c: sorted(c.geometry.output_padding)[0] == 0 < max(c.geometry.output_padding),
    "output_padding on both axes": lambda c: min(c.geometry.output_padding) > 0,
}
FILTER_BUG_WITNESSES = {
    "the last batch item dropped": lambda c: c.batch >= 2,
    "unread bottom rows counted": lambda c: c.padding == "VALID" and max(c.geometry.output_padding) > 0,
}
GROUP_BUG_WITNESSES = {
    "conv2d": lambda c: c.groups >= 2 and c.out_channels // c.groups >= 2 and c.in_channels // c.groups >= 2,
    "depthwise_conv2d": lambda c: c.channel_multiplier >= 2 and c.in_channels >= 2,
}


def _bug_witnesses(op):
    result = OP_INFO[op].result
    out = dict(GRADIENT_BUG_WITNESSES)
    out.update(INPUT_BUG_WITNESSES if result == "input" else FILTER_BUG_WITNESSES)
    out["channels mixed across groups"] = GROUP_BUG_WITNESSES[OP_INFO[op].forward]
    return out


@pytest.mark.parametrize("op", GRADIENT_OPS)
def test_the_default_set_has_a_witness_of_every_classic_gradient_bug_for_each_gradient_op(op):
    # The training part of the default set only (a bug must not need a forward case to show).
    cases = [c for c in sets.select("default") if c.op == op and c.is_valid]
    missing = [bug for bug, holds in _bug_witnesses(op).items() if not any(holds(c) for c in cases)]
    assert missing == []


@pytest.mark.parametrize("reason_start", ["empty output", "groups 2 does not divide in_channels",
                                          "groups 2 does not divide out_channels", "filter has"])
def test_catalogue_has_each_kind_of_invalid_case(reason_start):
    assert any((e.case.invalid_reason or "").startswith(reason_start) for e in ENTRIES)


def test_catalogue_has_the_edge_cases():
    cases = [e.case for e in ENTRIES if e.case.is_valid]
    checks = {
        "1x1 kernel": any(c.kernel == (1, 1) for c in cases),
        "kernel equals input": any(c.kernel == (c.height, c.width) for c in cases),
        "dilated kernel exceeds input under SAME": any(
            c.padding == "SAME" and c.geometry.effective_kernel[0] > c.height for c in cases),
        "stride beyond kernel and input": any(min(c.strides) > max(c.kernel) and min(c.strides) > max(c.height, c.width)
                                              for c in cases),
        "non-square everything": any(c.height != c.width and c.kernel[0] != c.kernel[1] and c.strides[0] != c.strides[1]
                                     and c.dilations[0] != c.dilations[1] for c in cases),
        "C=1": any(c.in_channels == 1 for c in cases),
        "M=1 and M large": any(c.channel_multiplier == 1 for c in cases) and any((c.channel_multiplier or 0) >= 32 for c in cases),
        "groups between 1 and C": any(1 < c.groups < c.in_channels for c in cases),
        "batch 1 and > 1": {c.batch > 1 for c in cases} == {False, True},
        "odd channel counts": {13, 17, 33, 65, 129} <= {c.in_channels for c in cases} | {c.output_channels for c in cases},
        "over 2^16 input elements": any(math.prod(c.input_shape) > 1 << 16 for c in cases),
        "C > 64": any(c.in_channels > 64 for c in cases),
        "depthwise stride and dilation > 1": any(c.op == "depthwise_conv2d" and min(c.strides) > 1 and min(c.dilations) > 1
                                                 for c in cases),
        "multiplier > 1 with several channels": any((c.channel_multiplier or 0) > 1 and c.in_channels > 1 for c in cases),
    }
    assert [k for k, ok in checks.items() if not ok] == []


def test_most_catalogue_cases_are_small():
    macs = [math.prod(e.case.output_shape) * e.case.reduction_size for e in ENTRIES]
    # A default run multiplies these by every backend: a handful of big cases (seeds,
    # blocking thresholds, long reductions; 12 of the special-lanes cases, whose sites need
    # room on a lattice no window reads twice), the rest tiny.
    assert sum(m >= 50_000 for m in macs) <= 35
    assert max(macs) < 10_000_000 and sum(macs) < 60_000_000


# ---- malformed files ------------------------------------------------------------------

GOOD = "{name: a, reason: r, op: conv2d, batch: 1, height: 4, width: 4, in_channels: 2, kernel: 3, out_channels: 2}"

MALFORMED = {
    "bad-yaml": ("cases: [ {name: a", ["expected valid YAML"]),
    "non-mapping": ("- 1\n- 2\n", ["expected a mapping with a 'cases:' list, received list"]),
    "no-cases-key": ("description: x\n", ["expected a mapping with a 'cases:' list"]),
    "single-case-hint": ("op: conv2d\nbatch: 1\n", ["looks like a single case"]),
    "unknown-top-level-key": (f"cases: [{GOOD}]\nextra: 1\n", ["'extra'"]),
    "cases-not-a-list": ("cases: {a: 1}\n", ["expected 'cases' to be a list"]),
    "entry-not-a-mapping": ("cases: [3]\n", ["case #0", "case: expected a mapping"]),
    "unknown-field": (f"cases: [{GOOD}, {{name: b, reason: r, op: conv2d, batch: 1, height: 4, width: 4, "
                      "in_channels: 2, kernel: 3, out_channels: 2, colour: red}]\n",
                      ["case 'b' (#1)", "colour: expected a known field", "'red'"]),
    "wrong-type": ("cases: [{name: t, op: conv2d, batch: two, height: 4, width: 4, in_channels: 2, kernel: 3, "
                   "out_channels: 2}]\n", ["case 't' (#0)", "batch: expected an integer >= 1, received 'two'"]),
    "impossible-value": ("cases: [{name: k0, op: conv2d, batch: 1, height: 4, width: 4, in_channels: 2, kernel: 0, "
                         "out_channels: 2}]\n", ["case 'k0' (#0)", "kernel: expected"]),
    "bad-dtype": ("cases: [{name: d, op: conv2d, batch: 1, height: 4, width: 4, in_channels: 2, kernel: 1, "
                  "out_channels: 2, dtype: float8}]\n", ["case 'd' (#0)", "dtype: expected one of"]),
    "missing-field": ("cases: [{name: m, op: conv2d, batch: 1, height: 4, width: 4, kernel: 1, out_channels: 2}]\n",
                      ["case 'm' (#0)", "in_channels: expected a value"]),
    "duplicate-name": (f"cases: [{GOOD}, {GOOD.replace('height: 4', 'height: 5')}]\n",
                       ["case 'a' (#1)", "a unique name", "#0"]),
    "duplicate-id": (f"cases: [{GOOD}, {GOOD.replace('name: a', 'name: b')}]\n",
                     ["case 'b' (#1)", "a unique case id", "conv-n1-4x4x2-k3x3-o2"]),
    "absurd-size": ("cases: [{name: huge, op: conv2d, batch: 4096, height: 4096, width: 4096, in_channels: 3, "
                    "kernel: 1, out_channels: 1}]\n", ["case 'huge' (#0)", "size: expected at most", str(MAX_ELEMENTS)]),
    "python-tag": ("cases: [!!python/object/apply:os.system ['echo pwned']]\n", ["expected valid YAML"]),
    "multiline-reason": ("cases: [{name: r, reason: \"one\\ntwo\", op: conv2d, batch: 1, height: 4, width: 4, "
                         "in_channels: 2, kernel: 1, out_channels: 2}]\n", ["reason: expected a one-line string"]),
    "defaults-unknown-field": (f"defaults: {{sets: [smoke]}}\ncases: [{GOOD}]\n", ["'defaults' to hold case fields only"]),
    "expect-error-but-valid": (f"cases: [{GOOD[:-1]}, expect: error}}]\n", ["case 'a' (#0)", "an invalid case because"]),
    "found-by-not-mapping": (f"cases: [{GOOD[:-1]}, found_by: torch}}]\n", ["found_by: expected a mapping"]),
}


@pytest.mark.parametrize("text,fragments", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_case_file_is_refused_naming_file_case_and_rule(tmp_path, text, fragments):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(CaseFileError) as info:
        load_file(path)
    message = str(info.value)
    assert message.startswith(str(path))
    for fragment in fragments:
        assert fragment in message


def test_file_above_the_size_limit_is_refused_unread(tmp_path, monkeypatch):
    monkeypatch.setattr(cat, "MAX_FILE_BYTES", 1000)
    path = tmp_path / "big.yaml"
    path.write_text(f"cases: [{GOOD}]\n" + "#" * 2000 + "\n")
    with pytest.raises(CaseFileError, match="at most 1000 bytes, received 2"):
        load_file(path)


def test_alias_bomb_is_refused_before_it_is_built(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}]"
              for i in range(1, 9)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\ncases: *a8\n")
    with pytest.raises(CaseFileError, match="alias bomb"):
        load_file(path)


def test_absurdly_deep_nesting_is_refused(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("cases: " + "[" * 50_000 + "]" * 50_000 + "\n")
    with pytest.raises(CaseFileError, match="nesting too deep"):
        load_file(path)


def test_catalogue_rules_require_a_reason(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(f"cases: [{GOOD.replace('reason: r, ', '')}]\n")
    assert load_file(path)[0].reason is None  # fine in a user's file
    with pytest.raises(CaseFileError, match="reason: expected a one-line reason"):
        cat.load_entries(path, strict=True)


def test_catalogue_rules_require_invalid_cases_to_say_expect_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(f"cases: [{GOOD.replace('height: 4', 'height: 2')}]\n")
    with pytest.raises(CaseFileError, match="case 'a' \\(#0\\): a valid case, but it is invalid \\(empty output"):
        cat.load_entries(path, strict=True)


def test_defaults_apply_to_every_entry_and_entries_override_them(tmp_path):
    path = tmp_path / "d.yaml"
    path.write_text("defaults: {op: depthwise_conv2d, batch: 1, kernel: 3, channel_multiplier: 2, dtype: float16}\n"
                    "cases:\n - {height: 5, width: 5, in_channels: 3}\n - {height: 4, width: 4, in_channels: 1, dtype: bfloat16}\n")
    a, b = load_file(path)
    assert (a.op, a.channel_multiplier, a.dtype, b.dtype) == ("depthwise_conv2d", 2, "float16", "bfloat16")
    assert a.name == a.id  # unnamed entries are named by their id


def test_regression_file_with_found_by_round_trips(tmp_path):
    case = Case(op="depthwise_conv2d", batch=1, height=9, width=9, in_channels=3, kernel=3, channel_multiplier=1,
                strides=2, dilations=2, padding="SAME")
    invalid = Case(op="conv2d", batch=1, height=2, width=2, in_channels=1, kernel=3, out_channels=1)
    found_by = {"backend": "tensorflow", "versions": {"tensorflow": "2.21.0"}, "date": "2026-11-27"}
    path = tmp_path / "reg.yaml"
    path.write_text(dump_cases([case, invalid], description="found by explore", found_by=found_by))
    entries = cat.load_entries(path)
    assert [e.case for e in entries] == [case, invalid]
    assert entries[0].found_by == found_by and entries[1].expect == "error"


def test_load_catalogue_reads_catalogue_then_regressions_and_refuses_duplicates(tmp_path, monkeypatch):
    (tmp_path / "cat").mkdir()
    (tmp_path / "reg").mkdir()
    (tmp_path / "cat" / "a.yaml").write_text(f"cases: [{GOOD}]\n")
    monkeypatch.setattr(cat, "CATALOGUE_DIR", tmp_path / "cat")
    monkeypatch.setattr(cat, "REGRESSIONS_DIR", tmp_path / "reg")
    reg = Case(op="conv2d", batch=1, height=6, width=6, in_channels=1, kernel=1, out_channels=1)
    (tmp_path / "reg" / "r.yaml").write_text(dump_cases([reg], found_by={"backend": "x"}))
    assert [c.id for c in load_catalogue()] == ["conv-n1-4x4x2-k3x3-o2-s1x1-d1x1-valid-f32", reg.id]
    (tmp_path / "reg" / "s.yaml").write_text(dump_cases([load_catalogue()[0].replace(name="again")]))
    with pytest.raises(CaseFileError, match=r"s\.yaml: case 'again' \(#0\): a unique case id.*a\.yaml"):
        load_catalogue()


# ---- sets and selectors ---------------------------------------------------------------


def test_smoke_set_is_small_and_spans_ops_dtypes_paddings_invalid_and_special():
    smoke = sets.select("smoke")
    assert 20 <= len(smoke) <= 35
    valid = [c for c in smoke if c.is_valid]
    assert {c.op for c in smoke} == set(OPS) and {c.dtype for c in smoke} == set(DTYPES)
    assert {padding_kind(c) for c in valid} == {"VALID", "SAME-even", "SAME-odd", "explicit"}
    assert any(not c.is_valid for c in smoke) and any(c.profile == "special" for c in smoke)
    assert max(math.prod(c.output_shape) * c.reduction_size for c in smoke) < 50_000


def test_default_set_is_catalogue_plus_sweep_with_full_coverage():
    default = sets.select("default")
    ids = [c.id for c in default]
    assert len(ids) == len(set(ids))
    assert ids[: len(ENTRIES)] == [e.case.id for e in ENTRIES]
    forward = [c for c in default if c.op in FORWARD_OPS]
    assert 450 <= len(forward) <= 600  # 400 before the size witnesses (cases/witnesses.py)
    cov = coverage(default)
    assert cov["t2"]["percent"] == 100.0 and cov["t3"]["percent"] == 100.0
    assert coverage(default, TRAINING_OPS)["t2"]["percent"] == 100.0  # pairs; full has the triples


def test_full_set_extends_the_default_set():
    default, full = sets.select("default"), sets.select("full")
    extra = len(witnesses())  # the same size witnesses in both
    assert len(full) - extra > 3 * (len(default) - extra)
    assert {c.id for c in default} <= {c.id for c in full}
    assert [c.id for c in full[: len(ENTRIES) + 200]] == [c.id for c in default[: len(ENTRIES) + 200]]


def test_selectors_by_file_id_name_glob_and_union(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(f"cases: [{GOOD}]\n")
    seed = BY_NAME["seed-conv2d-14x14x32-to-64"].case
    assert sets.select(str(path))[0].id == "conv-n1-4x4x2-k3x3-o2-s1x1-d1x1-valid-f32"
    assert sets.select(seed.id) == [seed]
    assert sets.select("seed-conv2d-14x14x32-to-64") == [seed]
    seeds = sets.select("seed-*")
    assert len(seeds) == 5 and all(c.name.startswith("seed-") for c in seeds)
    assert all(c.id.startswith("dw-") and c.dtype == "float16" for c in sets.select("dw-*-f16*"))
    invalid = sets.select("invalid-*")
    assert len(invalid) >= 7 and all(not c.is_valid for c in invalid)
    union = sets.select(f"seed-*,{seed.id},invalid-*")
    assert union == seeds + invalid  # union in order, the repeated seed only once


def test_dtypes_filter_keeps_only_those_dtypes():
    chosen = sets.select("default", dtypes=["bfloat16", "float16"])
    assert chosen and {c.dtype for c in chosen} == {"bfloat16", "float16"}


@pytest.mark.parametrize("selector,fragments", [
    ("nonsense", ["smoke, default, full", "'nonsense'", "no case id, name or glob"]),
    ("conv-*-f128", ["no case id, name or glob"]),
    ("missing/file.yaml", ["missing/file.yaml", "does not exist"]),
], ids=["unknown-word", "glob-matching-nothing", "missing-file"])
def test_unknown_selector_is_a_clear_error(selector, fragments):
    with pytest.raises(ValueError) as info:
        sets.select(selector)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_unknown_dtype_in_filter_is_a_clear_error():
    with pytest.raises(ValueError, match="dtypes: expected some of float32"):
        sets.select("smoke", dtypes=["float8"])


def test_catalogue_files_ship_with_the_package():
    assert cat.CATALOGUE_DIR == Path(sets.__file__).parent / "catalogue"
    assert len(cat.catalogue_files()) >= 5
    assert np.all([p.suffix == ".yaml" for p in cat.catalogue_files()])
