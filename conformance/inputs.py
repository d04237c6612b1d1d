"""Deterministic inputs for a case, every value exactly representable in the case dtype.

Invariants
- The values depend only on `case.id` (a SHA-256 of it seeds a private PCG64
  generator): no global RNG state, the same arrays on every machine and run. Workers
  regenerate inputs instead of receiving them.
- Arrays are canonical (x: (N, H, W, C); filters: (kh, kw, C/groups, O) or
  (kh, kw, C, M); bias: (O,) or (C*M,)) and already in the case dtype, so what a backend
  receives is exactly what the oracle computes with.

Value profiles
- `normal`: x ~ N(0, 1), filters ~ N(0, 1/K), bias ~ N(0, 1).
- `small_integers`: small integers, and few enough non-zero filter taps per output that
  every product and every partial sum, in any order, is an integer <= 2**p (p the
  dtype's significand bits). The exact result is representable: any difference at all
  is a bug, not rounding.
- `wide_range`: magnitudes spread over many binades with random signs (cancellation),
  bounded so that no sum can overflow the dtype.
- `special`: normal values with special ones placed densely, where vectorised kernels
  go wrong (`special_positions`): NaN, +Inf, -Inf, -0.0, +0.0 and subnormals in x on a
  lattice of sites that no output window reads twice, each with finite neighbours along
  H, W and C, on the lanes vector kernels treat apart (the first and last lane, both of a
  pair, each side of a 4/8/16-lane boundary, along C and along W); in the filters, a
  +Inf, -Inf or NaN tap in up to a quarter of the output channels, never two neighbouring
  ones (`special_filter_positions`), exact zeros (`special_filter_zeros`) and
  subnormals (`special_filter_subnormals`) in a few other taps. Zero and subnormal sites
  of x sit on input channels an infinite tap reads (0 * Inf = NaN, subnormal * Inf =
  Inf): a kernel that skips zeros or flushes subnormals gives another non-finite value.
- `subnormal`: every x value (and bias) a subnormal of the dtype between half the
  smallest normal and the smallest normal, filters of order 1: a backend that flushes
  subnormal inputs or results to zero cannot pass, nor can a wrong result hide in the
  subnormals' few bits.
- `subnormal_weights`: the mirror image: every filter value and bias a subnormal of the
  dtype (between half the smallest normal and the smallest normal), x of order 1. A
  backend that flushes subnormal *constants* (weights folded into a model, a fused bias)
  while it keeps subnormal activations passes `subnormal` but not this.
- `overflow`: x up to half the dtype's largest finite value and filters up to 1.9 in
  magnitude: every product is finite, but with a few terms per output many exact results
  lie beyond the dtype's range and must come back as the infinity of their sign (a
  backend that saturates to the largest finite value cannot pass). For float64 the values
  are scaled by 2**500 instead: the oracle itself computes in float64.
"""

from __future__ import annotations

import hashlib
import math
from typing import NamedTuple

import numpy as np

from .dtypes import fmt, np_dtype
from .spec import FORWARD_OPS, OP_INFO, Case


class Inputs(NamedTuple):
    x: np.ndarray
    filters: np.ndarray
    bias: np.ndarray | None


def rng_for(case: Case, stream: str = "") -> np.random.Generator:
    """A generator seeded from the case id (and a stream name), independent of anything else."""
    digest = hashlib.sha256(f"{case.id}|{stream}".encode()).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest[:16], "little")))


def make_inputs(case: Case) -> tuple:
    """The case's operands in `case.operands` order, in the case dtype: an `Inputs`
    (x, filters, bias) for the forward ops, bias None unless case.bias; (dy, filters),
    (x, dy) or (x, filters, pointwise, bias) for the others (`training_operands`)."""
    rng = rng_for(case)
    maker = _PROFILES[case.profile]
    x, w, b = maker(case, rng)
    dt = np_dtype(case.dtype)

    def cast(a):
        return np.ascontiguousarray(a, dtype=np.float64).astype(dt)

    if case.op in FORWARD_OPS:
        return Inputs(cast(x), cast(w), cast(b) if case.bias else None)
    arrays = training_operands(case, x, w, b)
    return tuple(None if a is None else cast(a) for a in arrays)


def _normal(case: Case, rng: np.random.Generator):
    k = max(case.reduction_size, 1)
    x = rng.standard_normal(case.input_shape)
    w = rng.standard_normal(case.filter_shape) / math.sqrt(k)
    b = rng.standard_normal(case.output_channels)
    return x, w, b


#: `small_integers`' value bound per dtype.
_SMALL = {"float64": 64, "float32": 16, "float16": 2, "bfloat16": 1}


def _small_integers(case: Case, rng: np.random.Generator):
    p = fmt(case.dtype).precision
    # Per-dtype value ranges; the filter density below keeps every sum <= 2**p.
    a = _SMALL[case.dtype]
    budget = 2**p
    c = a * a if case.bias else 0  # bias magnitude
    x = rng.integers(-a, a + 1, size=case.input_shape).astype(np.float64)
    w = rng.integers(-a, a + 1, size=case.filter_shape).astype(np.float64)
    nnz = max((budget - c) // (a * a), 1)
    # Each output's filter slice: conv2d filters[..., o] (kh*kw*C/g taps), depthwise
    # filters[:, :, k, q] (kh*kw taps). Zero all but `nnz` taps of each slice.
    kh, kw, ci, co = case.filter_shape
    if case.forward_op == "conv2d":
        flat = w.reshape(kh * kw * ci, co)
        for o in range(co):
            if flat.shape[0] > nnz:
                flat[rng.permutation(flat.shape[0])[nnz:], o] = 0.0
        w = flat.reshape(case.filter_shape)
    else:
        flat = w.reshape(kh * kw, ci * co)
        if flat.shape[0] > nnz:
            for j in range(flat.shape[1]):
                flat[rng.permutation(flat.shape[0])[nnz:], j] = 0.0
        w = flat.reshape(case.filter_shape)
    b = rng.integers(-c, c + 1, size=case.output_channels).astype(np.float64) if c else np.zeros(case.output_channels)
    return x, w, b


def wide_range_exponents(case: Case) -> tuple[int, int]:
    """(lo, hi): x and filter values are drawn from 2**[lo, hi] times N(0, 1)."""
    f = fmt(case.dtype)
    k = max(case.reduction_size, 1) + 1
    # Largest product times K, with headroom for |N(0,1)| <= ~6 squared, stays finite.
    hi = math.floor((math.log2(f.max_finite) - 6 - math.log2(k)) / 2)
    span = {"float64": 20, "float32": 10, "bfloat16": 8, "float16": 5}[case.dtype]
    hi = min(hi, span)
    return hi - 2 * span, hi


def _wide_range(case: Case, rng: np.random.Generator):
    lo, hi = wide_range_exponents(case)
    x = rng.standard_normal(case.input_shape) * np.exp2(rng.integers(lo, hi + 1, size=case.input_shape))
    w = rng.standard_normal(case.filter_shape) * np.exp2(rng.integers(lo, hi + 1, size=case.filter_shape))
    b = rng.standard_normal(case.output_channels) * np.exp2(rng.integers(lo, hi + 1, size=case.output_channels))
    return x, w, b


#: The values the `special` profile places in x, in the order its sites cycle through them
#: (two non-finite sites in three).
SPECIAL_KINDS = ("+inf", "nan", "-0", "-inf", "+inf", "subnormal", "nan", "-inf", "+0")
#: The non-finite ones.
NONFINITE_KINDS = ("+inf", "nan", "-inf")
#: Vector widths whose lane boundaries the sites visit (channels and widths).
LANE_WIDTHS = (2, 4, 8, 16, 32, 64)


def lane_positions(n: int) -> list[int]:
    """Positions along an axis of length `n` where vector lanes start and end, most telling
    first: 0, n - 1, 1, n - 2, then the last and first lane of every 4/8/16/32/64-lane
    group (3, 4, 7, 8, 15, 16, ...), each once. Even and odd positions alternate (both
    positions of a lane pair)."""
    out: list[int] = []
    for p in [0, n - 1, 1, n - 2] + [v for width in LANE_WIDTHS[1:] for v in (width - 1, width)]:
        if 0 <= p < n and p not in out:
            out.append(p)
    return out


def _spacing(extent: int, stride: int) -> int:
    """Distance between two sites along an axis such that at least one output between the
    outputs that read them reads neither (a finite output between two poisoned ones)."""
    return extent + 2 * stride - 1


def _filter_sites(case: Case) -> list[tuple[str, tuple[int, int, int, int]]]:
    """(kind, filter index) of the non-finite filter taps: one per poisoned output channel,
    at most a quarter of them and never two neighbours (so every poisoned channel has
    finite ones beside it), none with a single output channel."""
    kh, kw, ci, co = case.filter_shape
    total = case.conv_channels
    if total < 2:
        return []
    chosen: list[int] = []
    for o in lane_positions(total):
        if len(chosen) >= max(1, total // 4):
            break
        if all(abs(o - c) > 1 for c in chosen):
            chosen.append(o)
    taps = [(0, 0), (kh - 1, kw - 1), (kh // 2, kw // 2), (0, kw - 1), (kh - 1, 0)]
    out = []
    for t, o in enumerate(chosen):
        di, dj = taps[t % len(taps)]
        if case.forward_op == "conv2d":
            q = (ci - 1, 0, ci // 2)[t % 3]  # the tap's input channel: last, first, middle lane
            pos = (di, dj, q, o)
        else:
            pos = (di, dj, o // co, o % co)  # output channel k*M + q reads input channel k
        out.append((("+inf", "-inf", "nan")[t % 3], pos))
    return out


def special_filter_positions(case: Case) -> dict[str, list[tuple[int, int, int, int]]]:
    """Where the `special` profile puts +Inf, -Inf and NaN in the filters: kind -> indices."""
    out: dict[str, list[tuple[int, int, int, int]]] = {}
    for kind, pos in _filter_sites(case):
        out.setdefault(kind, []).append(pos)
    return out


def _input_channel_read(case: Case, pos: tuple[int, int, int, int]) -> int:
    """The input channel a filter tap multiplies (its group's channel for grouped conv2d)."""
    di, dj, q, o = pos
    if case.forward_op == "conv2d":
        return (o // (case.out_channels // case.groups)) * case.filter_in_channels + q
    return q


def special_positions(case: Case) -> dict[str, list[tuple[int, int, int, int]]]:
    """Where the `special` profile puts each special value in x: kind -> NHWC indices.

    Sites lie on a lattice in (H, W), `_spacing` apart, so that no output window reads two
    of them and finite outputs separate the outputs each one poisons; the lattice is
    skewed row by row and batch by batch, so the sites' widths fall on every residue
    (lane 0 and the last lane of 4/8/16-wide groups along W among them). The kinds cycle
    through SPECIAL_KINDS. A non-finite site sits on the channels of `lane_positions`
    (of its group for grouped conv2d) in turn: the first and last lane, both of a pair,
    each side of a 4/8/16-lane boundary; a zero or subnormal site sits on an input channel
    that an infinite filter tap reads (0 * Inf = NaN, subnormal * Inf = Inf), when there is
    one. Every other value is a normal number: every site has finite neighbours along H,
    W and C.
    """
    n, h, w, c = case.input_shape
    (kh, kw), (sh, sw), (dh, dw) = case.kernel, case.strides, case.dilations
    ph, pw = _spacing((kh - 1) * dh + 1, sh), _spacing((kw - 1) * dw + 1, sw)
    groups = case.groups if case.forward_op == "conv2d" else 1
    cg = c // groups
    lanes = lane_positions(cg)
    reads = [_input_channel_read(case, pos) for kind, pos in _filter_sites(case) if kind != "nan"]
    out: dict[str, list[tuple[int, int, int, int]]] = {}
    site = loud = 0  # sites so far; non-finite ones so far (they take the lanes in turn)
    for b in range(n):
        row0 = (b + 1) % ph if h > (b + 1) % ph else 0
        for i, r in enumerate(range(row0, h, ph)):
            col0 = (i + b + 1) % pw
            for col in range(col0 if col0 < w else 0, w, pw):
                kind = SPECIAL_KINDS[(site + site // len(SPECIAL_KINDS)) % len(SPECIAL_KINDS)]
                if kind in NONFINITE_KINDS or not reads:
                    ch = (loud % groups) * cg + lanes[(loud // groups) % len(lanes)]
                    loud += kind in NONFINITE_KINDS
                else:
                    ch = reads[site % len(reads)]
                out.setdefault(kind, []).append((b, r, col, ch))
                site += 1
    return out


def special_filter_zeros(case: Case) -> list[tuple[int, int, int, int]]:
    """Where the `special` profile puts exact zeros (+0.0, -0.0 alternately) in the filters.

    One filter value in eight, at most four, never a non-finite tap; none when the filter
    has fewer than four values. An Inf or NaN input meeting one must give NaN (0 * Inf),
    which an implementation that skips zero weights never forms.
    """
    n = math.prod(case.filter_shape)
    if n < 4:
        return []
    rng = rng_for(case, "special-filter-zeros")
    taken = {pos for _, pos in _filter_sites(case)}
    want = min(4, max(1, n // 8))
    out = []
    for flat in rng.permutation(n)[: want + len(taken)]:
        pos = tuple(int(i) for i in np.unravel_index(int(flat), case.filter_shape))
        if pos not in taken and len(out) < want:
            out.append(pos)
    return out


def special_filter_subnormals(case: Case) -> list[tuple[int, int, int, int]]:
    """Where the `special` profile puts subnormals in the filters: up to two taps that are
    neither non-finite nor zero (none when the filter has fewer than eight values)."""
    n = math.prod(case.filter_shape)
    if n < 8:
        return []
    taken = {pos for _, pos in _filter_sites(case)} | set(special_filter_zeros(case))
    rng = rng_for(case, "special-filter-subnormals")
    out = []
    for flat in rng.permutation(n):
        pos = tuple(int(i) for i in np.unravel_index(int(flat), case.filter_shape))
        if pos not in taken:
            out.append(pos)
        if len(out) == 2:
            break
    return out


def _special(case: Case, rng: np.random.Generator):
    x, w, b = _normal(case, rng)
    tiny = fmt(case.dtype).smallest_normal
    values = {"nan": np.nan, "+inf": np.inf, "-inf": -np.inf, "-0": -0.0, "+0": 0.0}
    _place_specials(x, special_positions(case), tiny)
    for i, pos in enumerate(special_filter_zeros(case)):
        w[pos] = -0.0 if i % 2 else 0.0
    for i, pos in enumerate(special_filter_subnormals(case)):
        w[pos] = (-1) ** i * tiny * 0.625
    for kind, positions in special_filter_positions(case).items():
        for pos in positions:
            w[pos] = values[kind]
    return x, w, b


def _place_specials(x: np.ndarray, sites: dict[str, list[tuple[int, int, int, int]]], tiny: float) -> None:
    """Write the `special` profile's values at `sites` (kind -> indices) of `x`."""
    values = {"nan": np.nan, "+inf": np.inf, "-inf": -np.inf, "-0": -0.0, "+0": 0.0}
    for kind, positions in sites.items():
        for i, pos in enumerate(positions):
            # Subnormals of both signs, the largest ones (the most significand bits) first.
            x[pos] = values[kind] if kind in values else (-1) ** i * tiny * (0.75 - 0.125 * (i % 4))


def _subnormal(case: Case, rng: np.random.Generator):
    f = fmt(case.dtype)
    tiny, eta = f.smallest_normal, f.smallest_subnormal
    # The largest subnormals (half the smallest normal and up: the most significand bits a
    # subnormal has) and filters of order 1, so the results keep enough bits to be judged
    # (the sign of y, not only whether it was flushed), whatever the accumulator.
    def subnormals(shape):
        mag = np.minimum(rng.uniform(0.5, 1.0, size=shape) * tiny, tiny - eta)
        return np.where(rng.random(shape) < 0.5, -mag, mag)
    x = subnormals(case.input_shape)
    w = np.clip(rng.standard_normal(case.filter_shape), -3.0, 3.0)
    b = subnormals(case.output_channels)
    return x, w, b


def _largest_subnormals(case: Case, rng: np.random.Generator, shape) -> np.ndarray:
    """Random-sign subnormals of the case dtype in [smallest_normal / 2, smallest_normal)."""
    f = fmt(case.dtype)
    mag = np.minimum(rng.uniform(0.5, 1.0, size=shape) * f.smallest_normal, f.smallest_normal - f.smallest_subnormal)
    return np.where(rng.random(shape) < 0.5, -mag, mag)


def _subnormal_weights(case: Case, rng: np.random.Generator):
    # x of order 1 (at most 3 in magnitude) keeps every product subnormal-sized and
    # representable (no underflow to zero in the exact result), so a flushed filter or
    # bias changes the result by its full size.
    x = np.clip(rng.standard_normal(case.input_shape), -3.0, 3.0)
    w = _largest_subnormals(case, rng, case.filter_shape)
    b = _largest_subnormals(case, rng, case.output_channels)
    return x, w, b


def _overflow(case: Case, rng: np.random.Generator):
    f = fmt(case.dtype)
    scale = 2.0**500 if case.dtype == "float64" else f.max_finite / 8
    x = np.clip(rng.standard_normal(case.input_shape), -3.9, 3.9) * scale
    w = np.clip(rng.standard_normal(case.filter_shape), -1.9, 1.9)
    b = np.clip(rng.standard_normal(case.output_channels), -3.9, 3.9) * scale
    return x, w, b


_PROFILES: dict = {
    "normal": _normal,
    "small_integers": _small_integers,
    "wide_range": _wide_range,
    "special": _special,
    "subnormal": _subnormal,
    "subnormal_weights": _subnormal_weights,
    "overflow": _overflow,
}


# ---- the training ops' operands ---------------------------------------------------------
# A training op's case is its forward case: the profile's maker gives x and the filters
# (in forward shapes, scaled for the op's K); dy is drawn in the role it plays. For the
# gradient w.r.t. the input, dy is the activation (it meets the filters, as x does in
# the forward op); for the gradient w.r.t. the filters, dy is the weight (x meets it).
# `small_integers` re-thins the weight-role operand so that the terms of every result
# element, in any order, stay integers <= 2**p, as for the forward ops.


def _activation(case: Case, rng: np.random.Generator, shape) -> np.ndarray:
    """An array of `shape` drawn as the profile draws x."""
    profile = case.profile
    if profile == "small_integers":
        a = _SMALL[case.dtype]
        return rng.integers(-a, a + 1, size=shape).astype(np.float64)
    if profile == "wide_range":
        lo, hi = wide_range_exponents(case)
        return rng.standard_normal(shape) * np.exp2(rng.integers(lo, hi + 1, size=shape))
    if profile == "subnormal":
        return _largest_subnormals(case, rng, shape)
    if profile == "subnormal_weights":
        return np.clip(rng.standard_normal(shape), -3.0, 3.0)
    if profile == "overflow":
        scale = 2.0**500 if case.dtype == "float64" else fmt(case.dtype).max_finite / 8
        return np.clip(rng.standard_normal(shape), -3.9, 3.9) * scale
    return rng.standard_normal(shape)  # normal, special (its specials are placed in x)


def _weight(case: Case, rng: np.random.Generator, shape, k: int) -> np.ndarray:
    """An array of `shape` drawn as the profile draws filters, for sums of `k` terms."""
    profile = case.profile
    if profile in ("small_integers", "wide_range"):  # drawn alike in both roles
        return _activation(case, rng, shape)
    if profile == "subnormal":
        return np.clip(rng.standard_normal(shape), -3.0, 3.0)
    if profile == "subnormal_weights":
        return _largest_subnormals(case, rng, shape)
    if profile == "overflow":
        return np.clip(rng.standard_normal(shape), -1.9, 1.9)
    return rng.standard_normal(shape) / math.sqrt(max(k, 1))


def _thin(a: np.ndarray, slices: np.ndarray, keep: int, rng: np.random.Generator) -> None:
    """Zero all but `keep` entries of each column of `slices` (a 2-D view of `a`)."""
    if slices.shape[0] <= keep:
        return
    for j in range(slices.shape[1]):
        slices[rng.permutation(slices.shape[0])[keep:], j] = 0.0


def training_operands(case: Case, x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple:
    """(dy, filters), (x, dy) or (x, filters, pointwise, bias) in float64 from the forward
    profile's x, filters and bias (see the comment above)."""
    rng = rng_for(case, "training")
    result = OP_INFO[case.op].result
    budget = 2 ** fmt(case.dtype).precision
    a = _SMALL[case.dtype]
    if result == "input":
        dy = _activation(case, rng, case.conv_output_shape)
        if case.profile == "special":  # dy is what meets the filters: its lattice is dy's own
            n, oh, ow, oc = case.conv_output_shape
            plane = Case(op="conv2d", batch=n, height=oh, width=ow, in_channels=oc, kernel=(1, 1), out_channels=1,
                         dtype=case.dtype)
            _place_specials(dy, special_positions(plane), fmt(case.dtype).smallest_normal)
        if case.profile == "small_integers":  # each input channel's terms: its filter slice
            kh, kw, ci, co = case.filter_shape
            per = co // case.groups if case.forward_op == "conv2d" else co
            blocks = w.reshape(kh * kw, ci, co // per, per).transpose(0, 3, 1, 2).reshape(kh * kw * per, -1)
            _thin(w, blocks, max(budget // (a * a), 1), rng)
            w = blocks.reshape(kh * kw, per, ci, co // per).transpose(0, 2, 3, 1).reshape(case.filter_shape)
        return dy, w
    if result == "filter":
        dy = _weight(case, rng, case.conv_output_shape, case.reduction_size)
        if case.profile == "small_integers":  # each filter value's terms: one dy channel
            flat = dy.reshape(-1, dy.shape[-1])
            _thin(dy, flat, max(budget // (a * a), 1), rng)
            dy = flat.reshape(case.conv_output_shape)
        return x, dy
    pointwise = _weight(case, rng, case.pointwise_shape, case.conv_channels)
    if case.profile == "wide_range":  # a third factor: kept within [2**-4, 1] x N(0, 1)
        pointwise = np.clip(rng.standard_normal(case.pointwise_shape), -3, 3) * np.exp2(
            rng.integers(-4, 1, size=case.pointwise_shape))
    if case.profile == "small_integers":
        c = a * a if case.bias else 0
        first = max(math.isqrt(max(budget - c, 1) // (a * a)), 1)
        kh, kw, ci, m = case.filter_shape
        flat = w.reshape(kh * kw, ci * m)
        _thin(w, flat, first, rng)
        w = flat.reshape(case.filter_shape)
        pointwise = rng.integers(-1, 2, size=case.pointwise_shape).astype(np.float64)
        flat = pointwise.reshape(-1, case.out_channels)
        _thin(pointwise, flat, max((budget - c) // (first * a * a), 1), rng)
        pointwise = flat.reshape(case.pointwise_shape)
    return x, w, pointwise, (b if case.bias else None)
