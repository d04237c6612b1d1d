"""conformance.oracle: the DESIGN.md formulas, computed beyond doubt.

Pinned here:
- the oracle equals the tests' reference convolution (tests/reference.py: the DESIGN.md
  formulas as explicit slices, no oracle code, exactly rounded sums) on random small cases
  of both ops, every padding kind, strides, dilations, groups, multipliers, dtypes,
  profiles and bias;
- the seed example's shapes and a few of its elements by hand formula;
- hand-computed tiny examples, chosen so that the plausible wrong conventions (channel
  order q*C + k, the SAME odd pixel on top/left, a flipped or transposed kernel, swapped
  strides) give different numbers;
- the compensated float64 path against exact rational arithmetic (within 1 ulp) on
  ill-conditioned data where plain BLAS summation is visibly worse, every exact path
  (sliced conv2d and depthwise, per-row matmul, Dot2, per-output and per-row fix-ups, the
  rational fallback) forced on adversarial inputs: cancellation, huge and tiny exponents,
  subnormals, zero rows, channels and images, K = 1 and K > 16,384;
- IEEE NaN/Inf semantics, including the padded-zero-times-Inf alternative.
"""

from __future__ import annotations

import contextlib
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance import exact as oracle_exact
from conformance import oracle, patches
from conformance.inputs import make_inputs
from conformance.spec import Case
from tests.reference import conv_reference

INF, NAN = math.inf, math.nan


# ---- against the tests' reference convolution ---------------------------------------------


def assert_matches_reference(case, got, expected, magnitude):
    """Equal NaN/Inf pattern; finite values within 4 K u of the magnitude (both sides round)."""
    assert got.shape == expected.shape, f"{case.id}: expected shape {expected.shape}, received {got.shape}"
    assert np.array_equal(np.isnan(got), np.isnan(expected)), f"{case.id}: NaN positions differ"
    inf = np.isinf(expected)
    assert np.array_equal(got[inf], expected[inf]), f"{case.id}: infinities differ"
    fin = np.isfinite(expected)
    allowed = 4 * (case.reduction_size + 1) * 2.0**-53 * magnitude[fin] + 1e-300
    err = np.abs(got[fin] - expected[fin])
    assert (err <= allowed).all(), f"{case.id}: max error {err.max()} beyond {allowed[err.argmax()]}"


# ---- random small cases: constructed valid, not filtered ---------------------------------


@st.composite
def small_cases(draw):
    op = draw(st.sampled_from(["conv2d", "depthwise_conv2d"]))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilations = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    kind = draw(st.sampled_from(["SAME", "VALID", "explicit"]))
    padding = kind if kind != "explicit" else tuple(
        (draw(st.integers(0, 3)), draw(st.integers(0, 3))) for _ in range(2))
    # Derive the input size from the effective kernel so the output is never empty.
    hw = []
    for axis in range(2):
        eff = (kernel[axis] - 1) * dilations[axis] + 1
        pads = 0 if kind != "explicit" else sum(padding[axis])
        hw.append(max(1, eff - pads) + draw(st.integers(0, 5)))
    common = dict(batch=draw(st.integers(1, 2)), height=hw[0], width=hw[1], kernel=kernel, strides=strides,
                  dilations=dilations, padding=padding, bias=draw(st.booleans()),
                  dtype=draw(st.sampled_from(["float32", "float16", "bfloat16", "float64"])),
                  profile=draw(st.sampled_from(["normal", "wide_range", "special", "small_integers"])))
    if op == "conv2d":
        groups = draw(st.integers(1, 3))
        return Case(op=op, in_channels=groups * draw(st.integers(1, 3)),
                    out_channels=groups * draw(st.integers(1, 3)), groups=groups, **common)
    return Case(op=op, in_channels=draw(st.integers(1, 4)), channel_multiplier=draw(st.integers(1, 3)), **common)


@settings(max_examples=30, deadline=None)
@given(small_cases())
def test_oracle_equals_the_reference_convolution(case):
    assert case.is_valid, case.invalid_reason
    x, w, b = make_inputs(case)
    ref = oracle.reference(case, x, w, b)
    assert ref.value.dtype == np.float64
    assert_matches_reference(case, ref.value, conv_reference(case, x, w, b), ref.magnitude)
    skipped = conv_reference(case, x, w, b, skip_padding=True)
    alternative = ref.value if ref.alternative is None else ref.alternative
    assert_matches_reference(case, alternative, skipped, ref.magnitude)


#: The oracle picks a summation strategy by shape (chunked im2col GEMM, per-tap or
#: per-channel GEMM depthwise); forcing each one on every random case proves that the
#: choice never changes the answer. Tiny chunk sizes force the chunk boundaries too.
STRATEGIES = {
    "im2col-chunked": dict(CHUNK_BYTES=64),
    "depthwise-gemm-chunked": dict(DW_GEMM_MIN_M=1, CHUNK_BYTES=64),
    "depthwise-taps-blocked": dict(DW_GEMM_MIN_M=10**9, DW_BLOCK_BYTES=64),
    # Float64 conv2d: the per-row exact matmul instead of the image-sliced one, and the
    # image-sliced one with every rejected output's row escalated instead of fixed alone.
    "exact-per-row": dict(FAST_EXP=-1),
    "exact-rows-escalated-chunked": dict(FIX_FRACTION=0.0, CHUNK_BYTES=64),
    "exact-one-row-bands": dict(EXACT_BAND_BYTES=1, CHUNK_BYTES=64),
    # Float64 depthwise: Dot2 per tap instead of the sliced path, and the sliced path's
    # per-channel GEMMs at every multiplier with tiny blocks.
    "exact-dot2-per-tap": dict(FAST_EXP=-1),
    "exact-depthwise-gemm-chunked": dict(DW_GEMM_MIN_M=1, CHUNK_BYTES=64),
}


@contextlib.contextmanager
def strategy(knobs):
    """Replace the oracle's knobs and helpers by name, each in the one module that defines it."""
    owners = {k: next(m for m in (oracle, oracle_exact, patches) if k in vars(m)) for k in knobs}
    saved = {k: getattr(owners[k], k) for k in knobs}
    try:
        for k, v in knobs.items():
            setattr(owners[k], k, v)
        yield
    finally:
        for k, v in saved.items():
            setattr(owners[k], k, v)


@pytest.mark.parametrize("name", STRATEGIES)
@settings(max_examples=15, deadline=None)
@given(case=small_cases())
def test_every_strategy_equals_the_reference_convolution(name, case):
    x, w, b = make_inputs(case)
    with strategy(STRATEGIES[name]):
        ref = oracle.reference(case, x, w, b)
    assert_matches_reference(case, ref.value, conv_reference(case, x, w, b), ref.magnitude)


@settings(max_examples=30, deadline=None)
@given(small_cases())
def test_magnitude_is_the_reference_over_absolute_values(case):
    x, w, b = make_inputs(case)
    ref = oracle.reference(case, x, w, b)
    finite = lambda a: np.where(np.isfinite(a), np.abs(a), 0.0)  # noqa: E731
    ax, aw = finite(x.astype(np.float64)), finite(w.astype(np.float64))
    ab = None if b is None else finite(b.astype(np.float64))
    expected = conv_reference(case, ax, aw, ab)
    fin = np.isfinite(ref.value)
    assert np.isinf(ref.magnitude[~fin]).all()
    np.testing.assert_allclose(ref.magnitude[fin], expected[fin], rtol=4 * case.reduction_size * 2.0**-53)


# ---- the seed example ------------------------------------------------------------------

SEED = dict(batch=2, height=14, width=14, in_channels=32, kernel=3, padding="SAME")


def test_seed_conv2d_shape_and_elements():
    case = Case(op="conv2d", out_channels=64, **SEED)
    x, w, _ = make_inputs(case)
    x, w = x.astype(np.float64), w.astype(np.float64)
    out = oracle.reference(case, x, w).value
    assert out.shape == (2, 14, 14, 64)
    # Interior element: every tap inside. SAME with a 3x3 kernel pads one pixel each side.
    want = sum(x[1, 5 + di - 1, 9 + dj - 1, q] * w[di, dj, q, 17] for di in range(3) for dj in range(3)
               for q in range(32))
    assert out[1, 5, 9, 17] == pytest.approx(want, rel=1e-12, abs=1e-12)
    # Corner: only di, dj in {1, 2} reach the input.
    want = sum(x[0, di - 1, dj - 1, q] * w[di, dj, q, 63] for di in (1, 2) for dj in (1, 2) for q in range(32))
    assert out[0, 0, 0, 63] == pytest.approx(want, rel=1e-12, abs=1e-12)


def test_seed_depthwise_shape_and_channel_order():
    case = Case(op="depthwise_conv2d", channel_multiplier=64, **SEED)
    x, w, _ = make_inputs(case)
    x, w = x.astype(np.float64), w.astype(np.float64)
    out = oracle.reference(case, x, w).value
    assert out.shape == (2, 14, 14, 2048)
    # Output channel k*64 + q is input channel k with multiplier q: (k, q) = (5, 7) -> 327.
    want = sum(x[1, 6 + di - 1, 2 + dj - 1, 5] * w[di, dj, 5, 7] for di in range(3) for dj in range(3))
    assert out[1, 6, 2, 5 * 64 + 7] == pytest.approx(want, rel=1e-12, abs=1e-12)
    # Bottom-right corner, (k, q) = (31, 63) -> 2047: only di, dj in {0, 1} reach the input.
    want = sum(x[0, 12 + di, 12 + dj, 31] * w[di, dj, 31, 63] for di in (0, 1) for dj in (0, 1))
    assert out[0, 13, 13, 2047] == pytest.approx(want, rel=1e-12, abs=1e-12)
    # The transposed order q*32 + k would put another product there.
    assert out[1, 6, 2, 7 * 32 + 5] != pytest.approx(out[1, 6, 2, 5 * 64 + 7], rel=1e-6)


# ---- hand-computed tiny examples (numbers worked out by hand) -------------------------

X3 = np.arange(1.0, 10.0).reshape(1, 3, 3, 1)  # [[1,2,3],[4,5,6],[7,8,9]]
F2 = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(2, 2, 1, 1)


def test_valid_2x2_on_3x3():
    # out[0,0] = 1*1 + 2*2 + 4*3 + 5*4 = 37, and so on.
    out = oracle.conv2d(X3, F2, padding="VALID")
    assert out[0, :, :, 0].tolist() == [[37.0, 47.0], [67.0, 77.0]]


def test_kernel_is_not_flipped():
    # A true convolution (flipped kernel) would give 1*4 + 2*3 + 4*2 + 5*1 = 23 at [0,0].
    out = oracle.conv2d(X3, F2, padding="VALID")
    assert out[0, 0, 0, 0] == 37.0


def test_kernel_is_not_transposed():
    # f[di, dj]: a transposed kernel [[1,3],[2,4]] would give 1 + 6 + 8 + 20 = 35 at [0,0].
    out = oracle.conv2d(X3, F2, padding="VALID")
    assert out[0, 0, 0, 0] == 37.0
    # A 1x2 kernel reads along the width: 1*1 + 2*10 = 21; along the height it would be 41.
    out = oracle.conv2d(X3, np.array([1.0, 10.0]).reshape(1, 2, 1, 1), padding="VALID")
    assert out.shape == (1, 3, 2, 1) and out[0, 0, 0, 0] == 21.0


def test_same_puts_the_odd_pixel_bottom_right():
    # SAME with a 2x2 kernel on 3x3: one pad pixel, at the bottom and right.
    out = oracle.conv2d(X3, F2, padding="SAME")
    assert out[0, :, :, 0].tolist() == [[37.0, 47.0, 3 * 1 + 6 * 3],
                                        [67.0, 77.0, 6 * 1 + 9 * 3],
                                        [7 * 1 + 8 * 2, 8 * 1 + 9 * 2, 9.0]]
    # Top/left padding would have given 4 * 1 = 4 at [0,0] instead.


@pytest.mark.parametrize("axis", ["height", "width"])
def test_same_odd_pixel_per_axis(axis):
    x = np.array([1.0, 2.0, 3.0, 4.0])
    f = np.array([1.0, 10.0])
    shape_x, shape_f = ((1, 4, 1, 1), (2, 1, 1, 1)) if axis == "height" else ((1, 1, 4, 1), (1, 2, 1, 1))
    out = oracle.conv2d(x.reshape(shape_x), f.reshape(shape_f), padding="SAME").ravel()
    # Pad after: [1+20, 2+30, 3+40, 4+0]; a pad before would give [10, 21, 32, 43].
    assert out.tolist() == [21.0, 32.0, 43.0, 4.0]


def test_stride_and_dilation():
    x = np.arange(25.0).reshape(1, 5, 5, 1)  # x[r, c] = 5r + c
    f = np.array([[1.0, 10.0], [100.0, 1000.0]]).reshape(2, 2, 1, 1)
    out = oracle.conv2d(x, f, strides=(2, 2), dilations=(2, 2), padding="VALID")
    # out[i,j] = x[2i,2j] + 10 x[2i,2j+2] + 100 x[2i+2,2j] + 1000 x[2i+2,2j+2]
    assert out[0, :, :, 0].tolist() == [[0 + 20 + 1000 + 12000, 2 + 40 + 1200 + 14000],
                                        [10 + 120 + 2000 + 22000, 12 + 140 + 2200 + 24000]]


def test_strides_are_height_then_width():
    x = np.arange(12.0).reshape(1, 3, 4, 1)  # x[r, c] = 4r + c
    out = oracle.conv2d(x, np.ones((1, 1, 1, 1)), strides=(2, 3), padding="VALID")
    # Rows 0, 2 and columns 0, 3; swapped strides would give rows 0 and columns 0, 2.
    assert out[0, :, :, 0].tolist() == [[0.0, 3.0], [8.0, 11.0]]


def test_explicit_asymmetric_padding():
    x = np.array([1.0, 2.0, 3.0]).reshape(1, 1, 3, 1)
    f = np.array([1.0, 10.0, 100.0]).reshape(1, 3, 1, 1)
    out = oracle.conv2d(x, f, padding=((0, 0), (2, 1)))
    # Padded row: [0, 0, 1, 2, 3, 0]; windows at 0..3.
    assert out.ravel().tolist() == [100.0, 10 + 200.0, 1 + 20 + 300.0, 2 + 30.0]


def test_grouped_conv_uses_its_own_input_channels():
    x = np.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 1, 4)
    f = np.array([[1.0, 10.0], [100.0, 1000.0]]).reshape(1, 1, 2, 2)  # f[0, 0, q, k]
    out = oracle.conv2d(x, f, groups=2)
    # k=0 is group 0 (channels 0, 1): 1*1 + 2*100; k=1 is group 1 (channels 2, 3): 3*10 + 4*1000.
    assert out.ravel().tolist() == [201.0, 4030.0]


def test_depthwise_channel_order_is_k_times_m_plus_q():
    x = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0]]).reshape(1, 2, 2, 2)
    f = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)  # f[0, 0, k, q]
    out = oracle.depthwise_conv2d(x, f)
    # Channel k*2 + q = x[..., k] * f[k, q]: [1*1, 1*2, 10*3, 10*4] at the first pixel;
    # the order q*C + k would give [1, 30, 2, 40].
    assert out[0, 0, 0].tolist() == [1.0, 2.0, 30.0, 40.0]
    assert out[0, 1, 1].tolist() == [4.0, 8.0, 120.0, 160.0]


def test_depthwise_same_strided_dilated():
    x = np.arange(1.0, 6.0).reshape(1, 1, 5, 1)  # [1, 2, 3, 4, 5]
    f = np.array([1.0, 10.0]).reshape(1, 2, 1, 1)
    out = oracle.depthwise_conv2d(x, f, strides=(1, 2), dilations=(1, 2), padding="SAME")
    # out = ceil(5/2) = 3; eff 3; total (3-1)*2 + 3 - 5 = 2 -> (1, 1): padded [0,1,2,3,4,5,0].
    # Windows at 0, 2, 4 of the padded row, taps at +0 and +2.
    assert out.ravel().tolist() == [0 + 20.0, 2 + 40.0, 4 + 0.0]


def test_bias_is_added_per_output_channel():
    out = oracle.depthwise_conv2d(np.ones((1, 1, 1, 2)), np.ones((1, 1, 2, 2)), bias=np.array([1.0, 2.0, 3.0, 4.0]))
    assert out.ravel().tolist() == [2.0, 3.0, 4.0, 5.0]


def test_convolve_uses_the_case_geometry():
    case = Case(op="conv2d", batch=1, height=3, width=3, in_channels=1, kernel=2, out_channels=1, padding="SAME")
    assert oracle.convolve(case, X3, F2)[0, 2, 2, 0] == 9.0


def test_bad_shapes_are_refused_with_the_shapes():
    with pytest.raises(ValueError, match=r"groups dividing"):
        oracle.conv2d(np.ones((1, 3, 3, 4)), np.ones((1, 1, 3, 2)))
    with pytest.raises(ValueError, match=r"C=4"):
        oracle.depthwise_conv2d(np.ones((1, 3, 3, 4)), np.ones((1, 1, 3, 2)))


def test_reference_refuses_invalid_case():
    case = Case(op="conv2d", batch=1, height=2, width=2, in_channels=1, kernel=3, out_channels=1)
    with pytest.raises(ValueError, match="invalid"):
        oracle.reference(case, np.ones((1, 2, 2, 1)), np.ones((3, 3, 1, 1)))


# ---- compensated float64 against exact rationals -----------------------------------------


def ill_conditioned(rng, n: int, outputs: int, cond_log2: int) -> tuple[np.ndarray, np.ndarray]:
    """x (n,) and w (n, outputs): each x . w[:, j] is about 2**-cond_log2 of sum |x w[:, j]|.

    Pairs of terms (a b, -(a t)(b / t)) nearly cancel while their rounding errors do not,
    and one last term sets the size of the exact result (n must be odd).
    """
    h = n // 2
    a = rng.standard_normal(h) * np.exp2(rng.integers(-20, 20, h))
    t = 1 + rng.random(h)
    b = rng.standard_normal((h, outputs)) * np.exp2(rng.integers(-20, 20, (h, outputs)))
    x = np.concatenate([a, a * t, [1.0]])
    w = np.concatenate([b, -b / t[:, None], np.zeros((1, outputs))])
    mass = np.abs(x[:, None] * w).sum(axis=0)
    w[-1] = rng.standard_normal(outputs) * mass * 2.0**-cond_log2
    order = rng.permutation(n)
    return x[order], w[order]


def exact_dot(x, y) -> float:
    """The correctly rounded value of the exact (rational) dot product."""
    return float(sum(Fraction(float(a)) * Fraction(float(b)) for a, b in zip(x, y)))


def ulps(got, exact):
    return np.abs(got - exact) / np.spacing(np.abs(exact))


def test_compensated_conv2d_is_within_one_ulp_of_exact():
    rng = np.random.default_rng(7)
    c, o = 15, 6
    # One output pixel (3x3 input, 3x3 VALID kernel): its K = 135 terms are x flattened (di, dj, q).
    xv, wv = ill_conditioned(rng, 9 * c, o, cond_log2=30)
    x, w = xv.reshape(1, 3, 3, c), wv.reshape(3, 3, c, o)
    exact = np.array([exact_dot(xv, wv[:, j]) for j in range(o)])
    comp = oracle.conv2d(x, w, compensated=True).ravel()
    plain = oracle.conv2d(x, w, compensated=False).ravel()
    assert ulps(comp, exact).max() <= 1.0, f"compensated: {ulps(comp, exact)} ulps"
    assert ulps(plain, exact).max() > 1000, f"plain BLAS should be visibly worse, got {ulps(plain, exact)} ulps"


def test_compensated_depthwise_is_within_one_ulp_of_exact():
    rng = np.random.default_rng(11)
    c = 8
    dots = [ill_conditioned(rng, 9, 1, cond_log2=25) for _ in range(c)]
    x = np.stack([d[0] for d in dots], axis=-1).reshape(1, 3, 3, c)
    w = np.stack([d[1][:, 0] for d in dots], axis=-1).reshape(3, 3, c, 1)
    exact = np.array([exact_dot(d[0], d[1][:, 0]) for d in dots])
    comp = oracle.depthwise_conv2d(x, w, compensated=True).ravel()
    plain = oracle.depthwise_conv2d(x, w, compensated=False).ravel()
    assert ulps(comp, exact).max() <= 1.0, f"compensated: {ulps(comp, exact)} ulps"
    assert ulps(plain, exact).max() > 1000, f"plain should be visibly worse, got {ulps(plain, exact)} ulps"


def exact_matmul(a, b) -> np.ndarray:
    """The correctly rounded exact (rational) product of two small float64 matrices."""
    fa = [[Fraction(float(v)) for v in row] for row in a]
    fb = [[Fraction(float(v)) for v in row] for row in b.T]
    return np.array([[float(sum(x * y for x, y in zip(r, c))) for c in fb] for r in fa])


@pytest.mark.parametrize("kind", ["normal", "wide-exponents", "huge-and-tiny", "integers"])
def test_exact_float64_conv2d_is_within_one_ulp_of_rationals(kind):
    # 24 output pixels x 5 channels, K = 3*3*12 = 108: each output one exact dot product.
    rng = np.random.default_rng({"normal": 1, "wide-exponents": 2, "huge-and-tiny": 3, "integers": 4}[kind])
    x = rng.standard_normal((1, 6, 8, 12))
    w = rng.standard_normal((3, 3, 12, 5))
    if kind == "wide-exponents":  # every element its own scale: slices exhaust slowly
        x *= np.exp2(rng.integers(-40, 40, x.shape))
        w *= np.exp2(rng.integers(-40, 40, w.shape))
    elif kind == "huge-and-tiny":  # scale exponents beyond the fast multiply path (ldexp)
        x *= np.exp2(rng.choice([-1000, 0, 500], x.shape))
        w *= np.exp2(rng.choice([-20, 0, 480], w.shape))
    elif kind == "integers":
        x, w = np.round(x * 8), np.round(w * 8)
    got = oracle.conv2d(x, w, padding="SAME", compensated=True)
    cols = np.stack([np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))[0, i:i + 3, j:j + 3].ravel()
                     for i in range(6) for j in range(8)])
    want = exact_matmul(cols, w.reshape(-1, 5)).reshape(got.shape)
    assert np.isfinite(want).all()
    assert ulps(got, want).max() <= 1.0, f"{kind}: {ulps(got, want).max()} ulps"
    if kind == "integers":
        assert np.array_equal(got, want)


def test_exact_float64_matmul_escalates_until_one_ulp_on_a_long_reduction():
    # K = 2,601 with a reduction that cancels to 2**-40 of its magnitude: the first slice
    # count cannot meet the bound for that row, which must be recomputed with more slices.
    rng = np.random.default_rng(5)
    xv, wv = ill_conditioned(rng, 2601, 3, cond_log2=40)
    a = np.vstack([xv, rng.standard_normal((3, 2601))])
    got = oracle_exact.exact_matmul(a, oracle_exact.SplitWeights(wv))
    want = exact_matmul(a, wv)
    assert ulps(got, want).max() <= 1.0, f"{ulps(got, want)} ulps"
    assert ulps(a @ wv, want).max() > 1000  # plain BLAS is visibly wrong here


def test_float64_cases_use_the_compensated_path():
    rng = np.random.default_rng(3)
    x, w = ill_conditioned(rng, 9, 1, cond_log2=25)
    case = Case(op="depthwise_conv2d", batch=1, height=3, width=3, in_channels=1, kernel=3, channel_multiplier=1,
                dtype="float64")
    value = oracle.reference(case, x.reshape(1, 3, 3, 1), w.reshape(3, 3, 1, 1)).value.ravel()
    assert ulps(value, np.array([exact_dot(x, w[:, 0])])).max() <= 1.0


# ---- NaN / Inf semantics ----------------------------------------------------------------


def line(values):
    return np.array(values, dtype=np.float64).reshape(1, 1, -1, 1)


def taps(values):
    return np.array(values, dtype=np.float64).reshape(1, -1, 1, 1)


def test_nan_propagates_only_to_windows_that_read_it():
    out = oracle.conv2d(line([1.0, NAN, 2.0, 3.0, 4.0]), taps([1.0, 1.0]), padding="VALID").ravel()
    assert np.isnan(out[:2]).all() and out[2:].tolist() == [5.0, 7.0]


def test_nan_times_zero_tap_is_nan():
    out = oracle.conv2d(line([NAN, 1.0]), taps([0.0, 1.0]), padding="VALID").ravel()
    assert np.isnan(out[0])


def test_opposite_infinities_meeting_give_nan():
    out = oracle.conv2d(line([INF, -INF, 1.0]), taps([1.0, 1.0]), padding="VALID").ravel()
    assert np.isnan(out[0]) and out[1] == -INF


def test_same_sign_infinities_stay_infinite():
    out = oracle.conv2d(line([INF, 1.0, -2.0]), taps([2.0, -1.0]), padding="VALID").ravel()
    # inf*2 + 1*(-1) = inf; 1*2 + (-2)*(-1) = 4.
    assert out.tolist() == [INF, 4.0]


def test_infinite_input_times_negative_tap_flips_sign():
    out = oracle.conv2d(line([INF, 1.0]), taps([-1.0, 1.0]), padding="VALID").ravel()
    assert out[0] == -INF


def test_zero_times_inf_is_nan():
    out = oracle.conv2d(line([INF, 1.0, 0.0, 2.0]), taps([0.0, 1.0]), padding="VALID").ravel()
    assert np.isnan(out[0]) and out[1] == 0.0 and out[2] == 2.0
    out = oracle.conv2d(line([1.0, 0.0, 3.0]), taps([1.0, INF]), padding="VALID").ravel()
    assert np.isnan(out[0]) and out[1] == INF


def test_nan_in_bias_and_inf_bias():
    out = oracle.conv2d(line([1.0, 2.0]), taps([1.0]), bias=np.array([INF])).ravel()
    assert out.tolist() == [INF, INF]
    out = oracle.conv2d(line([-INF, 2.0]), taps([1.0]), bias=np.array([INF])).ravel()
    assert np.isnan(out[0]) and out[1] == INF


def test_padded_zero_meeting_infinite_tap_has_a_finite_alternative():
    case = Case(op="conv2d", batch=1, height=1, width=3, in_channels=1, kernel=(1, 3), out_channels=1,
                padding="SAME", dtype="float64")
    x, f = line([1.0, 2.0, 3.0]), taps([INF, 1.0, 10.0])
    ref = oracle.reference(case, x, f)
    # Padded row [0, 1, 2, 3, 0]: out[0] reads the pad under the Inf tap -> 0 * Inf.
    assert np.isnan(ref.value[0, 0, 0, 0])
    assert ref.value.ravel()[1:].tolist() == [INF, INF]
    # An implementation that skips padded taps: 1*1 + 2*10 = 21 there, the rest unchanged.
    assert ref.alternative.ravel()[0] == 21.0
    assert ref.alternative.ravel()[1:].tolist() == [INF, INF]


def test_padded_zero_meeting_nan_tap_has_a_finite_alternative():
    case = Case(op="depthwise_conv2d", batch=1, height=1, width=2, in_channels=1, kernel=(1, 2),
                channel_multiplier=1, padding="SAME")
    # SAME pads one pixel on the right: the last window reads x[1] and the pad.
    ref = oracle.reference(case, line([1.0, 2.0]), taps([1.0, NAN]))
    assert np.isnan(ref.value).all()
    assert ref.alternative.ravel().tolist()[1] == 2.0


def test_no_alternative_without_padding_or_nonfinite_filter():
    case = Case(op="conv2d", batch=1, height=1, width=3, in_channels=1, kernel=(1, 2), out_channels=1)
    assert oracle.reference(case, line([1.0, 2.0, 3.0]), taps([INF, 1.0])).alternative is None
    same = case.replace(padding="SAME")
    assert oracle.reference(same, line([1.0, INF, 3.0]), taps([1.0, 1.0])).alternative is None


def test_magnitude_is_infinite_where_the_value_is_not_finite():
    case = Case(op="conv2d", batch=1, height=1, width=3, in_channels=1, kernel=(1, 2), out_channels=1)
    ref = oracle.reference(case, line([1.0, NAN, 3.0]), taps([1.0, -2.0]))
    assert np.isinf(ref.magnitude).all()
    ref = oracle.reference(case, line([1.0, 2.0, 3.0]), taps([1.0, -2.0]))
    assert ref.magnitude.ravel().tolist() == [5.0, 8.0]


# ---- the image-sliced exact conv2d (exact.ExactConv) against exact rationals --------------


def exact_conv(x, w, padding):
    """The correctly rounded exact conv2d (stride 1, no dilation, groups 1) in rationals."""
    kh, kw, c, o = w.shape
    (t, b), (l, r) = padding
    xp = np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)))
    n, hp, wp, _ = xp.shape
    oh, ow = hp - kh + 1, wp - kw + 1
    cols = np.stack([xp[bi, i:i + kh, j:j + kw].ravel() for bi in range(n) for i in range(oh) for j in range(ow)])
    return exact_matmul(cols, w.reshape(-1, o)).reshape(n, oh, ow, o)


@contextlib.contextmanager
def counting_exact_convs():
    """Yields a list that collects every exact.ExactConv the oracle builds (to see which path ran)."""
    made, init = [], oracle_exact.ExactConv.__init__

    def record(self, *args, **kwargs):
        init(self, *args, **kwargs)
        made.append(self)

    oracle_exact.ExactConv.__init__ = record
    try:
        yield made
    finally:
        oracle_exact.ExactConv.__init__ = init


def adversarial(kind, rng):
    """(x, w, padding) for one adversarial float64 conv2d."""
    x = rng.standard_normal((1, 5, 6, 7))
    w = rng.standard_normal((3, 3, 7, 4))
    pad = ((1, 1), (1, 1))
    if kind == "cancellation":  # every output of one pixel cancels to 2**-60 of its magnitude
        xv, wv = ill_conditioned(rng, 9 * 7, 4, cond_log2=60)
        x, w, pad = xv.reshape(1, 3, 3, 7), wv.reshape(3, 3, 7, 4), ((0, 0), (0, 0))
    elif kind == "deep-cancellation":  # beyond what slices resolve: the rational fallback
        # The cancelling pairs above plus a pair 2**180 times larger that cancels exactly:
        # the result is about 2**-240 of the magnitude.
        xv, wv = ill_conditioned(rng, 9 * 7 - 2, 4, cond_log2=60)
        big_x, big_w = rng.standard_normal() * 2.0**90, rng.standard_normal(4) * 2.0**90
        xv, wv = np.concatenate([xv, [big_x, big_x]]), np.vstack([wv, big_w, -big_w])
        order = rng.permutation(9 * 7)
        x, w, pad = xv[order].reshape(1, 3, 3, 7), wv[order].reshape(3, 3, 7, 4), ((0, 0), (0, 0))
    elif kind == "zero-rows":  # whole im2col rows of zeros, and one all-zero image
        x = np.concatenate([x, np.zeros_like(x)])
        x[0, :, :3] = 0.0
    elif kind == "wide-exponents":  # within the fast range, far from the image's max
        x *= np.exp2(rng.integers(-250, 250, x.shape))
        w *= np.exp2(rng.integers(-250, 250, w.shape))
    elif kind == "subnormals":  # outside the fast range: the per-row path
        x *= 2.0**-1060
    elif kind == "k1":  # K = 1: 1x1 kernel over one channel
        x, w, pad = x[..., :1], rng.standard_normal((1, 1, 1, 3)), ((0, 0), (0, 0))
    elif kind == "k-beyond-16384":  # K = 16,390: beta below the 2**53 limit's edge
        x, w, pad = rng.standard_normal((1, 1, 1, 16390)), rng.standard_normal((1, 1, 16390, 2)), ((0, 0), (0, 0))
    return x, w, pad


@contextlib.contextmanager
def counting_rational_dots():
    """Yields a list with one entry per output the oracle computed in exact rationals."""
    calls, rational = [], oracle_exact.rational_dot
    with strategy(dict(rational_dot=lambda a, b: calls.append(1) or rational(a, b))):
        yield calls


ADVERSARIAL = ["cancellation", "deep-cancellation", "zero-rows", "wide-exponents", "subnormals", "k1",
               "k-beyond-16384"]


@pytest.mark.parametrize("fix", ["per-output", "per-row"])
@pytest.mark.parametrize("kind", ADVERSARIAL)
def test_image_sliced_exact_conv2d_is_within_one_ulp_of_rationals(kind, fix):
    rng = np.random.default_rng(ADVERSARIAL.index(kind))
    x, w, pad = adversarial(kind, rng)
    knobs = dict(FIX_FRACTION=1.0 if fix == "per-output" else 0.0)
    with strategy(knobs), counting_exact_convs() as made, counting_rational_dots() as rational:
        got = oracle.conv2d(x, w, padding=pad, compensated=True)
    want = exact_conv(x, w, pad)
    assert np.isfinite(want).all()
    if kind == "deep-cancellation":  # what no slice count resolves went to rationals
        assert rational
    exact = want != 0
    assert ulps(got[exact], want[exact]).max(initial=0) <= 1.0, f"{kind}: {ulps(got[exact], want[exact]).max()} ulps"
    assert np.array_equal(got[~exact], want[~exact]), f"{kind}: exact zeros must stay zero"
    # The image-sliced path ran on everything within its exponent range with K > 16, and only there.
    assert bool(made) == (kind not in ("subnormals", "k1"))
    if kind in ("cancellation", "deep-cancellation"):  # the bound rejected outputs: they were recomputed
        assert sum(e.outputs_fixed + e.rows_escalated for e in made) > 0
        assert ulps(oracle.conv2d(x, w, padding=pad)[exact], want[exact]).max() > 1000  # plain BLAS is visibly off


def test_exact_dots_are_within_one_ulp_including_the_rational_fallback():
    rng = np.random.default_rng(21)
    pairs = [ill_conditioned(rng, 301, 1, cond_log2=c) for c in (0, 30, 60, 60)]
    a = np.stack([p[0] for p in pairs])
    b = np.stack([p[1][:, 0] for p in pairs])
    # The last pair also holds two terms 2**180 times larger that cancel exactly.
    a[-1, :2], b[-1, :2] = 2.0**90, np.array([1.0, -1.0]) * 2.0**90 * rng.standard_normal()
    with counting_rational_dots() as rational:
        got = oracle_exact.exact_dots(a, b)
    want = np.array([exact_dot(p, q) for p, q in zip(a, b)])
    assert ulps(got, want).max() <= 1.0, f"{ulps(got, want)} ulps"
    assert len(rational) == 1  # only that cancellation needs rationals


# ---- the sliced exact depthwise (exact.depthwise_exact) against exact rationals ----------


def exact_depthwise(x, w, padding):
    """The correctly rounded exact depthwise (stride 1, no dilation) in rationals."""
    kh, kw, c, m = w.shape
    (t, b), (l, r) = padding
    xp = np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)))
    n, hp, wp, _ = xp.shape
    out = np.empty((n, hp - kh + 1, wp - kw + 1, c * m))
    for bi, i, j in np.ndindex(out.shape[:3]):
        patch = xp[bi, i:i + kh, j:j + kw].reshape(-1, c)
        for k in range(c):
            for q in range(m):
                out[bi, i, j, k * m + q] = exact_dot(patch[:, k], w[:, :, k, q].ravel())
    return out


def adversarial_depthwise(kind, rng, m):
    x = rng.standard_normal((2, 5, 6, 3))
    w = rng.standard_normal((3, 3, 3, m))
    pad = ((1, 1), (1, 1))
    if kind == "cancellation":  # each channel's one window cancels to 2**-45 of its magnitude
        pairs = [ill_conditioned(rng, 9, m, cond_log2=45) for _ in range(3)]
        x = np.stack([p[0] for p in pairs], axis=-1).reshape(1, 3, 3, 3)
        w = np.stack([p[1] for p in pairs], axis=1).reshape(3, 3, 3, m)
        pad = ((0, 0), (0, 0))
    elif kind == "zero-channels-and-rows":  # a dead (all-zero) channel and zero rows
        x[..., 1] = 0.0
        x[:, :2] = 0.0
    elif kind == "wide-exponents":
        x *= np.exp2(rng.integers(-250, 250, x.shape))
        w *= np.exp2(rng.integers(-250, 250, w.shape))
    elif kind == "subnormals":  # outside the fast range: Dot2 per tap
        x *= 2.0**-1060
        w = np.round(w * 4)  # keeps the products exact, so Dot2 stays within one ulp
    elif kind == "k1":  # one tap
        w = w[:1, :1]
    return x, w, pad


DEPTHWISE_ADVERSARIAL = ["cancellation", "zero-channels-and-rows", "wide-exponents", "subnormals", "k1"]


@pytest.mark.parametrize("m", [1, 5])
@pytest.mark.parametrize("kind", DEPTHWISE_ADVERSARIAL)
def test_sliced_exact_depthwise_is_within_one_ulp_of_rationals(kind, m):
    rng = np.random.default_rng(DEPTHWISE_ADVERSARIAL.index(kind))
    x, w, pad = adversarial_depthwise(kind, rng, m)
    calls, exact_dots = [], oracle_exact.exact_dots
    with strategy(dict(exact_dots=lambda a, b: calls.append(len(a)) or exact_dots(a, b))):
        got = oracle.depthwise_conv2d(x, w, padding=pad, compensated=True)
    want = exact_depthwise(x, w, pad)
    nonzero = want != 0
    assert ulps(got[nonzero], want[nonzero]).max(initial=0) <= 1.0, f"{kind}: {ulps(got[nonzero], want[nonzero]).max()} ulps"
    assert np.array_equal(got[~nonzero], want[~nonzero]), f"{kind}: exact zeros must stay zero"
    if kind == "cancellation":  # the bound rejected those outputs: they were recomputed alone
        assert sum(calls) > 0
        plain = oracle.depthwise_conv2d(x, w, padding=pad)
        assert ulps(plain[nonzero], want[nonzero]).max() > 100  # plain float64 is visibly off


@pytest.mark.parametrize("kind", ["cancellation", "deep-cancellation", "subnormals", "k-beyond-16384"])
def test_per_row_exact_conv2d_is_within_one_ulp_of_rationals(kind):
    # The per-row path (the only one outside the fast range), forced on data in it too.
    rng = np.random.default_rng(ADVERSARIAL.index(kind))
    x, w, pad = adversarial(kind, rng)
    with strategy(dict(FAST_EXP=-1)), counting_exact_convs() as made, counting_rational_dots() as rational:
        got = oracle.conv2d(x, w, padding=pad, compensated=True)
    want = exact_conv(x, w, pad)
    exact = want != 0
    assert not made
    if kind == "deep-cancellation":
        assert rational
    assert ulps(got[exact], want[exact]).max(initial=0) <= 1.0, f"{kind}: {ulps(got[exact], want[exact]).max()} ulps"
    assert np.array_equal(got[~exact], want[~exact])
