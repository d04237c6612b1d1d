"""NumPy backends of the training ops for the tools' tests (not collected: no test_ prefix):
correct ones, and ones with one classic gradient bug planted each.

Written against the public adapter contract only: `ops` declares the five training ops
(a forward case is `unsupported`, decided by the engine), `run(case, *operands)` takes the
op's operands (`(dy, filters)`, `(x, dy)` or `(x, filters, pointwise, bias)`) and returns
the canonical result. They read only the case's fields and `geometry` (pads, out_h,
out_w), so a repro script that passes the case as a plain namespace runs them, and they
import NumPy only: nothing of conv-conformance (an independent implementation of the
formulas of DESIGN.md, not the oracle's adjoint construction).

Arithmetic: float32 and narrower in float32 (products and sums; one rounding to the case
dtype), float64 in float64, tap by tap (`Training`); `BlockedFloat32` sums each tap's
channels in blocks of 8 and the taps in reverse order, another correct float32 kernel.

Planted bugs (`bug`), each the mechanism a diagnosis hypothesis names:
- "swap": the stride and the dilation exchanged (grad-input and grad-filter);
- "uncropped": grad-input's full transposed output read from its first pixel, the
  forward padding never cropped;
- "otherend": the pads (grad-input: the crop) taken at the other end, bottom for top and
  right for left;
- "outpad": grad-input's output_padding rows/columns put at the top/left;
- "noflip": grad-input's filter not flipped (each tap placed at its mirror position);
- "groups": conv2d groups computed from dy's groups in reverse order; depthwise: dy's
  channels read multiplier-major (q*C + k);
- "batch": grad-filter summing the batch without its last item.
`BugPerOp` plants three of them in three ops of one backend, each in that op only:
three findings, not one (two of them in the two families' grad-filter).
"""

from __future__ import annotations

import numpy as np

TRAINING_OPS = ("conv2d_backprop_input", "depthwise_conv2d_backprop_input", "conv2d_backprop_filter",
                "depthwise_conv2d_backprop_filter", "separable_conv2d")
BUGS = ("", "swap", "uncropped", "otherend", "outpad", "noflip", "groups", "batch")


def _wide(a, dtype):
    """`a` in the accumulation type: float32 for float32 and narrower, float64 for float64."""
    if a.dtype.name == "bfloat16":  # the top half of a float32
        a = (a.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    return np.array(a, dtype=dtype)


def _window(a, start, size):
    """a (N, FH, FW, C) read from rows/columns `start` (any integers), `size` of them, zero outside."""
    out = np.zeros(a.shape[:1] + tuple(size) + a.shape[3:], dtype=a.dtype)
    lo = [max(s, 0) for s in start]
    hi = [min(s + n, a.shape[i + 1]) for i, (s, n) in enumerate(zip(start, size))]
    if hi[0] > lo[0] and hi[1] > lo[1]:
        out[:, lo[0] - start[0]:hi[0] - start[0], lo[1] - start[1]:hi[1] - start[1]] = \
            a[:, lo[0]:hi[0], lo[1]:hi[1]]
    return out


def _blocks(c):
    """(input, output) channel slices of each group: conv2d's groups; depthwise: None."""
    if c.op.startswith("depthwise") or c.op == "separable_conv2d":
        return None
    cg, og = c.in_channels // c.groups, c.out_channels // c.groups
    return [(slice(g * cg, (g + 1) * cg), slice(g * og, (g + 1) * og)) for g in range(c.groups)]


def _mixed(c, dy):
    """dy with its groups mixed (the "groups" bug)."""
    if _blocks(c) is None:
        m = c.channel_multiplier
        return dy.reshape(dy.shape[:3] + (m, c.in_channels)).swapaxes(-1, -2).reshape(dy.shape)
    g = c.groups
    return dy.reshape(dy.shape[:3] + (g, -1))[..., ::-1, :].reshape(dy.shape)


class Training:
    """Correct training ops in float32 (float64 for float64 cases), tap by tap; `bug` plants one."""

    name = "training-numpy"
    ops = TRAINING_OPS
    bug = ""
    blocked = False  # BlockedFloat32: channel blocks of 8, taps in reverse order

    def version(self) -> str:
        return "0.1"

    def device(self) -> str:
        return "cpu"

    def supports(self, case):
        return None

    def run(self, case, *operands):
        if not case.is_valid:
            raise ValueError(f"invalid case: {case.invalid_reason}")
        acc = np.float64 if case.dtype == "float64" else np.float32
        out_dtype = operands[0].dtype
        wide = [None if a is None else _wide(a, acc) for a in operands]
        with np.errstate(invalid="ignore", over="ignore"):
            if case.op == "separable_conv2d":
                y = self._separable(case, *wide)
            elif case.op.endswith("backprop_input"):
                y = self._grad_input(case, *wide)
            else:
                y = self._grad_filter(case, *wide)
        return y.astype(out_dtype)

    # ---- the geometry the adjoint uses (where the bugs live) --------------------------

    def _geometry(self, c):
        """(strides, dilations, (top, left) start of the result in the full adjoint extent)."""
        strides, dilations = tuple(c.strides), tuple(c.dilations)
        (pt, pb), (pl, pr) = c.geometry.pads
        start = (pt, pl)
        if self.bug == "swap":
            strides, dilations = dilations, strides
        if self.bug == "otherend":
            start = (pb, pr)
        if self.bug == "uncropped" and c.op.endswith("backprop_input"):
            start = (0, 0)
        if self.bug == "outpad" and c.op.endswith("backprop_input"):
            unread = [n + lo + hi - ((o - 1) * s + (k - 1) * d + 1) for n, (lo, hi), o, s, d, k in
                      zip((c.height, c.width), c.geometry.pads, (c.geometry.out_h, c.geometry.out_w), c.strides,
                          c.dilations, c.kernel)]
            start = (pt - unread[0], pl - unread[1])
        return strides, dilations, start

    def _taps(self, c):
        taps = [(i, j) for i in range(c.kernel[0]) for j in range(c.kernel[1])]
        return taps[::-1] if self.blocked else taps

    def _rows(self, c, strides, dilations, i, j):
        oh, ow = c.geometry.out_h, c.geometry.out_w
        return (slice(i * dilations[0], i * dilations[0] + strides[0] * (oh - 1) + 1, strides[0]),
                slice(j * dilations[1], j * dilations[1] + strides[1] * (ow - 1) + 1, strides[1]))

    def _dot(self, a, b, pattern):
        """einsum in the accumulation type; blocked: the first operand's channel axis in blocks of 8."""
        if not self.blocked or a.shape[-1] <= 8:
            return np.einsum(pattern, a, b)
        out = 0
        for lo in range(0, a.shape[-1], 8):
            part = np.einsum(pattern, a[..., lo:lo + 8], b[lo:lo + 8] if pattern == "nhwc,co->nhwo" else
                             b[..., lo:lo + 8])
            out = (out + part).astype(a.dtype)
        return out

    # ---- the ops ----------------------------------------------------------------------

    def _grad_input(self, c, dy, f):
        strides, dilations, start = self._geometry(c)
        if self.bug == "noflip":
            f = f[::-1, ::-1]
        if self.bug == "groups":
            dy = _mixed(c, dy)
        n, oh, ow, _ = dy.shape
        full = tuple((o - 1) * s + (k - 1) * d + 1 for o, s, d, k in zip((oh, ow), strides, dilations, c.kernel))
        dx = np.zeros((n,) + full + (c.in_channels,), dtype=dy.dtype)
        blocks = _blocks(c)
        for i, j in self._taps(c):
            rows, cols = self._rows(c, strides, dilations, i, j)
            if blocks is None:  # depthwise: dx channel k gathers dy channels k*M .. k*M + M-1
                m = c.channel_multiplier
                term = (dy.reshape(dy.shape[:3] + (c.in_channels, m)) * f[i, j]).sum(axis=-1, dtype=dy.dtype)
            else:
                term = np.concatenate([self._dot(dy[..., o], f[i, j][:, o], "nhwo,co->nhwc")
                                       for _, o in blocks], axis=-1)
            dx[:, rows, cols] += term
        return _window(dx, start, (c.height, c.width))

    def _grad_filter(self, c, x, dy):
        strides, dilations, start = self._geometry(c)
        if self.bug == "batch":
            x, dy = x[:-1], dy[:-1]
        if self.bug == "groups":
            dy = _mixed(c, dy)
        oh, ow = c.geometry.out_h, c.geometry.out_w
        full = tuple((o - 1) * s + (k - 1) * d + 1 for o, s, d, k in zip((oh, ow), strides, dilations, c.kernel))
        xp = _window(x, (-start[0], -start[1]), full)
        kh, kw = c.kernel
        blocks = _blocks(c)
        df = np.zeros((kh, kw) + ((c.in_channels // c.groups, c.out_channels) if blocks else
                                  (c.in_channels, c.channel_multiplier)), dtype=x.dtype)
        for i, j in self._taps(c):
            rows, cols = self._rows(c, strides, dilations, i, j)
            patch = xp[:, rows, cols]
            if blocks is None:
                m = c.channel_multiplier
                df[i, j] = np.einsum("nhwc,nhwcm->cm", patch, dy.reshape(dy.shape[:3] + (c.in_channels, m)))
            else:
                for ci, o in blocks:
                    df[i, j][:, o] = np.einsum("nhwc,nhwo->co", patch[..., ci], dy[..., o])
        return df

    def _separable(self, c, x, f, pw, bias):
        (pt, pb), (pl, pr) = c.geometry.pads
        xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
        mid = 0
        for i, j in self._taps(c):
            rows, cols = self._rows(c, c.strides, c.dilations, i, j)
            mid = mid + (xp[:, rows, cols, :, None] * f[i, j]).reshape(xp.shape[:1] + (c.geometry.out_h,
                                                                                       c.geometry.out_w, -1))
        y = self._dot(mid, pw[0, 0], "nhwc,co->nhwo")
        return y if bias is None else y + bias


class BlockedFloat32(Training):
    """Correct: channels summed in blocks of 8 in float32, taps in reverse order."""

    name, blocked = "blocked-float32", True


class StridesDilationsSwapped(Training):
    name, bug = "swaps-strides-dilations", "swap"


class PaddingNotCropped(Training):
    name, bug = "padding-not-cropped", "uncropped"


class PaddingOtherEnd(Training):
    name, bug = "padding-other-end", "otherend"


class OutputPaddingMisplaced(Training):
    name, bug = "output-padding-misplaced", "outpad"


class FilterNotFlipped(Training):
    name, bug = "filter-not-flipped", "noflip"


class GroupsMixed(Training):
    name, bug = "groups-mixed", "groups"


class MissingLastBatchItem(Training):
    name, bug = "grad-filter-missing-last-item", "batch"


class BugPerOp(Training):
    """Three bugs of three ops, no shared routine: conv2d's grad-input does not flip its
    filter, conv2d's grad-filter sums the batch without its last item, and depthwise
    grad-filter reads dy's channels multiplier-major. Depthwise grad-input is right."""

    name = "bug-per-op"
    planted = {"conv2d_backprop_input": FilterNotFlipped(), "conv2d_backprop_filter": MissingLastBatchItem(),
               "depthwise_conv2d_backprop_filter": GroupsMixed()}

    def run(self, case, *operands):
        return self.planted.get(case.op, Training()).run(case, *operands)
