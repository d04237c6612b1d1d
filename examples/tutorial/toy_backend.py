"""A toy convolution backend in plain NumPy, and its conv-conformance adapter.

Run:  conformance run --adapter examples/tutorial/toy_backend.py:ToyBackend --cases smoke
"""

import numpy as np

from conformance import conv_geometry


class ToyBackend:
    name = "toy"

    def version(self) -> str:
        return "0.1"

    def device(self) -> str:
        return "cpu"

    def supports(self, case):
        return None  # every op, dtype and layout (it has only one: NHWC)

    def run(self, case, x, filters, bias):
        """x (N, H, W, C); filters (kh, kw, C/groups, O) or, depthwise, (kh, kw, C, M)."""
        n, h, w, c = x.shape
        kh, kw, cg, o = filters.shape
        groups = case.groups
        if case.op == "depthwise_conv2d":  # one group per channel; output channel k*M + q
            filters, cg, o, groups = filters.reshape(kh, kw, 1, c * o), 1, c * o, c
        if c % groups or o % groups or cg * groups != c:
            raise ValueError(f"expected channels divisible by groups {groups}, received {c} in, {o} out, "
                             f"filter {filters.shape}")
        geo = conv_geometry((h, w), (kh, kw), case.strides, case.dilations, case.padding)
        if geo.out_h <= 0 or geo.out_w <= 0:
            raise ValueError(f"expected a non-empty output, received {geo.out_h}x{geo.out_w}")
        (top, bottom), (left, right) = geo.pads
        xp = np.pad(x.astype(np.float64), ((0, 0), (top, bottom), (left, right), (0, 0)))
        wf = filters.astype(np.float64)
        (sh, sw), (dh, dw), og = case.strides, case.dilations, o // groups
        y = np.zeros((n, geo.out_h, geo.out_w, o))
        with np.errstate(invalid="ignore", over="ignore"):  # NaN and Inf propagate as IEEE says
            for i in range(kh):
                for j in range(kw):
                    rows = xp[:, i * dh: i * dh + sh * (geo.out_h - 1) + 1: sh,
                              j * dw: j * dw + sw * (geo.out_w - 1) + 1: sw, :]
                    for g in range(groups):
                        y[..., g * og:(g + 1) * og] += np.einsum(
                            "nhwc,co->nhwo", rows[..., g * cg:(g + 1) * cg], wf[i, j, :, g * og:(g + 1) * og])
            if bias is not None:
                y += bias.astype(np.float64)
        return y.astype(x.dtype)  # rounded once to the case dtype
