"""Witnesses: a few cheap cases that put every class of the size model in a selection.

`witnesses()` derives, from `cases.sizes.CLASSES` alone, valid cases such that every
class holds for at least one of them (each case is a *witness* of the classes it falls
in). The default and full sets include them, so they cover the model whatever the
catalogue, the sweep and the real layers happen to reach.

Construction (no hand list): for each (op, dtype) of the model, while a class is
uncovered, a new case starts from the first uncovered class's first *proposal* (a
partial assignment of the case's parameters that makes the class hold: a value of a
residue class, a kernel that factors a K, a near-square output of just over 2^24
elements, the smallest geometry of a size-one axis), and then takes the first proposal
of every other uncovered class that agrees with what is already assigned, keeps every
class it took true (checked on the built case: the model's own predicates decide) and
keeps the case cheap (`LIMITS`, or the size its first class needs). Classes are taken
hardest first (`_order`), and among a class's values those that also fall in the most
other uncovered classes first (`_best`), so that a case witnesses many. Unassigned
parameters get neutral values (batch 1, 1 channel, a 1x1 kernel, stride and dilation 1,
no padding, a 3x3 output).

Invariants
- Deterministic: the same model gives the same cases, in the same order, in every
  process (no randomness, no set iteration order). Every case is valid, float32 unless
  its first class is required in a 16-bit type, NHWC, no bias, with `normal` values, or
  `small_integers` beyond LIMITS' output elements (the 2^22 and 2^24 classes: exact
  results, so every correct backend's output is the same bits and judged once).
- Every class of the model holds for some witness (checked when they are built).
- A case is as large as its first class needs and no larger than LIMITS otherwise: only
  the `output elements` classes near 2^22 and 2^24 exceed them (1x1 kernels, 1 channel).
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Any, Iterator

from conformance.spec import Case, conv_geometry

from .sizes import CLASSES, Axis, SizeClass, Span, facts

#: Bounds a witness keeps to while it takes classes beyond its first: input, filter and
#: output elements, multiply-adds, and kernel taps x output pixels of an image (OpenVINO
#: 2026.4's depthwise takes seconds to minutes past a few 10^5 of these, e.g. 11x12 taps
#: on a 70x69 output: 5 s; 15x15 on 66x66: over 25 s on the AVX-512 EPYC).
LIMITS = {"input": 1 << 20, "filter": 1 << 16, "output": 1 << 18, "macs": 1 << 22, "taps_pixels": 1 << 15}
#: Proposals tried per class and case (the first values of its span that fit).
TRIES = 4
#: Largest kernel side a proposal builds (a depthwise K of 511 is 7 x 73).
MAX_KERNEL = 128

#: Neutral values of the parameters no class assigned.
NEUTRAL = {"n": 1, "cin": 1, "cout": 1, "c": 1, "m": 1}
NEUTRAL_AXIS = {"k": 1, "s": 1, "d": 1, "pad": (0, 0), "out": 3}


# ---- building a case from an assignment ------------------------------------------------


def _axis(spec: dict, a: int) -> tuple[int, int, int, int, tuple[int, int]]:
    """(input, kernel, stride, dilation, pads) of axis `a`, neutral where unassigned."""
    k, s, d = (spec.get(f"{p}{a}", NEUTRAL_AXIS[p]) for p in ("k", "s", "d"))
    pad = spec.get(f"pad{a}", NEUTRAL_AXIS["pad"])
    n = spec.get(f"in{a}")
    if n is None:
        out = spec.get(f"out{a}", NEUTRAL_AXIS["out"])
        n = (out - 1) * s + (k - 1) * d + 1 - pad[0] - pad[1]
    return n, k, s, d, pad


def build(op: str, dtype: str, spec: dict, reason: str | None = None) -> Case | None:
    """The valid case an assignment describes, or None (impossible geometry, size over spec's limits)."""
    axes = [_axis(spec, a) for a in (0, 1)]
    if any(n < 1 for n, *_ in axes):
        return None
    pads = (axes[0][4], axes[1][4])
    fields: dict[str, Any] = dict(op=op, dtype=dtype, batch=spec.get("n", NEUTRAL["n"]), height=axes[0][0],
                                  width=axes[1][0], kernel=(axes[0][1], axes[1][1]), strides=(axes[0][2], axes[1][2]),
                                  dilations=(axes[0][3], axes[1][3]),
                                  padding="VALID" if pads == ((0, 0), (0, 0)) else pads, reason=reason)
    if op == "conv2d":
        fields.update(in_channels=spec.get("cin", NEUTRAL["cin"]), out_channels=spec.get("cout", NEUTRAL["cout"]))
    else:
        fields.update(in_channels=spec.get("c", NEUTRAL["c"]), channel_multiplier=spec.get("m", NEUTRAL["m"]))
    try:
        case = Case(**fields)
    except ValueError:  # beyond spec.MAX_ELEMENTS / MAX_MACS
        return None
    for a in (0, 1):  # an output size asked for must be the one the geometry gives
        want = spec.get(f"out{a}")
        if want is not None and case.output_shape[1 + a] != want:
            return None
    if not case.is_valid:
        return None
    if math.prod(case.output_shape) > LIMITS["output"]:
        # Exact results: every correct backend (and one computing in bfloat16) returns the
        # same bits, judged once, and any difference is an index bug, not rounding.
        case = case.replace(profile="small_integers", reason=reason)
    return case


def cost(case: Case) -> dict[str, int]:
    """What LIMITS bounds, of one case."""
    _, oh, ow, _ = case.output_shape
    return {"input": math.prod(case.input_shape), "filter": math.prod(case.filter_shape),
            "output": math.prod(case.output_shape), "macs": math.prod(case.output_shape) * case.reduction_size,
            "taps_pixels": case.kernel[0] * case.kernel[1] * oh * ow}


# ---- proposals: partial assignments that make one class hold ----------------------------


@functools.lru_cache(maxsize=None)
def _factor_pairs(v: int, limit: int) -> tuple[tuple[int, int], ...]:
    """(a, b) with a * b = v, a <= b <= limit, the most square first."""
    return tuple((a, v // a) for a in range(math.isqrt(v), 0, -1) if v % a == 0 and v // a <= limit)


def _output_channels(op: str) -> tuple[str, ...]:
    return ("cout",) if op == "conv2d" else ("c", "m")


#: The parameter a dimension is, where it is one.
PARAMETER = {"input channels per group": "cin", "output channels per group": "cout", "input channels": "c",
             "channel multiplier": "m", "output width": "out1", "output height": "out0", "batch": "n"}
#: The name a dimension's value has in a proposal's values (K is no parameter: kernel x cin).
DIMENSION_OF = {**PARAMETER, "K": "K"}


#: Values of a span a proposal chooses among.
CHOICES = 64
#: Output channels an `output elements` class spreads its elements over, nearest 64 first
#: (odd: the class's values are odd). The input is then 1/64 of the output: cheap to make.
OUTPUT_CHANNELS = tuple(sorted(range(33, 129, 2), key=lambda o: (abs(o - 64), o)))


def _gain(others: dict[str, list[Span]], **values: int) -> int:
    """How many spans of `others` (by parameter name) the values given (by parameter name) fall in."""
    return sum(o.lo <= v < o.hi and v % o.modulus == o.residue for p, v in values.items() for o in others.get(p, ()))


def _best(candidates: list[tuple[dict, dict]], others: dict[str, list[Span]]) -> Iterator[dict]:
    """The first TRIES proposals of (proposal, dimension values) pairs, those whose values
    fall in the most spans still to cover first (a stable sort: then nearest the threshold)."""
    ranked = sorted(candidates, key=lambda pv: -_gain(others, **pv[1]))
    return (proposal for proposal, _ in ranked[:TRIES])


def _span_proposals(op: str, span: Span, spec: dict, others: dict[str, list[Span]]) -> Iterator[dict]:
    dim = span.dimension
    if dim in PARAMETER:
        p = PARAMETER[dim]
        return _best([({p: v}, {p: v}) for v in span.values()[:CHOICES]], others)
    if dim == "K":
        return _best(list(itertools.islice(_k_proposals(op, span, spec), CHOICES)), others)
    # output elements: about OUTPUT_CHANNELS output channels (a small input: 1 input channel)
    # and a near-square image; output pixels per image: a near-square image
    fixed = {v: spec[v] for v in ("n",) + _output_channels(op) if v in spec} if dim == "output elements" else {}
    free = "cout" if op == "conv2d" else "m"
    spread = dim == "output elements" and free not in fixed
    found = []
    for v in span.values()[:1 << 12]:
        unit = math.prod(fixed.values())
        for o in (OUTPUT_CHANNELS if spread else (1,)):
            if v % (unit * o):
                continue
            pairs = [(a, b) for a, b in _factor_pairs(v // (unit * o), 1 << 14) if b <= 4 * a]
            if pairs:
                found.append({**fixed, **({free: o} if spread else {}), "out0": pairs[0][1], "out1": pairs[0][0]})
                break
        if len(found) == TRIES:
            break
    return iter(found)


def _k_proposals(op: str, span: Span, spec: dict) -> Iterator[tuple[dict, dict]]:
    """(proposal, values) with K = kh * kw * cin (conv2d) or kh * kw (depthwise), fitted to
    what is assigned, nearest the span's threshold first."""
    kernel = (spec.get("k0"), spec.get("k1"))
    cin = spec.get("cin", None) if op == "conv2d" else 1
    if cin is None:  # conv2d with the channels free: cin carries K over the taps assigned
        taps = (kernel[0] or 1) * (kernel[1] or 1)
        for v in span.values()[:1 << 12]:
            if v % taps == 0:
                yield {"cin": v // taps, "k0": kernel[0] or 1, "k1": kernel[1] or 1}, {"K": v, "cin": v // taps}
        return
    # taps = K / cin: the multiples of cin in the span
    first, last = -(-span.lo // cin), (span.hi - 1) // cin
    taps_range = range(first, min(last, first + 4095) + 1) if not span.downward else \
        range(last, max(first, last - 4095) - 1, -1)
    for taps in taps_range:
        if (taps * cin) % span.modulus != span.residue:
            continue
        for a, b in _factor_pairs(taps, MAX_KERNEL):
            fit = next(((k0, k1) for k0, k1 in ((b, a), (a, b))
                        if kernel[0] in (None, k0) and kernel[1] in (None, k1)), None)
            if fit:
                yield {"k0": fit[0], "k1": fit[1]}, {"K": taps * cin}
                break


#: Largest total pad of an `input 1` axis (its pads decide its output size).
MAX_PAD = 16
#: Pads (lo, hi) an axis proposal tries (an `input 1` axis computes its own).
AXIS_PADS = ((0, 0), (1, 1), (0, 1), (1, 0), (1, 2), (2, 1), (2, 2), (0, 3), (3, 0))


def _axis_candidates(out: int | None) -> Iterator[tuple[int, int, int, int, tuple[int, int]]]:
    """(input, kernel, stride, dilation, pads) of one axis, small first; with `out`, those
    whose output is about `out` (an input of 1 gets the pads that make it so)."""
    for k in (1, 2, 3):
        for s in (1, 2):
            for d in (1, 2):
                eff = (k - 1) * d + 1
                if out is None:
                    for n in range(1, 9):
                        for pad in AXIS_PADS:
                            yield n, k, s, d, pad
                    continue
                total = (out - 1) * s + eff - 1
                if 0 <= total <= MAX_PAD:
                    yield 1, k, s, d, (total // 2, total - total // 2)
                for pad in AXIS_PADS:
                    n = (out - 1) * s + eff - pad[0] - pad[1]
                    if n > 1:
                        yield n, k, s, d, pad


@functools.lru_cache(maxsize=None)
def _axis_proposals(target: Axis, out: int | None) -> tuple[dict, ...]:
    """The first TRIES geometries of the target's axis that make it hold (and give `out`, if set)."""
    a = target.axis
    found = []
    candidates = _axis_candidates(out)
    if out is None:  # cheapest first: small input, kernel and output
        candidates = sorted(candidates, key=lambda t: (t[0] * t[1], t[0], t[1], t[2], t[3], t[4]))
    for n, k, s, d, pad in candidates:
        got = conv_geometry((n, 1), (k, 1), (s, 1), (d, 1), (pad, (0, 0))).out_h
        if (out is None or got == out) and target.holds_axis(n, k, s, d, pad, got):
            found.append({f"in{a}": n, f"k{a}": k, f"s{a}": s, f"d{a}": d, f"pad{a}": pad, f"out{a}": got})
            if len(found) == TRIES:
                break
    return tuple(found)


def proposals(k: SizeClass, spec: dict, others: dict[str, list[Span]]) -> Iterator[dict]:
    """Partial assignments that make class `k` hold, given what `spec` already assigns;
    a value that also makes more of the spans `others` (by parameter name) hold comes first."""
    if isinstance(k.target, Axis):
        return iter(_axis_proposals(k.target, spec.get(f"out{k.target.axis}")))
    return _span_proposals(k.op, k.target, spec, others)


# ---- the witnesses ---------------------------------------------------------------------------


def _merged(spec: dict, proposal: dict) -> dict | None:
    if any(key in spec and spec[key] != v for key, v in proposal.items()):
        return None
    return {**spec, **proposal}


def _within(case: Case, limits: dict) -> bool:
    return all(v <= limits[key] for key, v in cost(case).items())


def _witness(op: str, dtype: str, todo: list[SizeClass]) -> tuple[Case, list[SizeClass]]:
    """One case: the first class of `todo`, then every other class that fits."""
    first = todo[0]
    others: dict[str, list[Span]] = {}
    for k in todo:
        if isinstance(k.target, Span) and k.target.dimension in DIMENSION_OF:
            others.setdefault(DIMENSION_OF[k.target.dimension], []).append(k.target)
    for proposal in proposals(first, {}, others):
        case = build(op, dtype, proposal)
        if case is not None and first.holds(case):
            break
    else:
        raise AssertionError(f"no proposal builds a case of size class {first.label}")
    spec, claimed = proposal, [first]
    limits = {key: max(v, LIMITS[key]) for key, v in cost(case).items()}
    f = facts(case)
    for k in todo[1:]:
        if k.target.holds(f):
            claimed.append(k)
            continue
        for proposal in proposals(k, spec, others):
            trial = _merged(spec, proposal)
            candidate = None if trial is None else build(op, dtype, trial)
            if candidate is None or not _within(candidate, limits):
                continue
            g = facts(candidate)
            if all(c.target.holds(g) for c in claimed) and k.target.holds(g):
                spec, case, f = trial, candidate, g
                claimed.append(k)
                break
    return case, [k for k in todo if k.target.holds(f)]


def _order(classes) -> list[SizeClass]:
    """The order classes are placed in: hardest first (a class that needs a large value
    takes a parameter before a small-value class, which fits almost anywhere, fills it),
    and within a difficulty, round-robin over the dimensions (the i-th class of every
    dimension before the (i+1)-th of any), so that a witness takes one class of each."""
    def difficulty(k: SizeClass) -> int:
        if k.family == "near":
            return 0
        if k.family == "residue" and k.target.lo > 1:
            return 1
        return 2 if k.family == "size-one" else 3

    rank: dict[SizeClass, int] = {}
    groups: dict[tuple, list[SizeClass]] = {}
    for k in classes:
        key = (k.op, k.dtype, difficulty(k), getattr(k.target, "dimension", getattr(k.target, "axis", None)))
        groups.setdefault(key, []).append(k)
    for key, members in groups.items():
        if key[2] == 0 and key[3] == "output channels per group":
            # near 2^12 output channels with near 2^8 input channels, not 2^12 with 2^12:
            # the filter (their product) stays a few MiB
            members = members[::-1]
        for i, k in enumerate(members):
            rank[k] = i
    return sorted(classes, key=lambda k: (difficulty(k), rank[k]))


@functools.lru_cache(maxsize=2)
def _witnesses(classes: tuple[SizeClass, ...]) -> tuple[Case, ...]:
    groups: dict[tuple[str, str], list[SizeClass]] = {}
    for k in _order(classes):
        groups.setdefault((k.op, k.dtype), []).append(k)
    out: list[Case] = []
    for (op, dtype), todo in groups.items():
        while todo:
            case, held = _witness(op, dtype, todo)
            more = f" and {len(held) - 1} more size classes" if len(held) > 1 else ""
            out.append(case.replace(reason=f"size witness: {todo[0].label}{more}", name=None))
            todo = [k for k in todo if k not in held]
    return tuple(out)


def witnesses(classes: tuple[SizeClass, ...] = CLASSES) -> list[Case]:
    """Cases that together fall in every class of `classes` (the whole model by default)."""
    return list(_witnesses(tuple(classes)))
