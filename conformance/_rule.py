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
  unbiased   the exact result without the bias (None for a case without bias);
  scales     per transform contract that applies to the case, the magnitude its error
             scales with (`transform_scale`: the tile's for Winograd, the planes' for FFT),
             or None: a mapping level -> array, read only when an element is beyond the
             limit without it (it may compute on first access).
"""

import math

import numpy as np

#: The precision contracts (see conformance.tolerance).
LEVELS = ("strict", "relaxed", "any", "tf32", "winograd", "fft", "winograd4", "winograd6")
#: The contracts of transform algorithms; each applies to the cases its algorithm computes
#: (P["transforms"]), and means the contract before it in the chain elsewhere.
TRANSFORM_LEVELS = ("winograd", "fft", "winograd4", "winograd6")
#: Per dtype class: the distinct contracts from strongest to weakest, and which level
#: each contract name means there (equal models share one position).
CHAINS = {
    "half": (("strict", "tf32"), ("winograd",), ("fft",), ("winograd4",), ("winograd6",), ("relaxed",), ("any",)),
    "float32": (("strict", "relaxed", "any"), ("winograd",), ("fft",), ("winograd4",), ("winograd6",), ("tf32",)),
    "float64": (("strict", "relaxed", "any", "tf32"), ("winograd",), ("fft",), ("winograd4",), ("winograd6",)),
}


def _positions(P):
    """CHAINS of the case's dtype class, a transform level that does not apply to the case
    merged into the position before it."""
    out = []
    for names in CHAINS[P["dtype_class"]]:
        if names[0] in TRANSFORM_LEVELS and names[0] not in P["transforms"]:
            out[-1] = out[-1] + names
        else:
            out.append(names)
    return out


def chain(P):
    """The distinct contracts of this case, strongest first (their first names)."""
    return [names[0] for names in _positions(P)]


def position(P, level):
    """Index of `level` in `chain(P)`."""
    for i, names in enumerate(_positions(P)):
        if level in names:
            return i
    raise ValueError(f"precision: expected one of {LEVELS}, received {level!r}")


def canonical(P, level):
    """The name the chain uses for `level` (e.g. `tf32` means `strict` for a float16 case)."""
    return chain(P)[position(P, level)]


def weaker(P, level):
    """The distinct contracts strictly weaker than `level` for this case, strongest first."""
    return chain(P)[position(P, level) + 1:]


def _upto(P, level):
    """The contracts of the chain from the strongest to `level` (included)."""
    return chain(P)[:position(P, level) + 1]


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


def _allowance_round_once(P, value, magnitude, norm, unbiased, transform=None):
    """`strict` for 16-bit types: a float32 accumulation (error of a correct float32 sum, or
    of a transform algorithm computed in float32: `transform`), rounded once to the dtype,
    and once more after a separately added bias; an op of two stages (`intermediate`:
    separable) may round its intermediate once to the dtype too (at most u * mag)."""
    u = P["u"]
    acc = _probabilistic(P, value, magnitude, norm, P["acc_u"], P["acc_eta"], P["acc_threshold"],
                         P["acc_floor"])
    if transform is not None:
        acc = np.maximum(acc, transform)
    with np.errstate(invalid="ignore", over="ignore"):
        rounded = np.abs(value)
        if P["bias"]:
            rounded = rounded + (np.abs(unbiased) if unbiased is not None else magnitude)
        if P.get("intermediate"):
            rounded = rounded + magnitude
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


def _transform_allowance(P, level, scale_array, coefficient=None):
    """A transform algorithm's own error, absolute: c (u_w S + omega floor_w), in the
    working precision w (float32 for the 16-bit types: they are transformed in float32)."""
    t = P["transforms"][level]
    c = t["c"] if coefficient is None else coefficient
    half = P["dtype_class"] == "half"
    u, floor = (P["acc_u"], P["acc_floor"]) if half else (P["u"], P["floor"])
    with np.errstate(invalid="ignore", over="ignore"):
        return c * (u * scale_array + t["omega"] * floor)


def _own(P, level, value, magnitude, norm, unbiased, scales):
    """Absolute allowance of contract `level` by its own model (before nesting)."""
    exact = P["threshold"] == 0
    half = P["dtype_class"] == "half"
    if level in TRANSFORM_LEVELS:
        if scales is None:
            return None
        extra = _transform_allowance(P, level, scales[level])
        return _allowance_round_once(P, value, magnitude, norm, unbiased, extra) if half else extra
    if exact:
        return np.zeros(np.shape(magnitude))
    base = _allowance_any(P, value, magnitude, norm)
    if level == "strict":
        # Winograd F(2x2, 3x3) is a correct algorithm under `strict`, with its probabilistic
        # error (P["strict_winograd"]): wherever it applies and the tile's scale is known.
        extra = None
        if scales is not None and P.get("strict_winograd") and "winograd" in P["transforms"]:
            extra = _transform_allowance(P, "winograd", scales["winograd"], P["strict_winograd"])
        if half:
            return _allowance_round_once(P, value, magnitude, norm, unbiased, extra)
        return base if extra is None else np.maximum(base, extra)
    if half and level == "relaxed":
        strict = _allowance_round_once(P, value, magnitude, norm, unbiased)
        with np.errstate(invalid="ignore", over="ignore"):
            blocked = strict + (1 + P["u"]) * P["relaxed_roundings"] * P["u"] * magnitude
        return np.maximum(strict, np.minimum(base, blocked))
    if level == "tf32" and P["dtype_class"] == "float32":
        return np.maximum(base, _allowance_tf32(P, value, magnitude, norm))
    if half:  # any
        return np.maximum(base, _allowance_round_once(P, value, magnitude, norm, unbiased))
    return base


def _uses_scales(P, level):
    """Does the allowance of `level` read transform scales for this case?"""
    upto = _upto(P, level)
    return any(v in P["transforms"] for v in upto if v in TRANSFORM_LEVELS) or \
        (bool(P.get("strict_winograd")) and "winograd" in P["transforms"] and P["threshold"] != 0)


def allowance(P, level, value, magnitude, norm=None, unbiased=None, scales=None, memo=None):
    """Absolute error allowed per element under contract `level` (0 where the result is exact).

    The contracts nest: each is the widest of its own model and every stronger one's of its
    chain. Without `scales` the transform models are left out (a transform contract then
    allows what the contract before it allows). `memo` (a dict) keeps each contract's own
    allowance for further calls on the same arrays.
    """
    out = None
    for name in _upto(P, level):
        key = (name, scales is not None)
        if memo is not None and key in memo:
            a = memo[key]
        else:
            a = _own(P, name, value, magnitude, norm, unbiased, scales)
            if memo is not None:
                memo[key] = a
        if a is not None:
            out = a if out is None else np.maximum(out, a)
    # Exact where no product can round: every term zero, in the output's own window and, for
    # a transform, in its whole tile or plane.
    zero = magnitude == 0
    if scales is not None:
        for name in _upto(P, level):
            if name in TRANSFORM_LEVELS and name in P["transforms"]:
                zero = zero & (scales[name] == 0)
        if P.get("strict_winograd") and "winograd" in P["transforms"] and P["threshold"] != 0:
            zero = zero & (scales["winograd"] == 0)
    return np.where(zero, 0.0, out)


def element_limit(P, level, value, magnitude, norm=None, unbiased=None, scales=None, memo=None):
    """Per-element allowed normalised error under `level` (allowance / scale)."""
    a = allowance(P, level, value, magnitude, norm, unbiased, scales, memo)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        limit = a / scale(P, magnitude)
    # Where the exact result is NaN/Inf (magnitude Inf) only an exact match passes anyway;
    # a nonzero allowance beyond the normalisation's range (magnitude zero: the underflow
    # floor alone) is an infinite limit (`beyond` compares absolute errors there).
    finite_mag = np.isfinite(magnitude)
    return np.where(np.isfinite(limit), limit,
                    np.where(finite_mag & (a > 0), np.inf, np.where(magnitude == 0, 0.0, P["threshold"])))


def _reach(P, level):
    """Largest absolute value a partial sum can hold before it overflows under `level`."""
    level = canonical(P, level)
    if P["dtype_class"] == "half" and (level == "strict" or level in TRANSFORM_LEVELS):
        return P["acc_max"] * (1 - P["acc_threshold"] * P["acc_u"])  # partial sums in float32
    return P["max_finite"] * (1 - P["threshold"] * P["u"])


def normalised_error(P, level, y, value, magnitude, norm=None, unbiased=None, scales=None):
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
    if scales is not None:
        # A transform's intermediate values (the transformed tile or plane) reach its scale:
        # where that overflows, any infinity or NaN is what the algorithm gives.
        for name in _upto(P, level):
            if name in TRANSFORM_LEVELS and name in P["transforms"]:
                partial = partial | (np.isfinite(r) & ~np.isfinite(y) & (scales[name] >= _reach(P, name)))
    return np.where(overflow_ok | partial, 0.0, e)


def elementwise_error(P, level, y, value, alternative, magnitude, norm=None, unbiased=None, scales=None):
    """Normalised error per element, taking the IEEE alternative where the reference has one."""
    e = normalised_error(P, level, y, value, magnitude, norm, unbiased, scales)
    if alternative is not None:
        differs = ~((value == alternative) | (np.isnan(value) & np.isnan(alternative)))
        e_alt = normalised_error(P, level, y, alternative, magnitude, norm, unbiased, scales)
        e = np.where(differs, np.minimum(e, e_alt), e)
    return e


def sign_rule(P, level):
    """(gain, lean, directed) the arithmetic of contract `level` may give a correct output,
    the widest of its chain's: `gain` a common relative scale error (|gain| at most this;
    Winograd's and the FFT's rounded constants, TF32's truncated inputs), `lean` the share of
    the inexact elements, beyond one half, that may lie on one side (repeated rounding to
    nearest in the 16-bit type: `relaxed`, `any`), `directed` whether a directed rounding is
    allowed (`tf32`: inputs may be truncated). See conformance.tolerance."""
    gain = lean = 0.0
    directed = False
    for name in _upto(P, level):
        if name in P["transforms"]:
            gain = max(gain, P["transforms"][name]["gain"])
        elif name == "strict" and P.get("strict_winograd") and "winograd" in P["transforms"]:
            gain = max(gain, P["transforms"]["winograd"]["gain"])
        elif name == "tf32" and P["dtype_class"] == "float32":
            gain, directed = max(gain, 4 * P["tf32_u"]), True
        elif name in ("relaxed", "any") and P["dtype_class"] == "half":
            lean = max(lean, P["bias_lean"])
    return gain, lean, directed


def sign_gains(P, level):
    """The gains the sign test pairs the output with under `level`: none (0), or also the
    two extremes of the common gain the contract allows (a lean is explained by the gain
    when the extremes lean opposite ways: the counts move monotonically with the gain)."""
    g = sign_rule(P, level)[0]
    if g and P["dtype_class"] == "float64":
        # The float64 reference is itself on the output's grid: a gain below one unit
        # roundoff moves no correctly rounded value, so the extremes are at least u.
        g = max(g, P["u"])
    return (0.0,) if g == 0 else (0.0, -g, g)


def sign_verdict(P, level, counts):
    """(z, biased) from the sign test's counts [(n, t)] at each of `sign_gains(P, level)`
    (the first at gain 0; the others may be left out when the lean at 0 is no bias).

    Biased when (a) at every allowed gain |z| exceeds `bias_z` with one sign, and the share
    beyond one half of the inexact elements on that side exceeds the lean the contract
    allows; or (b) at gain 0, |z| exceeds `bias_z` and more than `truncation_lean` of that
    share lies on one side, under a contract that allows no directed rounding: almost every
    inexact element on one side is a directed rounding (a gain of the contract's arithmetic
    comes with its noise). z is the lean left at the allowed gain that explains it best: 0
    when the extremes lean opposite ways, else the one of smallest magnitude (at gain 0 for
    (b), or when the lean at gain 0 is none).
    """
    _, lean, directed = sign_rule(P, level)
    zs = [bias_z_of(P, n, t) for n, t in counts]
    n0, t0 = counts[0]
    if zs[0] is None or abs(zs[0]) <= P["bias_z"]:
        return zs[0], False
    if not directed and abs(2 * t0 - n0) / n0 > P["truncation_lean"]:
        return zs[0], True
    rest = list(zip(zs, counts))[1:] or [(zs[0], counts[0])]
    known = [z for z, _ in rest if z is not None]
    if not known:
        return None, False
    if min(known) < 0 < max(known):
        return 0.0, False
    flags = [z is not None and abs(z) > P["bias_z"] and abs(2 * t - n) / n > lean for z, (n, t) in rest]
    return min(known, key=abs), all(flags)


def sign_needs_gains(P, level, counts0):
    """Does the verdict need the counts at the gain extremes, after those at gain 0?"""
    z = bias_z_of(P, *counts0)
    return len(sign_gains(P, level)) > 1 and z is not None and abs(z) > P["bias_z"]


def sign_test(P, level, y, value, unbiased=None):
    """(z, biased): the sign test of `y` under `level` (`rounding_bias_z`, `sign_verdict`)."""
    gains = sign_gains(P, level)
    counts = [rounding_counts(P, y, value, unbiased, gains[0])]
    if sign_needs_gains(P, level, counts[0]):
        counts += [rounding_counts(P, y, value, unbiased, g) for g in gains[1:]]
    return sign_verdict(P, level, counts)


def rounding_bias_z(P, y, value, unbiased=None, level="strict"):
    """Sign test on the inexact elements under `level`: z > 0 leans toward zero, z < 0 away
    from it; None below `bias_min_elements` inexact elements.

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
    toward zero. Where the contract allows a common gain (`sign_rule`), the pairing is with
    the correctly rounded value times each extreme of the allowed gain (`sign_verdict`).
    """
    return sign_test(P, level, y, value, unbiased)[0]


def nearest(P, value):
    """`value` rounded to nearest, ties to even, in the case's dtype (NumPy alone: the
    quantum is 2**(e - p) for p significand bits, never below the smallest subnormal)."""
    p = round(-math.log2(P["u"]))
    with np.errstate(invalid="ignore", over="ignore"):
        _, e = np.frexp(value)
        q = np.maximum(np.ldexp(1.0, e - p), P["eta"])
        r = np.rint(value / q) * q
        return np.where(np.abs(r) > P["max_finite"], np.copysign(np.inf, value), r)


def rounding_counts(P, y, value, unbiased=None, gain=0.0):
    """(n, t): the elements that differ from every correctly rounded result (of the exact
    result times 1 + `gain`), and how many of them lie toward zero of the one rounded once
    (`rounding_bias_z`)."""
    with np.errstate(invalid="ignore", over="ignore"):
        if gain:
            # In long double where the platform has one wider than float64 (x86): a gain below
            # a float64 ulp must not round away. Not value * (1 + gain): 1 + gain may round to 1.
            value = np.asarray(value, dtype=np.longdouble)
            value = value + value * gain
            if unbiased is not None:
                unbiased = np.asarray(unbiased, dtype=np.longdouble)
                unbiased = unbiased + unbiased * gain
        r = nearest(P, value)
        ok = np.isfinite(r) & np.isfinite(y) & (value != 0) & (y != r)
        if unbiased is not None:
            twice = nearest(P, nearest(P, unbiased) + (value - unbiased))
            ok &= y != twice
    toward = (np.abs(y[ok]) < np.abs(r[ok])) & ((np.sign(y[ok]) == np.sign(r[ok])) | (y[ok] == 0))
    return int(ok.sum()), int(toward.sum())


def bias_z_of(P, n, t):
    """The sign test's z from its counts; None below `bias_min_elements` inexact elements."""
    if n < P["bias_min_elements"]:
        return None
    return round((2 * t - n) / math.sqrt(n), 2)


def beyond(P, level, y, value, alternative, magnitude, norm=None, unbiased=None, scales=None, memo=None):
    """(error, limit, bad) per element under `level`. The transform scales are read only
    when an element is beyond the limit without them (allowances only grow with them).
    `memo` (a dict) keeps the contracts' own allowances for further calls on the same arrays."""
    e = elementwise_error(P, level, y, value, alternative, magnitude, norm, unbiased)
    limit = element_limit(P, level, value, magnitude, norm, unbiased, None, memo)
    bad = e > limit
    if scales is not None and bad.any() and _uses_scales(P, level):
        e = elementwise_error(P, level, y, value, alternative, magnitude, norm, unbiased, scales)
        limit = element_limit(P, level, value, magnitude, norm, unbiased, scales, memo)
        bad = e > limit
        # Where the output's own magnitude is zero the normalisation is the underflow floor
        # alone, and a transform's (nonzero) allowance overflows in its units: compare the
        # absolute error with the absolute allowance there.
        over = bad & np.isfinite(y) & np.isfinite(value) & ~np.isfinite(limit)
        if over.any():
            with np.errstate(invalid="ignore", over="ignore"):
                a = allowance(P, level, value, magnitude, norm, unbiased, scales, memo)
                bad = np.where(over, np.abs(y - value) > a, bad)
    return e, limit, bad


def passes(P, level, y, value, alternative, magnitude, norm=None, unbiased=None, scales=None):
    """The whole verdict on values: every element within its limit and no rounding bias.

    Returns (passed, why): why is None on a pass, else "elements" or "bias".
    """
    _, _, bad = beyond(P, level, y, value, alternative, magnitude, norm, unbiased, scales)
    if bad.any():
        return False, "elements"
    if sign_test(P, level, y, value, unbiased)[1]:
        return False, "bias"
    return True, None


def elements_met(P, y, value, alternative, magnitude, norm=None, unbiased=None, scales=None):
    """The strongest contract of this case whose element limits `y` meets, or None. The
    contracts nest, so this bisects the chain (a few evaluations on a large output)."""
    levels = chain(P)
    memo: dict = {}

    def meets(level):
        return not beyond(P, level, y, value, alternative, magnitude, norm, unbiased, scales, memo)[2].any()

    if not meets(levels[-1]):
        return None
    lo, hi = 0, len(levels) - 1  # levels[hi] is met
    while lo < hi:
        mid = (lo + hi) // 2
        if meets(levels[mid]):
            hi = mid
        else:
            lo = mid + 1
    return levels[hi]


def strongest_met(P, y, value, alternative, magnitude, norm=None, unbiased=None, scales=None):
    """The strongest contract of this case whose whole verdict (`passes`) `y` meets, or None."""
    first = elements_met(P, y, value, alternative, magnitude, norm, unbiased, scales)
    if first is None:
        return None
    for level in chain(P)[position(P, first):]:
        if passes(P, level, y, value, alternative, magnitude, norm, unbiased, scales)[0]:
            return level
    return None


# ---- the transforms' scales -------------------------------------------------------------


def _abs_finite(a):
    a = np.abs(np.asarray(a, dtype=np.float64))
    return np.where(np.isfinite(a), a, 0.0)


def _grouped(P, fn, xs, ws):
    """Concatenate fn(x part, w part) over the groups of a conv2d (the last axis of xs holds
    the input channels, of ws the output channels); depthwise: fn per (channel, multiplier)."""
    groups, cg = P["groups"], ws.shape[-2]
    og = ws.shape[-1] // groups
    return np.concatenate([fn(xs[..., k * cg:(k + 1) * cg], ws[..., k * og:(k + 1) * og])
                           for k in range(groups)], axis=-1)


def _tile_scale(P, m, weights, ax, aw):
    """S[o] = sum_c sum_{p,q,a,b} |x|[tile p, q, c] |w|[a, b, c, k] W[i, p, a] W[j, q, b] for the
    output o at (i, j) in its m x m tile (tiles aligned at output (0, 0)), float64."""
    w = np.asarray(weights, dtype=np.float64)  # (m, n, 3)
    n = w.shape[1]
    nb, oh, ow, _ = P["out_shape"]
    th, tw = -(-oh // m), -(-ow // m)
    (pt, pb), (pl, pr) = P["pads"]
    xp = np.pad(ax, ((0, 0), (pt, pb + th * m - oh), (pl, pr + tw * m - ow), (0, 0)))
    out = np.empty((nb, th, m, tw * m, P["out_shape"][3]))
    rows = max(1, (1 << 22) // max(1, tw * n * n * 9 * ax.shape[3]))  # tile rows per chunk: bounded memory
    for r0 in range(0, th, rows):
        r1 = min(th, r0 + rows)
        band = xp[:, r0 * m:r1 * m + n - m]
        tiles = np.lib.stride_tricks.sliding_window_view(band, (n, n), axis=(1, 2))[:, ::m, ::m][:, :, :tw]
        z = np.einsum("ipa,NHWCpq->NHWCiaq", w, tiles)
        z = np.einsum("jqb,NHWCiaq->NHWiajbC", w, z)  # (N, rows, TW, m, 3, m, 3, C)
        if P["op"] == "conv2d":
            s = _grouped(P, lambda zz, ww: np.einsum("NHWiajbc,abco->NHWijo", zz, ww), z, aw)
        else:
            s = np.einsum("NHWiajbc,abcq->NHWijcq", z, aw).reshape(z.shape[:3] + (m, m, -1))
        out[:, r0:r1] = s.transpose(0, 1, 3, 2, 4, 5).reshape(nb, r1 - r0, m, tw * m, -1)
    return out.reshape(nb, th * m, tw * m, -1)[:, :oh, :ow]


def _plane_scale(P, ax, aw):
    """S[n, :, :, k] = sum_c ||x[n, :, :, c]||_2 ||w[:, :, c, k]||_2, broadcast over the pixels."""
    sx = _pow2_scale(ax)
    sw = _pow2_scale(aw)
    nx = np.sqrt(np.square(ax / sx).sum(axis=(1, 2))) * sx  # (N, C)
    nw = np.sqrt(np.square(aw / sw).sum(axis=(0, 1))) * sw  # (Cg, O) or (C, M)
    if P["op"] == "conv2d":
        s = _grouped(P, lambda a, b: a @ b, nx, nw)
    else:
        s = (nx[:, :, None] * nw[None]).reshape(nx.shape[0], -1)
    return np.broadcast_to(s[:, None, None, :], tuple(P["out_shape"]))


def _pow2_scale(a):
    top = float(np.max(a)) if a.size else 0.0
    return float(2.0 ** np.floor(np.log2(top))) if top > 0 else 1.0


def transform_scale(P, level, x, filters, bias=None):
    """The magnitude the error of transform contract `level` scales with, per output element
    (float64, output shape; see conformance.tolerance): for Winograd F(m x m, 3 x 3) the
    input tile's products weighted by the transform's matrices (`P["transforms"][level]
    ["weights"]`), for the FFT the input planes' and filters' 2-norms; plus |bias|.
    Non-finite inputs count as zero (their outputs are judged exactly anyway)."""
    t = P["transforms"][level]
    ax, aw = _abs_finite(x), _abs_finite(filters)
    with np.errstate(under="ignore", over="ignore", invalid="ignore"):
        s = _tile_scale(P, t["m"], t["weights"], ax, aw) if t["m"] else _plane_scale(P, ax, aw)
        if bias is not None:
            s = s + _abs_finite(bias)
    return np.ascontiguousarray(s)
