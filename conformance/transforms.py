"""The transform algorithms vendors compute convolutions with: Winograd F(m x m, 3 x 3) and FFT.

Winograd's minimal filtering F(m, r) computes m outputs of an r-tap correlation from a tile
of n = m + r - 1 inputs with n multiplications (Lavin & Gray, "Fast Algorithms for
Convolutional Neural Networks", CVPR 2016):

    y = A^T [ (G g) * (B^T d) ]                (1-D; * elementwise)
    Y = A^T [ (G g G^T) * (B^T d B) ] A        (2-D, the products summed over the input channels)

Built here by Toom-Cook from n - 1 finite interpolation points and infinity, the way
Lavin's `wincnn` does: with V_k the n x k Vandermonde matrix of the points (the infinity
row is (0, ..., 0, 1)), A^T = V_m^T, G = V_r and B^T = V_n^-T, each row of B^T scaled to
integers with no common factor and the row of G divided by the same number (the scaling
cancels in the product, and the float32 emulations round G's fractions as vendors do).
The points are the ones vendors use: F(2, 3) 0, 1, -1; F(4, 3) 0, +-1, +-2; F(6, 3)
0, +-1, +-2, +-1/2 (oneDNN, the Arm Compute Library, cuDNN, NNPACK).

`tile_weights(m)` is what the error model (conformance.tolerance, the `winograd*` contracts)
needs of a transform: W[i, p, a] = sum_k |A^T[i, k]| |G[k, a]| |B^T[k, p]|, the weight with
which the product of input p of a tile and filter tap a enters the rounding errors of
output i. It does not depend on how the rows are scaled.

Invariants: exact rational arithmetic (`fractions`), NumPy for the float results only;
nothing here imports another module of the package.
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

import numpy as np

#: Kernel size of every Winograd transform here (3 x 3 filters).
WINOGRAD_R = 3
#: Interpolation points (infinity is always the last one) of F(m, 3), per output tile size m.
WINOGRAD_POINTS = {
    2: (0, 1, -1),
    4: (0, 1, -1, 2, -2),
    6: (0, 1, -1, 2, -2, Fraction(1, 2), Fraction(-1, 2)),
}


def _vandermonde(points, k: int) -> list[list[Fraction]]:
    """n x k: row j = (1, p_j, ..., p_j^(k-1)) for the finite points, (0, ..., 0, 1) for infinity."""
    rows = [[Fraction(p) ** e for e in range(k)] for p in points]
    rows.append([Fraction(0)] * (k - 1) + [Fraction(1)])
    return rows


def _inverse(a: list[list[Fraction]]) -> list[list[Fraction]]:
    """Gauss-Jordan inverse in exact rationals."""
    n = len(a)
    m = [row[:] + [Fraction(int(i == j)) for j in range(n)] for i, row in enumerate(a)]
    for col in range(n):
        pivot = next(r for r in range(col, n) if m[r][col] != 0)
        m[col], m[pivot] = m[pivot], m[col]
        inv = 1 / m[col][col]
        m[col] = [v * inv for v in m[col]]
        for r in range(n):
            if r != col and m[r][col] != 0:
                f = m[r][col]
                m[r] = [a - f * b for a, b in zip(m[r], m[col])]
    return [row[n:] for row in m]


def _integer_scale(row: list[Fraction]) -> Fraction:
    """The factor that makes `row` integers with no common divisor (positive)."""
    from math import gcd, lcm

    nonzero = [v for v in row if v != 0]
    den = lcm(*(v.denominator for v in nonzero))
    num = gcd(*(int(v * den) for v in nonzero))
    return Fraction(den, num)


@lru_cache(maxsize=None)
def winograd_matrices(m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A^T (m x n), G (n x 3), B^T (n x n)) of F(m, 3) as arrays of Fractions (dtype object)."""
    if m not in WINOGRAD_POINTS:
        raise ValueError(f"winograd: expected an output tile size in {sorted(WINOGRAD_POINTS)}, received {m!r}")
    points = WINOGRAD_POINTS[m]
    n = m + WINOGRAD_R - 1
    at = [list(col) for col in zip(*_vandermonde(points, m))]
    g = _vandermonde(points, WINOGRAD_R)
    bt = [list(col) for col in zip(*_inverse(_vandermonde(points, n)))]  # V_n^-T
    for k in range(n):
        s = _integer_scale(bt[k])
        bt[k] = [v * s for v in bt[k]]
        g[k] = [v / s for v in g[k]]
    return tuple(np.array(mat, dtype=object) for mat in (at, g, bt))


@lru_cache(maxsize=None)
def tile_weights(m: int) -> np.ndarray:
    """W (m, n, 3), float64: W[i, p, a] = sum_k |A^T[i, k]| |G[k, a]| |B^T[k, p]| (exact, then rounded)."""
    at, g, bt = (np.abs(mat) for mat in winograd_matrices(m))
    w = np.einsum("ik,ka,kp->ipa", at, g, bt)
    return np.vectorize(float)(w).astype(np.float64)
