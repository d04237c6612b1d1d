"""conformance.inputs: deterministic, dtype-exact inputs with the promised value profiles.

Pinned here: the arrays depend only on the case id (same twice, pinned values so that a
change of generator is noticed); they come in the case dtype and canonical shapes;
`small_integers` makes every result exact in the dtype whatever the summation order
(per-element bound sum |x||w| + |b| <= 2**p); `special` puts NaN/Inf/-0/subnormals
exactly where `special_positions` says; `subnormal` makes every x value a non-zero
subnormal; `wide_range` spans many binades and cannot overflow the dtype.
"""

from __future__ import annotations

import numpy as np
import pytest

from conformance import oracle
from conformance.dtypes import fmt, np_dtype
from conformance.inputs import make_inputs, special_filter_position, special_positions, wide_range_exponents
from conformance.spec import DTYPES, PROFILES, Case
from tests.reference import conv_terms

CONV = dict(op="conv2d", batch=2, height=6, width=5, in_channels=6, kernel=3, out_channels=4, groups=2,
            padding="SAME", bias=True)
DW = dict(op="depthwise_conv2d", batch=2, height=6, width=5, in_channels=3, kernel=(3, 2), channel_multiplier=2,
          strides=2, padding="SAME", bias=True)
OPS = {"conv2d": CONV, "depthwise": DW}


def as64(a):
    return np.asarray(a, dtype=np.float64)


# ---- determinism --------------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
def test_same_case_gives_same_arrays(profile):
    a = make_inputs(Case(**CONV, profile=profile))
    np.random.seed(1234)  # the global RNG must play no part
    b = make_inputs(Case(**CONV, profile=profile, name="same case, another name"))
    for u, v in zip(a, b):
        assert u.dtype == v.dtype and np.array_equal(as64(u), as64(v), equal_nan=True)


def test_different_cases_give_different_arrays():
    a = make_inputs(Case(**CONV))
    b = make_inputs(Case(**CONV).replace(dtype="float64"))
    assert not np.array_equal(as64(a.x), as64(b.x))


def test_pinned_values_float32():
    """If this fails the generator changed: every stored result and known-divergence
    manifest keyed by case id would silently judge different numbers."""
    case = Case(op="conv2d", batch=1, height=4, width=4, in_channels=3, kernel=3, out_channels=2, padding="SAME")
    x, w, b = make_inputs(case)
    assert b is None
    assert as64(x).ravel()[:4].tolist() == [1.5417362451553345, -0.07527359575033188, -0.5335690379142761,
                                             0.13828183710575104]
    assert as64(w).ravel()[:4].tolist() == [0.06909444183111191, 0.0048707034438848495, 0.33293357491493225,
                                             -0.3325110971927643]
    assert float(as64(x).sum()) == -4.773611254990101
    assert float(as64(w).sum()) == 0.26511875726282597


def test_pinned_values_bfloat16_depthwise_with_bias():
    case = Case(op="depthwise_conv2d", batch=1, height=4, width=4, in_channels=3, kernel=3, channel_multiplier=2,
                dtype="bfloat16", bias=True)
    x, w, b = make_inputs(case)
    assert as64(x).ravel()[:4].tolist() == [-0.4453125, -1.046875, 1.2265625, -0.08349609375]
    assert as64(w).ravel()[:4].tolist() == [-0.004486083984375, -0.47265625, 0.486328125, 0.166015625]
    assert as64(b).tolist() == [1.5703125, -0.703125, -0.94921875, -0.181640625, -1.0625, -0.490234375]


# ---- dtype and shapes -----------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("op", OPS)
def test_arrays_are_canonical_and_in_the_case_dtype(op, profile, dtype):
    case = Case(**OPS[op], profile=profile, dtype=dtype)
    x, w, b = make_inputs(case)
    dt = np_dtype(dtype)
    assert (x.dtype, w.dtype, b.dtype) == (dt, dt, dt)
    assert (x.shape, w.shape, b.shape) == (case.input_shape, case.filter_shape, case.bias_shape)
    assert x.flags.c_contiguous and w.flags.c_contiguous


def test_no_bias_array_without_bias():
    assert make_inputs(Case(**{**DW, "bias": False})).bias is None


# ---- small_integers: exact in the dtype, in any order ----------------------------------

# Large K with respect to the per-dtype budget, so the filter sparsification is exercised:
# float16 allows 511 taps of magnitude 4, bfloat16 255 taps of magnitude 1.
EXACT_CASES = {
    f"{op}-{dtype}": Case(**(dict(CONV, in_channels=128, height=5, width=5, groups=1) if op == "conv2d"
                             else dict(DW, kernel=(16, 17), height=18, width=18)), dtype=dtype,
                          profile="small_integers")
    for op in OPS for dtype in DTYPES
}


def sum_in_dtype(terms: np.ndarray, bias, dtype: str, order: np.ndarray) -> np.ndarray:
    """Recursive summation in the dtype itself, every product and addition rounded to it."""
    dt = np_dtype(dtype)
    acc = np.zeros(terms.shape[:-1], dtype=dt)
    for k in order:
        acc = (acc + terms[..., k].astype(dt)).astype(dt)
    if bias is not None:
        acc = (acc + bias).astype(dt)
    return as64(acc)


@pytest.mark.parametrize("case", EXACT_CASES.values(), ids=EXACT_CASES.keys())
def test_small_integers_sum_bound_holds_per_element(case):
    x, w, b = make_inputs(case)
    terms = conv_terms(case, x, w)
    assert np.array_equal(terms, np.rint(terms)), "products must be integers"
    bound = np.abs(terms).sum(axis=-1) + np.abs(as64(b))
    p = fmt(case.dtype).precision
    assert bound.max() <= 2.0**p, f"expected sum |x||w| + |b| <= 2**{p}, received {bound.max()}"
    # The bound must not be met trivially: the sums really use a good part of the budget
    # (16-bit types) or every tap (wider types, whose budget K never reaches here).
    if case.dtype in ("float16", "bfloat16"):
        assert bound.max() >= 2.0 ** (p - 3)
    else:
        assert (as64(w) != 0).mean() > 0.8


@pytest.mark.parametrize("case", EXACT_CASES.values(), ids=EXACT_CASES.keys())
def test_small_integers_result_is_the_same_in_the_dtype_in_any_order(case):
    x, w, b = make_inputs(case)
    exact = oracle.reference(case, x, w, b).value
    terms = conv_terms(case, x, w)
    k = terms.shape[-1]
    orders = {"forward": np.arange(k), "reverse": np.arange(k)[::-1],
              "shuffled": np.random.default_rng(0).permutation(k)}
    for name, order in orders.items():
        got = sum_in_dtype(terms, b, case.dtype, order)
        assert np.array_equal(got, exact), f"{case.id}: {name} summation in {case.dtype} is not exact"


# ---- special ----------------------------------------------------------------------------


def is_subnormal(v: np.ndarray, dtype: str) -> np.ndarray:
    a = np.abs(as64(v))
    return (a > 0) & (a < fmt(dtype).smallest_normal)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", OPS)
def test_special_values_sit_where_special_positions_says(op, dtype):
    case = Case(**OPS[op], profile="special", dtype=dtype)
    x, w, _ = make_inputs(case)
    x = as64(x)
    pos = special_positions(case)
    assert [len(pos[k]) for k in ("nan", "+inf", "-inf", "-0", "subnormal")] == [1, 1, 1, 4, 4]
    assert all(np.isnan(x[p]) for p in pos["nan"])
    assert all(x[p] == np.inf for p in pos["+inf"])
    assert all(x[p] == -np.inf for p in pos["-inf"])
    assert all(x[p] == 0 and np.signbit(x[p]) for p in pos["-0"])
    assert all(is_subnormal(x[p], dtype) for p in pos["subnormal"])
    # Nothing special anywhere else.
    others = np.ones(x.shape, dtype=bool)
    for kind in pos.values():
        for p in kind:
            others[p] = False
    assert np.isfinite(x[others]).all() and not is_subnormal(x[others], dtype).any()
    assert len({p for kind in pos.values() for p in kind}) == 11, "positions must be distinct"


@pytest.mark.parametrize("op", OPS)
def test_special_filter_has_one_inf_in_the_last_output_channel(op):
    case = Case(**OPS[op], profile="special")
    w = as64(make_inputs(case).filters)
    pos = special_filter_position(case)
    assert pos == (0, 0, case.filter_shape[2] - 1, case.filter_shape[3] - 1)
    assert w[pos] == np.inf
    assert np.isfinite(w).sum() == w.size - 1


def test_special_with_one_output_channel_keeps_filters_finite():
    case = Case(op="conv2d", batch=1, height=3, width=3, in_channels=2, kernel=2, out_channels=1, profile="special")
    assert special_filter_position(case) is None
    assert np.isfinite(as64(make_inputs(case).filters)).all()


def test_special_on_a_tiny_input_keeps_the_priority_order():
    case = Case(op="depthwise_conv2d", batch=1, height=2, width=2, in_channels=1, kernel=1, channel_multiplier=1,
                profile="special")
    pos = special_positions(case)
    assert {k: len(v) for k, v in pos.items()} == {"nan": 1, "+inf": 1, "-inf": 1, "-0": 1}
    x = as64(make_inputs(case).x)
    assert np.isnan(x).sum() == 1 and (x == np.inf).sum() == 1 and (x == -np.inf).sum() == 1


# ---- subnormal ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", OPS)
def test_subnormal_profile_x_is_all_nonzero_subnormal(op, dtype):
    # Enough elements that values rounding to zero (about 1% of bfloat16 draws before
    # the generator guarded against it) would certainly occur.
    case = Case(**{**OPS[op], "height": 16, "width": 16}, profile="subnormal", dtype=dtype)
    x = as64(make_inputs(case).x)
    assert is_subnormal(x, dtype).all(), (
        f"expected every x value non-zero and below {fmt(dtype).smallest_normal}, received "
        f"{int((x == 0).sum())} zeros and {int((np.abs(x) >= fmt(dtype).smallest_normal).sum())} normals")
    assert (x > 0).any() and (x < 0).any()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", OPS)
def test_subnormal_weights_profile_filters_and_bias_are_all_nonzero_subnormal(op, dtype):
    case = Case(**{**OPS[op], "height": 6, "width": 6, "bias": True}, profile="subnormal_weights", dtype=dtype)
    x, w, b = (as64(a) for a in make_inputs(case))
    for label, a in (("filters", w), ("bias", b)):
        assert is_subnormal(a, dtype).all(), f"expected every {label} value non-zero and subnormal in {dtype}"
    both = np.concatenate([w.ravel(), b])
    assert (both > 0).any() and (both < 0).any()
    assert not is_subnormal(x, dtype).any() and np.abs(x).max() <= 3.0


# ---- wide_range ---------------------------------------------------------------------------

WIDE_CASES = {
    f"{name}-{dtype}": Case(**kw, dtype=dtype, profile="wide_range")
    for dtype in DTYPES
    for name, kw in {"conv-k3x3x32": dict(op="conv2d", batch=1, height=6, width=6, in_channels=32, kernel=3,
                                          out_channels=8, bias=True),
                     "conv-k7x7x256": dict(op="conv2d", batch=1, height=8, width=8, in_channels=256, kernel=7,
                                           out_channels=4),
                     "dw-k3x3": dict(DW)}.items()
}


@pytest.mark.parametrize("case", WIDE_CASES.values(), ids=WIDE_CASES.keys())
def test_wide_range_spans_many_binades(case):
    x, w, _ = make_inputs(case)
    lo, hi = wide_range_exponents(case)
    assert hi - lo >= 10
    for name, a in (("x", as64(x)), ("filters", as64(w))):
        e = np.log2(np.abs(a[a != 0]))
        assert e.max() - e.min() >= hi - lo - 2, f"{case.id}: {name} spans only {e.max() - e.min():.1f} binades"
        assert (a > 0).any() and (a < 0).any()


@pytest.mark.parametrize("case", WIDE_CASES.values(), ids=WIDE_CASES.keys())
def test_wide_range_cannot_overflow_the_dtype(case):
    x, w, b = make_inputs(case)
    ref = oracle.reference(case, x, w, b)
    # Every partial sum, in any order, is bounded by the magnitude sum |x||w| + |b|.
    limit = fmt(case.dtype).max_finite
    assert np.isfinite(as64(x)).all() and np.isfinite(as64(w)).all()
    assert ref.magnitude.max() < limit, f"{case.id}: magnitude {ref.magnitude.max()} reaches {limit}"
    assert np.isfinite(ref.value.astype(np_dtype(case.dtype)).astype(np.float64)).all()


def test_special_profile_puts_exact_zeros_in_the_filters_away_from_the_infinite_tap():
    case = Case(op="conv2d", batch=1, height=5, width=5, in_channels=3, kernel=3, out_channels=4,
                padding="SAME", profile="special")
    from conformance.inputs import special_filter_position, special_filter_zeros
    _, w, _ = make_inputs(case)
    zeros = special_filter_zeros(case)
    assert 1 <= len(zeros) <= 4 and special_filter_position(case) not in zeros
    assert all(w[p] == 0 for p in zeros)
    assert {bool(np.signbit(w[p])) for p in zeros} == ({False, True} if len(zeros) > 1 else {False})
