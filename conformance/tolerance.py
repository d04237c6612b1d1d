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
"""

from __future__ import annotations

import math

import numpy as np

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


def k_eff(case: Case) -> int:
    """Terms summed per output element: K, plus one for the bias."""
    return case.reduction_size + (1 if case.bias else 0)


def unit_roundoff(case: Case) -> float:
    return fmt(case.dtype).unit_roundoff


def underflow_floor(case: Case) -> float:
    """Absolute error allowance for gradual underflow: (K_eff + 1) / 2 * eta."""
    return (k_eff(case) + 1) / 2 * fmt(case.dtype).smallest_subnormal


def hard_bound(case: Case) -> float:
    """Rigorous worst-case bound on the normalised error: K_eff / (1 - K_eff u) + 1.

    Infinite (no bound) once K_eff u >= 1, where gamma_K is undefined: e.g. bfloat16 with
    256 or more terms.
    """
    n, u = k_eff(case), unit_roundoff(case)
    if n * u >= 1.0:
        return math.inf
    return n / (1.0 - n * u) + 1.0


def threshold(case: Case) -> float:
    """The verdict: a normalised error above this diverges. Zero for exact profiles."""
    if is_exact(case):
        return 0.0
    probabilistic = THRESHOLD_BASE + THRESHOLD_SQRT * math.sqrt(k_eff(case) + 1)
    # No correct summation exceeds the rigorous bound; +1 leaves room for the oracle's own
    # last-bit error in float64.
    return min(probabilistic, THRESHOLD_CAP, hard_bound(case) + 1.0)


def error_sigma(case: Case, value, norm):
    """Standard deviation of a correct sum's rounding error, per element (see the module doc).

    `value` is the exact result, `norm` = sqrt(sum (x w)^2 (+ bias^2)) over the same terms.
    """
    n, u = k_eff(case), unit_roundoff(case)
    # Gradual underflow: each of the K_eff + 1 roundings may be off by up to eta / 2 on the
    # subnormal grid, a uniform error of standard deviation eta / sqrt(12).
    # (At least eta itself: eta * 0.4 would underflow to zero in float64.)
    underflow = fmt(case.dtype).smallest_subnormal * max(1.0, math.sqrt((n + 1) / 12.0))
    with np.errstate(invalid="ignore", over="ignore", under="ignore", divide="ignore"):
        # Scaled by s = max(norm, |value|): the squares of subnormal (or huge) values would
        # underflow (overflow) in float64.
        scale = np.maximum(norm, np.abs(value))
        p2 = np.where(scale > 0, np.square(norm / np.where(scale > 0, scale, 1.0)), 0.0)
        v2 = np.where(scale > 0, np.square(value / np.where(scale > 0, scale, 1.0)), 0.0)
        return u * scale * np.sqrt(n * (p2 / 18.0 + v2 / 9.0) + p2 / 3.0) + underflow


def is_exact(case: Case) -> bool:
    """True when every element of the exact result needs no rounding in the dtype."""
    return case.profile == "small_integers"
