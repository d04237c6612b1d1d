"""Deliberately broken NumPy-only adapters for the tools' tests (not collected: no test_ prefix).

`FlippedKernel` convolves with the kernel rotated by 180 degrees (true convolution instead
of the cross-correlation every framework computes): a classic porting bug. Like the
built-ins, its `run` executes exactly the source its `repro_code` returns, so a repro
script reproduces what the suite saw. The snippet imports NumPy only.
`NoRepro` is the same bug without `repro_code`: the repro script must load it by spec.
"""

from __future__ import annotations

import numpy as np


def _snippet(case) -> str:
    if not case.is_valid:
        return f"raise ValueError({('invalid case: ' + case.invalid_reason)!r})\n"
    g = case.geometry
    (kh, kw), (sh, sw), (dh, dw) = case.kernel, case.strides, case.dilations
    if case.op == "conv2d":
        tap = "np.einsum('nhwc,co->nhwo', patch, w[di, dj])"
    else:
        tap = "np.einsum('nhwc,cm->nhwcm', patch, w[di, dj]).reshape(patch.shape[:3] + (-1,))"
    return f"""\
import numpy as np
w = np.asarray(filters, dtype=np.float64)[::-1, ::-1]  # the bug: the kernel is flipped
xp = np.pad(np.asarray(x, dtype=np.float64), ((0, 0), {g.pads[0]}, {g.pads[1]}, (0, 0)))
acc = 0
for di in range({kh}):
    for dj in range({kw}):
        patch = xp[:, di * {dh}: di * {dh} + {sh} * ({g.out_h} - 1) + 1: {sh}, dj * {dw}: dj * {dw} + {sw} * ({g.out_w} - 1) + 1: {sw}, :]
        acc = acc + {tap}
if bias is not None:
    acc = acc + np.asarray(bias, dtype=np.float64)
y = np.asarray(acc).astype(x.dtype)
"""


class FlippedKernel:
    name = "flipped"

    def version(self) -> str:
        return "0.1"

    def device(self) -> str:
        return "cpu"

    def supports(self, case):
        if case.op == "conv2d" and case.groups != 1 and case.is_valid:
            return "grouped convolution is not implemented"
        return None

    def repro_code(self, case) -> str:
        return _snippet(case)

    def run(self, case, x, filters, bias):
        ns = {"x": x, "filters": filters, "bias": bias}
        exec(_snippet(case), ns)  # noqa: S102 (our own generated source)
        return ns["y"]


class NoRepro:
    """FlippedKernel's behaviour without repro_code (a typical third-party adapter)."""

    name = "norepro"

    def __init__(self):
        self._inner = FlippedKernel()

    def version(self) -> str:
        return "0.1"

    def device(self) -> str:
        return "cpu"

    def supports(self, case):
        return self._inner.supports(case)

    def run(self, case, x, filters, bias):
        return self._inner.run(case, x, filters, bias)


