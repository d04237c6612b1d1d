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
- `special`: normal values with NaN, +Inf, -Inf, -0.0 and subnormals at known
  positions of x (`special_positions`), exact zeros in a few filter taps
  (`special_filter_zeros`), and one +Inf in the filter of the last output channel when
  there is more than one output channel.
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
from .spec import Case


class Inputs(NamedTuple):
    x: np.ndarray
    filters: np.ndarray
    bias: np.ndarray | None


def rng_for(case: Case, stream: str = "") -> np.random.Generator:
    """A generator seeded from the case id (and a stream name), independent of anything else."""
    digest = hashlib.sha256(f"{case.id}|{stream}".encode()).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest[:16], "little")))


def make_inputs(case: Case) -> Inputs:
    """(x, filters, bias) for `case`, in the case dtype; bias is None unless case.bias."""
    rng = rng_for(case)
    maker = _PROFILES[case.profile]
    x, w, b = maker(case, rng)
    dt = np_dtype(case.dtype)
    x = np.ascontiguousarray(x, dtype=np.float64).astype(dt)
    w = np.ascontiguousarray(w, dtype=np.float64).astype(dt)
    b = np.ascontiguousarray(b, dtype=np.float64).astype(dt) if case.bias else None
    return Inputs(x, w, b)


def _normal(case: Case, rng: np.random.Generator):
    k = max(case.reduction_size, 1)
    x = rng.standard_normal(case.input_shape)
    w = rng.standard_normal(case.filter_shape) / math.sqrt(k)
    b = rng.standard_normal(case.output_channels)
    return x, w, b


def _small_integers(case: Case, rng: np.random.Generator):
    p = fmt(case.dtype).precision
    # Per-dtype value ranges; the filter density below keeps every sum <= 2**p.
    a = {"float64": 64, "float32": 16, "float16": 2, "bfloat16": 1}[case.dtype]
    budget = 2**p
    c = a * a if case.bias else 0  # bias magnitude
    x = rng.integers(-a, a + 1, size=case.input_shape).astype(np.float64)
    w = rng.integers(-a, a + 1, size=case.filter_shape).astype(np.float64)
    nnz = max((budget - c) // (a * a), 1)
    # Each output's filter slice: conv2d filters[..., o] (kh*kw*C/g taps), depthwise
    # filters[:, :, k, q] (kh*kw taps). Zero all but `nnz` taps of each slice.
    kh, kw, ci, co = case.filter_shape
    if case.op == "conv2d":
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


def special_positions(case: Case) -> dict[str, list[tuple[int, int, int, int]]]:
    """Where the `special` profile puts each special value in x: kind -> NHWC indices.

    At most one NaN, one +Inf, one -Inf, then up to four -0.0 and four subnormals, at
    distinct positions, as many as x has room for (in that order of priority).
    """
    rng = rng_for(case, "special-positions")
    n = math.prod(case.input_shape)
    order = rng.permutation(n)
    kinds = ["nan", "+inf", "-inf"] + ["-0"] * 4 + ["subnormal"] * 4
    out: dict[str, list[tuple[int, int, int, int]]] = {}
    for kind, flat in zip(kinds, order):
        out.setdefault(kind, []).append(tuple(int(i) for i in np.unravel_index(flat, case.input_shape)))
    return out


def special_filter_position(case: Case) -> tuple[int, int, int, int] | None:
    """Where the `special` profile puts +Inf in the filters (None with one output channel)."""
    if case.output_channels < 2:
        return None
    kh, kw, ci, co = case.filter_shape
    return (0, 0, ci - 1, co - 1)


def special_filter_zeros(case: Case) -> list[tuple[int, int, int, int]]:
    """Where the `special` profile puts exact zeros (+0.0, -0.0 alternately) in the filters.

    One filter value in eight, at most four, never the infinite tap; none when the
    filter has fewer than four values.
    """
    n = math.prod(case.filter_shape)
    if n < 4:
        return []
    rng = rng_for(case, "special-filter-zeros")
    inf_pos = special_filter_position(case)
    out = []
    for flat in rng.permutation(n)[: min(4, max(1, n // 8)) + 1]:
        pos = tuple(int(i) for i in np.unravel_index(int(flat), case.filter_shape))
        if pos != inf_pos and len(out) < min(4, max(1, n // 8)):
            out.append(pos)
    return out


def _special(case: Case, rng: np.random.Generator):
    x, w, b = _normal(case, rng)
    tiny = fmt(case.dtype).smallest_normal
    values = {"nan": np.nan, "+inf": np.inf, "-inf": -np.inf, "-0": -0.0}
    for kind, positions in special_positions(case).items():
        for i, pos in enumerate(positions):
            x[pos] = values[kind] if kind in values else (-1) ** i * tiny * (0.75 - 0.125 * i)
    # Exact zeros in the filters: an Inf or NaN input meeting one must give NaN (0 * Inf),
    # which an implementation that skips zero weights never forms.
    for i, pos in enumerate(special_filter_zeros(case)):
        w[pos] = -0.0 if i % 2 else 0.0
    pos = special_filter_position(case)
    if pos is not None:
        w[pos] = np.inf
    return x, w, b


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


_PROFILES = {
    "normal": _normal,
    "small_integers": _small_integers,
    "wide_range": _wide_range,
    "special": _special,
    "subnormal": _subnormal,
    "subnormal_weights": _subnormal_weights,
    "overflow": _overflow,
}
