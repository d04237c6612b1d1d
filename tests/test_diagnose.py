"""diagnose() names the cause of a divergence, tested against deliberately broken backends.

Each broken backend is a plain NumPy function of (case, x, filters, bias) built on the
oracle with one specific mistake. The cases are chosen so that the mistakes are
distinguishable: asymmetric kernels, an odd SAME pad, non-square strides and dilations,
several channels and batch items.
"""

from __future__ import annotations

import numpy as np
import pytest

from conformance import diagnose_context
from conformance import oracle
from conformance.diagnose import NAMES, Diagnosis, diagnose
from conformance.dtypes import flush_subnormals, np_dtype, round_mantissa, round_to
from conformance.inputs import Inputs, make_inputs, special_filter_positions
from conformance.spec import Case

# conv2d, asymmetric 3x2 kernel; SAME pads are (1, 1) along H and (0, 1) along W (odd).
CONV = Case(op="conv2d", batch=2, height=9, width=8, in_channels=3, kernel=(3, 2), out_channels=4, padding="SAME")
DW = Case(op="depthwise_conv2d", batch=1, height=7, width=6, in_channels=3, kernel=(3, 3), channel_multiplier=2,
          padding="SAME")


def run_oracle(case: Case, x, w, b, **geometry):
    """The oracle under a (possibly altered) geometry, in float64."""
    g = dict(strides=case.strides, dilations=case.dilations, padding=case.padding)
    g.update(geometry)
    if case.op == "conv2d":
        return oracle.conv2d(x, w, groups=case.groups, bias=b, **g)
    return oracle.depthwise_conv2d(x, w, bias=b, **g)


def in_dtype(case: Case, v):
    return np.asarray(v, dtype=np.float64).astype(np_dtype(case.dtype))


# ---- broken backends ---------------------------------------------------------------

def channel_order_qc(case, x, w, b):
    y = run_oracle(case, x, w, b)
    c, m = case.in_channels, case.channel_multiplier
    return in_dtype(case, y.reshape(y.shape[:3] + (c, m)).swapaxes(3, 4).reshape(y.shape))


def flipped(*axes):
    def backend(case, x, w, b):
        return in_dtype(case, run_oracle(case, x, np.flip(w, axis=axes), b))
    return backend


def same_lower(case, x, w, b):
    (t, bo), (l, r) = case.geometry.pads
    return in_dtype(case, run_oracle(case, x, w, b, padding=((bo, t), (r, l))))


def with_geometry(**geometry):
    def backend(case, x, w, b):
        return in_dtype(case, run_oracle(case, x, w, b, **geometry))
    return backend


def bias_dropped(case, x, w, b):
    return in_dtype(case, run_oracle(case, x, w, None))


def rounded_inputs(rounder):
    def backend(case, x, w, b):
        return in_dtype(case, run_oracle(case, rounder(x), rounder(w), None if b is None else rounder(b)))
    return backend


def float16_accumulator(case, x, w, b):
    """Exact products, every partial sum rounded to float16 (one filter tap at a time)."""
    acc = np.zeros(case.output_shape, dtype=np.float16)
    for idx in np.ndindex(w.shape):
        tap = np.zeros_like(w, dtype=np.float64)
        tap[idx] = w[idx]
        term = run_oracle(case, x, tap, None)
        acc = (acc.astype(np.float64) + term).astype(np.float16)
    return in_dtype(case, acc)


def flushing(case, x, w, b):
    fl = lambda a: None if a is None else flush_subnormals(a, case.dtype)  # noqa: E731
    return in_dtype(case, flush_subnormals(run_oracle(case, fl(x), fl(w), fl(b)), case.dtype))


def constants_flushed(filters: bool):
    """What OpenVINO's CPU plugin does: subnormal weights (and a fused bias) flushed to zero,
    subnormal activations kept."""
    def backend(case, x, w, b):
        fl = lambda a: None if a is None else flush_subnormals(a, case.dtype)  # noqa: E731
        return in_dtype(case, run_oracle(case, x, fl(w) if filters else w, fl(b)))
    return backend


def nan_to_zero(case, x, w, b):
    y = run_oracle(case, x, w, b)
    return in_dtype(case, np.where(np.isnan(y), 0.0, y))


def top_row_wrong(case, x, w, b):
    y = run_oracle(case, x, w, b)
    y[:, 0] += 1.0
    return in_dtype(case, y)


def channel_wrong(k):
    def backend(case, x, w, b):
        y = run_oracle(case, x, w, b)
        y[..., k] = -y[..., k] + 0.5
        return in_dtype(case, y)
    return backend


def batch_item_wrong(n):
    def backend(case, x, w, b):
        y = run_oracle(case, x, w, b)
        y[n] = y[n] * 0.5 + 1.0
        return in_dtype(case, y)
    return backend


def tf_depthwise_strided_dilated(case, x, w, b):
    """TensorFlow 2.21's depthwise_conv2d with strides > 1 and dilations > 1 (stride 2):
    space-to-batch computes the stride-1 dilated output and keeps rows/cols r with r % 4 < 2."""
    full = run_oracle(case, x, w, b, strides=(1, 1))
    rows = [r for r in range(full.shape[1]) if r % 4 < 2]
    cols = [c for c in range(full.shape[2]) if c % 4 < 2]
    return in_dtype(case, full[:, rows][:, :, cols])


def cropped(case, x, w, b):
    return in_dtype(case, run_oracle(case, x, w, b)[:, 1:, :-1])


def nchw_output(case, x, w, b):
    return in_dtype(case, run_oracle(case, x, w, b).transpose(0, 3, 1, 2))


def computed_in_float32(case, x, w, b):
    f32 = lambda a: None if a is None else np.asarray(a, dtype=np.float32).astype(np.float64)  # noqa: E731
    return in_dtype(case, run_oracle(case, f32(x), f32(w), f32(b)).astype(np.float32))


def nan_leaks_into_a_finite_channel(case, x, w, b):
    # What a dense block-diagonal weight does: an Inf meets the zero weights of another group.
    # The special profile's first non-finite filter tap poisons one output channel; its
    # NaN/Inf leaks into a neighbouring channel that the profile keeps finite.
    y = run_oracle(case, x, w, b)
    poisoned = next(iter(special_filter_positions(case).values()))[0][-1]
    other = poisoned + 1 if poisoned + 1 < y.shape[-1] else poisoned - 1
    leak = ~np.isfinite(y[..., poisoned]) & np.isfinite(y[..., other])
    assert leak.any()
    y[..., other] = np.where(leak, np.nan, y[..., other])
    return in_dtype(case, y)


def with_subnormal_x_and_filters(case: Case) -> Inputs:
    """float32 inputs of a 2-group conv2d: group 0 has subnormal x and normal weights, group 1
    normal x and subnormal weights. A backend that keeps subnormal activations but flushes
    subnormal constants (group 1's outputs zero, group 0's subnormal) is then told apart
    from FTZ/DAZ (both groups zero)."""
    x, w, b = make_inputs(case)
    tiny = float(np.finfo(np.float32).tiny)
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    half_in, half_out = case.in_channels // 2, case.out_channels // 2
    x64[..., :half_in] = np.where(x64[..., :half_in] < 0, -1, 1) * 0.75 * tiny
    w64[..., half_out:] = np.where(w64[..., half_out:] < 0, -1, 1) * 0.625 * tiny
    return Inputs(x64.astype(x.dtype), w64.astype(w.dtype), b)


def scaled_inputs(case: Case, scale: float) -> Inputs:
    x, w, b = make_inputs(case)
    return Inputs((x.astype(np.float64) * scale).astype(x.dtype), w, b)


# ---- one broken backend per hypothesis ------------------------------------------------

CONV_S = Case(op="conv2d", batch=1, height=11, width=13, in_channels=2, kernel=(3, 2), out_channels=3, strides=(2, 3))
CONV_D = Case(op="conv2d", batch=1, height=12, width=12, in_channels=2, kernel=(3, 3), out_channels=3,
              dilations=(1, 2))
CONV_D_SAME = Case(op="conv2d", batch=1, height=10, width=11, in_channels=2, kernel=(3, 2), out_channels=3,
                   dilations=(2, 3), padding="SAME")
CONV_P = Case(op="conv2d", batch=1, height=8, width=7, in_channels=2, kernel=(3, 3), out_channels=3,
              padding=((0, 2), (1, 0)))
CONV_K72 = Case(op="conv2d", batch=2, height=6, width=6, in_channels=8, kernel=(3, 3), out_channels=4, padding="SAME")
CONV_K18 = Case(op="conv2d", batch=1, height=8, width=8, in_channels=2, kernel=(3, 3), out_channels=4)
DW_SD = Case(op="depthwise_conv2d", batch=1, height=9, width=10, in_channels=2, kernel=(3, 3), channel_multiplier=2,
             strides=(2, 2), dilations=(2, 2), padding="SAME")

SCENARIOS = [
    # (id, case, inputs or None for make_inputs, backend, expected hypothesis, phrase in the explanation)
    ("depthwise_channel_order", DW, None, channel_order_qc, "depthwise_channel_order", "q*C + k"),
    ("flipped_kernel", CONV, None, flipped(0, 1), "flipped_kernel", "flipped in both spatial axes"),
    ("flipped_kernel_h", CONV, None, flipped(0), "flipped_kernel_h", "along H only"),
    ("flipped_kernel_w", CONV, None, flipped(1), "flipped_kernel_w", "along W only"),
    ("same_split_swapped", CONV, None, same_lower, "same_split_swapped", "top/left"),
    ("strides_swapped", CONV_S.replace(strides=(1, 2)), None, with_geometry(strides=(2, 1)), "strides_swapped",
     "strides (2, 1) instead of (1, 2)"),
    ("stride_ignored_h", CONV_S, None, with_geometry(strides=(1, 3)), "stride_ignored_h", "along H was ignored"),
    ("stride_ignored_w", CONV_S, None, with_geometry(strides=(2, 1)), "stride_ignored_w", "along W was ignored"),
    ("dilations_swapped", CONV_D, None, with_geometry(dilations=(2, 1)), "dilations_swapped",
     "dilations (2, 1) instead of (1, 2)"),
    ("dilation_ignored_h-same-shape", CONV_D_SAME, None, with_geometry(dilations=(1, 3)), "dilation_ignored_h",
     "along H was ignored"),
    ("dilation_ignored_w-same-shape", CONV_D_SAME, None, with_geometry(dilations=(2, 1)), "dilation_ignored_w",
     "along W was ignored"),
    ("dilation_ignored_w-shape-changes", CONV_D, None, with_geometry(dilations=(1, 1)), "dilation_ignored_w",
     "along W was ignored"),
    ("dilation_ignored-both-axes", CONV_D_SAME, None, with_geometry(dilations=(1, 1)), "dilation_ignored",
     "ignored along both axes"),
    ("explicit_padding_max-both-sides", CONV_P, None, with_geometry(padding=((2, 2), (1, 1))),
     "explicit_padding_symmetric", "top 2, bottom 2, left 1, right 1"),
    ("explicit_padding_top-left-both-sides", CONV_P, None, with_geometry(padding=((0, 0), (1, 1))),
     "explicit_padding_symmetric", "top 0, bottom 0, left 1, right 1"),
    ("padding_ignored", CONV, None, with_geometry(padding="VALID"), "padding_ignored", "padding was ignored"),
    ("bias_ignored", CONV.replace(bias=True), None, bias_dropped, "bias_ignored", "without the bias"),
    ("reduced_precision_tf32", CONV_K72, None, rounded_inputs(lambda a: round_mantissa(a, 11)),
     "reduced_precision_tf32", "TF32"),
    ("reduced_precision_bfloat16", CONV_K72, None, rounded_inputs(lambda a: round_mantissa(a, 8)),
     "reduced_precision_bfloat16", "bfloat16"),
    # x of about 2**-20 is subnormal in float16 (few bits left) but keeps 11 bits in TF32.
    ("reduced_precision_float16", CONV_K72, 2.0**-20, rounded_inputs(lambda a: round_to(a, "float16")),
     "reduced_precision_float16", "float16 range"),
    ("float16_accumulation", CONV_K18, None, float16_accumulator, "float16_accumulation", "accumulation in float16"),
    ("subnormal_flush", CONV.replace(profile="subnormal"), None, flushing, "subnormal_flush", "flushed to zero"),
    # The `subnormal` profile's bias is all subnormal: flushing it looks like dropping it.
    ("subnormal_bias_flushed", CONV.replace(profile="subnormal", bias=True), None, constants_flushed(False),
     "subnormal_bias_flushed", "subnormal input values of x were kept"),
    ("subnormal_filters_flushed", Case(op="conv2d", batch=1, height=6, width=6, in_channels=4, kernel=(3, 3),
                                       out_channels=4, groups=2, padding="SAME"), "subnormal_x",
     constants_flushed(True), "subnormal_filters_flushed", "subnormal constants are flushed"),
    # Without subnormal activations, flushing the constants and flushing everything agree.
    ("subnormal_flush-weights-profile", CONV.replace(profile="subnormal_weights", bias=True), None,
     constants_flushed(True), "subnormal_flush", "flushed to zero"),
    ("nan_not_propagated", CONV.replace(profile="special"), None, nan_to_zero, "nan_not_propagated", "NaN or Inf"),
    ("border_only-top", CONV, None, top_row_wrong, "border_only", "the top border"),
    ("wrong_shape_subblock-tf-depthwise-stride-dilation", DW_SD, None, tf_depthwise_strided_dilated,
     "wrong_shape_subblock", "stride-(1, 1) output (strides ignored)"),
    # With a 9x9 input TensorFlow's rows/columns happen to give the right shape, wrong pixels.
    ("wrong_sampling-tf-depthwise-stride-dilation-9x9", DW_SD.replace(height=9, width=9), None,
     tf_depthwise_strided_dilated, "wrong_sampling", "rows 0-1, 4-5, 8 and columns 0-1, 4-5, 8 of the stride-(1, 1)"),
    ("wrong_shape_subblock-cropped", CONV, None, cropped, "wrong_shape_subblock", "sub-block of the true output"),
    ("channel_subset", CONV, None, channel_wrong(2), "channel_subset", "only 1 of 4 output channels are wrong: 2"),
    ("output_layout_nchw", CONV, None, nchw_output, "output_layout_nchw", "laid out NCHW"),
    ("float32_computation", CONV.replace(dtype="float64"), None, computed_in_float32, "float32_computation",
     "in float32"),
    ("nonfinite_leak", CONV_K72.replace(profile="special"), None, nan_leaks_into_a_finite_channel,
     "nonfinite_leak", "do not depend on it"),
    ("batch_subset", CONV, None, batch_item_wrong(1), "batch_subset", "only 1 of 2 batch items are wrong: 1"),
]


def _inputs(case, scale):
    if scale == "subnormal_x":
        return with_subnormal_x_and_filters(case)
    return make_inputs(case) if scale is None else scaled_inputs(case, scale)


@pytest.mark.parametrize("case, scale, backend, expected, phrase",
                         [s[1:] for s in SCENARIOS], ids=[s[0] for s in SCENARIOS])
def test_diagnose_names_the_cause_of_a_broken_backend(case, scale, backend, expected, phrase):
    inputs = _inputs(case, scale)
    y = backend(case, *inputs)
    d = diagnose(case, y, inputs)
    assert d.hypothesis == expected, (
        f"case {case.id}: expected hypothesis {expected!r}, received {d.hypothesis!r} ({d.explanation})")
    assert phrase in d.explanation, f"case {case.id}: expected {phrase!r} in the explanation, received {d.explanation!r}"


def test_every_hypothesis_has_a_broken_backend_that_pins_it():
    from test_training_downstream import DIAGNOSED  # the gradient ops' (tests/training_broken_adapters.py)

    pinned = {s[4] for s in SCENARIOS} | {d[2] for d in DIAGNOSED}
    assert set(NAMES) == pinned, f"expected every hypothesis pinned, unpinned: {sorted(set(NAMES) - pinned)}"


def test_tf_depthwise_bug_explanation_names_the_rows_and_columns_kept():
    inputs = make_inputs(DW_SD)
    d = diagnose(DW_SD, tf_depthwise_strided_dilated(DW_SD, *inputs), inputs)
    assert "rows 0-1, 4-5, 8" in d.explanation and "columns 0-1, 4-5, 8-9" in d.explanation, d.explanation


def test_border_only_names_only_the_borders_with_errors():
    inputs = make_inputs(CONV)
    d = diagnose(CONV, top_row_wrong(CONV, *inputs), inputs)
    assert not any(side in d.explanation for side in ("bottom", "left", "right")), d.explanation


@pytest.mark.parametrize("shape", ["right-shape", "wrong-shape"])
def test_random_garbage_is_unexplained(shape):
    inputs = make_inputs(CONV)
    out = CONV.output_shape if shape == "right-shape" else (2, 7, 5, 4)
    garbage = np.random.default_rng(7).standard_normal(out).astype(np.float32)
    d = diagnose(CONV, garbage, inputs)
    assert d.hypothesis is None, f"expected no hypothesis for garbage, received {d.hypothesis!r} ({d.explanation})"
    assert d.explanation.startswith("unexplained"), d.explanation


def test_unexplained_lists_where_the_errors_are():
    inputs = make_inputs(CONV)
    y = run_oracle(CONV, *inputs)
    rng = np.random.default_rng(1)
    y[0, 2:4, 3, :] = rng.standard_normal((2, 4)) + 5  # garbage in two pixels, every channel
    y[1, 5, 0, :] += 7  # and one pixel of the other batch item
    d = diagnose(CONV, in_dtype(CONV, y), inputs)
    assert d.hypothesis is None, d.explanation
    assert "12 of 576 elements" in d.explanation and "3 of 72 pixels (rows 2-3, 5, columns 0, 3)" in d.explanation, (
        d.explanation)


def test_checked_lists_the_hypotheses_tried_in_order_up_to_the_match():
    inputs = make_inputs(CONV_S)
    d = diagnose(CONV_S, with_geometry(strides=(2, 1))(CONV_S, *inputs), inputs)
    assert d.checked[-1] == "stride_ignored_w" and "stride_ignored_h" in d.checked, d.checked
    assert d.checked == [n for n in NAMES if n in d.checked], f"expected the order of NAMES, received {d.checked}"


def test_costly_recomputations_are_skipped_and_reported(monkeypatch):
    monkeypatch.setattr(diagnose_context, "MAX_MACS", 10)
    inputs = make_inputs(CONV_S)
    d = diagnose(CONV_S, with_geometry(strides=(1, 3))(CONV_S, *inputs), inputs)
    assert d.hypothesis is None and "not tested at this size (too costly): stride_ignored_h" in d.explanation, (
        d.explanation)
    assert any(s.startswith("stride_ignored_h (") for s in d.skipped) and d.to_dict()["skipped"] == d.skipped


def test_recomputations_with_too_many_outputs_are_skipped_and_listed(monkeypatch):
    monkeypatch.setattr(diagnose_context, "MAX_OUTPUTS", 1)
    inputs = make_inputs(CONV_S)
    d = diagnose(CONV_S, with_geometry(strides=(1, 3))(CONV_S, *inputs), inputs)
    assert d.skipped and all("outputs > 1" in s for s in d.skipped), d.skipped
    # The hypothesis that explains it without the bound could not be recomputed: it is named, not claimed.
    assert d.hypothesis != "stride_ignored_h" and any(s.startswith("stride_ignored_h (") for s in d.skipped)


def test_an_output_within_tolerance_has_nothing_to_diagnose():
    inputs = make_inputs(CONV)
    d = diagnose(CONV, in_dtype(CONV, run_oracle(CONV, *inputs)), inputs)
    assert d.hypothesis is None and "within tolerance" in d.explanation and d.checked == []


def test_to_dict_is_plain_data():
    inputs = make_inputs(CONV)
    d = diagnose(CONV, flipped(0, 1)(CONV, *inputs), inputs)
    assert d.to_dict() == {"hypothesis": "flipped_kernel", "explanation": d.explanation, "checked": d.checked,
                           "skipped": []}
    assert isinstance(d, Diagnosis)
