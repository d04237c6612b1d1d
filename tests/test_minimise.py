"""The minimiser: small, still-diverging, deterministic, bounded results."""

from __future__ import annotations

import time

import numpy as np
import pytest

from conformance.dtypes import np_dtype
from conformance.minimise import minimise, same_divergence
from conformance.oracle import convolve
from conformance.spec import Case


class OracleAdapter:
    """A correct backend (the oracle, rounded to the dtype); subclasses break it."""

    name = "oracle-for-tests"

    def version(self):
        return "0"

    def device(self):
        return "cpu"

    def supports(self, case):
        return None

    def run(self, case, x, filters, bias):
        if not case.is_valid:
            raise ValueError(case.invalid_reason)
        return self.convolve(case, x, filters, bias).astype(np_dtype(case.dtype))

    def convolve(self, case, x, filters, bias):
        return convolve(case, x, filters, bias)


class DepthwiseChannelOrder(OracleAdapter):
    """Puts depthwise output channel k*M+q at q*C+k (a real class of layout bug)."""

    def convolve(self, case, x, filters, bias):
        y = convolve(case, x, filters, bias)
        if case.op == "depthwise_conv2d":
            c, m = case.in_channels, case.channel_multiplier
            y = y.reshape(y.shape[:3] + (c, m)).swapaxes(3, 4).reshape(y.shape)
        return y


class FlippedKernel(OracleAdapter):
    """Correlates with the kernel rotated by 180 degrees (true convolution)."""

    def convolve(self, case, x, filters, bias):
        return convolve(case, x, np.ascontiguousarray(np.asarray(filters)[::-1, ::-1]), bias)


class AcceptsInvalid(OracleAdapter):
    """Returns zeros for invalid cases instead of raising."""

    def run(self, case, x, filters, bias):
        if not case.is_valid:
            return np.zeros(case.output_shape, np_dtype(case.dtype))
        return super().run(case, x, filters, bias)


class Raises(OracleAdapter):
    def run(self, case, x, filters, bias):
        raise RuntimeError("backend crashed")


class Unsupported(DepthwiseChannelOrder):
    def supports(self, case):
        return "float16 is not supported"


BIG_DW = Case(op="depthwise_conv2d", batch=4, height=20, width=17, in_channels=6, channel_multiplier=3, kernel=(3, 3),
              strides=(2, 2), padding="SAME", dtype="float16", data_format="NCHW", profile="wide_range", bias=True)
BIG_CONV = Case(op="conv2d", batch=3, height=16, width=18, in_channels=8, groups=2, out_channels=6, kernel=(3, 5),
                strides=(1, 2), dilations=(2, 1), padding=((1, 2), (0, 3)), dtype="bfloat16", data_format="NCHW",
                bias=True)


def test_depthwise_channel_order_bug_shrinks_to_one_pixel_two_channels_multiplier_two():
    diverges = same_divergence(DepthwiseChannelOrder(), "value")
    assert diverges(BIG_DW)
    small = minimise(BIG_DW, diverges)
    assert small.batch == 1 and small.height * small.width <= 4
    assert (small.in_channels, small.channel_multiplier) == (2, 2)  # the least that shows a channel order
    assert small.kernel == (1, 1) and small.strides == (1, 1) and small.padding == "VALID"
    assert (small.dtype, small.data_format, small.profile, small.bias) == ("float32", "NHWC", "normal", False)
    assert diverges(small)


def test_flipped_kernel_bug_keeps_a_kernel_that_is_not_symmetric():
    diverges = same_divergence(FlippedKernel(), "value")
    assert diverges(BIG_CONV)
    small = minimise(BIG_CONV, diverges)
    assert small.batch == 1 and small.height * small.width <= 4
    assert small.kernel in ((2, 1), (1, 2)) and small.in_channels == small.out_channels == 1
    assert diverges(small)


def test_minimising_is_deterministic():
    diverges = same_divergence(FlippedKernel(), "value")
    assert minimise(BIG_CONV, diverges) == minimise(BIG_CONV, diverges)


@pytest.mark.parametrize("case,expected", [
    (BIG_DW, "dw-n1-1x1x1-k1x1-m1-s1x1-d1x1-valid-f32"),
    (BIG_CONV, "conv-n1-1x1x1-k1x1-o1-s1x1-d1x1-valid-f32"),
], ids=["depthwise", "conv2d"])
def test_a_predicate_true_everywhere_reaches_the_simplest_case(case, expected):
    assert minimise(case, lambda c: True).id == expected


def test_an_invalid_case_stays_invalid():
    invalid = Case(op="conv2d", batch=2, height=6, width=7, in_channels=6, groups=4, out_channels=8, kernel=3,
                   dtype="float16")
    diverges = same_divergence(AcceptsInvalid(), "invalid_accepted")
    assert diverges(invalid)
    small = minimise(invalid, diverges)
    assert not small.is_valid and small.batch == 1 and diverges(small)
    assert small.in_channels < invalid.in_channels


def test_the_step_limit_bounds_predicate_calls():
    calls = []
    minimise(BIG_DW, lambda c: calls.append(c) or False, max_steps=7)
    assert len(calls) == 7


def test_the_time_limit_bounds_the_run():
    def slow(case):
        time.sleep(0.05)
        return True

    start = time.monotonic()
    result = minimise(BIG_CONV, slow, time_limit=0.3)
    assert time.monotonic() - start < 1.0
    assert result != BIG_CONV  # some progress was kept


@pytest.mark.parametrize("adapter,kind", [
    (OracleAdapter(), None), (Raises(), None), (Unsupported(), "value"), (DepthwiseChannelOrder(), "shape"),
], ids=["correct-backend", "exception", "unsupported", "other-kind"])
def test_same_divergence_is_false_unless_the_same_divergence_happens(adapter, kind):
    assert same_divergence(adapter, kind)(BIG_DW) is False


def test_nothing_to_minimise_returns_the_case_itself():
    assert minimise(BIG_DW, lambda c: False) is BIG_DW


def test_on_a_real_layer_the_expensive_dimensions_shrink_first():
    # ResNet-50 layer3 3x3 at batch 8: 924 M multiply-adds. Batch (8x) was the first move
    # once; the 256 input channels (256x) are the most expensive dimension, so they go first.
    from conformance.minimise import cost

    layer = Case(op="conv2d", batch=8, height=14, width=14, in_channels=256, kernel=3, out_channels=256,
                 padding=((1, 1), (1, 1)))
    tried = []
    one_step = minimise(layer, lambda c: tried.append(c) or True, max_steps=1)
    assert tried == [one_step] and one_step.in_channels == 1 and one_step.batch == 8
    assert cost(one_step) * 100 < cost(layer)
    few = minimise(layer, lambda c: True, max_steps=6)
    assert cost(few) * 10**5 < cost(layer), few.id


def test_a_divergence_of_one_dtype_keeps_that_dtype_and_profile():
    """A float64-only subnormal flush stays a float64 subnormal case: the card shows what it is about."""
    from conformance.dtypes import flush_subnormals

    class FlushesFloat64(OracleAdapter):
        def convolve(self, case, x, filters, bias):
            if case.dtype == "float64":
                x, filters = flush_subnormals(np.asarray(x), "float64"), flush_subnormals(np.asarray(filters), "float64")
            return convolve(case, x, filters, bias)

    case = Case(op="conv2d", batch=2, height=7, width=6, in_channels=3, out_channels=2, kernel=3, dtype="float64",
                profile="subnormal")
    diverges = same_divergence(FlushesFloat64(), "subnormal_flush")
    assert diverges(case)
    small = minimise(case, diverges)
    assert (small.dtype, small.profile) == ("float64", "subnormal"), small.id
    assert small.batch * small.height * small.width < case.batch * case.height * case.width


def test_a_kept_field_changes_only_where_the_divergence_persists_with_its_original_value():
    # Diverges in float64 only with a kernel of 2 or more, in float32 always: shrinking the
    # kernel in float32 after switching would give a case whose float64 twin passes.
    def diverges(c):
        return c.dtype == "float32" or (c.dtype == "float64" and min(c.kernel) >= 2)

    case = Case(op="conv2d", batch=1, height=6, width=6, in_channels=2, out_channels=2, kernel=3, dtype="float64")
    small = minimise(case, diverges)
    assert diverges(small) and diverges(small.replace(dtype="float64")), small.id
