"""The tests' one reference convolution, independent of the oracle: DESIGN.md's formulas
written as explicit slices of the padded input (no oracle code).

- `conv_terms(case, x, filters)`: the K products behind every output element, float64
  (N, OH, OW, O, K), for tests that sum them in the orders and precisions real kernels
  use (tests/test_tolerance.py, tests/test_inputs.py);
- `conv_reference(case, x, filters, bias)`: their exact sum plus the bias, float64 (N, OH,
  OW, O), the result the oracle must give (tests/test_oracle.py).

Programs that compute a convolution *with a planted bug* (adapters for the tools' tests)
are another thing: tests/broken_adapters.py's `_buggy_snippet` is the one of those.
"""

from __future__ import annotations

import math

import numpy as np

from conformance.spec import Case


def conv_terms(case: Case, x, filters) -> np.ndarray:
    """The K products behind every output element: float64 (N, OH, OW, O, K).

    K is ordered (di, dj, q) for conv2d and (di, dj) for depthwise; a padded position
    contributes the product 0 * f. Products of float32-or-narrower values are exact.
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(filters, dtype=np.float64)
    g = case.geometry
    (t, b), (l, r) = g.pads
    xp = np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)))
    (kh, kw), (sh, sw), (dh, dw) = case.kernel, case.strides, case.dilations
    taps = np.stack([xp[:, di * dh: di * dh + sh * (g.out_h - 1) + 1: sh,
                        dj * dw: dj * dw + sw * (g.out_w - 1) + 1: sw, :]
                     for di in range(kh) for dj in range(kw)], axis=3)  # (N, OH, OW, T, C)
    n, oh, ow, nt, c = taps.shape
    with np.errstate(invalid="ignore"):
        if case.op == "conv2d":
            groups, cg = case.groups, w.shape[2]
            og = w.shape[3] // groups
            tg = taps.reshape(n, oh, ow, nt, groups, cg)
            wg = w.reshape(nt, cg, groups, og)
            prod = np.einsum("nhwtgc,tcgo->nhwgotc", tg, wg)
            return prod.reshape(n, oh, ow, groups * og, nt * cg)
        prod = np.einsum("nhwtc,tcm->nhwcmt", taps, w.reshape(nt, c, w.shape[3]))
        return prod.reshape(n, oh, ow, c * w.shape[3], nt)


def conv_reference(case: Case, x, filters, bias=None, *, skip_padding: bool = False) -> np.ndarray:
    """out[b, i, j, k] = the sum of the element's K products (`conv_terms`), plus bias[k]:
    float64 (N, OH, OW, O), exactly rounded (math.fsum) where every product is finite, else
    summed in K order (Inf and NaN as IEEE arithmetic gives them).

    With `skip_padding` the products of padded positions are left out instead of being
    zero times the tap: what an implementation that never reads the padding computes.
    """
    terms = conv_terms(case, x, filters)
    k = terms.shape[-1]
    rows = terms.reshape(-1, k)
    if skip_padding:  # a product of ones is 1 inside the input, 0 in the padding
        inside = conv_terms(case, np.ones(np.shape(x)), np.ones(np.shape(filters))).reshape(-1, k) != 0
        rows = [row[keep] for row, keep in zip(rows, inside)]
    sums = [math.fsum(row) if np.isfinite(row).all() else sum(row.tolist()) for row in rows]
    out = np.asarray(sums, dtype=np.float64).reshape(terms.shape[:4])
    return out if bias is None else out + np.asarray(bias, dtype=np.float64)
