"""Shared fixtures for the suite's own tests (fixtures only; no plugins, no hooks)."""

from __future__ import annotations

import numpy as np
import pytest

from conformance.spec import Case


def _conv_terms(case: Case, x, filters) -> np.ndarray:
    """The K products behind every output element: float64 (N, OH, OW, O, K).

    Built straight from the DESIGN.md formulas with explicit slicing (no oracle code), so
    that tests can sum them in any order and precision an implementation might use.
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


@pytest.fixture(scope="session")
def conv_terms():
    """`conv_terms(case, x, filters) -> (N, OH, OW, O, K)` float64 products (see `_conv_terms`)."""
    return _conv_terms
