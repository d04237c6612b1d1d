"""Exact float64 sums for the oracle: every output within one float64 ulp of the exact result.

`conformance.oracle` calls these for float64 cases (`compensated=True`); they take finite
float64 arrays (the oracle handles NaN and Inf separately) and return float64.

- Error-free transformations: TwoSum, TwoProduct by Dekker splitting, and Dot2 (Ogita,
  Rump & Oishi), the slow simple reference (`dot2`).
- Ozaki-style error-free slicing: operands are split into slices of a few bits whose
  products and partial sums are exact in float64 (in any order, with or without FMA), the
  small remainder products are added in float64, and a rigorous per-output error bound
  (never an estimate) decides whether an output is done: one whose bound exceeds 2**-54
  of its value is recomputed by a path with more slices, down to exact rationals
  (`exact_dots`, `rational_dot`).
- Paths: where every nonzero |x| and |w| lies within 2**-FAST_EXP .. 2**FAST_EXP (so no
  scaling or product underflows or overflows), conv2d slices each padded image once and
  runs two slices per operand in three GEMMs (`ExactConv`, `conv2d_exact_group`) and
  depthwise takes one slice per operand and channel (`depthwise_exact`). Elsewhere conv2d
  uses per-row slices with per-row escalation (`exact_matmul`; subnormal results may
  round once more there, as any float64 computation would) and depthwise Dot2 per tap
  (`two_product`, `two_sum`, in the oracle).

Invariants
- The one-ulp result holds whatever BLAS computes the GEMMs: only sums that are exact in
  float64 are left to it, and every inexact step is inside the bound that is checked.
- NumPy and the standard library only (fractions for the rational fallback).
- tests/test_oracle.py forces every path, fix-up and fallback against exact rationals on
  adversarial data (cancellation, huge and tiny exponents, subnormals, zero rows, K = 1,
  K > 16,384).
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np

from . import patches
from .patches import row_chunks, scratch, scratch_bool, tile, windows


def two_sum(a, b):
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _sum2(terms: list) -> tuple:
    """Sum2 of same-shape arrays (TwoSum, the errors added in float64): (value, sum of |terms|)."""
    acc, comp, mass = terms[0], np.zeros_like(terms[0]), np.abs(terms[0])
    for t in terms[1:]:
        acc, e = two_sum(acc, t)
        comp += e
        mass += np.abs(t)
    return acc + comp, mass


_SPLITTER = 134217729.0  # 2**27 + 1


def _split(a):
    c = _SPLITTER * a
    hi = c - (c - a)
    return hi, a - hi


def two_product(a, b):
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def dot2(columns: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Compensated (M, K) @ (K, O): Dot2, vectorised over the M x O outputs.

    The slow, simple reference the Ozaki path is tested and benchmarked against.
    """
    s = np.zeros((columns.shape[0], weights.shape[1]))
    c = np.zeros_like(s)
    for k in range(columns.shape[1]):
        p, ep = two_product(columns[:, k : k + 1], weights[k : k + 1, :])
        s, es = two_sum(s, p)
        c += ep + es
    return s + c


_U = 2.0**-53  # float64 unit roundoff
#: Slices per operand the exact matmul starts with, and the most it escalates a row to.
#: One slice (3 GEMMs) meets the rigorous bound below only for short reductions or
#: outputs far from zero; two (6 GEMMs) meet it for nearly every output of realistic data,
#: so a first pass with one slice would mostly be wasted (measured: 99% of rows escalate
#: at K = 576).
_OZAKI_FIRST, _OZAKI_MAX = 2, 6


def _gamma(n: int) -> float:
    return n * _U / (1 - n * _U)


def _safety(k: int) -> float:
    """Covers the rounding of a bound computed in float64 from sums of K absolute values
    (a computed sum of non-negative terms is at least (1 - gamma_K) of the exact one)."""
    return 1 + 4 * _gamma(k + 8)


def _slice_bits(k: int) -> int:
    """Bits per slice such that a K-term sum of slice products is exact in float64."""
    return (53 - max(1, int(k - 1).bit_length())) // 2


def _slices(a: np.ndarray, axis: int, beta: int, count: int):
    """a = sum_i I_i * 2**-e_i + rest, error-free (Ozaki's splitting).

    Each slice is the remainder truncated (towards zero) to `beta` bits below the top of
    its row (axis=1) or column (axis=0): I_i holds integers |I_i| < 2**beta, e_i one
    exponent per row or column. Truncation keeps |slice| <= |remainder| <= |a| elementwise,
    so nothing overflows, and scaling by powers of two is exact.
    Returns [(I_i, e_i, slice_i)], rest.
    """
    out, rest = [], a
    for _ in range(count):
        top = np.max(np.abs(rest), axis=axis, keepdims=True)
        e = beta - np.frexp(top)[1]
        ints = np.trunc(_scale(rest, e))
        piece = _scale(ints, -e)
        rest = rest - piece
        out.append((ints, e, piece))
    return out, rest


#: Scale exponents up to this size use a multiplication (6x faster than ldexp); both the
#: factor and any product of two such factors are normal numbers, so the scaling is exact.
_SAFE_EXP = 400


def _scale(a: np.ndarray, e: np.ndarray) -> np.ndarray:
    """a * 2**e, exactly (one rounding only where the result is subnormal)."""
    if e.size and -_SAFE_EXP <= e.min() and e.max() <= _SAFE_EXP:
        return a * np.ldexp(1.0, e)
    return np.ldexp(a, e)


def _scale2(a: np.ndarray, ea: np.ndarray, eb: np.ndarray) -> np.ndarray:
    """a * 2**(ea + eb) for an (M, N) a, ea (M, 1) and eb (1, N), in place when safe."""
    if (ea.size and eb.size and -_SAFE_EXP <= min(ea.min(), eb.min())
            and max(ea.max(), eb.max()) <= _SAFE_EXP):
        a *= np.ldexp(1.0, ea)
        a *= np.ldexp(1.0, eb)
        return a
    return np.ldexp(a, ea + eb)


class SplitWeights:
    """The weights' column slices, made once per GEMM operand and extended on demand
    (slice i does not depend on how many follow it)."""

    def __init__(self, b: np.ndarray):
        self.b, self.beta = b, _slice_bits(b.shape[0])
        self.colsum = np.abs(b).sum(axis=0)
        self.slices: list = []  # (I_i, e_i, slice_i)
        self.rests: list = []  # remainder after slice i
        self.rest_max: list = []  # its column maxima

    def get(self, count: int):
        while len(self.slices) < count:
            rest = self.rests[-1] if self.rests else self.b
            (sl,), rest = _slices(rest, 0, self.beta, 1)
            self.slices.append(sl)
            self.rests.append(rest)
            self.rest_max.append(np.abs(rest).max(axis=0))
        return self.slices[:count], self.rests[:count], self.rest_max[:count]


def exact_matmul(a: np.ndarray, w: SplitWeights, count: int | None = None) -> np.ndarray:
    """(M, K) @ (K, O) to within one float64 ulp per element, in a few float64 GEMMs.

    Ozaki-style: with `count` = s slices per operand (`_slices`),

        A B = sum_{i+j <= s+1} A_i B_j  +  sum_i A_i Rb_{s+1-i} + Ra_s B

    The first sum's GEMMs are exact: integer slices of < 2**beta with K * 2**(2 beta)
    <= 2**53, so every partial sum is an exactly representable integer whatever order or
    FMA use the BLAS picks. The tail is a 2**-(s beta) fraction of the magnitude and is
    computed in plain float64; the terms are summed with Sum2 (TwoSum, compensated).
    Every output then has the rigorous error bound

        gamma_{K+s+1} (sum_i rowsum|A_i| colmax|Rb_{s+1-i}| + rowmax|Ra_s| colsum|B|) + gamma_n^2 sum |terms|

    and an output whose bound exceeds 2**-54 |value| (so that with the final rounding the
    error could pass one ulp) has its row recomputed with one more slice, up to
    `_OZAKI_MAX`, beyond which it is computed in exact rationals. Subnormal
    results may round once more in the scaling (ldexp), as any float64 computation would.
    """
    m, k = a.shape
    out = np.empty((m, w.b.shape[1]))
    rows = np.arange(m)
    if count is None:
        count = 1 if k <= 16 else _OZAKI_FIRST
    while rows.size:
        sub = a if rows.size == m else a[rows]
        sa, ra = _slices(sub, 1, w.beta, count)
        sb, rests, rest_max = w.get(count)
        terms = [_scale2(sa[i][0] @ sb[d - i][0], -sa[i][1], -sb[d - i][1])
                 for d in range(count) for i in range(d + 1)]
        tail = ra @ w.b
        for i in range(count):
            tail += sa[i][2] @ rests[count - 1 - i]
        value, mass = _sum2(terms + [tail])
        # Tail term i is bounded by rowsum|A_i| colmax|Rb_{s+1-i}|: each about 2**-(s beta).
        tail_mass = sum(np.abs(sa[i][2]).sum(axis=1, keepdims=True) * rest_max[count - 1 - i] for i in range(count))
        bound = (_gamma(k + count + 1) * (tail_mass + np.abs(ra).max(axis=1, keepdims=True) * w.colsum)
                 + _gamma(len(terms) + 1) ** 2 * mass) * _safety(k)
        rejected = bound > 2.0**-54 * np.abs(value)
        if count >= _OZAKI_MAX:  # beyond what slices resolve: those outputs in exact rationals
            for i, j in zip(*np.nonzero(rejected)):
                value[i, j] = rational_dot(sub[i], w.b[:, j])
            rejected[...] = False
        bad = rejected.any(axis=1)
        keep = ~bad
        out[rows[keep]] = value[keep]
        rows, count = rows[bad], count + 1
    return out


#: The sliced exact paths (`ExactConv`, `depthwise_exact`) need every nonzero |x| and |w|
#: within 2**-FAST_EXP .. 2**FAST_EXP: then no scaling, slice product or tail product in
#: them underflows or overflows, so every step is exact or within the rounding their bound
#: counts. Other data go through the per-row `exact_matmul` and Dot2 per tap.
FAST_EXP = 300


def in_fast_range(a: np.ndarray) -> bool:
    flat = a.reshape(-1)
    for part in row_chunks(flat.size, 8, patches.L2_BYTES):  # blocks that stay in cache
        m = np.abs(flat[part])
        if m.max() >= 2.0**FAST_EXP:
            return False
        tiny = m < 2.0**-FAST_EXP
        if tiny.any() and m[tiny].any():  # zeros are fine
            return False
    return True


class ExactConv:
    """Exact float64 conv2d of one group, for data in the fast range (`FAST_EXP`).

    Ozaki's two-slice scheme with the input sliced once per band of input rows instead of
    once per im2col row (every input element appears kh*kw times in im2col): each band of
    padded input x = P1 + P2 + Ra (Ozaki's fixed steps from the band's max), the weights
    B = B1 + B2 + Rb (steps from each column's max), and with Rb1 = B2 + Rb

        A B = P1 B1  +  (P1 B2 + P2 B1)  +  (P1 Rb + P2 Rb1 + Ra B)

    in three GEMMs over the im2col of P1, P2 and Ra (built straight into one buffer),
    against views of one weight array W = [Rb | B2 | B1 | Rb1]: P1 W[:, :3O],
    P2 W[:, 2O:] and Ra B - the six GEMMs' flops of two slices in three calls with wider
    operands. P1 B1 and P1 B2 + P2 B1 are exact: every product is an integer multiple of
    one unit per column and the partial sums stay below 2**53 units (beta from 2K), in any
    order, with or without FMA. The tail t is float64, w = fl(P1 B2 + P2 B1 + t) and the
    result fl(P1 B1 + w) is the one final rounding. Rigorous per-output bound on the error
    before it, from per-pixel sums of the band's slices (no pass over the im2col matrix)
    and |Ra| < 2**(E - 2 beta), |Rb| < 2**(F - 2 beta), |Rb1| < 2**(F - beta):

        gamma_{K+2} (rowsum|x| colmax|Rb| + rowsum|P2| colmax|Rb1| + rowmax|Ra| colsum|B|)
            + u |w|                              (w is about 2**-beta of the result)

    An output whose bound exceeds 2**-54 |value| is recomputed alone (`exact_dots`), or
    with its whole row by `exact_matmul` when a block has many.
    """

    def __init__(self, b: np.ndarray, kernel, strides, dilations):
        k, o = b.shape
        self.k, self.o, self.kernel, self.strides, self.dilations = k, o, kernel, strides, dilations
        self.beta = beta = _slice_bits(2 * k)
        # Slices written straight into W (the weights can be far larger than an image:
        # no temporaries, few passes).
        self.w = np.empty((k, 4 * o))
        colsum, colmax = np.zeros(o), np.zeros(o)
        blocks = list(row_chunks(k, 4 * o * 8, 4 * patches.L2_BYTES))  # row blocks of W that stay in cache
        for part in blocks:
            ab = np.abs(b[part])
            colsum += ab.sum(axis=0)
            np.maximum(colmax, ab.max(axis=0), out=colmax)
        f = np.frexp(colmax)[1]
        up1, down1 = np.ldexp(1.0, beta - f), np.ldexp(1.0, f - beta)
        up2, down2 = np.ldexp(1.0, 2 * beta - f), np.ldexp(1.0, f - 2 * beta)
        for part in blocks:
            rb, b2, b1, rb1 = (self.w[part, i * o:(i + 1) * o] for i in range(4))
            np.multiply(b[part], up1, out=b1)
            np.trunc(b1, out=b1)
            b1 *= down1
            np.subtract(b[part], b1, out=rb1)
            np.multiply(rb1, up2, out=b2)
            np.trunc(b2, out=b2)
            b2 *= down2
            np.subtract(rb1, b2, out=rb)
        live = colmax > 0
        c = _gamma(k + 2) * _safety(k) * 2.0**54  # bounds are kept in units of 2**-54
        self.wbound = np.stack([c * np.where(live, np.ldexp(1.0, f - 2 * beta), 0.0),
                                c * np.where(live, np.ldexp(1.0, f - beta), 0.0), c * colsum])
        self.b = b
        self.split = None  # the per-row path's weight slices, made when a row needs them
        # For tests and benchmarks: how many outputs and rows the bound sent on.
        self.outputs_fixed = self.rows_escalated = 0

    def image(self, xg: np.ndarray, geo, bufs: dict):
        """Slice a band of padded input rows (rows, Wp, Cg), the rows under the out_h output
        rows of `geo`, with the band's own scale (every im2col row lies within one band, so
        its elements share the scale); returns the slices' window views
        (3, OH, OW, kh, kw, Cg) and the per-output-pixel bound rows (OH * OW, 3)."""
        beta = self.beta
        pieces = scratch(bufs, "pieces", (3,) + xg.shape)
        p1, p2, ra = pieces
        ax = np.abs(xg, out=ra)
        top = ax.max()
        pix = scratch(bufs, "pix", xg.shape[:2] + (3,))
        pix[..., 0] = ax.sum(axis=-1)
        e = beta - int(np.frexp(top)[1])
        np.multiply(xg, 2.0**e, out=p1)
        np.trunc(p1, out=p1)
        p1 *= 2.0**-e
        np.subtract(xg, p1, out=ra)  # r1
        np.multiply(ra, 2.0**(e + beta), out=p2)
        np.trunc(p2, out=p2)
        p2 *= 2.0**(-e - beta)
        ra -= p2
        pix[..., 1] = np.abs(p2).sum(axis=-1)
        pix[..., 2] = (pix[..., 0] > 0) * (2.0**(-e - beta) if top > 0 else 0.0)  # |Ra| < 2**(E - 2 beta)
        pw = windows(pix[None], geo, self.kernel, self.strides, self.dilations)[0]  # (OH, OW, kh, kw, 3)
        stats = pw.sum(axis=(2, 3))
        stats[..., 2] = pw[..., 2].max(axis=(2, 3))
        return windows(pieces, geo, self.kernel, self.strides, self.dilations), stats.reshape(-1, 3)

    def rows(self, wins, stats, out: np.ndarray, bufs: dict) -> None:
        """All output rows of the windows (3, OH, OW, kh, kw, Cg) into out (OH * OW, O)."""
        k, o = self.k, self.o
        sub = wins  # (3, rows, OW, kh, kw, Cg)
        n = sub.shape[1] * sub.shape[2]
        buf = scratch(bufs, "cols", (n, 3 * k))
        np.copyto(buf.reshape(sub.shape[1], sub.shape[2], 3, *sub.shape[3:]), sub.transpose(1, 2, 0, 3, 4, 5))
        g1 = np.matmul(buf[:, :k], self.w[:, :3 * o], out=scratch(bufs, "g1", (n, 3 * o)))  # P1 [Rb | B2 | B1]
        g2 = np.matmul(buf[:, k:2 * k], self.w[:, 2 * o:], out=scratch(bufs, "g2", (n, 2 * o)))  # P2 [B1 | Rb1]
        t = np.matmul(buf[:, 2 * k:], self.b, out=scratch(bufs, "t", (n, o)))  # Ra B
        bad = scratch_bool(bufs, (n, o))
        step = max(1, patches.L2_BYTES // (8 * o))
        bound, tmp = (scratch(bufs, name, (step, o)) for name in ("bound", "tmp"))
        for r in range(0, n, step):  # row blocks whose temporaries stay in cache
            blk = slice(r, min(r + step, n))
            bound, tmp = bound[:blk.stop - r], tmp[:blk.stop - r]
            y1, y2, tb = g1[blk, 2 * o:], g1[blk, o:2 * o], t[blk]
            y2 += g2[blk, :o]  # exact: both are multiples of one unit, below 2**52 of it
            tb += g1[blk, :o]
            tb += g2[blk, o:]
            tb += y2  # w = fl(y2 + t): off by at most u |w|, counted below
            np.add(y1, tb, out=out[blk])  # the one final rounding of y1 + w
            np.matmul(stats[blk], self.wbound, out=bound)
            bound += np.abs(tb, out=tmp) * _SUM_ERROR
            np.greater(bound, np.abs(out[blk], out=tmp), out=bad[blk])
        rows = np.flatnonzero(bad.any(axis=1))
        if not rows.size:
            return
        # The slices' bits do not overlap, so their sum is A's rows exactly.
        a = buf[rows, :k] + buf[rows, k:2 * k] + buf[rows, 2 * k:]
        i, j = np.nonzero(bad[rows])
        if i.size <= FIX_FRACTION * bad.size:  # few outputs: each its own exact dot product
            self.outputs_fixed += i.size
            for part in row_chunks(i.size, 16 * k * 8):
                out[rows[i[part]], j[part]] = exact_dots(a[i[part]], self.b.T[j[part]])
        else:  # many: their rows, with per-row slices (the weights' slices are made once)
            self.rows_escalated += rows.size
            if self.split is None:
                self.split = SplitWeights(self.b)
            out[rows] = exact_matmul(a, self.split, count=_OZAKI_FIRST + 1)


#: u |w| in the bound's units of 2**-54 (with the margin for computing it).
_SUM_ERROR = 2.0 * (1 + 4 * _U)


#: `ExactConv` recomputes the outputs its bound rejects one by one (`exact_dots`) while
#: they are at most this fraction of a block's outputs, else their whole rows.
FIX_FRACTION = 0.01


def exact_dots(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise dot products of (n, K) a and b, each within one float64 ulp.

    `exact_matmul`'s scheme for n separate pairs of vectors, starting at three slices and
    escalating per pair; a pair that still misses the bound at `_OZAKI_MAX` slices (a
    cancellation beyond 2**-100 or so) is summed exactly in rationals.
    """
    n, k = a.shape
    beta = _slice_bits(k)
    out = np.empty(n)
    idx, count = np.arange(n), _OZAKI_FIRST + 1
    while idx.size and count <= _OZAKI_MAX:
        sa, ra = _slices(a[idx], 1, beta, count)
        sb, rb = _slices(b[idx], 1, beta, count)
        rests, rest = [], b[idx]
        for piece in sb:
            rest = rest - piece[2]  # exact: truncated remainders are representable
            rests.append(rest)
        terms = [_scale((sa[i][0] * sb[d - i][0]).sum(axis=1), -(sa[i][1] + sb[d - i][1]).ravel())
                 for d in range(count) for i in range(d + 1)]
        tail = (ra * b[idx]).sum(axis=1)
        for i in range(count):
            tail += (sa[i][2] * rests[count - 1 - i]).sum(axis=1)
        value, mass = _sum2(terms + [tail])
        tail_mass = sum(np.abs(sa[i][2]).sum(axis=1) * np.abs(rests[count - 1 - i]).max(axis=1) for i in range(count))
        bound = (_gamma(k + count + 1) * (tail_mass + np.abs(ra).max(axis=1) * np.abs(b[idx]).sum(axis=1))
                 + _gamma(len(terms) + 1) ** 2 * mass) * _safety(k)
        ok = bound * 2.0**54 <= np.abs(value)
        out[idx[ok]] = value[ok]
        idx, count = idx[~ok], count + 1
    for r in idx:  # beyond what slices resolve: exact rational arithmetic
        out[r] = rational_dot(a[r], b[r])
    return out


def rational_dot(a: np.ndarray, b: np.ndarray) -> float:
    """The correctly rounded dot product of two float64 vectors, in exact rationals (slow:
    only for the rare outputs whose cancellation no slice count resolves)."""
    return float(sum(Fraction(float(p)) * Fraction(float(q)) for p, q in zip(a, b)))


def conv2d_exact_group(xg, wg, geo, kernel, strides, dilations, out) -> None:
    """One group's exact conv2d: xg (N, Hp, Wp, Cg) padded, wg (K, Og), out (N, OH, OW, Og) view."""
    exact = ExactConv(wg, kernel, strides, dilations)
    k, og, ow = wg.shape[0], wg.shape[1], geo.out_w
    step, eff = strides[0], (kernel[0] - 1) * dilations[0] + 1
    in_row = 3 * xg.shape[2] * xg.shape[3] * 8  # bytes of one input row's three slices
    # Bands of output rows, each sliced once from the input rows under it: the whole image
    # while its slices fit EXACT_BAND_BYTES, else as many rows as fit (at least a chunk's;
    # a band re-slices the rows it shares with the next, costly with large dilations).
    chunk = next(iter(row_chunks(geo.out_h, ow * (3 * k + 8 * og) * 8))).stop
    band_rows = max(chunk, (EXACT_BAND_BYTES // in_row - (eff - step)) // step)
    bufs: dict = {}
    for b in range(xg.shape[0]):
        for band in row_chunks(geo.out_h, 1, band_rows):
            x_band = xg[b, band.start * step: (band.stop - 1) * step + eff]
            wins, stats = exact.image(x_band, dataclasses.replace(geo, out_h=band.stop - band.start), bufs)
            # Blocks of output rows within the band: the three slices' im2col and the GEMM
            # outputs stay within the chunk budget.
            for rs in row_chunks(band.stop - band.start, 1, chunk):
                rows = rs.stop - rs.start
                res = scratch(bufs, "out", (rows * ow, og))
                exact.rows(wins[:, rs], stats[rs.start * ow: rs.stop * ow], res, bufs)
                out[b, band.start + rs.start: band.start + rs.stop] = res.reshape(rows, ow, og)


#: The exact conv2d slices at most this many bytes of input at once (three slices of a
#: band of padded input rows; the per-row path it replaced held about as much).
EXACT_BAND_BYTES = 8 * patches.CHUNK_BYTES


def depthwise_exact(xp, w, geo, strides, dilations) -> np.ndarray:
    """Exact float64 depthwise for data in the fast range (`FAST_EXP`): xp (N, Hp, Wp, C)
    padded, w (kh, kw, C, M) -> (N, OH, OW, C, M).

    One Ozaki slice per operand and channel: with T = kh*kw taps and beta = _slice_bits(T),
    each padded image's channel is x = P + Rx (P: multiples of 2**(E - beta) below 2**E,
    2**E above the channel's max in that image) and each filter's taps f = F + Rf (steps
    from their max). Then

        sum_t x_t f_t = sum_t P_t F_t  +  sum_t (x_t Rf_t + Rx_t F_t)

    where the first sum is exact (integer multiples of one unit per channel, below 2**53
    units, in any order), the second is float64 with an error of at most
    gamma_{2T} T (max|x| max|Rf| + max|Rx| max|F|) (maxima per image and channel), and one
    rounding adds them: six multiply-adds per tap instead of Dot2's two dozen operations.
    An output whose bound exceeds 2**-54 |value| is recomputed alone (`exact_dots`).
    """
    n, c = xp.shape[0], xp.shape[3]
    kh, kw, _, m = w.shape
    t = kh * kw
    oh, ow = geo.out_h, geo.out_w
    beta = _slice_bits(t)
    fs, rf, fmax, rfmax = _split1(w, (0, 1), beta)  # (kh, kw, C, M) twice, (C, M) twice
    out = np.empty((n, oh, ow, c, m))
    bound = np.empty((n, 1, 1, c, m))
    win = windows(xp, geo, (kh, kw), strides, dilations)
    if m >= patches.DW_GEMM_MIN_M:  # one (P, T) @ (T, M) GEMM per channel for each term
        f_exact = np.ascontiguousarray(fs.reshape(t, c, m).transpose(1, 0, 2))  # (C, T, M)
        f_tail = np.ascontiguousarray(np.concatenate([rf, fs]).reshape(2 * t, c, m).transpose(1, 0, 2))
    else:
        tiles = [[tile(a[..., q], ow) for a in (fs, rf)] for q in range(m)]
    bufs: dict = {}
    for b in range(n):
        pieces, rx, xmax, rxmax = _split1(xp[b], (0, 1), beta)
        # |F| <= |f|: truncation never grows a value.
        bound[b, 0, 0] = _gamma(2 * t) * t * (xmax[:, None] * rfmax + rxmax[:, None] * fmax) * _safety(t) * 2.0**54
        wins = [windows(a[None], geo, (kh, kw), strides, dilations)[0] for a in (xp[b], pieces, rx)]
        if m >= patches.DW_GEMM_MIN_M:
            for rs in row_chunks(oh, ow * t * c * 8 * 3):
                # (rows, ow, kh, kw, C) -> (C, rows * ow, T), as in the value path.
                x_, p_, r_ = (v[rs].reshape(-1, t, c).transpose(2, 0, 1) for v in wins)
                res = np.matmul(p_, f_exact)
                res += np.matmul(np.concatenate([x_, r_], axis=2), f_tail)
                out[b, rs] = res.transpose(1, 0, 2).reshape(-1, ow, c, m)
            continue
        for q in range(m):
            # Its three partial arrays and three inputs per tap fit a larger block (measured 1.1-1.2x).
            for rs in row_chunks(oh, ow * c * 8, 2 * patches.DW_BLOCK_BYTES):
                _depthwise_exact_block([v[rs] for v in wins], tiles[q], out[b, rs, :, :, q], bufs)
    idx = np.nonzero(np.abs(out) < bound)  # (b, i, j, k, q) of every output the bound rejects
    for part in row_chunks(idx[0].size, t * 8 * 16):
        b, i, j, k, q = (a[part] for a in idx)
        # The inputs under each rejected output and its filter's taps.
        out[b, i, j, k, q] = exact_dots(win[b, i, j, :, :, k].reshape(-1, t), w.reshape(t, c, m)[:, k, q].T)
    return out


def _split1(a: np.ndarray, axes, beta: int):
    """a = p + r error-free: p holds multiples of 2**(E - beta) below 2**E, with 2**E above
    max |a| over `axes` (exact in the fast range). Returns p, r, max |a| and 2**(E - beta),
    which bounds |r| (a truncation's remainder is below one unit), reduced over `axes`."""
    p, r = np.empty_like(a), np.empty_like(a)  # no other temporaries: the input can be large
    top = np.abs(a, out=r).max(axis=axes)
    e = beta - np.frexp(top)[1]
    np.multiply(a, np.ldexp(1.0, e), out=p)
    np.trunc(p, out=p)
    p *= np.ldexp(1.0, -e)
    np.subtract(a, p, out=r)
    return p, r, top, np.where(top > 0, np.ldexp(1.0, -e), 0.0)


def _depthwise_exact_block(wins, tiles, out, bufs):
    """out = sum_t P_t F_t + sum_t (x_t Rf_t + Rx_t F_t) over the taps (`depthwise_exact`).

    wins = (x, P, Rx) windows (rows, OW, kh, kw, C); tiles = (F, Rf) (kh, kw, OW, C)."""
    kh, kw = tiles[0].shape[0], tiles[0].shape[1]
    acc, tail, tmp = (scratch(bufs, name, out.shape) for name in ("acc", "tail", "tmp"))
    for tap in range(kh * kw):
        di, dj = divmod(tap, kw)
        x, p, rx = (v[:, :, di, dj, :] for v in wins)
        f, rf = tiles[0][di, dj], tiles[1][di, dj]
        if tap == 0:
            np.multiply(p, f, out=acc)
            np.multiply(x, rf, out=tail)
        else:
            acc += np.multiply(p, f, out=tmp)
            tail += np.multiply(x, rf, out=tmp)
        tail += np.multiply(rx, f, out=tmp)
    np.add(acc, tail, out=out)
