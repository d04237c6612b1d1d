"""The oracle's training ops (conformance/adjoint.py through conformance/oracle.py) against
the loops of their formulas, exact rationals, and the adjoint identity."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from conformance.inputs import make_inputs
from conformance.oracle import reference
from conformance.spec import GRADIENT_OPS, Case
from tests.reference import training_reference

TRAINING_OPS = GRADIENT_OPS + ("separable_conv2d",)


def _case(op: str, **fields) -> Case:
    kw = dict(op=op, batch=2, height=7, width=6, in_channels=4, kernel=(3, 3))
    kw.update(fields)
    group = kw.pop("group", 2)
    if op.startswith("conv2d"):
        kw.update(out_channels=6, groups=group)
    else:
        kw.update(channel_multiplier=group)
        if op == "separable_conv2d":
            kw.update(out_channels=5, bias=True)
    return Case(**kw)


GEOMETRIES = [dict(strides=s, dilations=d, padding=p, kernel=k)
              for s, d, p, k in itertools.product([(1, 1), (2, 3), (3, 2)], [(1, 1), (2, 1)],
                                                  ["SAME", "VALID", ((2, 0), (1, 3))], [(3, 3), (2, 3)])]


def _label(g: dict) -> str:
    pad = g["padding"] if isinstance(g["padding"], str) else "explicit"
    return f"s{g['strides'][0]}x{g['strides'][1]}-d{g['dilations'][0]}x{g['dilations'][1]}-{pad}-k{g['kernel'][0]}x{g['kernel'][1]}"


@pytest.mark.parametrize("op", TRAINING_OPS)
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=_label)
def test_every_training_op_equals_the_loops_of_its_formula(op, geometry):
    case = _case(op, **geometry)
    if not case.is_valid:
        pytest.skip(case.invalid_reason)
    operands = make_inputs(case)
    ref = reference(case, *operands)
    assert ref.value.shape == case.output_shape
    want = training_reference(case, *operands)
    # float32 operands: exact products, float64 sums: the two agree to float64 rounding.
    assert np.all(np.abs(ref.value - want) <= 1e-13 * ref.magnitude + 1e-300)


@pytest.mark.parametrize("op", TRAINING_OPS)
def test_float64_training_ops_are_within_one_ulp_of_the_exact_rational_result(op):
    # wide_range values in float64: cancellation that a plain float64 sum gets wrong.
    case = _case(op, dtype="float64", profile="wide_range", strides=(2, 1), dilations=(1, 2), padding="SAME",
                 height=6, width=5)
    operands = make_inputs(case)
    exact = training_reference(case, *operands, exact=True)
    value = reference(case, *operands).value
    ulps = np.abs(value - exact) / np.spacing(np.abs(exact))
    assert np.max(ulps) <= 1.0


@pytest.mark.parametrize("family", ["conv2d", "depthwise_conv2d"])
@pytest.mark.parametrize("geometry", GEOMETRIES[::5], ids=_label)
def test_the_gradients_are_the_adjoints_of_the_forward_op(family, geometry):
    # <conv(x, w), dy> = <x, backprop_input(dy, w)> = <w, backprop_filter(x, dy)>, exactly:
    # small integers in float64 make every sum exact.
    forward = _case(family, profile="small_integers", dtype="float64", **geometry)
    if not forward.is_valid:
        pytest.skip(forward.invalid_reason)
    x, w, _ = make_inputs(forward)
    dy = np.random.default_rng(0).integers(-3, 4, size=forward.conv_output_shape).astype(np.float64)
    y = reference(forward, x, w).value
    dx = reference(forward.replace(op=family + "_backprop_input"), dy, w).value
    df = reference(forward.replace(op=family + "_backprop_filter"), x, dy).value
    assert np.sum(y * dy) == np.sum(x * dx) == np.sum(w * df)


def test_a_transposed_conv_with_output_padding_fills_the_unread_rows_with_zeros():
    # 8 rows, 3x3, stride 2, VALID: the forward op never reads the last row, so the gradient
    # there is 0 (the transposed conv's output_padding of 1).
    case = _case("conv2d_backprop_input", height=8, width=8, strides=(2, 2), padding="VALID")
    assert case.geometry.output_padding == (1, 1) and "op1x1" in case.id
    value = reference(case, *make_inputs(case)).value
    assert np.all(value[:, -1, :, :] == 0) and np.all(value[:, :, -1, :] == 0)
    assert np.any(value[:, -2, :, :] != 0)


def test_an_infinite_tap_makes_no_nan_from_the_inserted_zeros_but_says_the_alternative():
    case = _case("conv2d_backprop_input", strides=(2, 2), padding="SAME", group=1)
    dy, w = make_inputs(case)
    w = w.copy()
    w[1, 1, 0, 0] = np.inf
    ref = reference(case, dy, w)
    want = training_reference(case, dy, w)  # IEEE over the real terms only
    assert np.array_equal(np.isnan(ref.value), np.isnan(want))
    assert np.array_equal(ref.value[np.isinf(want)], want[np.isinf(want)])
    assert ref.alternative is not None and np.isnan(ref.alternative).sum() > np.isnan(ref.value).sum()


def test_a_gradient_case_takes_no_bias_and_the_oracle_wants_its_operands():
    with pytest.raises(ValueError, match="bias"):
        _case("conv2d_backprop_filter", bias=True)
    case = _case("conv2d_backprop_filter")
    with pytest.raises(ValueError, match="x, dy"):
        reference(case, make_inputs(case)[0])
