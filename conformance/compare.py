"""Judge one backend output against the oracle, per the tolerance model.

`compare(case, actual, ref, inputs, precision)` returns a `Comparison`: the verdict under
the precision contract, the divergence kind, the error figures (with the strongest
contract the output meets), the few worst elements and the error maps the reports draw.
Everything in it is plain data (numbers, lists, strings). Every rule and constant comes
from `conformance.tolerance`; the kind is decided here and nowhere else.

Divergence kinds (a stable vocabulary, also used by results.json and the reports):
- `shape`: the output shape is not the expected one (or the output is not a float array).
- `dtype`: the output is not in the case dtype (the values are judged too: the message
  says whether they, rounded to the case dtype, would pass), or is no numpy.ndarray at
  all: the message names what came back ("received a list", "received None", "received
  an object of type torch.Tensor") and judges its values where it has some.
- `nonfinite`: NaN/Inf where the exact result is finite, or missing, or of the wrong sign.
- `subnormal_flush`: wrong, but exactly what flushing subnormal inputs and results to
  zero gives (FTZ/DAZ).
- `inexact`: an exact profile (`small_integers`) came back with any difference at all.
- `precision`: the output meets a weaker precision contract than the one in force (e.g.
  float16 accumulation under `strict`), or it is above the probabilistic threshold but
  within the rigorous bound: right indices, fewer bits than the dtype promises.
- `value`: beyond the rigorous bound of any correct summation: a wrong result.
- `rounding_bias`: every element within tolerance, but the rounding errors lean one way
  far beyond chance (e.g. truncation toward zero instead of round-to-nearest): see
  `tolerance.rounding_bias_z`.
- `invalid_accepted`: an invalid case (no correct answer exists) returned an output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import tolerance
from .dtypes import dtype_name, fmt, has_subnormal, np_dtype
from .oracle import Reference, reference
from .protocol import NotAnArray, not_an_array
from .spec import Case
from .text import json_safe, number
from .vocabulary import KINDS

#: Profiles whose inputs hold no subnormal in the dtypes with float32's exponent range or
#: more: integers, standard normals (far above 2**-126 in magnitude) and huge values.
#: float16's smallest normal (6.1e-5) is within reach of a standard normal: not float16.
_NO_SUBNORMAL_PROFILES = ("normal", "small_integers", "overflow")
_NO_SUBNORMAL_DTYPES = ("float32", "float64", "bfloat16")


def kind_possible(kind: str, case: Case) -> bool:
    """Can `compare` judge a divergence of `kind` on `case` at all? `invalid_accepted` only
    on an invalid case, every other kind only on a valid one, `subnormal_flush` only where
    the inputs may hold subnormals. Unsure is True: this says what a run cannot have seen
    (a known divergence of a kind no case of the run can show is not "now passing")."""
    if kind not in KINDS:  # a status a manifest may name (crash, error, timeout): anywhere
        return True
    if kind == "invalid_accepted" or not case.is_valid:
        return kind == "invalid_accepted" and not case.is_valid
    if kind == "subnormal_flush":
        return case.dtype not in _NO_SUBNORMAL_DTYPES or case.profile not in _NO_SUBNORMAL_PROFILES
    return True


WORST_COUNT = 8
#: Error maps larger than this are pooled (max) down to it, to keep reports small.
MAP_MAX = 64


@dataclass
class Comparison:
    passed: bool
    kind: str | None
    message: str
    figures: dict[str, Any] = field(default_factory=dict)
    worst: list[dict[str, Any]] = field(default_factory=list)
    # Normalised error, worst over batch and channels: rows over OH, pooled to <= MAP_MAX.
    heatmap: list[list[float]] | None = None
    # Worst normalised error per output channel (pooled to <= 4 * MAP_MAX bars).
    channel_errors: list[float] | None = None
    notes: list[str] = field(default_factory=list)
    precision: str = tolerance.DEFAULT_PRECISION  # the contract judged against
    # The strongest contract of the dtype whose element limits the output meets (None: none,
    # or no values were judged).
    precision_met: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "kind": self.kind, "message": self.message, "figures": self.figures,
                "worst": self.worst, "heatmap": self.heatmap, "channel_errors": self.channel_errors,
                "notes": self.notes, "precision": self.precision, "precision_met": self.precision_met}


def _not_an_array(case: Case, wrapped: NotAnArray, ref: Reference | None, inputs, precision: str) -> Comparison:
    """The `dtype` divergence of an output that is not a numpy.ndarray; its values are judged when it has some."""
    note = [f"adapter returned {wrapped.returned}"]
    if not case.is_valid:
        return Comparison(False, "invalid_accepted",
                          f"invalid case ({case.invalid_reason}) returned {wrapped.returned} instead of an error",
                          notes=note, precision=precision)
    head = f"expected a numpy.ndarray, received {wrapped.returned}"
    if wrapped.values is None:
        return Comparison(False, "dtype", f"{head}, which has no numeric values to judge", notes=note,
                          precision=precision)
    vals = wrapped.values
    if wrapped.returned in ("a list", "a tuple"):  # Python numbers have no dtype to judge: take the case's
        with np.errstate(over="ignore", invalid="ignore"):
            vals = vals.astype(np_dtype(case.dtype))
    values = compare(case, vals, ref, inputs, precision)
    verdict = "its values, converted, are within tolerance" if values.passed else \
        f"its values, converted, also diverge ({values.kind}: {values.message})"
    return Comparison(False, "dtype", f"{head}; {verdict}", values.figures, values.worst, values.heatmap,
                      values.channel_errors, note + values.notes, precision=precision)


def _finite_or_none(v: float) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def _severity(e: np.ndarray, limit: np.ndarray, t: float) -> np.ndarray:
    """Normalised error rescaled so that each element's own limit sits at the threshold t.

    What the heatmaps and the worst-element ranking show: > t means beyond tolerance.
    """
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        scaled = np.where(limit > 0, e / np.where(limit > 0, limit, 1.0) * (t if t > 0 else 1.0),
                          np.where(e > 0, np.inf, 0.0))
    return scaled


def _pool(a: np.ndarray, limit: int) -> np.ndarray:
    """Max-pool a 1-D or 2-D array down to at most `limit` per axis."""
    for axis in range(a.ndim):
        n = a.shape[axis]
        if n > limit:
            step = -(-n // limit)
            pad = step * limit - n
            widths = [(0, 0)] * a.ndim
            widths[axis] = (0, pad)
            a = np.pad(a, widths, constant_values=0.0)
            shape = list(a.shape)
            shape[axis : axis + 1] = [shape[axis] // step, step]
            a = a.reshape(shape).max(axis=axis + 1)
    return a


def _maxima(case: Case, y: np.ndarray, ref: Reference, e: np.ndarray, limit: np.ndarray,
            sigma: np.ndarray | None) -> dict[str, Any]:
    """The reductions behind the figures, over any block of elements: maxima, counts and
    whether any element is finite in both (`_merge` combines blocks, `_figures_of` words them)."""
    f = fmt(case.dtype)
    r = ref.value
    finite = np.isfinite(r) & np.isfinite(y)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        err = np.where(finite, np.abs(y - r), 0.0)
        rel = np.where(finite & (r != 0), err / np.abs(np.where(r == 0, 1.0, r)), np.where(err > 0, np.inf, 0.0))
        # floor(log2 |r|), exactly (log2 may round up to the next integer just below a power of two)
        expo = np.frexp(np.where(finite & (r != 0), r, 1.0))[1] - 1
        ulp = np.ldexp(1.0, np.maximum(expo, f.min_exponent) - f.precision + 1)
        ulps = np.where(finite, err / ulp, 0.0)
        bits_ratio = np.where(finite & (ref.magnitude > 0), err / np.where(ref.magnitude > 0, ref.magnitude, 1.0), 0.0)
    bad = e > limit
    m = {"elements": int(e.size), "any_finite": bool(finite.any()), "mismatched": int(bad.sum()),
         "nonfinite_mismatches": int((np.isinf(e) & bad).sum()), "sigma": None}
    for name, a in (("err", err), ("rel", rel), ("e", e), ("ulps", ulps), ("bits_ratio", bits_ratio)):
        m[name] = float(a.max()) if a.size else 0.0
    if sigma is not None and e.size:
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            s_err = np.where(finite, err / sigma, 0.0)
        m["sigma"] = float(np.fmax.reduce(s_err, axis=None))  # NaN only where every element's is
    return m


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """The maxima of two blocks' elements together."""
    out = {k: a[k] + b[k] for k in ("elements", "mismatched", "nonfinite_mismatches")}
    out["any_finite"] = a["any_finite"] or b["any_finite"]
    for k in ("err", "rel", "e", "ulps", "bits_ratio"):
        out[k] = max(a[k], b[k]) if not (math.isnan(a[k]) or math.isnan(b[k])) else math.nan
    sig = [v for v in (a["sigma"], b["sigma"]) if v is not None]
    out["sigma"] = float(np.fmax.reduce(sig)) if sig else None
    return out


def _figures_of(case: Case, m: dict[str, Any]) -> dict[str, Any]:
    f = fmt(case.dtype)
    worst_ratio = m["bits_ratio"]
    # Over the elements finite in both only; with none (e.g. an all-NaN output) there is no
    # figure to give, rather than the full precision of an empty maximum.
    if m["elements"] and not m["any_finite"]:
        eff_bits = None
    else:
        eff_bits = float(f.precision) if worst_ratio == 0 else float(min(f.precision, max(0.0, -math.log2(worst_ratio))))
    return {
        "max_sigma_error": None if m["sigma"] is None else _finite_or_none(m["sigma"]),
        "sigma_limit": tolerance.SIGMA_LIMIT,
        "elements": m["elements"],
        "mismatched": m["mismatched"],
        "max_abs_error": _finite_or_none(m["err"]),
        "max_rel_error": _finite_or_none(m["rel"]),
        "max_normalised_error": _finite_or_none(m["e"]),
        "threshold": tolerance.threshold(case),
        "hard_bound": _finite_or_none(tolerance.hard_bound(case)),
        "max_ulp": _finite_or_none(m["ulps"]),
        "effective_bits": None if eff_bits is None else round(eff_bits, 2),
        "dtype_bits": f.precision,
        "nonfinite_mismatches": m["nonfinite_mismatches"],
        "rounding_bias_z_limit": tolerance.BIAS_Z,
    }


def _figures(case: Case, y: np.ndarray, ref: Reference, e: np.ndarray, limit: np.ndarray,
             sigma: np.ndarray | None) -> dict[str, Any]:
    return _figures_of(case, _maxima(case, y, ref, e, limit, sigma))


#: Outputs of at least `_BLOCKED_MIN` elements are judged first in blocks of `_BLOCK`: the
#: same rule and the same reductions, with temporaries small enough to stay in cache
#: (measured 3x faster on a 5 M-element output). The first block with an element beyond its
#: limit ends that pass and the whole arrays are judged as any divergence is.
_BLOCK = 1 << 15
_BLOCKED_MIN = 2 * _BLOCK


def _blocks(size: int):
    """Slices of a flattened output of `size` elements, `_BLOCK` at a time."""
    return [slice(start, start + _BLOCK) for start in range(0, size, _BLOCK)] or [slice(0, 0)]


def _flat_refs(ref: Reference, y: np.ndarray):
    """(block reference, block output) per block of the flattened arrays."""
    flat = [None if a is None else np.reshape(a, -1) for a in ref]
    yf = y.reshape(-1)
    for part in _blocks(yf.size):
        yield part, Reference(*(None if a is None else a[part] for a in flat)), yf[part]


def sign_test(case: Case, y: np.ndarray, ref: Reference, precision: str) -> tuple[float | None, bool]:
    """(z, biased) of the sign test under `precision`, counted block by block: at no gain, and
    where that leans beyond chance also at the extremes of the gain the contract's arithmetic
    may give (`tolerance.sign_gains`, `tolerance.sign_verdict`)."""
    gains = tolerance.sign_gains(case, precision)

    def counts(gain):
        n = t = 0
        for _, r, yb in _flat_refs(ref, y):
            bn, bt = tolerance.rounding_counts(case, yb, r, gain)
            n, t = n + bn, t + bt
        return n, t

    found = [counts(gains[0])]
    if tolerance.sign_needs_gains(case, precision, found[0]):
        found += [counts(g) for g in gains[1:]]
    return tolerance.sign_verdict(case, precision, found)


def _whole_verdict_met(case: Case, y: np.ndarray, ref: Reference, elements_met: str | None) -> str | None:
    """From the strongest contract whose element limits y meets on: the first whose sign test
    y passes too (the elements nest, so every later one's hold as well)."""
    if elements_met is None:
        return None
    chain = tolerance.chain_of(case)
    for level in chain[chain.index(elements_met):]:
        if not sign_test(case, y, ref, level)[1]:
            return level
    return None


def _blocked_pass(case: Case, y: np.ndarray, ref: Reference, precision: str, scales):
    """(figures, strongest contract whose element limits y meets) of an output none of whose
    elements is beyond its limit, computed block by block; None as soon as one is."""
    chain = tolerance.chain_of(case)
    need_met = tolerance.canonical(case, precision) != chain[0]
    met_at, acc = 0, None
    for part, r, yb in _flat_refs(ref, y):
        sc = None if scales is None else scales.part(part)
        e, limit, bad = tolerance.beyond(case, yb, r, precision, sc)
        if bad.any():
            return None
        if need_met and met_at is not None:
            met = tolerance.strongest_met(case, yb, r, sc)
            met_at = None if met is None else max(met_at, chain.index(met))
        sigma = tolerance.error_sigma(case, r.value, r.norm) if r.norm is not None else None
        m = _maxima(case, yb, r, e, limit, sigma)
        acc = m if acc is None else _merge(acc, m)
    met = chain[0] if not need_met else (None if met_at is None else chain[met_at])
    return _figures_of(case, acc), met


def _worst(y: np.ndarray, ref: Reference, e: np.ndarray, limit: np.ndarray,
           severity: np.ndarray, sigma: np.ndarray | None = None) -> list[dict[str, Any]]:
    over = np.where(e > limit, severity, -1.0).ravel()
    count = min(WORST_COUNT, int((over >= 0).sum()))
    if count == 0:
        return []
    idx = np.argpartition(-over, count - 1)[:count]
    idx = idx[np.argsort(-over[idx], kind="stable")]
    out = []
    for flat in idx:
        pos = tuple(int(i) for i in np.unravel_index(int(flat), e.shape))
        row = json_safe({"index": list(pos), "expected": float(ref.value[pos]), "actual": float(y[pos]),
                         "magnitude": float(ref.magnitude[pos]), "normalised_error": float(e[pos]),
                         "limit": float(limit[pos])})
        if sigma is not None:  # the error in standard deviations of a correct sum's rounding error
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                row["sigma_error"] = json_safe(abs(float(y[pos]) - float(ref.value[pos])) / float(sigma[pos]))
        out.append(row)
    return out


def _maps(e: np.ndarray, limit: np.ndarray):
    ratio = np.where(np.isinf(e), np.float64(1e300), e)
    heat = ratio.max(axis=(0, 3)) if ratio.size else np.zeros((0, 0))
    chan = ratio.max(axis=(0, 1, 2)) if ratio.size else np.zeros(0)
    heat = _pool(heat, MAP_MAX)
    chan = _pool(chan, 4 * MAP_MAX)
    return [[float(v) for v in row] for row in heat], [float(v) for v in chan]


def compare(case: Case, actual: Any, ref: Reference | None, inputs=None,
            precision: str = tolerance.DEFAULT_PRECISION) -> Comparison:
    """The verdict on one backend output under the contract `precision`. `ref` is None for
    an invalid case.

    `inputs` (x, filters, bias) lets a failing comparison test whether flushing
    subnormals to zero explains it.
    """
    tolerance.check_precision(precision)
    wrapped = not_an_array(actual)
    if wrapped is not None:
        return _not_an_array(case, wrapped, ref, inputs, precision)
    if not case.is_valid:
        shape = tuple(actual.shape)
        return Comparison(False, "invalid_accepted",
                          f"invalid case ({case.invalid_reason}) returned an output of shape {shape} instead of an error",
                          figures={"actual_shape": list(shape)}, precision=precision)
    notes: list[str] = []
    y = np.asarray(actual)
    if y.dtype.kind != "f" and dtype_name(y) != "bfloat16":
        return Comparison(False, "shape", f"expected a floating-point array, received dtype {y.dtype}",
                          precision=precision)
    wrong_dtype = dtype_name(y) != case.dtype
    if wrong_dtype:
        # The contract says the output is in the case dtype; judge the values too, so the
        # report says whether anything besides the dtype is wrong.
        returned = dtype_name(y)
        with np.errstate(over="ignore", invalid="ignore"):
            y = y.astype(np_dtype(case.dtype))
    expected_shape = case.output_shape
    if tuple(y.shape) != tuple(expected_shape):
        return Comparison(False, "shape", f"expected output shape {expected_shape}, received {tuple(y.shape)}",
                          figures={"expected_shape": list(expected_shape), "actual_shape": list(y.shape)},
                          notes=notes, precision=precision)
    if wrong_dtype:
        values = compare(case, y, ref, inputs, precision)
        verdict = "the values, rounded to it, are within tolerance" if values.passed else \
            f"the values, rounded to it, also diverge ({values.kind}: {values.message})"
        values.notes.insert(0, f"returned dtype {returned}")
        return Comparison(False, "dtype", f"expected an output of dtype {case.dtype}, received {returned}; {verdict}",
                          values.figures, values.worst, values.heatmap, values.channel_errors, values.notes,
                          precision, values.precision_met)
    y64 = y.astype(np.float64)
    scales = tolerance.transform_scales(case, inputs)
    quick = _blocked_pass(case, y64, ref, precision, scales) if y64.size >= _BLOCKED_MIN else None
    if quick is not None:
        figures, met = quick
        passed = True
    else:
        e, limit, bad = tolerance.beyond(case, y64, ref, precision, scales)
        passed = not bad.any()
        strongest = tolerance.chain_of(case)[0]
        if passed and tolerance.canonical(case, precision) == strongest:
            met = strongest
        else:
            met = tolerance.strongest_met(case, y64, ref, scales)
        sigma = tolerance.error_sigma(case, ref.value, ref.norm) if ref.norm is not None else None
        figures = _figures(case, y64, ref, e, limit, sigma)
    z, flagged = sign_test(case, y64, ref, precision) if passed else (None, False)
    if flagged or not passed:
        # The strongest contract whose whole verdict (elements and sign test) y meets.
        met = _whole_verdict_met(case, y64, ref, met)
    figures.update(precision=precision, precision_met=met)
    done = dict(notes=notes, precision=precision, precision_met=met)
    if passed:
        figures["rounding_bias_z"] = z
        if flagged:
            # Flushing subnormals to zero is a rounding toward zero too; where the underflow
            # floor hides it element by element (bfloat16 has only 7 subnormal bits), say so.
            if _flush_meets(case, y64, flushed_reference(case, inputs), precision):
                return Comparison(False, "subnormal_flush",
                                  f"all elements within tolerance, but the inexact ones round toward zero far beyond "
                                  f"chance (sign test z = {z:.1f}) exactly as flushing subnormal inputs and results "
                                  f"to zero (FTZ/DAZ) gives", figures, **done)
            # TF32 shows in the elements (products of 10-bit inputs); an output within the
            # stricter contract's element limits whose rounding only leans is a directed
            # rounding (a truncation), though the tf32 contract's sign test would allow it.
            if met is not None and met in tolerance.weaker(case, precision) and met != "tf32":
                return Comparison(False, "precision",
                                  f"meets `{met}`, not `{precision}`: consistent with "
                                  f"{tolerance.consistent_with(met, case.dtype)}; every element within the "
                                  f"`{precision}` limits, but the inexact ones lean one way beyond what "
                                  f"`{precision}` allows (sign test z = {z:.1f})", figures, **done)
            way = "toward zero" if z > 0 else "away from zero"
            return Comparison(False, "rounding_bias",
                              f"all elements within tolerance, but the inexact ones round {way} far beyond chance "
                              f"(sign test z = {z:.1f}, |z| > {tolerance.BIAS_Z:g}): a directed rounding such as "
                              f"truncation instead of round-to-nearest", figures, **done)
        return Comparison(True, None, "within tolerance", figures, **done)
    severity = _severity(e, limit, tolerance.threshold(case))
    heat, chan = _maps(severity, limit)
    worst = _worst(y64, ref, e, limit, severity, sigma)
    kind, why = _kind(case, y64, ref, e, bad, inputs, figures["effective_bits"], precision, met)
    t = tolerance.threshold(case)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        ratio = np.where(bad, e / np.where(limit > 0, limit, 1e-300), -1.0)
    at = np.unravel_index(int(np.argmax(np.where(np.isnan(ratio), np.inf, ratio))), e.shape)
    message = (f"{figures['mismatched']} of {figures['elements']} elements beyond the `{precision}` contract; "
               f"max normalised error {number(figures['max_normalised_error'])} (the worst element's limit "
               f"{float(limit[at]):.3g}; sqrt(K) threshold {figures['threshold']:.3g}, hard bound "
               f"{number(figures['hard_bound'])}); {effective_bits_text(figures)}")
    cancel_only = not (e > t).any() and not tolerance.is_exact(case)
    any_model = tolerance.dtype_class(case.dtype) != "half" or tolerance.canonical(case, precision) == "any"
    if cancel_only and any_model and figures.get("max_sigma_error") is not None:
        message += (f"; beyond the cancellation-aware bound: error up to {figures['max_sigma_error']:.3g} sigma of a "
                    f"correct sum's rounding error (limit {tolerance.SIGMA_LIMIT:g} sigma)")
    if why:
        message = f"{why}; {message}"
    return Comparison(False, kind, message, figures, worst, heat, chan, **done)


def effective_bits_text(figures: dict[str, Any]) -> str:
    """"effective bits B of P", said over the finite elements only when some are not, or n/a."""
    bits, of = figures.get("effective_bits"), figures.get("dtype_bits")
    if bits is None:
        return "effective bits n/a (no element is finite in both the output and the exact result)"
    nonfinite = figures.get("nonfinite_mismatches") or 0
    if nonfinite:
        return f"effective bits {bits} of {of} over the finite elements only ({nonfinite} non-finite mismatches)"
    return f"effective bits {bits} of {of}"


def _kind(case: Case, y: np.ndarray, ref: Reference, e: np.ndarray, bad: np.ndarray, inputs,
          effective_bits: float | None, precision: str, met: str | None) -> tuple[str, str | None]:
    """(kind, the sentence that explains it or None) of a divergence: decided once, here."""
    flushed = flushed_reference(case, inputs)
    if _flush_meets(case, y, flushed, precision):
        return "subnormal_flush", None
    weaker = tolerance.weaker(case, precision)
    if tolerance.is_exact(case) and not np.isinf(e[bad]).any() and float(e.max()) <= tolerance.hard_bound(case):
        # An exact profile's difference is `inexact` whatever weaker contract it meets (only a
        # transform contract can: every other one is exact there too).
        return "inexact", None
    if met is not None and met in weaker:
        return "precision", (f"meets `{met}`, not `{precision}`: consistent with "
                             f"{tolerance.consistent_with(met, case.dtype)}")
    if flushed is not None and weaker and tolerance.within_tolerance(case, y, flushed, weaker[-1]):
        return "subnormal_flush", (f"meets `{weaker[-1]}`, not `{precision}`, with subnormals flushed to zero")
    if np.isinf(e[bad]).any() and not (np.isfinite(y[bad]).all() and np.isfinite(ref.value[bad]).all()):
        # A NaN or Inf where the exact result has none, or the reverse. (An infinite
        # normalised error alone is not one: a finite value where every term is a pad
        # has an allowance of about nothing, and a wrong finite value there is `value`.)
        return "nonfinite", None
    within_bound = float(e.max()) <= tolerance.hard_bound(case)
    # "Fewer bits" needs some bits left: without a finite rigorous bound (bfloat16 with 256
    # or more terms) or with hardly a correct bit, a divergence is a wrong value.
    keeps_bits = effective_bits is not None and \
        effective_bits >= min(tolerance.PRECISION_MIN_BITS, fmt(case.dtype).precision / 2)
    if tolerance.is_exact(case) and within_bound:
        return "inexact", None
    if within_bound and keeps_bits:
        return "precision", None
    return "value", None


def flushed_reference(case: Case, inputs) -> Reference | None:
    """The oracle on inputs and outputs flushed to zero (FTZ/DAZ), or None without inputs or
    when nothing is subnormal in them (then flushing cannot change anything)."""
    if inputs is None or not has_subnormal(inputs, case.dtype):
        return None
    return reference(case, *inputs, flush_subnormals=True)


def _flush_meets(case: Case, y: np.ndarray, flushed: Reference | None, precision: str) -> bool:
    """Flushing explains y when y meets `precision` against the flushed oracle, its sign
    test included (a truncation near a few subnormal inputs is no flush)."""
    return flushed is not None and tolerance.within_tolerance(case, y, flushed, precision) \
        and not sign_test(case, y, flushed, precision)[1]


def flush_explains(case: Case, y: np.ndarray, inputs, precision: str = tolerance.DEFAULT_PRECISION) -> bool:
    """True when y passes against the oracle run on inputs and outputs flushed to zero."""
    flushed = flushed_reference(case, inputs)
    return flushed is not None and tolerance.within_tolerance(case, y, flushed, precision)
