"""conformance.spec: Case validation, invalid cases, stable ids, serialisation, geometry.

Pinned here: a malformed case cannot be built and the error names field, value and
rule; a well-formed invalid case can be built and says why it is invalid; ids are a
stable, injective function of the parameters; YAML/JSON round-trip; conv_geometry
implements TensorFlow's SAME rule (odd pixel bottom/right) and the VALID/explicit rules,
checked on hand-computed examples.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance.spec import MAX_ELEMENTS, MAX_MACS, Case, CaseError, conv_geometry

CONV = dict(op="conv2d", batch=1, height=5, width=5, in_channels=4, kernel=3, out_channels=2)
DW = dict(op="depthwise_conv2d", batch=1, height=5, width=5, in_channels=4, kernel=3, channel_multiplier=2)


# ---- malformed cases: refused, with field, value and rule ------------------------------

BAD_FIELDS = [
    # (base, changes, field, received value, fragment of the rule)
    (CONV, {"op": "conv3d"}, "op", "conv3d", "one of 'conv2d', 'depthwise_conv2d'"),
    (CONV, {"batch": 0}, "batch", 0, "integer >= 1"),
    (CONV, {"height": -3}, "height", -3, "integer >= 1"),
    (CONV, {"width": 2.5}, "width", 2.5, "integer >= 1"),
    (CONV, {"in_channels": True}, "in_channels", True, "integer >= 1"),
    (CONV, {"kernel": (3,)}, "kernel", (3,), "pair"),
    (CONV, {"kernel": (3, 0)}, "kernel", (3, 0), "integers >= 1"),
    (CONV, {"strides": (1, -2)}, "strides", (1, -2), "integers >= 1"),
    (CONV, {"dilations": "2"}, "dilations", "2", "pair"),
    (CONV, {"padding": "FULL"}, "padding", "FULL", "'SAME', 'VALID'"),
    (CONV, {"padding": ((1, -1), (0, 0))}, "padding", ((1, -1), (0, 0)), "non-negative"),
    (CONV, {"padding": (1, 2, 3)}, "padding", (1, 2, 3), "((top, bottom), (left, right))"),
    (CONV, {"dtype": "int8"}, "dtype", "int8", "one of 'float32'"),
    (CONV, {"data_format": "NCWH"}, "data_format", "NCWH", "one of 'NHWC', 'NCHW'"),
    (CONV, {"profile": "huge"}, "profile", "huge", "one of 'normal'"),
    (CONV, {"bias": "yes"}, "bias", "yes", "true or false"),
    (CONV, {"out_channels": None}, "out_channels", None, "for op 'conv2d'"),
    (CONV, {"out_channels": 0}, "out_channels", 0, "integer >= 1"),
    (CONV, {"groups": 0}, "groups", 0, "integer >= 1"),
    (CONV, {"channel_multiplier": 2}, "channel_multiplier", 2, "no channel_multiplier for op 'conv2d'"),
    (CONV, {"filter_channels": 0}, "filter_channels", 0, "integer >= 1"),
    (DW, {"channel_multiplier": None}, "channel_multiplier", None, "for op 'depthwise_conv2d'"),
    (DW, {"out_channels": 8}, "out_channels", 8, "no out_channels"),
    (DW, {"groups": 4}, "groups", 4, "groups = 1 for op 'depthwise_conv2d'"),
    (DW, {"filter_channels": 1}, "filter_channels", 1, "no filter_channels"),
]


@pytest.mark.parametrize(
    "base, changes, field, value, rule", BAD_FIELDS,
    ids=[f"{b['op']}-{f}={v!r}" for b, _, f, v, _ in BAD_FIELDS])
def test_malformed_case_error_names_field_value_and_rule(base, changes, field, value, rule):
    with pytest.raises(CaseError) as info:
        Case(**{**base, **changes})
    err = info.value
    assert isinstance(err, ValueError)
    assert err.field == field
    assert err.value == value
    assert rule in err.rule
    assert str(err) == f"{field}: expected {err.rule}, received {value!r}"


def test_from_dict_refuses_unknown_field_by_name():
    with pytest.raises(CaseError) as info:
        Case.from_dict({**CONV, "kernal": 3})
    assert info.value.field == "kernal"
    assert "known case field" in str(info.value)


def test_from_dict_names_missing_required_field():
    data = dict(CONV)
    del data["in_channels"]
    with pytest.raises(CaseError) as info:
        Case.from_dict(data)
    assert info.value.field == "in_channels"
    assert "required" in str(info.value)


def test_from_dict_refuses_non_mapping():
    with pytest.raises(CaseError, match=r"case: expected a mapping"):
        Case.from_dict(["conv2d"])


# ---- refused absurd sizes -----------------------------------------------------------


def test_tensor_above_max_elements_is_refused():
    with pytest.raises(CaseError) as info:
        Case(**{**CONV, "height": 100_000, "width": 100_000, "kernel": 1})
    assert info.value.field == "size"
    assert "input" in str(info.value.value) and str(MAX_ELEMENTS) in info.value.rule


def test_filter_above_max_elements_is_refused():
    with pytest.raises(CaseError) as info:
        Case(**{**CONV, "kernel": 1, "in_channels": 1 << 14, "out_channels": 1 << 14})
    assert info.value.field == "size"
    assert "filter" in str(info.value.value)


def test_too_many_multiply_adds_are_refused():
    # Every tensor is within MAX_ELEMENTS (2**26), but 2**26 outputs * 2304 products is not.
    with pytest.raises(CaseError) as info:
        Case(op="conv2d", batch=1, height=512, width=512, in_channels=256, kernel=3, out_channels=256, padding="SAME")
    assert info.value.field == "size"
    assert str(MAX_MACS) in info.value.rule


def test_largest_allowed_tensor_is_accepted():
    case = Case(op="depthwise_conv2d", batch=1, height=1 << 13, width=1 << 13, in_channels=1, kernel=1,
                channel_multiplier=1)
    assert case.is_valid


# ---- well-formed invalid cases: constructible, with a reason ------------------------

INVALID = {
    "empty-output-valid": (dict(CONV, height=2, kernel=3), "empty output"),
    "empty-output-dilated": (dict(DW, width=4, kernel=(1, 3), dilations=(1, 2)), "empty output"),
    "empty-output-explicit": (dict(CONV, height=1, width=1, kernel=3, padding=((0, 1), (1, 0))), "empty output"),
    "groups-not-dividing-in": (dict(CONV, in_channels=5, out_channels=4, groups=2), "does not divide in_channels 5"),
    "groups-not-dividing-out": (dict(CONV, in_channels=4, out_channels=3, groups=2), "does not divide out_channels 3"),
    "filter-channels-disagree": (dict(CONV, in_channels=4, filter_channels=3), "filter has 3 input channels"),
    "filter-channels-disagree-grouped": (dict(CONV, in_channels=4, groups=2, filter_channels=4), "in_channels / groups = 4/2"),
}


@pytest.mark.parametrize("kwargs, reason", INVALID.values(), ids=INVALID.keys())
def test_invalid_case_is_constructible_and_says_why(kwargs, reason):
    case = Case(**kwargs)
    assert not case.is_valid
    assert reason in case.invalid_reason


def test_empty_output_reason_states_the_geometry():
    case = Case(**dict(CONV, height=2, kernel=3))
    assert case.output_shape == (1, 0, 3, 2)
    assert "input 2x5" in case.invalid_reason and "gives 0x3" in case.invalid_reason


@pytest.mark.parametrize("kwargs", [CONV, DW, dict(CONV, in_channels=6, out_channels=9, groups=3),
                                    dict(CONV, filter_channels=4), dict(CONV, height=3, width=3, kernel=3)],
                         ids=["conv", "depthwise", "grouped", "matching-filter-channels", "kernel-equals-input"])
def test_valid_case_has_no_invalid_reason(kwargs):
    case = Case(**kwargs)
    assert case.is_valid and case.invalid_reason is None


def test_shapes_follow_the_canonical_layouts():
    conv = Case(**dict(CONV, in_channels=6, out_channels=9, groups=3, kernel=(3, 2), padding="SAME"))
    assert conv.input_shape == (1, 5, 5, 6)
    assert conv.filter_shape == (3, 2, 2, 9)
    assert conv.output_shape == (1, 5, 5, 9)
    assert conv.reduction_size == 3 * 2 * 2
    dw = Case(**dict(DW, kernel=(3, 2), bias=True))
    assert dw.filter_shape == (3, 2, 4, 2)
    assert dw.output_shape == (1, 3, 4, 8)
    assert dw.bias_shape == (8,)
    assert dw.reduction_size == 6


# ---- ids ----------------------------------------------------------------------------

GOLDEN_IDS = [
    (dict(op="conv2d", batch=2, height=14, width=14, in_channels=32, kernel=3, out_channels=64, padding="SAME"),
     "conv-n2-14x14x32-k3x3-o64-s1x1-d1x1-same-f32"),
    (dict(op="depthwise_conv2d", batch=2, height=14, width=14, in_channels=32, kernel=(3, 3), channel_multiplier=64,
          padding="same"),
     "dw-n2-14x14x32-k3x3-m64-s1x1-d1x1-same-f32"),
    (dict(op="conv2d", batch=1, height=7, width=9, in_channels=6, kernel=(3, 1), out_channels=4, groups=2,
          strides=(2, 1), dilations=(1, 3), padding=((1, 2), (0, 3)), dtype="bfloat16", data_format="NCHW",
          profile="small_integers", bias=True),
     "conv-n1-7x9x6-k3x1-o4-g2-s2x1-d1x3-p1.2.0.3-bf16-nchw-smallintegers-bias"),
    (dict(op="depthwise_conv2d", batch=1, height=13, width=13, in_channels=13, kernel=3, channel_multiplier=3,
          strides=2, padding="SAME", dtype="float16", profile="wide_range"),
     "dw-n1-13x13x13-k3x3-m3-s2x2-d1x1-same-f16-widerange"),
    (dict(op="conv2d", batch=1, height=5, width=5, in_channels=4, kernel=3, out_channels=2, filter_channels=3,
          dtype="float64", profile="subnormal"),
     "conv-n1-5x5x4-k3x3-o2-fc3-s1x1-d1x1-valid-f64-subnormal"),
]


@pytest.mark.parametrize("kwargs, expected", GOLDEN_IDS, ids=[e for _, e in GOLDEN_IDS])
def test_id_is_pinned(kwargs, expected):
    assert Case(**kwargs).id == expected


def test_id_ignores_name_and_reason():
    a = Case(**CONV)
    b = Case(**CONV, name="seed", reason="from the issue")
    assert a == b and a.id == b.id and hash(a) == hash(b)


def test_equivalent_spellings_give_one_id():
    a = Case(**dict(CONV, kernel=3, strides=2, dilations=1, padding="same"))
    b = Case(**dict(CONV, kernel=(3, 3), strides=[2, 2], dilations=(1, 1), padding="SAME"))
    assert a == b and a.id == b.id


# A strategy over well-formed cases (valid or not), small enough to build instantly.
_pairs = st.tuples(st.integers(1, 4), st.integers(1, 4))
_padding = st.one_of(st.sampled_from(["SAME", "VALID"]),
                     st.tuples(st.tuples(st.integers(0, 3), st.integers(0, 3)),
                               st.tuples(st.integers(0, 3), st.integers(0, 3))))
_common = dict(batch=st.integers(1, 3), height=st.integers(1, 9), width=st.integers(1, 9),
               in_channels=st.integers(1, 8), kernel=_pairs, strides=_pairs, dilations=_pairs,
               padding=_padding, dtype=st.sampled_from(["float32", "float16", "bfloat16", "float64"]),
               data_format=st.sampled_from(["NHWC", "NCHW"]),
               profile=st.sampled_from(["normal", "small_integers", "wide_range", "special", "subnormal"]),
               bias=st.booleans())
case_params = st.one_of(
    st.fixed_dictionaries(dict(_common, op=st.just("conv2d"), out_channels=st.integers(1, 8),
                               groups=st.integers(1, 4)),
                          optional=dict(filter_channels=st.integers(1, 8))),
    st.fixed_dictionaries(dict(_common, op=st.just("depthwise_conv2d"), channel_multiplier=st.integers(1, 4))),
)


@settings(max_examples=30, deadline=None)
@given(case_params, case_params)
def test_different_parameters_give_different_ids(a, b):
    ca, cb = Case(**a), Case(**b)
    assert (ca == cb) == (ca.id == cb.id), f"{a} and {b} give ids {ca.id} and {cb.id}"


FIELD_CHANGES = {
    "batch": 2, "height": 6, "width": 6, "in_channels": 8, "kernel": (3, 2), "out_channels": 4,
    "groups": 2, "strides": (1, 2), "dilations": (2, 1), "padding": ((0, 1), (0, 0)),
    "dtype": "float16", "data_format": "NCHW", "profile": "special", "bias": True, "filter_channels": 4,
}


@pytest.mark.parametrize("field, value", FIELD_CHANGES.items(), ids=FIELD_CHANGES.keys())
def test_every_parameter_appears_in_the_id(field, value):
    base = Case(**CONV)
    assert base.id != base.replace(**{field: value}).id


def test_channel_multiplier_appears_in_the_id():
    base = Case(**DW)
    assert base.id != base.replace(channel_multiplier=3).id


# ---- serialisation -------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(case_params, st.one_of(st.none(), st.text(max_size=20)))
def test_json_and_yaml_round_trip(params, name):
    case = Case(**params, name=name, reason=None if name is None else "why: " + name)
    for back in (Case.from_json(case.to_json()), Case.from_yaml(case.to_yaml())):
        assert back == case
        assert back.id == case.id
        assert (back.name, back.reason) == (case.name, case.reason)


def test_replace_revalidates():
    with pytest.raises(CaseError, match="strides"):
        Case(**CONV).replace(strides=(0, 1))


# ---- conv_geometry --------------------------------------------------------------------

# (in, kernel, stride, dilation) -> (out, (lo, hi)), worked by hand from TensorFlow's rule:
# out = ceil(in / s); total = max((out - 1) * s + (k - 1) * d + 1 - in, 0); lo = total // 2.
SAME_1D = {
    "in5-k3-s1": ((5, 3, 1, 1), (5, (1, 1))),
    "in5-k3-s2": ((5, 3, 2, 1), (3, (1, 1))),  # (3-1)*2+3-5 = 2
    "in6-k3-s2-odd-pixel-bottom": ((6, 3, 2, 1), (3, (0, 1))),  # 2*2+3-6 = 1
    "in4-k4-s1-odd-pixel-bottom": ((4, 4, 1, 1), (4, (1, 2))),  # 3
    "in6-k2-s1": ((6, 2, 1, 1), (6, (0, 1))),
    "in7-k1-s3": ((7, 1, 3, 1), (3, (0, 0))),  # 2*3+1-7 = 0
    "stride-exceeds-input-no-pad": ((3, 3, 5, 1), (1, (0, 0))),  # 0+3-3
    "stride-exceeds-input-pad-bottom": ((2, 3, 5, 1), (1, (0, 1))),  # 0+3-2 = 1
    "stride-exceeds-input-negative-total": ((2, 1, 4, 1), (1, (0, 0))),  # 0+1-2 < 0 -> 0
    "dilation-2": ((7, 3, 1, 2), (7, (2, 2))),  # eff 5: 6+5-7 = 4
    "dilation-3-odd": ((8, 2, 1, 3), (8, (1, 2))),  # eff 4: 7+4-8 = 3
    "dilation-and-stride": ((9, 3, 2, 2), (5, (2, 2))),  # eff 5: 4*2+5-9 = 4
    "kernel-larger-than-input": ((2, 5, 1, 1), (2, (2, 2))),  # 1+5-2 = 4
}


@pytest.mark.parametrize("args, expected", SAME_1D.values(), ids=SAME_1D.keys())
def test_same_padding_follows_tensorflow(args, expected):
    n, k, s, d = args
    out, pads = expected
    # One axis at a time, and both axes at once with the axes swapped, to catch mixed-up axes.
    g = conv_geometry((n, 1), (k, 1), (s, 1), (d, 1), "SAME")
    assert (g.out_h, g.pads[0]) == (out, pads)
    g = conv_geometry((1, n), (1, k), (1, s), (1, d), "SAME")
    assert (g.out_w, g.pads[1]) == (out, pads)
    assert g.effective_kernel == (1, (k - 1) * d + 1)


VALID_1D = {
    "in5-k3": ((5, 3, 1, 1), 3),
    "in5-k3-s2": ((5, 3, 2, 1), 2),
    "in6-k3-s2": ((6, 3, 2, 1), 2),
    "in7-k3-d2-s2": ((7, 3, 2, 2), 2),  # eff 5: (7-5)//2+1
    "stride-exceeds-input": ((3, 2, 5, 1), 1),
    "kernel-equals-input": ((4, 4, 1, 1), 1),
    "empty": ((2, 3, 1, 1), 0),
    "empty-by-dilation": ((4, 2, 1, 4), 0),  # eff 5
}


@pytest.mark.parametrize("args, out", VALID_1D.values(), ids=VALID_1D.keys())
def test_valid_padding_has_no_pads(args, out):
    n, k, s, d = args
    g = conv_geometry((n, n), (k, k), (s, s), (d, d), "VALID")
    assert (g.out_h, g.out_w, g.pads) == (out, out, ((0, 0), (0, 0)))


def test_explicit_asymmetric_pads_are_used_as_given():
    # h: 5 + 1 + 2 = 8, k 3, s 2 -> (8-3)//2+1 = 3; w: 4 + 0 + 3 = 7, k 2, s 1 -> 6.
    g = conv_geometry((5, 4), (3, 2), (2, 1), (1, 1), ((1, 2), (0, 3)))
    assert (g.out_h, g.out_w, g.pads) == (3, 6, ((1, 2), (0, 3)))


def test_explicit_pads_with_dilation():
    # h: 4 + 3 + 0 = 7, eff (3-1)*3+1 = 7 -> 1; w: 6 + 0 + 1 = 7, eff 3, s 3 -> (7-3)//3+1 = 2.
    g = conv_geometry((4, 6), (3, 2), (1, 3), (3, 2), ((3, 0), (0, 1)))
    assert (g.out_h, g.out_w, g.effective_kernel) == (1, 2, (7, 3))


def test_explicit_pads_too_small_give_empty_output():
    g = conv_geometry((2, 2), (4, 4), (1, 1), (1, 1), ((1, 0), (0, 0)))
    assert (g.out_h, g.out_w) == (0, 0)


def test_case_geometry_is_conv_geometry():
    case = Case(**dict(CONV, height=6, width=7, kernel=(3, 2), strides=(2, 3), dilations=(1, 2), padding="SAME"))
    assert case.geometry == conv_geometry((6, 7), (3, 2), (2, 3), (1, 2), "SAME")
    assert case.output_shape == (1, 3, 3, 2)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 40), k=st.integers(1, 7), s=st.integers(1, 6), d=st.integers(1, 4))
def test_same_windows_cover_the_input_with_the_odd_pixel_last(n, k, s, d):
    g = conv_geometry((n, n), (k, k), (s, s), (d, d), "SAME")
    lo, hi = g.pads[0]
    eff = (k - 1) * d + 1
    assert g.out_h == -(-n // s)
    assert hi - lo in (0, 1), "the odd pixel goes to the bottom/right"
    # The last window ends exactly at the padded edge (no wasted padding), or pads are 0.
    assert (g.out_h - 1) * s + eff == n + lo + hi or lo + hi == 0
