"""The tolerance model: how far from the exact answer a correct backend may land.

No fixed rtol/atol pair: the tolerance of every output element follows from a stated
floating-point error model and from that element's own magnitude.

Notation. For one output element, K products are summed (K = kh * kw * C_in/groups for
conv2d, kh * kw for depthwise; one more when a bias is added: `K_eff`). `ref` is the
exact result (the oracle), `mag` = sum |x| |w| (+ |bias|) over the same terms, `u` the
unit roundoff of the case dtype (2**-24 float32, 2**-53 float64, 2**-11 float16,
2**-8 bfloat16) and `eta` its smallest subnormal.

Normalised error.  e = |y - ref| / (u * mag + floor),  floor = (K_eff + 1) / 2 * eta.
The floor is the standard model's absolute underflow term (each product that lands in
the subnormal range may be off by eta / 2; additions are exact there); it is negligible
unless the element is made of subnormals.

Bounds, in units of e:
- Rigorous (the hard limit). Recursive summation in any order with an accumulator of
  the dtype's precision gives |y - ref| <= gamma_{K_eff} * mag, gamma_n = n u / (1 - n u),
  plus u |ref| <= u * mag for the final rounding: `hard_bound` = K_eff / (1 - K_eff u) + 1.
  No correct implementation can exceed it (16-bit types accumulated in float32 stay far
  below it).
- Probabilistic (the verdict). With rounding errors that behave as independent,
  mean-zero random variables, the error grows like sqrt(K) (Higham & Mary, "A new
  approach to probabilistic rounding error analysis", SIAM J. Sci. Comput. 2019):
  `threshold` = min(3 + 4 * sqrt(K_eff + 1), 100, hard_bound + 1). It is the largest
  error a correct implementation reaches in practice on this suite's value profiles,
  whatever its summation order or blocking; for K_eff below about 20 the rigorous bound
  (plus one unit for the float64 oracle's own last-bit error) is the tighter of the two
  and is used. A result above the threshold diverges; above the threshold but within
  the hard bound it is labelled reduced precision (no wrong index, but fewer bits than
  the dtype promises).
  Calibration (tests/test_tolerance.py; NumPy emulations summing in forward, reverse,
  pairwise, SIMD-lane, blocked, random and fused orders, 16-bit types also in their own
  precision): with random-sign `normal` data correct implementations stay below 5.4
  for every K, because partial sums grow like sqrt(K) while the magnitude grows like
  K; with `wide_range` data a few dominant terms carry the error, which grows like
  ~2.2 sqrt(K) up to K ~ 50 (float32 maxima 6.7 at K = 9, 11.2 at K = 36 over 2e5 - 2e6
  elements) and then saturates (float32 18 - 25, float64 23 - 37 for K = 576 - 12,544).
  The sqrt(K) coefficient 4 keeps those below ~45% of the threshold (the earlier 1.5
  left them at 86 - 94%: 11.4 against 12.1 at K = 36, float64, 25,600 elements).
  The cap (reached at K = 587) keeps reduced precision detectable at large K, where a
  random-sign TF32 error shrinks like 1/sqrt(K): emulated TF32 measures 248 - 271 at
  K = 12,544 and 173 at K = 25,088 (the uncapped 3 + 1.5 sqrt(K) was 171 and 241
  there: TF32 would pass above K ~ 15,000), while correct ones stay below 37.
- Cancellation-aware (the verdict, element by element). Sum |x||w| is the right scale
  for the worst case but not for the expected error when the terms cancel: for K
  random-sign terms |ref| ~ sum|x||w| / sqrt(K), and at large K a threshold of 100 u sum|x||w|
  exceeds |ref| itself for bfloat16 (u = 2**-8). In the same probabilistic model the
  rounding error of a correct sum of the terms p_1..p_K, in an order independent of their
  values, has the standard deviation
      sigma = u * sqrt(K_eff * (sum p^2 / 18 + ref^2 / 9) + sum p^2 / 3)
  (each addition rounds its partial sum S_k, E[sum_k S_k^2] = K (sum p^2 / 6 + ref^2 / 3)
  over orders, uniform rounding errors have variance u^2 / 3; the last term is the
  products' own rounding), plus eta * sqrt((K_eff + 1) / 12) for the roundings on the
  subnormal grid. An element also diverges when |y - ref| > SIGMA_LIMIT * sigma, which is
  the tighter bound wherever the terms cancel or the values are subnormal.
  SIGMA_LIMIT = 12: the calibration's correct emulations (every order, accumulator and
  profile above, up to 65,536 outputs a case) stay below 6 sigma; TF32 measures 460 -
  19,500 sigma and float16 accumulation of float32 4,700 - 42,000 sigma; a bfloat16 sum
  of 576 terms with every other term dropped measures about 18 sigma.
- Exact. Where the exact result needs no rounding at all the tolerance is zero:
  elements of zero magnitude (every product is zero), and every element of the
  `small_integers` profile (all products and partial sums are small integers).

Special values: NaN and +-Inf must appear exactly where the exact result has them, with
the same sign of infinity. A finite exact result beyond the dtype's range may come back
as the infinity of its sign (and must: the largest finite value is a wrong answer). A
partial sum may overflow although the exact result is finite: +Inf is accepted where the
positive terms alone, (sum|x||w| + ref) / 2, exceed the range, -Inf where the negative
ones do, NaN where both do. The sign of a zero result is not judged (-0.0 + 0.0 is +0.0
in IEEE, and implementations legitimately start their accumulators at +0.0). Where a
padded zero meets an infinite filter tap the formula says 0 * Inf = NaN, but an
implementation that skips padded taps never forms that product: either result is
accepted there (`oracle.Reference.alternative`).

Subnormals: a backend that flushes subnormal inputs or results to zero (TensorFlow and
JAX on x86 CPUs set FTZ/DAZ) gets its own divergence kind, `subnormal_flush`: it is a
divergence, never a pass, and never confused with a wrong kernel.

Precision contracts (`--precision`, default `strict`). Which implementations count as
correct; each contract is a per-element absolute allowance A (the limit in units of e is
A / (u * mag + floor)); they nest: a weaker contract allows at least what a stronger one
of the same dtype allows. Modelled on oneDNN's `accumulation_mode` (strict: "f32 for
floating point computation"; relaxed: partial accumulators may be rounded to the data
type in memory; any: any accumulator) and on TF32 tensor cores.
- `strict`:
  - float16 / bfloat16: the exact products (exact in float32) are accumulated in at least
    float32 and rounded once to the dtype; a bias added as a separate operation in the
    dtype rounds once more. With c the exact sum without the bias:
        A = (1 + u) (u (|ref| + |c|) + A32) + eta        (with a bias)
        A = (1 + u) (u |ref| + A32) + eta / 2             (without)
    where A32 = min(t32 (u32 mag + floor32), SIGMA_LIMIT sigma32) is the allowance of a
    correct float32 sum (the sqrt(K) and sigma bounds below, in float32's u32 = 2**-24).
    Round-to-nearest is within u |a| of a, so this is a rigorous bound on the final
    roundings: a correct implementation never exceeds u16 |ref| plus a float32 error,
    i.e. a normalised error of about |ref| / mag (<= 1; <= 2 with a separate bias). Partial
    sums live in float32: a partial-sum overflow is accepted only at float32's range.
  - float32: float32 products, float32 accumulation (the `any` model below; TF32 diverges).
  - float64: float64 throughout (the `any` model below).
- `relaxed` (16-bit types; the same as `strict` for float32 and float64): partial sums may
  also be rounded to the dtype at most RELAXED_ROUNDINGS times before the final rounding
  (blocked accumulation in up to three K-blocks, e.g. oneDNN's relaxed mode writing
  K-block partials in the dtype): A_relaxed = A_strict +
  (1 + u) RELAXED_ROUNDINGS u mag (each rounded partial sum is at most mag), capped at
  the `any` allowance, and never below A_strict.
- `any`: the model below, unchanged from before the contracts existed (accumulation in
  the dtype itself is accepted): A = min(threshold (u mag + floor), SIGMA_LIMIT sigma),
  and never below A_strict.
- `tf32` (float32; the same as `strict` for the other dtypes): float32 products of inputs
  rounded to TF32_BITS = 11 significand bits (10 explicit; round-to-nearest or
  truncation), accumulated in float32. With ut = 2**-11 each product is off by
  (dx + dw + dx dw) x w, |dx|, |dw| <= 2 ut: A_tf32 = min((4 ut + 4 ut^2) mag, 4 ut |ref| +
  SIGMA_LIMIT sqrt(2) ut norm) + A_any (the rigorous bound, or independent product errors
  of second moment <= 2 ut^2 about their mean plus the largest mean a truncation adds).
  TF32 and float16 inputs have the same 11 significand bits: only their range tells them
  apart. bfloat16 products (8 bits) measure about 8 of those sigma per element, so they
  are flagged where a case has enough outputs for the tail to clear 12 (hundreds).
Calibration of the contracts (tests/test_tolerance.py keeps the pass/fail checks;
`benchmarks/calibration.py` regenerates the figures): correct emulations of each contract
are never flagged; float16/bfloat16 accumulation in the dtype diverges under `strict`,
TF32 products of float32 diverge under `strict`, bfloat16 products diverge under `tf32`.
Figures (benchmarks/calibration.py, this machine; K = 289, 1,600 outputs, normal data):
float16/bfloat16 accumulated in float32 measure at most 0.27 - 0.29 in e (0.33 - 0.46 with
the bias added separately in the dtype), against a `strict` limit of about |ref| / mag
per element; accumulation in the dtype itself measures 0.5 - 3.3 and diverges under
`strict` (its short reductions often meet `relaxed`, whose rigorous 2 u mag term absorbs
up to ~25 dtype roundings of small partial sums). float16 accumulation of float32 and
TF32 products give errors of one size at small K: `tf32` flags the former from K ~ 256.
A divergence under the chosen contract whose output meets a weaker contract of its dtype
is a `precision` divergence that names it ("meets `any`, not `strict`").
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _rule
from .dtypes import fmt
from .spec import Case

#: The verdict threshold is min(THRESHOLD_BASE + THRESHOLD_SQRT * sqrt(K_eff + 1), THRESHOLD_CAP,
#: hard_bound + 1);
#: see the calibration figures in the module docstring before changing any of them.
THRESHOLD_BASE = 3.0
THRESHOLD_SQRT = 4.0
THRESHOLD_CAP = 100.0
#: An element whose error exceeds this many standard deviations of a correct sum's
#: rounding error (`error_sigma`) diverges.
SIGMA_LIMIT = 12.0
#: |z| above this on the toward-zero sign test (against the correctly rounded result,
#: `_rule.rounding_bias_z`) is a rounding bias (p < 1e-8 under round-to-nearest).
BIAS_Z = 6.0
#: Fewer inexact elements than this make no sign test.
BIAS_MIN_ELEMENTS = 32
#: A divergence keeping at least this many of the dtype's bits (or half of them, for the
#: 8-bit bfloat16) is labelled reduced precision rather than a wrong value.
PRECISION_MIN_BITS = 4
#: `relaxed`: how many times partial sums may be rounded to the 16-bit dtype.
RELAXED_ROUNDINGS = 2
#: `tf32`: significand bits (implicit bit included) of the rounded float32 inputs.
TF32_BITS = 11
#: The precision contracts, and the default.
PRECISIONS = _rule.LEVELS
DEFAULT_PRECISION = "strict"
#: What meeting a weaker contract (and not the one in force) is consistent with.
_CONSISTENT_WITH = {
    "relaxed": "partial sums rounded to {dtype} (blocked accumulation, or every addition of a short reduction)",
    "any": "{dtype} accumulation",
    "tf32": "TF32 products (inputs rounded to 10 explicit significand bits)",
}


def k_eff(case: Case) -> int:
    """Terms summed per output element: K, plus one for the bias."""
    return case.reduction_size + (1 if case.bias else 0)


def unit_roundoff(case: Case) -> float:
    return fmt(case.dtype).unit_roundoff


def underflow_floor(case: Case) -> float:
    """Absolute error allowance for gradual underflow: (K_eff + 1) / 2 * eta."""
    return (k_eff(case) + 1) / 2 * fmt(case.dtype).smallest_subnormal


def _hard_bound(n: int, u: float) -> float:
    return math.inf if n * u >= 1.0 else n / (1.0 - n * u) + 1.0


def hard_bound(case: Case) -> float:
    """Rigorous worst-case bound on the normalised error: K_eff / (1 - K_eff u) + 1.

    Infinite (no bound) once K_eff u >= 1, where gamma_K is undefined: e.g. bfloat16 with
    256 or more terms.
    """
    return _hard_bound(k_eff(case), unit_roundoff(case))


def _threshold(n: int, u: float) -> float:
    probabilistic = THRESHOLD_BASE + THRESHOLD_SQRT * math.sqrt(n + 1)
    # No correct summation exceeds the rigorous bound; +1 leaves room for the oracle's own
    # last-bit error in float64.
    return min(probabilistic, THRESHOLD_CAP, _hard_bound(n, u) + 1.0)


def threshold(case: Case) -> float:
    """The `any` verdict's sqrt(K) bound on the normalised error. Zero for exact profiles."""
    if is_exact(case):
        return 0.0
    return _threshold(k_eff(case), unit_roundoff(case))


def is_exact(case: Case) -> bool:
    """True when every element of the exact result needs no rounding in the dtype."""
    return case.profile == "small_integers"


def threshold_text() -> str:
    """The sqrt(K) threshold's formula, rendered from the constants (for reports)."""
    return (f"min({THRESHOLD_BASE:g} + {THRESHOLD_SQRT:g}·√(K+1), {THRESHOLD_CAP:g}, K + 2)")


# ---- the contracts: parameters of the per-element rule (conformance._rule) --------------

def check_precision(name: str) -> str:
    """`name` if it is a precision contract, else ValueError naming the choices."""
    if name not in PRECISIONS:
        raise ValueError(f"precision: expected one of {', '.join(PRECISIONS)}, received {name!r}")
    return name


def dtype_class(dtype: str) -> str:
    return "half" if dtype in ("float16", "bfloat16") else dtype


def rule_params(case: Case) -> dict[str, Any]:
    """Every number the per-element rule needs for `case` (plain floats, ints and strings):
    what the repro scripts embed as PARAMS."""
    f, f32 = fmt(case.dtype), fmt("float32")
    n = k_eff(case)
    return {
        "dtype": case.dtype, "dtype_class": dtype_class(case.dtype), "k_eff": n, "bias": bool(case.bias),
        "u": f.unit_roundoff, "eta": f.smallest_subnormal, "floor": underflow_floor(case),
        "max_finite": f.max_finite, "threshold": threshold(case), "sigma_limit": SIGMA_LIMIT,
        # The float32 accumulator of the `strict` 16-bit model.
        "acc_u": f32.unit_roundoff, "acc_eta": f32.smallest_subnormal, "acc_max": f32.max_finite,
        "acc_threshold": _threshold(n, f32.unit_roundoff), "acc_floor": (n + 1) / 2 * f32.smallest_subnormal,
        "relaxed_roundings": RELAXED_ROUNDINGS, "tf32_u": 2.0 ** -TF32_BITS,
        "bias_z": BIAS_Z, "bias_min_elements": BIAS_MIN_ELEMENTS,
    }


def error_sigma(case: Case, value, norm):
    """Standard deviation of a correct sum's rounding error, per element (see the module doc).

    `value` is the exact result, `norm` = sqrt(sum (x w)^2 (+ bias^2)) over the same terms.
    """
    return _rule.error_sigma(rule_params(case), value, norm)


def _arrays(ref) -> tuple:
    return ref.value, ref.alternative, ref.magnitude, ref.norm, getattr(ref, "unbiased", None)


def element_limit(case: Case, ref, precision: str = DEFAULT_PRECISION) -> np.ndarray:
    """Per-element allowed normalised error under `precision` against a Reference."""
    value, _, mag, norm, unbiased = _arrays(ref)
    return _rule.element_limit(rule_params(case), precision, value, mag, norm, unbiased)


def elementwise_error(case: Case, y: np.ndarray, ref, precision: str = DEFAULT_PRECISION) -> np.ndarray:
    """Normalised error per element of y (float64, output shape), with the accepted
    overflows and the IEEE alternative (see `_rule.elementwise_error`)."""
    value, alt, mag, norm, unbiased = _arrays(ref)
    return _rule.elementwise_error(rule_params(case), precision, y, value, alt, mag, norm, unbiased)


def beyond(case: Case, y: np.ndarray, ref, precision: str = DEFAULT_PRECISION):
    """(error, limit, bad) per element under `precision`."""
    value, alt, mag, norm, unbiased = _arrays(ref)
    return _rule.beyond(rule_params(case), precision, y, value, alt, mag, norm, unbiased)


def within_tolerance(case: Case, y: np.ndarray, ref, precision: str = DEFAULT_PRECISION) -> bool:
    """Every element of y (float64, output shape) within its limit against `ref`."""
    return not beyond(case, y, ref, precision)[2].any()


def rounding_bias_z(case: Case, y: np.ndarray, ref) -> float | None:
    """The sign test's z on the inexact elements (see `_rule.rounding_bias_z`)."""
    return _rule.rounding_bias_z(rule_params(case), y, ref.value, ref.unbiased)


def rounding_counts(case: Case, y: np.ndarray, ref) -> tuple[int, int]:
    """The sign test's counts: the elements no correct rounding gives, and how many of them
    lie toward zero (`_rule.rounding_counts`)."""
    return _rule.rounding_counts(rule_params(case), y, ref.value, ref.unbiased)


def bias_z_of(case: Case, n: int, t: int) -> float | None:
    """The sign test's z from `rounding_counts` (summed over blocks)."""
    return _rule.bias_z_of(rule_params(case), n, t)


def strongest_met(case: Case, y: np.ndarray, ref) -> str | None:
    """The strongest contract of the case's dtype whose element limits y meets, or None."""
    value, alt, mag, norm, unbiased = _arrays(ref)
    return _rule.strongest_met(rule_params(case), y, value, alt, mag, norm, unbiased)


def weaker(case: Case, precision: str) -> list[str]:
    """The distinct contracts weaker than `precision` for the case's dtype, strongest first."""
    return _rule.weaker(rule_params(case), precision)


def canonical(case: Case, precision: str) -> str:
    """The contract `precision` amounts to for the case's dtype (tf32 is strict for float16)."""
    return _rule.canonical(rule_params(case), precision)


def chain(dtype: str) -> list[str]:
    """The distinct contracts of a dtype, strongest first."""
    return [names[0] for names in _rule.CHAINS[dtype_class(dtype)]]


def consistent_with(level: str, dtype: str) -> str:
    """What meeting `level` but no stronger contract is consistent with, in words."""
    return _CONSISTENT_WITH.get(level, "a correct implementation").format(dtype=dtype)
