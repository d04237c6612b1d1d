"""The vocabulary of findings: predicates evaluable on any case, canonical text, plain words;
and the moves experiments make along one parameter (conformance.axes)."""

from __future__ import annotations

import pytest

from conformance import axes
from conformance.predicate import Atom, Predicate, features, parse, validity
from conformance.spec import Case

DW = Case(op="depthwise_conv2d", batch=1, height=9, width=9, in_channels=3, kernel=3, channel_multiplier=2,
          strides=2, dilations=2)
CONV = Case(op="conv2d", batch=1, height=7, width=6, in_channels=11, kernel=3, out_channels=4)

TEXTS = ["op = depthwise_conv2d and stride >= 2 and dilation >= 2", "op = conv2d and per_group_channels % 8 = 3",
         "op = conv2d and K >= 2305 and K % 256 != 0", "dtype in {float16, bfloat16}", "dtype != float32",
         "dtype = bfloat16 and bias", "not bias and out_w = 1", "kernel_h = 3 and kernel_w <= 3",
         "validity in {groups_exceed_in_channels, groups_not_dividing_in_channels}", "true"]


@pytest.mark.parametrize("text", TEXTS)
def test_text_parses_back_to_itself(text):
    assert parse(text).text() == text


def test_equal_conjunctions_have_equal_text_whatever_the_order():
    atoms = [Atom("dilation", ">=", 2), Atom("op", "in", ("depthwise_conv2d",)), Atom("stride", ">=", 2)]
    assert Predicate(atoms).text() == Predicate(reversed(atoms)).text() == TEXTS[0]


def test_bounds_on_one_feature_tighten_and_meet_as_equality():
    p = Predicate([Atom("kernel_h", ">=", 2), Atom("kernel_h", ">=", 3), Atom("kernel_h", "<=", 3)])
    assert p.text() == "kernel_h = 3"


def test_a_numeric_atom_is_false_where_its_feature_has_no_value():
    assert features(CONV)["multiplier"] is None
    assert not parse("multiplier >= 1").holds(CONV) and parse("multiplier >= 1").holds(DW)


def test_a_predicate_without_a_validity_atom_covers_valid_cases_only():
    invalid = CONV.replace(groups=2)
    assert validity(invalid) == "groups_not_dividing_in_channels"
    assert not parse("op = conv2d").holds(invalid)
    assert parse("validity = groups_not_dividing_in_channels").holds(invalid)


def test_dilation_counts_only_on_axes_wider_than_one_tap():
    assert features(DW.replace(kernel=(3, 1), dilations=(1, 5)))["dilation"] == 1
    assert features(DW.replace(kernel=(3, 1), dilations=(5, 1)))["dilation"] == 5


@pytest.mark.parametrize("text, words", [
    (TEXTS[0], "depthwise_conv2d with strides > 1 and dilations > 1"),
    (TEXTS[2], "conv2d with K (products per output) >= 2305 and not a multiple of 256"),
    (TEXTS[3], "convolution with dtype float16 or bfloat16"),
    (TEXTS[8], "invalid convolution with groups > in_channels or groups not dividing in_channels"),
], ids=["depthwise", "split-k", "dtypes", "invalid"])
def test_words_read_as_a_title(text, words):
    assert parse(text).words() == words


@pytest.mark.parametrize("text", ["op = conv3d", "K >> 5", "K % 256 = zero", "stride >= two", "dtype in float16"])
def test_a_malformed_predicate_is_refused_naming_the_part(text):
    with pytest.raises(ValueError, match="expected atoms like"):
        parse(text)


@pytest.mark.parametrize("case", [DW, CONV, CONV.replace(groups=2), CONV.replace(height=1)], ids=lambda c: c.id)
def test_a_parameter_moved_to_neutral_keeps_the_validity_category(case):
    for p in axes.PARAMS:
        if p.name == "validity":
            continue
        for moved in p.neutrals(case) + p.alternatives(case):
            assert validity(moved) == validity(case), (p.name, moved.id)


def test_a_move_that_would_empty_a_valid_output_grows_the_input():
    moved = axes.LINES["kernel.hw"].move(CONV.replace(height=3, width=3), 5)
    assert moved is not None and moved.is_valid and moved.kernel == (5, 5)


def test_depthwise_converts_to_the_grouped_conv2d_that_computes_the_same():
    conv = axes.convert_op(DW)
    assert (conv.op, conv.groups, conv.in_channels, conv.out_channels) == ("conv2d", 3, 3, 6)
    assert conv.output_shape == DW.output_shape and conv.reduction_size == DW.reduction_size


@pytest.mark.parametrize("category", ["valid", "empty_output", "groups_exceed_in_channels",
                                      "groups_not_dividing_in_channels", "groups_not_dividing_out_channels"])
def test_a_case_moves_to_each_validity_category(category):
    assert validity(axes.to_validity(CONV.replace(in_channels=4, out_channels=4), category)) == category


def test_solve_hits_a_feature_value_along_a_line():
    cases = axes.solve(CONV.replace(kernel=1), axes.LINES["in_channels"], "K", 2305)
    assert [c.reduction_size for c in cases] == [2304, 2305, 2306]


@pytest.mark.parametrize("atom, make_true", [(Atom("K", "%!=", 256), False), (Atom("dilation", ">=", 6), True),
                                             (Atom("op", "in", ("conv2d",)), True), (Atom("bias", "is"), True)],
                         ids=["residue", "bound", "op", "bias"])
def test_making_an_atom_true_or_false_keeps_its_feature_s_other_atoms(atom, make_true):
    keep = Predicate([atom, Atom("K", ">=", 2305)]) if atom.feature == "K" else Predicate([atom])
    start = CONV.replace(in_channels=300) if atom.feature == "K" else DW
    moved = axes.making(start, atom, make_true, keep)
    assert moved and all(atom.holds(features(c)) == make_true for c in moved)
    assert all(keep.without(atom).holds(c) for c in moved)


def test_roomy_gives_every_tap_real_input_and_a_few_outputs():
    c = axes.roomy(DW.replace(height=3, width=3, dilations=6, padding="SAME"), 4)
    eff_h, eff_w = c.geometry.effective_kernel
    assert c.height >= eff_h and c.width >= eff_w and min(c.output_shape[1:3]) >= 4
