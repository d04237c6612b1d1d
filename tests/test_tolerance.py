"""conformance.tolerance + compare: the calibration that must hold (issue 2).

Correct implementations are emulated in NumPy from the exact products of every output
element (`tests.reference.conv_terms`), summed in the orders and precisions real kernels use:
- float32: products rounded to float32 (or fused: one rounding per multiply-add), summed
  in float32 forward, reverse, pairwise, in 8 SIMD lanes, in blocks of 64, and in a
  random order per element;
- float64: plain BLAS (the oracle's uncompensated path), forward, random order;
- float16 / bfloat16: exact products accumulated in float32 in any of those orders, then
  rounded once; or accumulated in the dtype itself, rounding every addition.
None of them may diverge, for K from 1 to 12,544, with the `normal` and `wide_range`
profiles. Wrong implementations must diverge on every one of those cases: float32 with
TF32 products (inputs rounded to 11 significand bits), float32 accumulated in float16,
and float64 computed in float32.

Also pinned: exact profiles flag a 1-ulp change; a flushing implementation on the
subnormal profile gets `subnormal_flush` while a keeping one passes; the kinds `shape`,
`nonfinite` and `invalid_accepted`; threshold/hard_bound/k_eff/is_exact values.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from conformance import oracle, tolerance
from conformance.compare import compare
from conformance.dtypes import flush_subnormals, fmt, np_dtype, round_mantissa
from conformance.inputs import make_inputs
from conformance.spec import Case
from tests.reference import conv_terms

F32, F16 = np.float32, np.float16

#: K = 1, 9, 288, 2304 and 12,544 products per output element; a few hundred to a few
#: thousand outputs each, so the maximum over elements is a realistic tail.
CALIBRATION_CASES = {
    "k1x1x1": dict(op="conv2d", batch=2, height=16, width=16, in_channels=1, kernel=1, out_channels=8),
    "dw-k3x3": dict(op="depthwise_conv2d", batch=2, height=16, width=16, in_channels=8, kernel=3,
                    channel_multiplier=2, padding="SAME"),
    "k3x3x32-bias": dict(op="conv2d", batch=1, height=10, width=10, in_channels=32, kernel=3, out_channels=16,
                         padding="SAME", bias=True),
    "k3x3x256": dict(op="conv2d", batch=1, height=6, width=6, in_channels=256, kernel=3, out_channels=16,
                     padding="SAME"),
    "k7x7x256": dict(op="conv2d", batch=1, height=12, width=12, in_channels=256, kernel=7, out_channels=16),
    # Many outputs where wide_range errors come closest to the threshold (K ~ 25 - 50).
    "dw-k5x5-many": dict(op="depthwise_conv2d", batch=1, height=68, width=68, in_channels=16, kernel=5,
                         channel_multiplier=1),
    "k3x3x4-many": dict(op="conv2d", batch=1, height=42, width=42, in_channels=4, kernel=3, out_channels=16),
    # A long reduction (K = 21,952, as in a late ResNet/VGG layer with a 7x7 kernel).
    "k7x7x448-long": dict(op="conv2d", batch=1, height=8, width=8, in_channels=448, kernel=7, out_channels=16),
}
CALIBRATION_DTYPES = ("float32", "float16", "bfloat16", "float64")
CALIBRATION_PROFILES = ("normal", "wide_range")


# ---- summation orders -------------------------------------------------------------------


def forward(t, dt):
    """Recursive summation in dtype `dt`, left to right, every addition rounded."""
    return np.add.accumulate(t.astype(dt), axis=-1)[..., -1]


def tree(t, dt):
    """Pairwise summation in dtype `dt` (every addition rounded; NumPy's own sum of
    float16 would secretly accumulate in float32)."""
    t = t.astype(dt)
    while t.shape[-1] > 1:
        if t.shape[-1] % 2:
            t = np.concatenate([t, np.zeros(t.shape[:-1] + (1,), dt)], axis=-1)
        t = (t[..., 0::2] + t[..., 1::2]).astype(dt)
    return t[..., 0]


def lanes(t, dt, width=8):
    """SIMD-style: `width` interleaved accumulators, then the lanes added together."""
    k = t.shape[-1]
    pad = -k % width
    t = np.concatenate([t, np.zeros(t.shape[:-1] + (pad,))], axis=-1).astype(dt)
    acc = np.add.accumulate(t.reshape(t.shape[:-1] + (-1, width)), axis=-2)[..., -1, :]
    return forward(acc, dt)


def blocked(t, dt, block=64):
    """GEMM-style k-blocking: sequential sums of blocks of `block`, then of the block sums."""
    k = t.shape[-1]
    pad = -k % block
    t = np.concatenate([t, np.zeros(t.shape[:-1] + (pad,))], axis=-1).astype(dt)
    partial = np.add.accumulate(t.reshape(t.shape[:-1] + (-1, block)), axis=-1)[..., -1]
    return forward(partial, dt)


def shuffled(t, dt, seed=0):
    """A different random order for every output element."""
    return forward(np.random.default_rng(seed).permuted(t, axis=-1), dt)


def fused_forward(t, dt):
    """Fused multiply-add: acc = round(acc + exact product), one rounding per term."""
    acc = np.zeros(t.shape[:-1])
    for k in range(t.shape[-1]):
        acc = (acc + t[..., k]).astype(dt).astype(np.float64)
    return acc


ORDERS = {"forward": forward, "reverse": lambda t, dt: forward(t[..., ::-1], dt), "pairwise": tree,
          "simd8": lanes, "blocked64": blocked, "shuffled": shuffled}


# ---- emulated implementations --------------------------------------------------------------


def finish(acc, bias, acc_dt, out_dt):
    """Add the bias in the accumulator's precision, then round to the output dtype."""
    acc = np.asarray(acc, dtype=acc_dt)
    if bias is not None:
        acc = (acc + np.asarray(bias, dtype=np.float64).astype(acc_dt)).astype(acc_dt)
    return acc.astype(np.float64).astype(out_dt)


def relaxed_blocks(t, dt, blocks=tolerance.RELAXED_ROUNDINGS + 1):
    """oneDNN-relaxed-style: `blocks` K-blocks summed in float32, the running total rounded to
    the 16-bit dtype after each block (RELAXED_ROUNDINGS roundings before the final one)."""
    k = t.shape[-1]
    size = -(-k // blocks)
    acc = np.zeros(t.shape[:-1])
    for start in range(0, k, size):
        part = forward(t[..., start:start + size], F32).astype(np.float64)
        acc = (acc + part).astype(F32).astype(dt).astype(np.float64)
    return acc


#: The contracts, strongest first, as a calibration emulation is labelled: the emulation
#: is correct under its own contract and every weaker one of its dtype.
def _passes_under(case, met, kind, level):
    chain = tolerance.chain(case.dtype)
    if met is None or kind == "rounding_bias":
        return False
    return chain.index(met) <= chain.index(tolerance.canonical(case, level))


def correct_emulations(case, x, w, b):
    """name -> (output in the case dtype, the strongest contract it is a correct implementation of)."""
    dt = np_dtype(case.dtype)
    terms = conv_terms(case, x, w)  # exact for float32 and narrower; rounded products for float64
    out = {}
    if case.dtype == "float32":
        rounded = terms.astype(F32).astype(np.float64)  # non-fused: each product rounded first
        for name, fn in ORDERS.items():
            out[f"f32 {name}"] = finish(fn(rounded, F32), b, F32, dt), "strict"
        out["f32 fma forward"] = finish(fused_forward(terms, F32), b, F32, dt), "strict"
        x64, w64 = x.astype(np.float64), w.astype(np.float64)
        tf32 = conv_terms(case, round_mantissa(x64, 11), round_mantissa(w64, 11))
        out["tf32 pairwise"] = finish(tree(tf32, F32), b, F32, dt), "tf32"  # TF32 rounds the GEMM inputs
        trunc = conv_terms(case, _truncate(x64, 11), _truncate(w64, 11))
        out["tf32-truncated blocked64"] = finish(blocked(trunc, F32), b, F32, dt), "tf32"
    elif case.dtype == "float64":
        out["f64 blas"] = oracle.convolve(case, x, w, b, compensated=False), "strict"
        out["f64 forward"] = finish(forward(terms, np.float64), b, np.float64, dt), "strict"
        out["f64 shuffled"] = finish(shuffled(terms, np.float64), b, np.float64, dt), "strict"
    else:
        for name, fn in ORDERS.items():
            out[f"f32-acc {name}"] = finish(fn(terms, F32), b, F32, dt), "strict"
            # The bias added as a separate operation in the dtype: one more rounding.
            out[f"f32-acc {name} separate-bias"] = finish(fn(terms, F32).astype(dt), b, dt, dt), "strict"
        out["relaxed blocks"] = finish(relaxed_blocks(terms, dt), b, dt, dt), "relaxed"
        # Accumulating in the 16-bit dtype itself: products and every addition rounded to it.
        own = terms.astype(dt).astype(np.float64)
        for name in ("forward", "pairwise", "shuffled"):
            out[f"own {name}"] = finish(ORDERS[name](own, dt), b, dt, dt), "any"
    return out


def _truncate(values, bits):
    """Round toward zero to `bits` significand bits (how some tensor cores convert to TF32)."""
    m, e = np.frexp(values)
    return np.ldexp(np.trunc(np.ldexp(m, bits)), e - bits)


def wrong_emulations(case, x, w, b):
    """name -> (output in the case dtype, the contract under which it must diverge)."""
    dt = np_dtype(case.dtype)
    out = {}
    if case.dtype == "float32":
        x64, w64 = x.astype(np.float64), w.astype(np.float64)
        tf32 = conv_terms(case, round_mantissa(x64, 11), round_mantissa(w64, 11))
        out["tf32"] = finish(tree(tf32, F32), b, F32, dt), "strict"
        many = math.prod(case.output_shape) >= MANY_OUTPUTS
        bf16 = conv_terms(case, round_mantissa(x64, 8), round_mantissa(w64, 8))
        out["bf16 products"] = finish(tree(bf16, F32), b, F32, dt), "tf32" if many else "strict"
        with np.errstate(over="ignore", invalid="ignore"):
            out["f16-acc"] = (finish(forward(conv_terms(case, x, w).astype(F32), F16), b, F16, dt),
                              "tf32" if tolerance.k_eff(case) >= LONG_FOR_TF32 else "strict")
    elif case.dtype == "float64":
        out["f32 compute"] = finish(tree(conv_terms(case, x.astype(F32), w.astype(F32)), F32), b, F32, dt), "any"
    elif tolerance.k_eff(case) > LONG_ENOUGH:
        # One level weaker than strict: accumulation in the dtype itself.
        own = conv_terms(case, x, w).astype(dt).astype(np.float64)
        out["own forward"] = finish(forward(own, dt), b, dt, dt), "strict"
    return out


#: Accumulating a 16-bit type in itself is flagged under `strict` once enough roundings
#: pile up: from this many terms on (with fewer, the errors can stay within one rounding).
LONG_ENOUGH = 8
#: bfloat16 products measure about 8 tf32-sigma per element: flagged under `tf32` where a
#: case has enough outputs for the tail to clear SIGMA_LIMIT.
MANY_OUTPUTS = 4000
#: float16 accumulation of float32 (11 bits per addition) and TF32 products (11 bits per
#: input) give errors of one size at small K: under `tf32` it is flagged from this K on.
LONG_FOR_TF32 = 256


@functools.lru_cache(maxsize=None)
def measure(name, dtype, profile):
    """(case, threshold, {emulation: (kind, max normalised error, max sigma error, met)},
    {correct emulation: its contract}, {wrong emulation: the contract it must fail}).

    One comparison per emulation (under `strict`): the strongest contract each meets tells
    the verdict under every contract (they nest). Cached per grid point.
    """
    case = Case(**CALIBRATION_CASES[name], dtype=dtype, profile=profile)
    x, w, b = make_inputs(case)
    ref = oracle.reference(case, x, w, b)
    results = {}
    correct = correct_emulations(case, x, w, b)
    wrong = wrong_emulations(case, x, w, b)
    for emu, (y, _) in {**correct, **{f"wrong {k}": v for k, v in wrong.items()}}.items():
        c = compare(case, y, ref, (x, w, b))
        results[emu] = (c.kind, c.figures["max_normalised_error"], c.figures["max_sigma_error"], c.precision_met)
    return (case, tolerance.threshold(case), results, {k: lvl for k, (_, lvl) in correct.items()},
            {f"wrong {k}": lvl for k, (_, lvl) in wrong.items()})


GRID = [(n, d, p) for n in CALIBRATION_CASES for d in CALIBRATION_DTYPES for p in CALIBRATION_PROFILES]


@pytest.mark.parametrize("level", tolerance.PRECISIONS)
@pytest.mark.parametrize("name, dtype, profile", GRID, ids=["-".join(g) for g in GRID])
def test_correct_implementations_do_not_diverge(name, dtype, profile, level):
    case, threshold, results, correct, _ = measure(name, dtype, profile)
    chain = tolerance.chain(dtype)
    mine = {emu for emu, lvl in correct.items()
            if chain.index(tolerance.canonical(case, lvl)) <= chain.index(tolerance.canonical(case, level))}
    failed = {emu: results[emu] for emu in mine if not _passes_under(case, results[emu][3], results[emu][0], level)}
    assert not failed, f"{case.id}: correct emulations diverged under `{level}`: {failed}"


@pytest.mark.parametrize("name, dtype, profile", GRID, ids=["-".join(g) for g in GRID])
def test_emulations_one_level_weaker_diverge(name, dtype, profile):
    case, threshold, results, _, wrong = measure(name, dtype, profile)
    passed = {emu: results[emu] for emu, lvl in wrong.items()
              if _passes_under(case, results[emu][3], results[emu][0], lvl)}
    assert not passed, f"{case.id}: wrong emulations passed: {passed}"


#: Correct implementations must stay well clear of the threshold (deterministic inputs
#: and orders, so this is a margin on the tail of a sample, not a flaky bound), and wrong
#: ones must clear it by far: otherwise a larger run would flip verdicts.
CORRECT_MARGIN = 0.6
WRONG_MARGIN = 2.0


@pytest.mark.parametrize("name, dtype, profile", GRID, ids=["-".join(g) for g in GRID])
def test_correct_implementations_keep_a_margin_below_the_threshold(name, dtype, profile):
    case, threshold, results, correct, _ = measure(name, dtype, profile)
    near = {emu: results[emu][1] for emu, lvl in correct.items()
            if lvl != "tf32" and results[emu][1] > CORRECT_MARGIN * threshold}
    assert not near, f"{case.id}: correct emulations above {CORRECT_MARGIN:.0%} of threshold {threshold:.3g}: {near}"


@pytest.mark.parametrize("name, dtype, profile", GRID, ids=["-".join(g) for g in GRID])
def test_correct_implementations_keep_a_margin_below_the_cancellation_aware_bound(name, dtype, profile):
    case, threshold, results, correct, _ = measure(name, dtype, profile)
    limit = tolerance.SIGMA_LIMIT
    near = {emu: results[emu][2] for emu, lvl in correct.items()
            if lvl != "tf32" and (results[emu][2] or 0) > CORRECT_MARGIN * limit}
    assert not near, f"{case.id}: correct emulations above {CORRECT_MARGIN:.0%} of {limit:g} sigma: {near}"


WRONG_GRID = [g for g in GRID if g[1] in ("float32", "float64")]


@pytest.mark.parametrize("name, dtype, profile", WRONG_GRID, ids=["-".join(g) for g in WRONG_GRID])
def test_wrong_implementations_clear_the_threshold_by_far(name, dtype, profile):
    case, threshold, results, _, wrong = measure(name, dtype, profile)
    # TF32's error relative to the magnitude shrinks like 1/sqrt(K): at K = 21,952 it
    # measures 125 against the cap of 100, flagged with less margin.
    close = {emu: results[emu][1] for emu, lvl in wrong.items() if lvl in ("strict", "any")
             and not (emu == "wrong tf32" and tolerance.k_eff(case) > 20000)
             and results[emu][1] is not None and results[emu][1] < WRONG_MARGIN * threshold}
    assert not close, f"{case.id}: wrong emulations below {WRONG_MARGIN}x threshold {threshold:.3g}: {close}"


def test_tf32_diverges_as_reduced_precision_on_a_large_reduction():
    # Right indices, too few bits: under `strict` it meets `tf32`, and says so.
    case, _, results, _, _ = measure("k7x7x256", "float32", "normal")
    assert results["wrong tf32"][0] == "precision" and results["wrong tf32"][3] == "tf32"


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_16_bit_accumulation_in_the_dtype_is_a_precision_divergence_naming_any(dtype):
    case = Case(**CALIBRATION_CASES["dw-k5x5-many"], dtype=dtype)
    x, w, b = make_inputs(case)
    own = conv_terms(case, x, w).astype(np_dtype(dtype)).astype(np.float64)
    y = forward(own, np_dtype(dtype)).astype(np_dtype(dtype))
    ref = oracle.reference(case, x, w, b)
    c = compare(case, y, ref, (x, w, b))
    assert (c.passed, c.kind) == (False, "precision") and c.precision_met in ("relaxed", "any"), c.message
    assert f"meets `{c.precision_met}`, not `strict`: consistent with " in c.message
    assert compare(case, y, ref, (x, w, b), "any").passed


# ---- exact profiles ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", CALIBRATION_DTYPES)
@pytest.mark.parametrize("op", ["conv2d", "depthwise_conv2d"])
def test_exact_profile_flags_a_one_ulp_change(op, dtype):
    kw = dict(kernel=3, padding="SAME", bias=True)
    kw.update(out_channels=8) if op == "conv2d" else kw.update(channel_multiplier=2)
    case = Case(op=op, batch=1, height=6, width=6, in_channels=4, dtype=dtype, profile="small_integers", **kw)
    x, w, b = make_inputs(case)
    ref = oracle.reference(case, x, w, b)
    dt = np_dtype(dtype)
    y = ref.value.astype(dt)
    assert compare(case, y, ref, (x, w, b)).passed
    i = int(np.argmax(np.abs(ref.value)))
    v = float(ref.value.ravel()[i])
    ulp = 2.0 ** (math.floor(math.log2(abs(v))) - fmt(dtype).precision + 1)  # one ulp of v in dtype
    bumped = y.copy().ravel()
    bumped[i] = np.float64(v + ulp).astype(dt)
    assert float(bumped[i]) == v + ulp, "the bumped value must be representable: exactly one ulp away"
    c = compare(case, bumped.reshape(y.shape), ref, (x, w, b))
    assert (c.passed, c.kind, c.figures["mismatched"]) == (False, "inexact", 1)


# ---- subnormals --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", CALIBRATION_DTYPES)
def test_subnormal_profile_flushing_versus_keeping(dtype):
    case = Case(op="conv2d", batch=1, height=6, width=6, in_channels=8, kernel=3, out_channels=4, padding="SAME",
                dtype=dtype, profile="subnormal", bias=True)
    x, w, b = make_inputs(case)
    ref = oracle.reference(case, x, w, b)
    dt = np_dtype(dtype)
    acc = np.float64 if dtype == "float64" else F32
    keeping = finish(tree(conv_terms(case, x, w), acc), b, acc, dt)
    c = compare(case, keeping, ref, (x, w, b))
    assert c.passed, f"{case.id}: a backend keeping subnormals diverged: {c.message}"
    # FTZ/DAZ: subnormal inputs read as zero, subnormal results written as zero.
    xf, bf = flush_subnormals(x.astype(np.float64), dtype), flush_subnormals(b.astype(np.float64), dtype)
    flushing = flush_subnormals(finish(tree(conv_terms(case, xf, w), acc), bf, acc, dt).astype(np.float64), dtype)
    c = compare(case, flushing.astype(dt), ref, (x, w, b))
    assert (c.passed, c.kind) == (False, "subnormal_flush"), c.message


# ---- other kinds -------------------------------------------------------------------------

SMALL = Case(op="conv2d", batch=1, height=5, width=5, in_channels=3, kernel=3, out_channels=4, padding="SAME")


def test_wrong_shape_is_kind_shape():
    x, w, b = make_inputs(SMALL)
    ref = oracle.reference(SMALL, x, w, b)
    nchw = ref.value.astype(F32).transpose(0, 3, 1, 2)
    c = compare(SMALL, nchw, ref, (x, w, b))
    assert (c.passed, c.kind) == (False, "shape")
    assert c.figures["expected_shape"] == [1, 5, 5, 4] and c.figures["actual_shape"] == [1, 4, 5, 5]


def test_nan_where_finite_is_kind_nonfinite():
    x, w, b = make_inputs(SMALL)
    ref = oracle.reference(SMALL, x, w, b)
    y = ref.value.astype(F32)
    y[0, 2, 3, 1] = np.nan
    c = compare(SMALL, y, ref, (x, w, b))
    assert (c.passed, c.kind, c.figures["nonfinite_mismatches"]) == (False, "nonfinite", 1)
    assert c.worst[0]["index"] == [0, 2, 3, 1] and c.worst[0]["actual"] == "nan"


def test_invalid_case_returning_an_output_is_invalid_accepted():
    case = SMALL.replace(in_channels=4, groups=3, out_channels=3)
    assert not case.is_valid
    c = compare(case, np.zeros((1, 5, 5, 3), F32), None)
    assert (c.passed, c.kind) == (False, "invalid_accepted")
    assert "does not divide" in c.message


# ---- the model's numbers --------------------------------------------------------------------


@pytest.mark.parametrize("k, bias, expected", [(1, False, 1 / (1 - 2.0**-24) + 2),  # the rigorous bound + 1
                                               (9, False, 9 / (1 - 9 * 2.0**-24) + 2),
                                               (25, False, 3 + 4 * math.sqrt(26)),
                                               (288, True, 3 + 4 * math.sqrt(290)),
                                               (586, False, 3 + 4 * math.sqrt(587)),
                                               (588, False, 100.0),
                                               (12544, False, 100.0)],
                         ids=["k1-rigorous", "k9-rigorous", "k25", "k288-bias", "k586", "k588-capped", "k12544-capped"])
def test_threshold_is_the_rigorous_bound_then_grows_like_sqrt_k_up_to_the_cap(k, bias, expected):
    case = Case(op="conv2d", batch=1, height=1, width=1, in_channels=k, kernel=1, out_channels=1, bias=bias)
    assert tolerance.k_eff(case) == k + bias
    assert tolerance.threshold(case) == pytest.approx(expected)


def test_hard_bound_is_gamma_k_plus_final_rounding():
    case = Case(op="conv2d", batch=1, height=1, width=1, in_channels=1000, kernel=1, out_channels=1,
                dtype="float16")
    n, u = 1000, 2.0**-11
    assert tolerance.hard_bound(case) == pytest.approx(n / (1 - n * u) + 1)


def test_exact_profile_has_zero_threshold():
    case = SMALL.replace(profile="small_integers")
    assert tolerance.is_exact(case) and tolerance.threshold(case) == 0.0
    assert not tolerance.is_exact(SMALL) and tolerance.threshold(SMALL) > 0


# ---- the cancellation-aware bound: where sum |x||w| is far larger than the result ----------


def _every_other_channel_dropped(case, x, w, b):
    terms = conv_terms(case, x, w)  # (N, OH, OW, O, K), K ordered (di, dj, q)
    kept = terms.reshape(terms.shape[:4] + (-1, case.in_channels))[..., ::2].sum(axis=(-1, -2))
    return (kept + b.astype(np.float64)).astype(x.dtype) if b is not None else kept.astype(x.dtype)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_the_terms_dropped_diverges_in_16_bit_types_at_large_k(dtype):
    # K = 576: the threshold in units of u * sum|x||w| (100) is 0.39 sum|x||w| in bfloat16,
    # more than |ref| itself; only the cancellation-aware bound sees this error.
    case = Case(op="conv2d", batch=1, height=6, width=6, in_channels=64, kernel=3, out_channels=8,
                padding="SAME", dtype=dtype)
    x, w, b = make_inputs(case)
    ref = oracle.reference(case, x, w, b)
    c = compare(case, _every_other_channel_dropped(case, x, w, b), ref, (x, w, b))
    assert not c.passed and c.kind in ("precision", "value"), (c.kind, c.message)
    assert c.figures["max_sigma_error"] > tolerance.SIGMA_LIMIT


def test_an_all_zero_output_diverges_as_a_wrong_value_not_as_a_rounding_bias():
    case = Case(op="conv2d", batch=1, height=4, width=4, in_channels=256, kernel=3, out_channels=4,
                padding="SAME", dtype="bfloat16")
    x, w, b = make_inputs(case)
    ref = oracle.reference(case, x, w, b)
    c = compare(case, np.zeros(case.output_shape, dtype=x.dtype), ref, (x, w, b))
    assert not c.passed and c.kind in ("precision", "value"), (c.kind, c.message)


@pytest.mark.parametrize("returned", ["float32", "float64"])
def test_an_output_in_another_dtype_diverges_as_dtype_and_still_reports_the_values(returned):
    case = SMALL.replace(dtype="float16")
    x, w, b = make_inputs(case)
    ref = oracle.reference(case, x, w, b)
    y = ref.value.astype(returned)
    c = compare(case, y, ref, (x, w, b))
    assert (c.passed, c.kind) == (False, "dtype")
    assert "float16" in c.message and returned in c.message and "within tolerance" in c.message


# ---- overflow -----------------------------------------------------------------------------

OVERFLOW = Case(op="conv2d", batch=1, height=6, width=6, in_channels=8, kernel=3, out_channels=4,
                padding="SAME", dtype="float16", profile="overflow")


def test_results_beyond_the_range_must_come_back_as_infinities_not_saturated():
    x, w, b = make_inputs(OVERFLOW)
    ref = oracle.reference(OVERFLOW, x, w, b)
    big = fmt("float16").max_finite
    assert (np.abs(ref.value) > big).any(), "the overflow profile must produce results beyond the range"
    with np.errstate(over="ignore"):
        rounded = ref.value.astype(F16)
    assert compare(OVERFLOW, rounded, ref, (x, w, b)).passed
    saturated = np.clip(ref.value, -big, big).astype(F16)
    c = compare(OVERFLOW, saturated, ref, (x, w, b))
    assert (c.passed, c.kind) == (False, "value")


def test_a_partial_sum_overflow_is_accepted_only_with_the_sign_a_partial_sum_can_reach():
    x, w, b = make_inputs(OVERFLOW)
    ref = oracle.reference(OVERFLOW, x, w, b)
    big = fmt("float16").max_finite
    finite = np.abs(ref.value) <= big
    positive_part = (ref.magnitude + ref.value) / 2  # the sum of the positive terms
    negative_part = (ref.magnitude - ref.value) / 2
    with np.errstate(over="ignore"):
        y = ref.value.astype(F16)
    plus_ok = finite & (positive_part > big * 1.01)
    plus_impossible = finite & (positive_part < big * 0.9)
    assert plus_ok.any() and plus_impossible.any()
    # Partial sums in float16 (`any`) can overflow; in float32 (`strict`) they cannot.
    partial = np.where(plus_ok, np.float16(np.inf), y)
    assert compare(OVERFLOW, partial, ref, (x, w, b), "any").passed
    c = compare(OVERFLOW, partial, ref, (x, w, b))
    assert (c.passed, c.kind) == (False, "precision") and c.precision_met in ("relaxed", "any"), c.message
    one = np.zeros(y.shape, bool)
    one[np.unravel_index(np.argmax(plus_impossible), y.shape)] = True
    for level in ("any", "strict"):
        c = compare(OVERFLOW, np.where(one, np.float16(np.inf), y), ref, (x, w, b), level)
        assert (c.passed, c.kind) == (False, "nonfinite")


# ---- kinds and subnormals after an evaluation with unseen backends ------------------------


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_a_negated_result_on_subnormal_inputs_diverges(dtype):
    case = Case(op="conv2d", batch=2, height=6, width=6, in_channels=26, kernel=5, out_channels=4, groups=2,
                padding="SAME", dtype=dtype, profile="subnormal")
    x, w, b = make_inputs(case)
    ref = oracle.reference(case, x, w, b)
    with np.errstate(over="ignore"):
        negated = (-ref.value).astype(np_dtype(dtype))
    c = compare(case, negated, ref, (x, w, b))
    assert not c.passed and c.kind not in ("rounding_bias", "subnormal_flush"), (c.kind, c.message)


def _tap0_twice(case, x, w, b):
    terms = conv_terms(case, x, w)
    y = terms.sum(axis=-1) + terms[..., 0]
    return (y if b is None else y + b.astype(np.float64)).astype(x.dtype)


def test_a_kernel_bug_beyond_the_cancellation_aware_bound_is_not_called_subnormal_flush():
    case = Case(op="conv2d", batch=1, height=6, width=6, in_channels=64, kernel=3, out_channels=64,
                padding="SAME", dtype="float16")
    x, w, b = make_inputs(case)
    ref = oracle.reference(case, x, w, b)
    c = compare(case, _tap0_twice(case, x, w, b), ref, (x, w, b))
    assert not c.passed and c.kind in ("precision", "value"), (c.kind, c.message)


def test_a_gross_error_without_a_rigorous_bound_is_a_wrong_value():
    # bfloat16 with K >= 256 has no finite hard bound; a result with no correct bit is `value`.
    case = Case(op="conv2d", batch=1, height=4, width=4, in_channels=64, kernel=3, out_channels=4,
                padding="SAME", dtype="bfloat16")
    x, w, b = make_inputs(case)
    ref = oracle.reference(case, x, w, b)
    assert tolerance.hard_bound(case) == math.inf
    c = compare(case, (ref.value * 3).astype(np_dtype("bfloat16")), ref, (x, w, b))
    assert (c.passed, c.kind) == (False, "value"), c.message


def test_a_separately_added_bias_may_follow_an_overflow_of_the_sum_without_it():
    case = OVERFLOW.replace(bias=True)
    x, w, b = make_inputs(case)
    ref = oracle.reference(case, x, w, b)
    big = fmt("float16").max_finite
    with np.errstate(over="ignore", invalid="ignore"):
        c16 = ref.unbiased.astype(F16)  # the sum without the bias, rounded: may overflow
        y = (c16.astype(np.float64) + b.astype(np.float64)).astype(F16)
    assert (np.isinf(y) & (np.abs(ref.value) <= big)).any(), "the case must overflow only without the bias"
    assert compare(case, y, ref, (x, w, b)).passed


@pytest.mark.parametrize("bias", [False, True], ids=["no-bias", "bias-rounded-separately"])
def test_a_correctly_rounded_bfloat16_layer_of_33_million_outputs_shows_no_rounding_bias(bias):
    """SD-VAE's first conv at bfloat16 (512x512x3 -> 128, 33.5 M outputs). Rounding to
    nearest leans toward zero where the values' density falls with magnitude; measured
    against the exact value, torch's and JAX's correct outputs showed z = 7.95 (a false
    `rounding_bias`). The test is against the correctly rounded result: a correct output
    passes (rounded once, or with the bias added in bfloat16 after rounding, as `strict`
    allows), and truncation is still caught."""
    case = Case(op="conv2d", batch=1, height=512, width=512, in_channels=3, kernel=3, out_channels=128,
                padding=((1, 1), (1, 1)), dtype="bfloat16", bias=bias)
    inputs = make_inputs(case)
    ref = oracle.reference(case, *inputs)
    dt = np_dtype("bfloat16")
    if bias:
        y = (ref.unbiased.astype(np.float32).astype(dt).astype(np.float64) + inputs[2].astype(np.float64))
        y = y.astype(np.float32).astype(dt)  # both sums are exact in float32 first: one rounding each
    else:
        y = ref.value.astype(np.float32).astype(dt)
    got = compare(case, y, ref, inputs)
    assert got.passed and abs(got.figures["rounding_bias_z"]) < 4, got.figures["rounding_bias_z"]
    m, e = np.frexp(ref.value)
    truncated = np.ldexp(np.trunc(np.ldexp(m, 8)), e - 8)  # toward zero, to bfloat16's 8 bits
    assert not compare(case, truncated.astype(dt), ref, inputs).passed  # beyond `strict`'s half ulp, too
    assert tolerance.rounding_bias_z(case, truncated, ref) > 100
