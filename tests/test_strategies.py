"""Hypothesis strategies: they build what they promise and shrink towards simple cases."""

from __future__ import annotations

import pytest
from hypothesis import find, given, settings

from conformance.cases.strategies import INVALID_KINDS, cases, invalid_cases, valid_cases

# Every health check on: a strategy that discarded examples would fail `filter_too_much`.
FAST = settings(max_examples=30, deadline=None, database=None, suppress_health_check=[])
# `find` without the example database, so minimal examples are recomputed every time. No
# deadline and a generous example count: on a loaded CI worker a rare condition (float16
# with a bias is about 1 in 8 draws) once went unfound, and the test failed for no fault.
NO_DB = settings(database=None, max_examples=1000, deadline=None)


@FAST
@given(valid_cases())
def test_valid_cases_are_valid_and_within_the_bounds(case):
    assert case.is_valid, case.invalid_reason
    assert case.batch <= 2 and case.in_channels <= 8 and case.output_channels <= 8 * 3
    assert max(case.height, case.width) <= 8 + 3 - 1
    assert max(case.kernel) <= 3 and max(case.strides) <= 3 and max(case.dilations) <= 2


@FAST
@given(valid_cases(ops=["depthwise_conv2d"], dtypes=["bfloat16"], profiles=["special"], data_formats=["NCHW"],
                   bias=True, max_spatial=4, max_channels=2))
def test_valid_cases_keep_to_the_choices_given(case):
    assert (case.op, case.dtype, case.profile, case.data_format, case.bias) == (
        "depthwise_conv2d", "bfloat16", "special", "NCHW", True)
    assert case.in_channels <= 2 and case.is_valid


@pytest.mark.parametrize("kind", INVALID_KINDS)
def test_invalid_cases_are_invalid_for_the_reason_asked(kind):
    expected = {"empty_output": "empty output", "groups_in": "does not divide in_channels",
                "groups_out": "does not divide out_channels", "filter_channels": "input channels per group"}[kind]

    @FAST
    @given(invalid_cases(kinds=[kind]))
    def check(case):
        assert case.invalid_reason is not None and expected in case.invalid_reason

    check()


@FAST
@given(cases(invalid=False))
def test_cases_without_invalid_are_all_valid(case):
    assert case.is_valid


def test_cases_mixes_valid_and_invalid():
    assert find(cases(), lambda c: not c.is_valid, settings=NO_DB).invalid_reason
    assert find(cases(), lambda c: c.is_valid, settings=NO_DB).is_valid


@pytest.mark.parametrize("strategy,condition,expected", [
    (valid_cases(), lambda c: True, "conv-n1-1x1x1-k1x1-o1-s1x1-d1x1-valid-f32"),
    (valid_cases(), lambda c: c.op == "depthwise_conv2d", "dw-n1-1x1x1-k1x1-m1-s1x1-d1x1-valid-f32"),
    (valid_cases(), lambda c: c.strides[0] > 1 and c.padding == "SAME", "conv-n1-1x1x1-k1x1-o1-s2x1-d1x1-same-f32"),
    (valid_cases(), lambda c: c.kernel[1] == 3 and c.dilations[1] == 2, "conv-n1-1x5x1-k1x3-o1-s1x1-d1x2-valid-f32"),
    (valid_cases(), lambda c: c.groups > 1, "conv-n1-1x1x2-k1x1-o2-g2-s1x1-d1x1-valid-f32"),
    (valid_cases(), lambda c: c.dtype == "float16" and c.bias, "conv-n1-1x1x1-k1x1-o1-s1x1-d1x1-valid-f16-bias"),
    (cases(), lambda c: True, "conv-n1-1x1x1-k1x1-o1-s1x1-d1x1-valid-f32"),
    (invalid_cases(), lambda c: True, "conv-n1-1x1x1-k2x1-o1-s1x1-d1x1-valid-f32"),
], ids=["anything", "depthwise", "strided-same", "dilated-wide-kernel", "grouped", "f16-bias", "mixed", "invalid"])
def test_examples_shrink_to_the_simplest_case(strategy, condition, expected):
    assert find(strategy, condition, settings=NO_DB).id == expected


def test_minimal_explicit_padding_example_has_the_smallest_asymmetric_pads():
    case = find(valid_cases(), lambda c: not isinstance(c.padding, str) and c.padding[0][0] != c.padding[0][1],
                settings=NO_DB)
    assert case.padding == ((0, 1), (0, 0)) and case.kernel == (1, 1) and case.batch == 1


@pytest.mark.parametrize("kwargs,field", [
    (dict(ops=["conv3d"]), "ops"), (dict(dtypes=[]), "dtypes"), (dict(max_spatial=0), "max_spatial"),
    (dict(bias="yes"), "bias"), (dict(profiles="loud"), "profiles"),
], ids=["unknown-op", "no-dtypes", "zero-spatial", "bias-not-bool", "unknown-profile"])
def test_bad_arguments_are_refused_when_the_strategy_is_built(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}: expected"):
        valid_cases(**kwargs)


def test_invalid_cases_refuses_unknown_kinds():
    with pytest.raises(ValueError, match="kinds: expected"):
        invalid_cases(kinds=["negative_stride"])


@FAST
@given(valid_cases(ops=["conv2d_backprop_input", "depthwise_conv2d_backprop_filter", "separable_conv2d"]))
def test_valid_cases_draw_training_ops_as_their_forward_cases(case):
    assert case.is_valid and case.op in ("conv2d_backprop_input", "depthwise_conv2d_backprop_filter", "separable_conv2d")
    assert not (case.bias and case.op != "separable_conv2d")  # a gradient case never has a bias
    if case.op == "separable_conv2d":
        assert case.channel_multiplier >= 1 and case.out_channels >= 1


def test_every_op_is_drawn_by_default():
    for op in ("conv2d_backprop_input", "depthwise_conv2d_backprop_input", "conv2d_backprop_filter",
               "depthwise_conv2d_backprop_filter", "separable_conv2d"):
        assert find(valid_cases(), lambda c, op=op: c.op == op, settings=NO_DB).op == op
