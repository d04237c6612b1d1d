"""An example third-party conv-conformance adapter: a direct NumPy convolution.

It shows the whole contract and nothing else: no import from conv-conformance, no base
class. The suite hands `run` canonical arrays (x (N, H, W, C); filters (kh, kw, C/groups, O)
for conv2d, (kh, kw, C, M) for depthwise) and expects the canonical output (N, OH, OW, O)
in the case dtype. It computes tap by tap in float64 and rounds once at the end.

Load it without installing: `conformance run --adapter examples/third_party_adapter/example_adapter.py:DirectNumpyAdapter`.
"""

from __future__ import annotations

import numpy as np


class DirectNumpyAdapter:
    name = "example-numpy"

    def version(self) -> str:
        return np.__version__

    def device(self) -> str:
        return "cpu"

    def supports(self, case) -> str | None:
        return None  # any op, dtype and layout: data_format only names the backend's internal layout

    def run(self, case, x, filters, bias):
        n, h, w, c = x.shape
        kh, kw = filters.shape[:2]
        (sh, sw), (dh, dw) = case.strides, case.dilations
        (top, bottom), (left, right) = _pads(case.padding, (h, w), (kh, kw), (sh, sw), (dh, dw))
        xp = np.pad(x.astype(np.float64), ((0, 0), (top, bottom), (left, right), (0, 0)))
        oh = (h + top + bottom - (kh - 1) * dh - 1) // sh + 1
        ow = (w + left + right - (kw - 1) * dw - 1) // sw + 1
        if oh <= 0 or ow <= 0:
            raise ValueError(f"expected a non-empty output, received {oh}x{ow} for input {h}x{w}")
        f = filters.astype(np.float64)
        if case.op == "depthwise_conv2d":
            # Depthwise = grouped conv with C groups and filters (kh, kw, 1, C*M), channel k*M + q.
            f, groups = f.reshape(kh, kw, 1, -1), c
        else:
            groups = case.groups
        if c % groups or f.shape[3] % groups or f.shape[2] * groups != c:
            raise ValueError(f"expected filters (kh, kw, C/groups, O) with groups {groups} dividing C={c} "
                             f"and O, received filters {filters.shape}")
        cg, og = c // groups, f.shape[3] // groups
        y = np.zeros((n, oh, ow, f.shape[3]))
        for i in range(kh):
            for j in range(kw):
                patch = xp[:, i * dh : i * dh + (oh - 1) * sh + 1 : sh, j * dw : j * dw + (ow - 1) * sw + 1 : sw, :]
                for g in range(groups):
                    y[..., g * og : (g + 1) * og] += patch[..., g * cg : (g + 1) * cg] @ f[i, j, :, g * og : (g + 1) * og]
        if bias is not None:
            y += bias.astype(np.float64)
        return y.astype(x.dtype)


def _pads(padding, hw, kernel, strides, dilations):
    """TensorFlow's SAME (odd pixel at the end), VALID, or explicit ((top, bottom), (left, right))."""
    if padding == "VALID":
        return (0, 0), (0, 0)
    if padding != "SAME":
        return tuple(map(tuple, padding))
    out = []
    for n, k, s, d in zip(hw, kernel, strides, dilations):
        total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
        out.append((total // 2, total - total // 2))
    return tuple(out)
