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


def training_reference(case: Case, *operands, exact: bool = False) -> np.ndarray:
    """A training op's result as the loops of its formula (conformance/adjoint.py's
    docstring), over the real terms only (no product with a pad): float64 sums in loop
    order, or with `exact` Fractions rounded once to float64 (finite operands only).
    Slow: for small cases."""
    from fractions import Fraction
    from itertools import product

    g = case.geometry
    (pt, _), (pl, _) = g.pads
    n, h, w, c = case.input_shape
    (kh, kw), (sh, sw), (dh, dw) = case.kernel, case.strides, case.dilations
    depthwise = case.forward_op == "depthwise_conv2d"
    groups = c if depthwise else case.groups
    cg, oc = c // groups, case.conv_channels
    og = oc // groups
    zero = Fraction(0) if exact else 0.0
    num = (lambda v: Fraction(float(v))) if exact else float

    def terms():
        """(b, i, j, o, di, dj, q, input row, input column) of every real term."""
        for b, i, j, o, di, dj, q in product(range(n), range(g.out_h), range(g.out_w), range(oc), range(kh),
                                             range(kw), range(cg)):
            hh, ww = sh * i + dh * di - pt, sw * j + dw * dj - pl
            if 0 <= hh < h and 0 <= ww < w:
                yield b, i, j, o, di, dj, q, hh, ww

    def tap(f, di, dj, q, o):
        return f[di, dj, o // og, o % og] if depthwise else f[di, dj, q, o]

    if case.op.endswith("backprop_input"):
        dy, f = operands
        acc = {}
        for b, i, j, o, di, dj, q, hh, ww in terms():
            key = (b, hh, ww, (o // og) * cg + q)
            acc[key] = acc.get(key, zero) + num(dy[b, i, j, o]) * num(tap(f, di, dj, q, o))
        out = np.zeros(case.input_shape)
    elif case.op.endswith("backprop_filter"):
        x, dy = operands
        acc = {}
        for b, i, j, o, di, dj, q, hh, ww in terms():
            key = (di, dj, o // og, o % og) if depthwise else (di, dj, q, o)
            acc[key] = acc.get(key, zero) + num(x[b, hh, ww, (o // og) * cg + q]) * num(dy[b, i, j, o])
        out = np.zeros(case.filter_shape)
    else:  # separable: the depthwise sums, then the pointwise sums of them, then the bias
        x, f, p, bias = operands
        z = {}
        for b, i, j, o, di, dj, q, hh, ww in terms():
            z[(b, i, j, o)] = z.get((b, i, j, o), zero) + num(x[b, hh, ww, o // og]) * num(tap(f, di, dj, q, o))
        acc = {key: (num(bias[key[3]]) if bias is not None else zero) for key in np.ndindex(*case.output_shape)}
        for (b, i, j, k), zk in z.items():
            for o in range(case.out_channels):
                acc[(b, i, j, o)] += zk * num(p[0, 0, k, o])
        out = np.zeros(case.output_shape)
    for key, v in acc.items():
        out[key] += float(v)
    return out
