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
  - and, where it applies (3 x 3 filters, stride 1, dilation 1), Winograd F(2x2, 3x3) in
    the working precision (float32 for the 16-bit types, inside A32): the policy calls it a
    correct float32 algorithm. Its error scales with the input tile, not the output's own
    terms (the `winograd` model below): A = max(A, STRICT_WINOGRAD_C (u S_T + omega floor)),
    the coefficient its errors on data of one scale stay below (wide-range tiles need the
    `winograd` contract's).
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
Transform algorithms (docs/contracts-transforms.md states and calibrates them):
- `winograd` (Winograd F(2x2, 3x3) on any data), `winograd4` (F(4x4, 3x3)) and `winograd6`
  (F(6x6, 3x3)), where they apply (3 x 3 filters, stride 1, dilation 1): with the tile
  scale S_T = sum over the output's m x m tile's inputs and taps of |x| |w| weighted by the
  transform's matrices, W[i, p, a] W[j, q, b] with W[i, p, a] = sum_k |A^T[i, k]| |G[k, a]|
  |B^T[k, p]| (`conformance.transforms.tile_weights`), plus |bias|:
      A_T = WINOGRAD_C (u_w S_T + omega_T floor_w),  omega_T = n^2 (max row sum |A^T|)^2
  in the working precision w (float32 for the 16-bit types, then rounded once as `strict`).
- `fft` (FFT convolution), where it applies (stride 1, dilation 1): with the plane scale
  S_F = sum_c ||x[n, :, :, c]||_2 ||w[:, :, c, k]||_2 (+ |bias|) and N the radix-2 size of
  the padded plane: A_F = FFT_C (u_w S_F + N floor_w).
  Each is nested in the chains: float32 strict < winograd < fft < winograd4 < winograd6 <
  tf32; float64 the same without tf32; 16-bit strict < winograd < fft < winograd4 <
  winograd6 < relaxed < any (the order of their typical allowance). Where a transform does
  not apply it means the contract before it. Their scales are computed from the inputs
  (`TransformScales`), only when an element is beyond the limit without them. Calibration
  (benchmarks/calibration.py --transforms): max error / (u_w S) of correct emulations
  1.21 (F(2x2, 3x3) on data of one scale; STRICT_WINOGRAD_C = 2), 3.75 (F(2x2, 3x3) wide
  range), 2.70 (F(4x4, 3x3), subnormal weights), 1.04 (F(6x6, 3x3)) against WINOGRAD_C = 8,
  2.01 (FFT) against FFT_C = 4; index bugs inside them measure 1e6 - 1e8.
Sign test (rounding bias): every element within its limit, the inexact ones leaning one
way beyond chance (`_rule.rounding_bias_z`, |z| > BIAS_Z), under the contract in force
(`_rule.sign_rule`): a contract whose arithmetic gives every output a common gain (the
transforms' rounded constants: WINOGRAD_GAIN, FFT_GAIN_PER_LOG2 x log2 N; TF32's truncated
inputs: 4 ut) is tested at both extremes of it, and the lean is a bias only when neither
explains it: the FFT's normalisation bias (measured -0.2 to -2 u, z up to 698) belongs to
the FFT contract. `relaxed` and `any` accept a lean of up to BIAS_LEAN of the inexact
elements beyond one half (repeated rounding to nearest in the 16-bit type leans toward
zero: 0.012, z = 9.6 on the 224 x 224 x 3, 7 x 7 -> 64 bfloat16 layer); a truncated
conversion measures 1.0 there. Under every contract but `tf32` (which may truncate its
inputs) a lean of more than TRUNCATION_LEAN is a directed rounding whatever gain is allowed.
A divergence under the chosen contract whose output meets a weaker contract of its chain
(element limits and sign test) is a `precision` divergence that names it ("meets `any`,
not `strict`"; "meets `winograd4`, not `strict`: consistent with a Winograd F(4x4,3x3)
transform").
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from . import _rule
from .dtypes import fmt
from .spec import FORWARD_OPS, Case
from .transforms import WINOGRAD_POINTS, tile_weights, winograd_matrices

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
#: The precision contracts, and the default; the contracts of transform algorithms.
PRECISIONS = _rule.LEVELS
DEFAULT_PRECISION = "strict"
TRANSFORM_LEVELS = _rule.TRANSFORM_LEVELS
#: `relaxed`/`any` (16-bit types): the share of the inexact elements beyond one half that
#: may lean one way (repeated rounding to nearest in the dtype); see the sign test above.
BIAS_LEAN = 0.1
#: Under every contract, a sign test with more than this share of the inexact elements
#: beyond one half on one side (at no gain) is a directed rounding.
TRUNCATION_LEAN = 0.9
#: Transform contracts: Winograd F(m x m, 3 x 3) per level (the output tile size m), and
#: the coefficients of their error models (see "Transform algorithms" above).
WINOGRAD_LEVELS = {"winograd": 2, "winograd4": 4, "winograd6": 6}
WINOGRAD_C = 8.0
FFT_C = 4.0
#: `strict` accepts Winograd F(2x2, 3x3) with this coefficient (its probabilistic error).
STRICT_WINOGRAD_C = 2.0
#: The common gain (in units of the working precision's u) each transform's rounded
#: constants may give (per output tile size m), and the FFT's per log2 of its size.
WINOGRAD_GAIN = {2: 0.25, 4: 3.0, 6: 3.0}
FFT_GAIN_PER_LOG2 = 0.25
#: What meeting a weaker contract (and not the one in force) is consistent with.
_CONSISTENT_WITH = {
    "relaxed": "partial sums rounded to {dtype} (blocked accumulation, or every addition of a short reduction)",
    "any": "{dtype} accumulation",
    "tf32": "TF32 products (inputs rounded to 10 explicit significand bits)",
    "winograd": "a Winograd F(2x2,3x3) transform (its error scales with the input tile)",
    "winograd4": "a Winograd F(4x4,3x3) transform",
    "winograd6": "a Winograd F(6x6,3x3) transform",
    "fft": "an FFT convolution",
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


def winograd_applies(case: Case) -> bool:
    """Winograd F(m x m, 3 x 3) computes the case: a forward op, 3 x 3 filters, stride 1,
    dilation 1 (the training ops have no transform contract: their error model is `strict`'s)."""
    return case.is_valid and case.op in FORWARD_OPS and tuple(case.kernel) == (3, 3) and tuple(case.strides) == (1, 1) \
        and tuple(case.dilations) == (1, 1)


def fft_applies(case: Case) -> bool:
    """An FFT convolution computes the case: a forward op, stride 1, dilation 1."""
    return case.is_valid and case.op in FORWARD_OPS and tuple(case.strides) == (1, 1) and tuple(case.dilations) == (1, 1)


def fft_size(case: Case) -> int:
    """The radix-2 FFT size of a padded input plane: next powers of two of its sides."""
    (t, b), (l, r) = case.geometry.pads
    return (1 << (case.height + t + b - 1).bit_length()) * (1 << (case.width + l + r - 1).bit_length())


def _winograd_omega(m: int) -> float:
    """How many smallest subnormals a Winograd F(m, 3)'s roundings on the subnormal grid
    may add, per unit of the direct sum's underflow floor: n^2 transformed products, each
    amplified by the output transform (its largest row sum of |A^T|, squared)."""
    at = winograd_matrices(m)[0]
    row = max(float(sum(abs(v) for v in r)) for r in at)
    return float((m + 2) ** 2 * row * row)


def _transforms(case: Case, u_work: float) -> dict[str, dict[str, Any]]:
    """The transform contracts that apply to `case`, with their parameters (plain data)."""
    out: dict[str, dict[str, Any]] = {}
    if winograd_applies(case):
        for level, m in WINOGRAD_LEVELS.items():
            out[level] = {"m": m, "weights": tile_weights(m).tolist(), "c": WINOGRAD_C,
                          "omega": _winograd_omega(m), "gain": WINOGRAD_GAIN[m] * u_work}
    if fft_applies(case):
        n = fft_size(case)
        out["fft"] = {"m": 0, "weights": None, "c": FFT_C, "omega": float(n),
                      "gain": FFT_GAIN_PER_LOG2 * math.log2(n) * u_work}
    return out


@functools.lru_cache(maxsize=256)
def rule_params(case: Case) -> dict[str, Any]:
    """Every number the per-element rule needs for `case` (plain floats, ints, strings, lists
    and dicts): what the repro scripts embed as PARAMS. Cached per case (every verdict asks
    for it many times): the dict is shared, read it only."""
    f, f32 = fmt(case.dtype), fmt("float32")
    n = k_eff(case)
    half = dtype_class(case.dtype) == "half"
    transforms = _transforms(case, f32.unit_roundoff if half else f.unit_roundoff)
    return {
        "dtype": case.dtype, "dtype_class": dtype_class(case.dtype), "k_eff": n, "bias": bool(case.bias),
        "u": f.unit_roundoff, "eta": f.smallest_subnormal, "floor": underflow_floor(case),
        "max_finite": f.max_finite, "threshold": threshold(case), "sigma_limit": SIGMA_LIMIT,
        # The float32 accumulator of the `strict` 16-bit model.
        "acc_u": f32.unit_roundoff, "acc_eta": f32.smallest_subnormal, "acc_max": f32.max_finite,
        "acc_threshold": _threshold(n, f32.unit_roundoff), "acc_floor": (n + 1) / 2 * f32.smallest_subnormal,
        "relaxed_roundings": RELAXED_ROUNDINGS, "tf32_u": 2.0 ** -TF32_BITS,
        "bias_z": BIAS_Z, "bias_min_elements": BIAS_MIN_ELEMENTS, "bias_lean": BIAS_LEAN,
        "truncation_lean": TRUNCATION_LEAN,
        # The transform contracts that apply, and the geometry their scales need.
        "transforms": transforms, "strict_winograd": STRICT_WINOGRAD_C if "winograd" in transforms else 0.0,
        "op": case.op, "groups": case.groups if case.forward_op == "conv2d" else 1,
        "pads": [list(p) for p in case.geometry.pads], "out_shape": list(case.output_shape),
    }


class TransformScales(Mapping):
    """The transform scales of one case's inputs (`_rule.transform_scale`), computed on first
    access per contract: only a divergence, or a transform contract in force, needs them."""

    def __init__(self, case: Case, inputs, params: dict[str, Any] | None = None, part=None):
        self._case, self._inputs, self._part = case, inputs, part
        self._params = params if params is not None else rule_params(case)
        self._cache: dict[str, np.ndarray] = {}

    def __getitem__(self, level: str) -> np.ndarray:
        if level not in self._cache:
            if level not in self._params["transforms"]:
                raise KeyError(level)
            x, w, b = self._inputs
            self._cache[level] = _rule.transform_scale(self._params, level, x, w, b)
        full = self._cache[level]
        return full if self._part is None else full.reshape(-1)[self._part]

    def __iter__(self):
        return iter(self._params["transforms"])

    def __len__(self) -> int:
        return len(self._params["transforms"])

    def part(self, flat: slice) -> "TransformScales":
        """The same scales, restricted to a slice of the flattened output (shares the cache)."""
        view = TransformScales(self._case, self._inputs, self._params, flat)
        view._cache = self._cache
        return view


def transform_scales(case: Case, inputs) -> TransformScales | None:
    """The lazily computed transform scales of `case` on `inputs` (None without inputs, or
    when no transform contract applies to the case)."""
    if inputs is None or not (winograd_applies(case) or fft_applies(case)):
        return None
    return TransformScales(case, inputs)


def error_sigma(case: Case, value, norm):
    """Standard deviation of a correct sum's rounding error, per element (see the module doc).

    `value` is the exact result, `norm` = sqrt(sum (x w)^2 (+ bias^2)) over the same terms.
    """
    return _rule.error_sigma(rule_params(case), value, norm)


def _arrays(ref) -> tuple:
    return ref.value, ref.alternative, ref.magnitude, ref.norm, getattr(ref, "unbiased", None)


def element_limit(case: Case, ref, precision: str = DEFAULT_PRECISION, scales=None) -> np.ndarray:
    """Per-element allowed normalised error under `precision` against a Reference (with the
    transform `scales`, where the contract has transform terms; without, they are left out)."""
    value, _, mag, norm, unbiased = _arrays(ref)
    return _rule.element_limit(rule_params(case), precision, value, mag, norm, unbiased, scales)


def elementwise_error(case: Case, y: np.ndarray, ref, precision: str = DEFAULT_PRECISION) -> np.ndarray:
    """Normalised error per element of y (float64, output shape), with the accepted
    overflows and the IEEE alternative (see `_rule.elementwise_error`)."""
    value, alt, mag, norm, unbiased = _arrays(ref)
    return _rule.elementwise_error(rule_params(case), precision, y, value, alt, mag, norm, unbiased)


def beyond(case: Case, y: np.ndarray, ref, precision: str = DEFAULT_PRECISION, scales=None):
    """(error, limit, bad) per element under `precision`."""
    value, alt, mag, norm, unbiased = _arrays(ref)
    return _rule.beyond(rule_params(case), precision, y, value, alt, mag, norm, unbiased, scales)


def within_tolerance(case: Case, y: np.ndarray, ref, precision: str = DEFAULT_PRECISION, scales=None) -> bool:
    """Every element of y (float64, output shape) within its limit against `ref`."""
    return not beyond(case, y, ref, precision, scales)[2].any()


def sign_rule(case: Case, precision: str) -> tuple[float, float, bool]:
    """(gain, lean, directed) the contract's arithmetic may give a correct output (`_rule.sign_rule`)."""
    return _rule.sign_rule(rule_params(case), precision)


def sign_gains(case: Case, precision: str) -> tuple[float, ...]:
    """The gains the sign test pairs the output with under `precision` (`_rule.sign_gains`)."""
    return _rule.sign_gains(rule_params(case), precision)


def sign_verdict(case: Case, precision: str, counts) -> tuple[float | None, bool]:
    """(z, biased) from the counts at each of `sign_gains` (`_rule.sign_verdict`)."""
    return _rule.sign_verdict(rule_params(case), precision, counts)


def sign_needs_gains(case: Case, precision: str, counts0) -> bool:
    """Does the sign test need the counts at the gain extremes (`_rule.sign_needs_gains`)?"""
    return _rule.sign_needs_gains(rule_params(case), precision, counts0)


def rounding_bias_z(case: Case, y: np.ndarray, ref, precision: str = DEFAULT_PRECISION) -> float | None:
    """The sign test's z on the inexact elements under `precision` (see `_rule.rounding_bias_z`)."""
    return _rule.rounding_bias_z(rule_params(case), y, ref.value, ref.unbiased, precision)


def rounding_counts(case: Case, y: np.ndarray, ref, gain: float = 0.0) -> tuple[int, int]:
    """The sign test's counts: the elements no correct rounding gives (of the exact result
    times 1 + gain), and how many of them lie toward zero (`_rule.rounding_counts`)."""
    return _rule.rounding_counts(rule_params(case), y, ref.value, ref.unbiased, gain)


def bias_z_of(case: Case, n: int, t: int) -> float | None:
    """The sign test's z from `rounding_counts` (summed over blocks)."""
    return _rule.bias_z_of(rule_params(case), n, t)


def strongest_met(case: Case, y: np.ndarray, ref, scales=None) -> str | None:
    """The strongest contract of the case whose element limits y meets, or None."""
    value, alt, mag, norm, unbiased = _arrays(ref)
    return _rule.elements_met(rule_params(case), y, value, alt, mag, norm, unbiased, scales)


def weaker(case: Case, precision: str) -> list[str]:
    """The distinct contracts weaker than `precision` for the case, strongest first."""
    return _rule.weaker(rule_params(case), precision)


def canonical(case: Case, precision: str) -> str:
    """The contract `precision` amounts to for the case (tf32 is strict for float16, a
    Winograd contract is strict for a 5 x 5 filter)."""
    return _rule.canonical(rule_params(case), precision)


def chain(dtype: str) -> list[str]:
    """The distinct contracts of a dtype, strongest first (every transform contract included)."""
    return [names[0] for names in _rule.CHAINS[dtype_class(dtype)]]


def chain_of(case: Case) -> list[str]:
    """The distinct contracts of a case, strongest first (the transforms that apply to it)."""
    return _rule.chain(rule_params(case))


def consistent_with(level: str, dtype: str) -> str:
    """What meeting `level` but no stronger contract is consistent with, in words."""
    return _CONSISTENT_WITH.get(level, "a correct implementation").format(dtype=dtype)
