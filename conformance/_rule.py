"""The per-element judging rule, in NumPy alone: the one implementation of the verdict's arithmetic.

This file imports nothing but NumPy and `math`, and nothing of the package, because its
source is embedded verbatim into every generated repro script (`conformance.scripts`):
the script then applies exactly the suite's rule. Everything about one case is in the
parameter dict `P` that `conformance.tolerance.rule_params(case)` builds (the constants,
the dtype's unit roundoff, the thresholds); the error models and their calibration are
documented in `conformance.tolerance`, which is the module to read.

Arrays are float64 in the output shape:
  y          the backend's output (converted to float64);
  value      the exact result (NaN/Inf per IEEE);
  alternative the exact result when padded taps are skipped, or None;
  magnitude  sum |x| |w| (+ |bias|) (Inf where `value` is not finite);
  norm       sqrt(sum (x w)^2 (+ bias^2)), or None;
  unbiased   the exact result without the bias (None for a case without bias).
"""

import math

import numpy as np

#: The precision contracts, strongest first per dtype class (see conformance.tolerance).
LEVELS = ("strict", "relaxed", "any", "tf32")
#: Per dtype class: the distinct contracts from strongest to weakest, and which level
#: each contract name means there (equal models share one position).
CHAINS = {
    "half": (("strict", "tf32"), ("relaxed",), ("any",)),
    "float32": (("strict", "relaxed", "any"), ("tf32",)),
    "float64": (("strict", "relaxed", "any", "tf32"),),
}


def chain(P):
    """The distinct contracts of this case's dtype, strongest first (their first names)."""
    return [names[0] for names in CHAINS[P["dtype_class"]]]


def position(P, level):
    """Index of `level` in `chain(P)`."""
    for i, names in enumerate(CHAINS[P["dtype_class"]]):
        if level in names:
            return i
    raise ValueError(f"precision: expected one of {LEVELS}, received {level!r}")


def canonical(P, level):
    """The name the chain uses for `level` (e.g. `tf32` means `strict` for a float16 case)."""
    return chain(P)[position(P, level)]


def weaker(P, level):
    """The distinct contracts strictly weaker than `level` for this dtype, strongest first."""
    return chain(P)[position(P, level) + 1:]


def error_sigma(P, value, norm, u=None, eta=None):
    """Standard deviation of a correct sum's rounding error per element, in a precision of
    unit roundoff `u` (default the case dtype's) and smallest subnormal `eta`."""
    n = P["k_eff"]
    u = P["u"] if u is None else u
    eta = P["eta"] if eta is None else eta
    # Gradual underflow: each of the K_eff + 1 roundings may be off by up to eta / 2 on the
    # subnormal grid, a uniform error of standard deviation eta / sqrt(12).
    underflow = eta * max(1.0, math.sqrt((n + 1) / 12.0))
    with np.errstate(invalid="ignore", over="ignore", under="ignore", divide="ignore"):
        # Scaled by s = max(norm, |value|): squares of subnormal (huge) values under(over)flow.
        scale = np.maximum(norm, np.abs(value))
        p2 = np.where(scale > 0, np.square(norm / np.where(scale > 0, scale, 1.0)), 0.0)
        v2 = np.where(scale > 0, np.square(value / np.where(scale > 0, scale, 1.0)), 0.0)
        return u * scale * np.sqrt(n * (p2 / 18.0 + v2 / 9.0) + p2 / 3.0) + underflow


def scale(P, magnitude):
    """The normalisation: u * magnitude + floor (one unit of normalised error, absolute)."""
    return P["u"] * magnitude + P["floor"]


def _probabilistic(P, value, magnitude, norm, u, eta, threshold, floor):
    """Absolute allowance of a correct sum in a precision of unit roundoff `u` (smallest
    subnormal `eta`): min(threshold * (u * mag + floor), SIGMA_LIMIT * sigma)."""
    with np.errstate(invalid="ignore", over="ignore"):
        allow = threshold * (u * magnitude + floor)
        if norm is not None:
            sig = P["sigma_limit"] * error_sigma(P, value, norm, u, eta)
            allow = np.minimum(allow, np.where(np.isfinite(sig), sig, allow))
    return allow


def _allowance_any(P, value, magnitude, norm):
    """`any` (and every contract of float32/float64 but tf32): the sqrt(K) and sigma bounds."""
    if P["threshold"] == 0:
        return np.zeros(np.shape(magnitude))
    return _probabilistic(P, value, magnitude, norm, P["u"], P["eta"], P["threshold"], P["floor"])


def _allowance_round_once(P, value, magnitude, norm, unbiased):
    """`strict` for 16-bit types: a float32 accumulation (error of a correct float32 sum),
    rounded once to the dtype, and once more after a separately added bias."""
    u = P["u"]
    acc = _probabilistic(P, value, magnitude, norm, P["acc_u"], P["acc_eta"], P["acc_threshold"],
                         P["acc_floor"])
    with np.errstate(invalid="ignore", over="ignore"):
        rounded = np.abs(value)
        if P["bias"]:
            rounded = rounded + (np.abs(unbiased) if unbiased is not None else magnitude)
        return (1 + u) * (u * rounded + acc) + P["eta"] * (1.0 if P["bias"] else 0.5)


def _allowance_tf32(P, value, magnitude, norm):
    """`tf32` for float32: inputs rounded to 11 significand bits (either rounding), float32 sums."""
    ut = P["tf32_u"]
    with np.errstate(invalid="ignore", over="ignore"):
        # Each input is off by a relative |d| <= 2 ut (truncation; ut for round-to-nearest),
        # so each product by at most 4 ut + 4 ut^2 of |x w|.
        rigorous = (4 * ut + 4 * ut * ut) * magnitude
        if norm is not None:
            # The product errors (dx + dw) x w, independent between products, have a second
            # moment of at most 2 ut^2 each about their mean, and the mean (truncation
            # shrinks every product toward zero) adds at most 4 ut |value|.
            likely = 4 * ut * np.abs(value) + P["sigma_limit"] * ut * math.sqrt(2.0) * norm
            rigorous = np.minimum(rigorous, likely)
        return rigorous + _allowance_any(P, value, magnitude, norm)


def allowance(P, level, value, magnitude, norm=None, unbiased=None):
    """Absolute error allowed per element under contract `level` (0 where the result is exact).

    The contracts nest: each is at least as wide as every stronger one of its dtype.
    """
    level = canonical(P, level)
    mag0 = magnitude == 0
    exact = P["threshold"] == 0
    base = _allowance_any(P, value, magnitude, norm)
    if P["dtype_class"] == "half" and not exact:
        strict = _allowance_round_once(P, value, magnitude, norm, unbiased)
        if level == "strict":
            out = strict
        elif level == "relaxed":
            with np.errstate(invalid="ignore", over="ignore"):
                blocked = strict + (1 + P["u"]) * P["relaxed_roundings"] * P["u"] * magnitude
            out = np.maximum(strict, np.minimum(base, blocked))
        else:
            out = np.maximum(base, strict)
    elif P["dtype_class"] == "float32" and level == "tf32" and not exact:
        out = np.maximum(base, _allowance_tf32(P, value, magnitude, norm))
    else:
        out = base
    return np.where(mag0, 0.0, out)


def element_limit(P, level, value, magnitude, norm=None, unbiased=None):
    """Per-element allowed normalised error under `level` (allowance / scale)."""
    a = allowance(P, level, value, magnitude, norm, unbiased)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        limit = a / scale(P, magnitude)
    # Where the exact result is NaN/Inf (magnitude Inf) only an exact match passes anyway.
    return np.where(np.isfinite(limit), limit, np.where(magnitude == 0, 0.0, P["threshold"]))


def _reach(P, level):
    """Largest absolute value a partial sum can hold before it overflows under `level`."""
    level = canonical(P, level)
    if P["dtype_class"] == "half" and level == "strict":
        return P["acc_max"] * (1 - P["acc_threshold"] * P["acc_u"])  # partial sums in float32
    return P["max_finite"] * (1 - P["threshold"] * P["u"])


def normalised_error(P, level, y, value, magnitude, norm=None, unbiased=None):
    """e = |y - value| / (u * mag + floor) per element; 0 where equal (NaN == NaN, same
    infinity) and where an infinity is an accepted overflow; Inf for any other non-finite mismatch."""
    r = value
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        e = np.abs(y - r) / scale(P, magnitude)
    both_nan = np.isnan(y) & np.isnan(r)
    same_inf = np.isinf(y) & np.isinf(r) & (y == r)
    e = np.where(both_nan | same_inf | (y == r), 0.0, e)
    e = np.where(np.isnan(e), np.inf, e)
    big = P["max_finite"]
    if canonical(P, level) == "any" or P["dtype_class"] != "half":
        over_allow = P["threshold"] * P["u"] * magnitude
    else:
        over_allow = allowance(P, level, value, magnitude, norm, unbiased)
    with np.errstate(invalid="ignore", over="ignore"):
        # A finite exact result beyond the dtype's range may round to the infinity of its sign.
        overflow_ok = np.isinf(y) & np.isfinite(r) & (np.sign(y) == np.sign(r)) & (np.abs(r) + over_allow >= big)
        if P["bias"] and unbiased is not None:
            # A bias added as a separate operation: the sum without it is rounded to the
            # dtype first, and may overflow there (Inf + bias = Inf) although the exact
            # result with the bias is finite.
            c = np.where(np.isfinite(unbiased), unbiased, 0.0)
            overflow_ok = overflow_ok | (np.isinf(y) & np.isfinite(r) & (np.sign(y) == np.sign(c))
                                         & (np.abs(c) + over_allow >= big))
        # A partial sum may overflow although the exact result is finite: in some order it
        # reaches the sum of the positive terms P = (mag + ref) / 2 or of the negative ones
        # N = (mag - ref) / 2. So +Inf is accepted where P can overflow, -Inf where N can,
        # NaN (Inf - Inf) where both can.
        reach = _reach(P, level)
        pos = (magnitude + r) / 2 >= reach
        neg = (magnitude - r) / 2 >= reach
    partial = np.isfinite(r) & (((y == np.inf) & pos) | ((y == -np.inf) & neg) | (np.isnan(y) & pos & neg))
    return np.where(overflow_ok | partial, 0.0, e)


def elementwise_error(P, level, y, value, alternative, magnitude, norm=None, unbiased=None):
    """Normalised error per element, taking the IEEE alternative where the reference has one."""
    e = normalised_error(P, level, y, value, magnitude, norm, unbiased)
    if alternative is not None:
        differs = ~((value == alternative) | (np.isnan(value) & np.isnan(alternative)))
        e_alt = normalised_error(P, level, y, alternative, magnitude, norm, unbiased)
        e = np.where(differs, np.minimum(e, e_alt), e)
    return e


def rounding_bias_z(P, y, value, unbiased=None):
    """Sign test on the inexact elements: z > 0 leans toward zero, z < 0 away from it; None
    below `bias_min_elements` inexact elements.

    The test is paired with the correctly rounded result, not with the exact one. Rounding
    to nearest is not symmetric about the exact value: where the values' density falls
    with their magnitude (a Gaussian's does), more of them lie in the lower half of their
    ulp interval than in the upper, so even a correctly rounded output leans toward zero,
    by about a thousandth of its elements in bfloat16 (8 bits). At 33 million outputs
    that is z = 8 (measured), a false `rounding_bias` on a correct kernel. Measured from the
    nearest representable value instead, an output differs only where its accumulation
    error carried it across a rounding midpoint, and there the values are locally uniform:
    among the n elements that differ, the count t lying toward zero of it is Binomial(n, 1/2)
    under any summation order or accumulator width, and z = (2t - n) / sqrt(n) is about
    N(0, 1). With a bias, the `strict` result may also round twice (the sum without the
    bias first, `unbiased`): an element equal to either correctly rounded result is exact
    for the test. A directed rounding (truncation) still moves about half of all elements
    toward zero.
    """
    return bias_z_of(P, *rounding_counts(P, y, value, unbiased))


def nearest(P, value):
    """`value` rounded to nearest, ties to even, in the case's dtype (NumPy alone: the
    quantum is 2**(e - p) for p significand bits, never below the smallest subnormal)."""
    p = round(-math.log2(P["u"]))
    with np.errstate(invalid="ignore", over="ignore"):
        _, e = np.frexp(value)
        q = np.maximum(np.ldexp(1.0, e - p), P["eta"])
        r = np.rint(value / q) * q
        return np.where(np.abs(r) > P["max_finite"], np.copysign(np.inf, value), r)


def rounding_counts(P, y, value, unbiased=None):
    """(n, t): the elements that differ from every correctly rounded result, and how many of
    them lie toward zero of the one rounded once (`rounding_bias_z`)."""
    r = nearest(P, value)
    ok = np.isfinite(r) & np.isfinite(y) & (value != 0) & (y != r)
    if unbiased is not None:
        with np.errstate(invalid="ignore"):
            twice = nearest(P, nearest(P, unbiased) + (value - unbiased))
        ok &= y != twice
    toward = (np.abs(y[ok]) < np.abs(r[ok])) & ((np.sign(y[ok]) == np.sign(r[ok])) | (y[ok] == 0))
    return int(ok.sum()), int(toward.sum())


def bias_z_of(P, n, t):
    """The sign test's z from its counts; None below `bias_min_elements` inexact elements."""
    if n < P["bias_min_elements"]:
        return None
    return round((2 * t - n) / math.sqrt(n), 2)


def beyond(P, level, y, value, alternative, magnitude, norm=None, unbiased=None):
    """(error, limit, bad) per element under `level`."""
    e = elementwise_error(P, level, y, value, alternative, magnitude, norm, unbiased)
    limit = element_limit(P, level, value, magnitude, norm, unbiased)
    return e, limit, e > limit


def passes(P, level, y, value, alternative, magnitude, norm=None, unbiased=None):
    """The whole verdict on values: every element within its limit and no rounding bias.

    Returns (passed, why): why is None on a pass, else "elements" or "bias".
    """
    _, _, bad = beyond(P, level, y, value, alternative, magnitude, norm, unbiased)
    if bad.any():
        return False, "elements"
    z = rounding_bias_z(P, y, value, unbiased)
    if z is not None and abs(z) > P["bias_z"]:
        return False, "bias"
    return True, None


def strongest_met(P, y, value, alternative, magnitude, norm=None, unbiased=None):
    """The strongest contract of this dtype whose element limits `y` meets, or None."""
    for level in chain(P):
        if not beyond(P, level, y, value, alternative, magnitude, norm, unbiased)[2].any():
            return level
    return None
