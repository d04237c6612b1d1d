"""The NumPy oracle: the formulas of DESIGN.md, computed in float64, beyond doubt.

    conv2d:     out[b,i,j,k]     = sum_{di,dj,q} in[b, s_h*i + d_h*di - p_top, s_w*j + d_w*dj - p_left, g*Cg + q] * f[di,dj,q,k]
    depthwise:  out[b,i,j,k*M+q] = sum_{di,dj}   in[b, s_h*i + d_h*di - p_top, s_w*j + d_w*dj - p_left, k] * f[di,dj,k,q]

Invariants
- Canonical layouts in and out: x (N, H, W, C); filters (kh, kw, C/groups, O) or
  (kh, kw, C, M); the result is a float64 (N, OH, OW, O or C*M) array.
- Pads and output size come from `spec.conv_geometry` and nowhere else.
- No framework is imported: the oracle must be independent of everything it judges.
- Inputs of float32 and narrower are exact in float64 and so are their products; the
  float64 sums add an error of about K * 2**-53 * magnitude, which is 2**-29 * K of a
  float32 unit roundoff: negligible. How they are summed is chosen for speed and never
  changes that bound: conv2d is an im2col + one GEMM per group and block of rows (built in blocks
  of output rows, so memory stays bounded); depthwise is one small GEMM per channel for channel
  multipliers >= 4, else per-tap multiply-adds over strided views of the input, block
  by block of output rows (tests/test_oracle.py forces every strategy against a loop
  transcription of the formulas).
- For float64 inputs `compensated=True` makes every output within one float64 ulp of the
  exact result, by Ozaki-style error-free slicing: operands are split into slices of a
  few bits whose products and partial sums are exact in float64 (in any order, with or
  without FMA), the small remainder products are added in float64, and a rigorous
  per-output error bound (never an estimate) decides whether an output is done: one whose
  bound exceeds 2**-54 of its value is recomputed by a path with more slices, down to
  exact rationals (`_exact_dots`). Where every nonzero |x| and |w| lies within
  2**-_FAST_EXP .. 2**_FAST_EXP (so no scaling or product underflows or overflows):
  conv2d slices each padded image once and runs two slices per operand in three GEMMs
  (`_ExactConv`); depthwise takes one slice per operand and channel, with the tap sums
  of slice products exact (`_depthwise_exact`). Elsewhere conv2d uses per-row slices with
  per-row escalation (`_exact_matmul`; subnormal results may round once more there, as
  any float64 computation would) and depthwise Dot2 per tap (TwoProduct by Dekker
  splitting and TwoSum, Ogita, Rump & Oishi). tests/test_oracle.py forces every path
  against exact rationals, adversarial inputs included.
- IEEE semantics for NaN and Inf are computed exactly and separately from the finite
  part (BLAS kernels are not trusted with them): an output is NaN when any product is
  NaN (NaN operand, 0 * Inf) or when +Inf and -Inf products meet; otherwise +-Inf when
  an infinite product occurs. Whether a padded zero meeting an infinite filter tap
  contributes NaN is the one choice IEEE leaves open (the formula says zero times Inf;
  an implementation that skips padded taps never forms that product): see
  `zero_times_inf`.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from typing import Iterator, NamedTuple

import numpy as np

from .spec import Case, Padding, conv_geometry

#: Upper bound on the im2col matrix a single chunk may build (bytes).
_CHUNK_BYTES = 64 << 20


class Reference(NamedTuple):
    """What a backend's output is judged against (all float64, output shape)."""

    value: np.ndarray  # the exact result (NaN/Inf per IEEE, padded zero * Inf = NaN)
    magnitude: np.ndarray  # sum |x| |w| (+ |bias|): the scale of rounding errors
    alternative: np.ndarray | None  # the result when padded taps are skipped, if it differs
    # sqrt(sum (x w)^2 (+ bias^2)): with `value`, the scale of a correct sum's *expected*
    # rounding error, which cancellation makes far smaller than `magnitude` (None: not computed).
    norm: np.ndarray | None = None
    # The exact result without the bias (None: the case has no bias, or not computed): the
    # `strict` contract allows one more rounding for a bias added as a separate operation.
    unbiased: np.ndarray | None = None


def _pad(x: np.ndarray, pads, value: float = 0.0) -> np.ndarray:
    (t, b), (l, r) = pads
    if t == b == l == r == 0:
        return x
    return np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)), constant_values=value)


def _windows(xp: np.ndarray, geo, kernel, strides, dilations) -> np.ndarray:
    """View of shape (N, OH, OW, kh, kw, C): the input patch under each output pixel."""
    n, _, _, c = xp.shape
    s0, s1, s2, s3 = xp.strides
    shape = (n, geo.out_h, geo.out_w, kernel[0], kernel[1], c)
    st = (s0, s1 * strides[0], s2 * strides[1], s1 * dilations[0], s2 * dilations[1], s3)
    return np.lib.stride_tricks.as_strided(xp, shape=shape, strides=st, writeable=False)


def _row_chunks(n_rows: int, row_bytes: int, budget: int | None = None) -> Iterator[slice]:
    step = max(1, (_CHUNK_BYTES if budget is None else budget) // max(row_bytes, 1))
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))


def _two_sum(a, b):
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _sum2(terms: list) -> tuple:
    """Sum2 of same-shape arrays (TwoSum, the errors added in float64): (value, sum of |terms|)."""
    acc, comp, mass = terms[0], np.zeros_like(terms[0]), np.abs(terms[0])
    for t in terms[1:]:
        acc, e = _two_sum(acc, t)
        comp += e
        mass += np.abs(t)
    return acc + comp, mass


_SPLITTER = 134217729.0  # 2**27 + 1


def _split(a):
    c = _SPLITTER * a
    hi = c - (c - a)
    return hi, a - hi


def _two_product(a, b):
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def _dot2(columns: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Compensated (M, K) @ (K, O): Dot2, vectorised over the M x O outputs.

    The slow, simple reference the Ozaki path is tested and benchmarked against.
    """
    s = np.zeros((columns.shape[0], weights.shape[1]))
    c = np.zeros_like(s)
    for k in range(columns.shape[1]):
        p, ep = _two_product(columns[:, k : k + 1], weights[k : k + 1, :])
        s, es = _two_sum(s, p)
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


class _SplitWeights:
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


def _exact_matmul(a: np.ndarray, w: _SplitWeights, count: int | None = None) -> np.ndarray:
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
                value[i, j] = _rational_dot(sub[i], w.b[:, j])
            rejected[...] = False
        bad = rejected.any(axis=1)
        keep = ~bad
        out[rows[keep]] = value[keep]
        rows, count = rows[bad], count + 1
    return out


#: The sliced exact paths (`_ExactConv`, `_depthwise_exact`) need every nonzero |x| and |w|
#: within 2**-_FAST_EXP .. 2**_FAST_EXP: then no scaling, slice product or tail product in
#: them underflows or overflows, so every step is exact or within the rounding their bound
#: counts. Other data go through the per-row `_exact_matmul` and Dot2 per tap.
_FAST_EXP = 300


def _in_fast_range(a: np.ndarray) -> bool:
    flat = a.reshape(-1)
    for part in _row_chunks(flat.size, 8, _L2_BYTES):  # blocks that stay in cache
        m = np.abs(flat[part])
        if m.max() >= 2.0**_FAST_EXP:
            return False
        tiny = m < 2.0**-_FAST_EXP
        if tiny.any() and m[tiny].any():  # zeros are fine
            return False
    return True


#: Elementwise work is done in blocks of about this many bytes per array, which stay in
#: the cache across the passes over them.
_L2_BYTES = 1 << 17


class _ExactConv:
    """Exact float64 conv2d of one group, for data in the fast range (`_FAST_EXP`).

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

    An output whose bound exceeds 2**-54 |value| is recomputed alone (`_exact_dots`), or
    with its whole row by `_exact_matmul` when a block has many.
    """

    def __init__(self, b: np.ndarray, kernel, strides, dilations):
        k, o = b.shape
        self.k, self.o, self.kernel, self.strides, self.dilations = k, o, kernel, strides, dilations
        self.beta = beta = _slice_bits(2 * k)
        # Slices written straight into W (the weights can be far larger than an image:
        # no temporaries, few passes).
        self.w = np.empty((k, 4 * o))
        colsum, colmax = np.zeros(o), np.zeros(o)
        blocks = list(_row_chunks(k, 4 * o * 8, 4 * _L2_BYTES))  # row blocks of W that stay in cache
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
        pieces = _buffer(bufs, "pieces", (3,) + xg.shape)
        p1, p2, ra = pieces
        ax = np.abs(xg, out=ra)
        top = ax.max()
        pix = _buffer(bufs, "pix", xg.shape[:2] + (3,))
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
        pw = _windows(pix[None], geo, self.kernel, self.strides, self.dilations)[0]  # (OH, OW, kh, kw, 3)
        stats = pw.sum(axis=(2, 3))
        stats[..., 2] = pw[..., 2].max(axis=(2, 3))
        return _windows(pieces, geo, self.kernel, self.strides, self.dilations), stats.reshape(-1, 3)

    def rows(self, wins, stats, out: np.ndarray, bufs: dict) -> None:
        """All output rows of the windows (3, OH, OW, kh, kw, Cg) into out (OH * OW, O)."""
        k, o = self.k, self.o
        sub = wins  # (3, rows, OW, kh, kw, Cg)
        n = sub.shape[1] * sub.shape[2]
        buf = _buffer(bufs, "cols", (n, 3 * k))
        np.copyto(buf.reshape(sub.shape[1], sub.shape[2], 3, *sub.shape[3:]), sub.transpose(1, 2, 0, 3, 4, 5))
        g1 = np.matmul(buf[:, :k], self.w[:, :3 * o], out=_buffer(bufs, "g1", (n, 3 * o)))  # P1 [Rb | B2 | B1]
        g2 = np.matmul(buf[:, k:2 * k], self.w[:, 2 * o:], out=_buffer(bufs, "g2", (n, 2 * o)))  # P2 [B1 | Rb1]
        t = np.matmul(buf[:, 2 * k:], self.b, out=_buffer(bufs, "t", (n, o)))  # Ra B
        bad = _buffer_bool(bufs, (n, o))
        step = max(1, _L2_BYTES // (8 * o))
        bound, tmp = (_buffer(bufs, name, (step, o)) for name in ("bound", "tmp"))
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
        if i.size <= _FIX_FRACTION * bad.size:  # few outputs: each its own exact dot product
            self.outputs_fixed += i.size
            for part in _row_chunks(i.size, 16 * k * 8):
                out[rows[i[part]], j[part]] = _exact_dots(a[i[part]], self.b.T[j[part]])
        else:  # many: their rows, with per-row slices (the weights' slices are made once)
            self.rows_escalated += rows.size
            if self.split is None:
                self.split = _SplitWeights(self.b)
            out[rows] = _exact_matmul(a, self.split, count=_OZAKI_FIRST + 1)


#: u |w| in the bound's units of 2**-54 (with the margin for computing it).
_SUM_ERROR = 2.0 * (1 + 4 * _U)


def _buffer_bool(bufs: dict, shape) -> np.ndarray:
    size = int(np.prod(shape))
    if "bool" not in bufs or bufs["bool"].size < size:
        bufs["bool"] = np.empty(size, dtype=bool)
    return bufs["bool"][:size].reshape(shape)


#: `_ExactConv` recomputes the outputs its bound rejects one by one (`_exact_dots`) while
#: they are at most this fraction of a block's outputs, else their whole rows.
_FIX_FRACTION = 0.01


def _exact_dots(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise dot products of (n, K) a and b, each within one float64 ulp.

    `_exact_matmul`'s scheme for n separate pairs of vectors, starting at three slices and
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
        out[r] = _rational_dot(a[r], b[r])
    return out


def _rational_dot(a: np.ndarray, b: np.ndarray) -> float:
    """The correctly rounded dot product of two float64 vectors, in exact rationals (slow:
    only for the rare outputs whose cancellation no slice count resolves)."""
    return float(sum(Fraction(float(p)) * Fraction(float(q)) for p, q in zip(a, b)))


def _buffer(bufs: dict, name: str, shape) -> np.ndarray:
    """A reused scratch array (fresh large temporaries cost page faults), viewed to `shape`."""
    size = int(np.prod(shape))
    if name not in bufs or bufs[name].size < size:
        bufs[name] = np.empty(size)
    return bufs[name][:size].reshape(shape)


#: Depthwise with at least this channel multiplier runs as one small GEMM per channel.
_DW_GEMM_MIN_M = 4
#: Below it, depthwise accumulates the taps block by block of output rows, small enough
#: for the block and its temporary to stay in cache across the taps (measured 1.2-1.5x).
_DW_BLOCK_BYTES = 1 << 17


def _linear(x, w, *, op, strides, padding, dilations, groups, compensated, pad_value=0.0):
    """The convolution of finite float64 arrays (the core shared by every quantity).

    Every strategy below sums the same exact products in float64; they differ only in
    the order of the float64 additions (error <= K * 2**-53 * magnitude either way).
    """
    n, h, wd, c = x.shape
    kh, kw = w.shape[0], w.shape[1]
    geo = conv_geometry((h, wd), (kh, kw), strides, dilations, padding)
    xp = _pad(x, geo.pads, pad_value)
    if op == "conv2d":
        return _conv2d_im2col(xp, w, geo, strides, dilations, groups, compensated)
    return _depthwise(xp, w, geo, strides, dilations, compensated)


#: Reductions up to this length take the per-row exact path (`_exact_matmul`), see below.
_EXACT_CONV_MIN_K = 16


def _conv2d_im2col(xp, w, geo, strides, dilations, groups, compensated):
    """conv2d as im2col + GEMM (or Dot2), built in blocks of output rows to bound memory.

    One GEMM with the full reduction K = kh*kw*C/groups beats kh*kw GEMMs over shifted
    views of the input (measured 2x): the im2col copy costs far less than the GEMM.
    """
    n = xp.shape[0]
    kh, kw, cg, co = w.shape
    og = co // groups
    oh, ow = geo.out_h, geo.out_w
    win = _windows(xp, geo, (kh, kw), strides, dilations)
    out = np.empty((n, oh, ow, co))
    k = kh * kw * cg
    # Short reductions keep the per-row path: its per-row scale makes each product's
    # slices exact, so results are correctly rounded in practice, where the band-sliced
    # path guarantees one ulp (its bound), which is two units of the normalised error
    # when K = 1 (magnitude = |value|), a margin the tolerance tests keep for correct sums.
    fast = compensated and k > _EXACT_CONV_MIN_K and _in_fast_range(xp) and _in_fast_range(w)
    for g in range(groups):
        wg = w[:, :, :, g * og : (g + 1) * og].reshape(k, og)
        if fast:
            _conv2d_exact_group(xp[..., g * cg : (g + 1) * cg], np.ascontiguousarray(wg), geo, (kh, kw), strides,
                                dilations, out[..., g * og : (g + 1) * og])
            continue
        split = _SplitWeights(np.ascontiguousarray(wg)) if compensated else None
        for b in range(n):
            # The exact path holds about eight (rows, K) arrays at once (slices, remainders).
            for rs in _row_chunks(oh, ow * k * 8 * (8 if compensated else 1)):
                # (rows, ow, kh, kw, cg) -> (rows * ow, K), K ordered (di, dj, q) like wg.
                cols = win[b, rs, :, :, :, g * cg : (g + 1) * cg].reshape(-1, k)
                if groups == 1 and not compensated:  # straight into the output, no copy
                    np.matmul(cols, wg, out=out[b, rs].reshape(-1, co))
                    continue
                res = _exact_matmul(cols, split) if compensated else cols @ wg
                out[b, rs, :, g * og : (g + 1) * og] = res.reshape(-1, ow, og)
    return out


def _conv2d_exact_group(xg, wg, geo, kernel, strides, dilations, out) -> None:
    """One group's exact conv2d: xg (N, Hp, Wp, Cg) padded, wg (K, Og), out (N, OH, OW, Og) view."""
    exact = _ExactConv(wg, kernel, strides, dilations)
    k, og, ow = wg.shape[0], wg.shape[1], geo.out_w
    step, eff = strides[0], (kernel[0] - 1) * dilations[0] + 1
    in_row = 3 * xg.shape[2] * xg.shape[3] * 8  # bytes of one input row's three slices
    # Bands of output rows, each sliced once from the input rows under it: the whole image
    # while its slices fit _EXACT_BAND_BYTES, else as many rows as fit (at least a chunk's;
    # a band re-slices the rows it shares with the next, costly with large dilations).
    chunk = next(iter(_row_chunks(geo.out_h, ow * (3 * k + 8 * og) * 8))).stop
    band_rows = max(chunk, (_EXACT_BAND_BYTES // in_row - (eff - step)) // step)
    bufs: dict = {}
    for b in range(xg.shape[0]):
        for band in _row_chunks(geo.out_h, 1, band_rows):
            x_band = xg[b, band.start * step: (band.stop - 1) * step + eff]
            wins, stats = exact.image(x_band, dataclasses.replace(geo, out_h=band.stop - band.start), bufs)
            # Blocks of output rows within the band: the three slices' im2col and the GEMM
            # outputs stay within the chunk budget.
            for rs in _row_chunks(band.stop - band.start, 1, chunk):
                rows = rs.stop - rs.start
                res = _buffer(bufs, "out", (rows * ow, og))
                exact.rows(wins[:, rs], stats[rs.start * ow: rs.stop * ow], res, bufs)
                out[b, band.start + rs.start: band.start + rs.stop] = res.reshape(rows, ow, og)


#: The exact conv2d slices at most this many bytes of input at once (three slices of a
#: band of padded input rows; the per-row path it replaced held about as much).
_EXACT_BAND_BYTES = 8 * _CHUNK_BYTES


def _depthwise(xp, w, geo, strides, dilations, compensated):
    """Depthwise: per-tap multiply-adds over strided window views, or per-channel GEMMs."""
    n, c = xp.shape[0], xp.shape[3]
    kh, kw, _, m = w.shape
    oh, ow = geo.out_h, geo.out_w
    win = _windows(xp, geo, (kh, kw), strides, dilations)  # (N, OH, OW, kh, kw, C) view
    if not compensated and m >= _DW_GEMM_MIN_M:
        out = np.empty((n, oh, ow, c, m))
        wc = np.ascontiguousarray(w.reshape(kh * kw, c, m).transpose(1, 0, 2))  # (C, T, M)
        for b in range(n):
            for rs in _row_chunks(oh, ow * kh * kw * c * 8):
                # (rows, ow, kh, kw, C) -> (C, rows * ow, T): one (P, T) @ (T, M) GEMM per channel.
                patches = win[b, rs].reshape(-1, kh * kw, c).transpose(2, 0, 1)
                out[b, rs] = np.matmul(patches, wc).transpose(1, 0, 2).reshape(-1, ow, c, m)
        return out.reshape(n, oh, ow, c * m)
    # One multiplier at a time over (N, OH, OW, C) arrays, with each tap's weights tiled
    # to (OW, C): then every NumPy loop runs over OW * C contiguous elements instead of
    # M (often 1) or C (measured 3-5x and 1.5x faster).
    if compensated and _in_fast_range(xp) and _in_fast_range(w):
        return _depthwise_exact(xp, w, geo, strides, dilations).reshape(n, oh, ow, c * m)
    outs = []
    for q in range(m):
        tiled = _tile(w[..., q], ow)
        out = np.empty((n, oh, ow, c))
        for b in range(n):
            for rs in _row_chunks(oh, ow * c * 8, _DW_BLOCK_BYTES):
                _depthwise_block(win[b, rs], tiled, out[b, rs], compensated)
        outs.append(out)
    if m == 1:
        return outs[0]
    return np.stack(outs, axis=-1).reshape(n, oh, ow, c * m)


def _tile(f: np.ndarray, ow: int) -> np.ndarray:
    """(kh, kw, C) tap weights -> (kh, kw, OW, C), contiguous."""
    return np.ascontiguousarray(np.broadcast_to(f[:, :, None, :], f.shape[:2] + (ow, f.shape[2])))


def _depthwise_exact(xp, w, geo, strides, dilations) -> np.ndarray:
    """Exact float64 depthwise for data in the fast range (`_FAST_EXP`): xp (N, Hp, Wp, C)
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
    An output whose bound exceeds 2**-54 |value| is recomputed alone (`_exact_dots`).
    """
    n, c = xp.shape[0], xp.shape[3]
    kh, kw, _, m = w.shape
    t = kh * kw
    oh, ow = geo.out_h, geo.out_w
    beta = _slice_bits(t)
    fs, rf, fmax, rfmax = _split1(w, (0, 1), beta)  # (kh, kw, C, M) twice, (C, M) twice
    out = np.empty((n, oh, ow, c, m))
    bound = np.empty((n, 1, 1, c, m))
    win = _windows(xp, geo, (kh, kw), strides, dilations)
    if m >= _DW_GEMM_MIN_M:  # one (P, T) @ (T, M) GEMM per channel for each term
        f_exact = np.ascontiguousarray(fs.reshape(t, c, m).transpose(1, 0, 2))  # (C, T, M)
        f_tail = np.ascontiguousarray(np.concatenate([rf, fs]).reshape(2 * t, c, m).transpose(1, 0, 2))
    else:
        tiles = [[_tile(a[..., q], ow) for a in (fs, rf)] for q in range(m)]
    bufs: dict = {}
    for b in range(n):
        pieces, rx, xmax, rxmax = _split1(xp[b], (0, 1), beta)
        # |F| <= |f|: truncation never grows a value.
        bound[b, 0, 0] = _gamma(2 * t) * t * (xmax[:, None] * rfmax + rxmax[:, None] * fmax) * _safety(t) * 2.0**54
        wins = [_windows(a[None], geo, (kh, kw), strides, dilations)[0] for a in (xp[b], pieces, rx)]
        if m >= _DW_GEMM_MIN_M:
            for rs in _row_chunks(oh, ow * t * c * 8 * 3):
                # (rows, ow, kh, kw, C) -> (C, rows * ow, T), as in the value path.
                x_, p_, r_ = (v[rs].reshape(-1, t, c).transpose(2, 0, 1) for v in wins)
                res = np.matmul(p_, f_exact)
                res += np.matmul(np.concatenate([x_, r_], axis=2), f_tail)
                out[b, rs] = res.transpose(1, 0, 2).reshape(-1, ow, c, m)
            continue
        for q in range(m):
            # Its three partial arrays and three inputs per tap fit a larger block (measured 1.1-1.2x).
            for rs in _row_chunks(oh, ow * c * 8, 2 * _DW_BLOCK_BYTES):
                _depthwise_exact_block([v[rs] for v in wins], tiles[q], out[b, rs, :, :, q], bufs)
    idx = np.nonzero(np.abs(out) < bound)  # (b, i, j, k, q) of every output the bound rejects
    for part in _row_chunks(idx[0].size, t * 8 * 16):
        b, i, j, k, q = (a[part] for a in idx)
        # The inputs under each rejected output and its filter's taps.
        out[b, i, j, k, q] = _exact_dots(win[b, i, j, :, :, k].reshape(-1, t), w.reshape(t, c, m)[:, k, q].T)
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
    """out = sum_t P_t F_t + sum_t (x_t Rf_t + Rx_t F_t) over the taps (`_depthwise_exact`).

    wins = (x, P, Rx) windows (rows, OW, kh, kw, C); tiles = (F, Rf) (kh, kw, OW, C)."""
    kh, kw = tiles[0].shape[0], tiles[0].shape[1]
    acc, tail, tmp = (_buffer(bufs, name, out.shape) for name in ("acc", "tail", "tmp"))
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


def _depthwise_block(win, f, out, compensated):
    """out = sum over taps of win[:, :, di, dj, :] * f[di, dj].

    win (rows, OW, kh, kw, C) a strided view; f (kh, kw, OW, C); out (rows, OW, C).
    """
    kh, kw = f.shape[0], f.shape[1]
    s = comp = tmp = None
    for di in range(kh):
        for dj in range(kw):
            a = win[:, :, di, dj, :]  # (rows, OW, C), a strided view
            if compensated:
                p, ep = _two_product(a, f[di, dj])
                if s is None:
                    s, comp = p, ep
                else:
                    s, es = _two_sum(s, p)
                    comp += ep + es
            elif tmp is None:
                np.multiply(a, f[di, dj], out=out)
                tmp = np.empty(out.shape)
            else:
                np.multiply(a, f[di, dj], out=tmp)
                out += tmp
    if compensated:
        np.add(s, comp, out=out)


def _check(x, w, op, groups):
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"expected 4-D x (N, H, W, C) and filters, received shapes {x.shape} and {w.shape}")
    c = x.shape[3]
    if op == "conv2d":
        if w.shape[2] * groups != c or w.shape[3] % groups:
            raise ValueError(
                f"expected filters (kh, kw, C/groups, O) with groups dividing C and O, received "
                f"x {x.shape}, filters {w.shape}, groups {groups}"
            )
    elif w.shape[2] != c:
        raise ValueError(f"expected depthwise filters (kh, kw, C={c}, M), received {w.shape}")


def _convolve(x, w, bias, *, op, strides, padding, dilations, groups, compensated, zero_times_inf):
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    _check(x, w, op, groups)
    strides, dilations = tuple(strides), tuple(dilations)
    kw_ = dict(op=op, strides=strides, padding=padding, dilations=dilations, groups=groups)
    finite_x, finite_w = np.isfinite(x), np.isfinite(w)
    all_finite = finite_x.all() and finite_w.all()
    xf = x if all_finite else np.where(finite_x, x, 0.0)
    wf = w if all_finite else np.where(finite_w, w, 0.0)
    out = _linear(xf, wf, compensated=compensated, **kw_)
    if not all_finite:
        out = _apply_nonfinite(out, x, w, zero_times_inf=zero_times_inf, **kw_)
    if bias is not None:
        with np.errstate(invalid="ignore"):  # Inf + -Inf = NaN is the IEEE answer, not an accident
            out = out + np.asarray(bias, dtype=np.float64)
    return out


def _apply_nonfinite(out, x, w, *, zero_times_inf, **kw_):
    """Overlay IEEE NaN/Inf results, counted exactly with 0/1 indicator convolutions."""
    def count(a, b, pad_value=0.0):
        return _linear(a.astype(np.float64), b.astype(np.float64), compensated=False, pad_value=pad_value, **kw_)

    ones_x, ones_w = np.ones_like(x), np.ones_like(w)
    x_nan, w_nan = np.isnan(x), np.isnan(w)
    x_pinf, x_ninf = x == np.inf, x == -np.inf
    w_pinf, w_ninf = w == np.inf, w == -np.inf
    x_zero, w_zero = x == 0, w == 0
    x_pos, x_neg = (x > 0) & ~x_pinf, (x < 0) & ~x_ninf
    w_pos, w_neg = (w > 0) & ~w_pinf, (w < 0) & ~w_ninf
    # Padded positions hold zeros: they meet an infinite tap as 0 * Inf = NaN, unless
    # the implementation skips them (zero_times_inf="skip").
    pad_zero = 1.0 if zero_times_inf == "nan" else 0.0
    nan = (count(x_nan, ones_w) + count(ones_x, w_nan, pad_value=0.0)
           + count(x_pinf | x_ninf, w_zero) + count(x_zero, w_pinf | w_ninf, pad_value=pad_zero))
    if zero_times_inf == "nan" and (w_nan.any()):
        nan = nan + count(np.zeros_like(x), w_nan, pad_value=1.0)  # padded zero * NaN
    pinf = count(x_pinf, w_pos | w_pinf) + count(x_ninf, w_neg | w_ninf) + count(x_pos, w_pinf) + count(x_neg, w_ninf)
    ninf = count(x_pinf, w_neg | w_ninf) + count(x_ninf, w_pos | w_pinf) + count(x_pos, w_ninf) + count(x_neg, w_pinf)
    out = np.where(pinf > 0, np.inf, out)
    out = np.where(ninf > 0, -np.inf, out)
    return np.where((nan > 0) | ((pinf > 0) & (ninf > 0)), np.nan, out)


def conv2d(x, filters, *, strides=(1, 1), padding: Padding = "VALID", dilations=(1, 1), groups=1,
           bias=None, compensated=False, zero_times_inf="nan") -> np.ndarray:
    """(N, H, W, C) x (kh, kw, C/groups, O) -> float64 (N, OH, OW, O), per DESIGN.md."""
    return _convolve(x, filters, bias, op="conv2d", strides=strides, padding=padding, dilations=dilations,
                     groups=groups, compensated=compensated, zero_times_inf=zero_times_inf)


def depthwise_conv2d(x, filters, *, strides=(1, 1), padding: Padding = "VALID", dilations=(1, 1),
                     bias=None, compensated=False, zero_times_inf="nan") -> np.ndarray:
    """(N, H, W, C) x (kh, kw, C, M) -> float64 (N, OH, OW, C*M), channel k*M + q."""
    return _convolve(x, filters, bias, op="depthwise_conv2d", strides=strides, padding=padding,
                     dilations=dilations, groups=1, compensated=compensated, zero_times_inf=zero_times_inf)


def convolve(case: Case, x, filters, bias=None, *, zero_times_inf="nan", compensated=None, strides=None,
             dilations=None, padding=None) -> np.ndarray:
    """The case's op on (x, filters, bias), with the case's geometry (or the one given); float64 out.

    Compensated summation is used for float64 cases unless told otherwise.
    """
    if compensated is None:
        compensated = case.dtype == "float64"
    fn = conv2d if case.op == "conv2d" else depthwise_conv2d
    kwargs = dict(strides=tuple(strides or case.strides), padding=case.padding if padding is None else padding,
                  dilations=tuple(dilations or case.dilations), bias=bias, compensated=compensated,
                  zero_times_inf=zero_times_inf)
    if case.op == "conv2d":
        kwargs["groups"] = case.groups
    return fn(x, filters, **kwargs)


def _pow2_scale(a: np.ndarray) -> float:
    top = float(np.max(a)) if a.size else 0.0
    return float(2.0 ** np.floor(np.log2(top))) if top > 0 else 1.0


def product_norm(conv, ax, aw, ab=None) -> np.ndarray:
    """sqrt(sum (x w)^2 (+ b^2)) per output, for |x|, |w|, |b| and a convolution `conv(x, w, b)`.

    The squares are taken after scaling by powers of two, so neither subnormal inputs
    (whose squares underflow) nor huge ones (whose squares overflow) lose the result.
    """
    xs, ws = _pow2_scale(ax), _pow2_scale(aw)
    with np.errstate(under="ignore", over="ignore", invalid="ignore"):
        squares = conv(np.square(ax / xs), np.square(aw / ws), None if ab is None else np.square(ab / (xs * ws)))
        return np.sqrt(squares) * xs * ws


def _flush(a, dtype: str):
    from .dtypes import flush_subnormals

    return None if a is None else flush_subnormals(np.asarray(a, dtype=np.float64), dtype)


def reference(case: Case, x, filters, bias=None, *, flush_subnormals: bool = False, strides=None, dilations=None,
              padding=None) -> Reference:
    """The exact answer for a valid case: value, magnitude, norm and unbiased arrays and the
    IEEE alternative. The one reference builder every judgement uses.

    Options (for the hypotheses tested by `compare` and `diagnose`):
    - `flush_subnormals`: inputs and results flushed to zero (FTZ/DAZ) in the case dtype;
    - `strides`, `dilations`, `padding`: another geometry than the case's.
    """
    if not case.is_valid:
        raise ValueError(f"case {case.id} is invalid ({case.invalid_reason}): it has no reference")
    geo = dict(strides=strides, dilations=dilations, padding=padding)
    if flush_subnormals:
        x, filters, bias = _flush(x, case.dtype), _flush(filters, case.dtype), _flush(bias, case.dtype)
    value = convolve(case, x, filters, bias, **geo)
    ax = np.abs(np.asarray(x, dtype=np.float64))
    aw = np.abs(np.asarray(filters, dtype=np.float64))
    ab = None if bias is None else np.abs(np.asarray(bias, dtype=np.float64))
    with np.errstate(invalid="ignore"):
        ax, aw = np.where(np.isfinite(ax), ax, 0.0), np.where(np.isfinite(aw), aw, 0.0)
        ab = None if ab is None else np.where(np.isfinite(ab), ab, 0.0)
        magnitude = convolve(case, ax, aw, ab, compensated=False, **geo)
        norm = product_norm(lambda xx, ww, bb: convolve(case, xx, ww, bb, compensated=False, **geo), ax, aw, ab)
    finite = np.isfinite(value)
    magnitude = np.where(finite, magnitude, np.inf)
    norm = np.where(finite, norm, np.inf)
    unbiased = None
    if bias is not None:  # exact to a float64 rounding of `value`: far below any contract's allowance
        with np.errstate(invalid="ignore"):
            unbiased = value - np.asarray(bias, dtype=np.float64)
    alternative = None
    pads = conv_geometry((case.height, case.width), case.kernel, tuple(strides or case.strides),
                         tuple(dilations or case.dilations), case.padding if padding is None else padding).pads
    if not np.isfinite(np.asarray(filters, dtype=np.float64)).all() and any(sum(p) for p in pads):
        alt = convolve(case, x, filters, bias, zero_times_inf="skip", **geo)
        if not np.array_equal(alt, value, equal_nan=True):
            alternative = alt
    if flush_subnormals:
        value, unbiased = _flush(value, case.dtype), _flush(unbiased, case.dtype)
        alternative = _flush(alternative, case.dtype)
    return Reference(value, magnitude, alternative, norm, unbiased)
