"""The training ops as forward convolutions: the adjoint transformations the oracle computes.

    dx[b,h,w,c]   = sum over (i, j, taps, o in c's group) with s*i + d*di - p_top = h, s*j + d*dj - p_left = w
                      of dy[b,i,j,o] * f[di,dj,c mod Cg,o]
    df[di,dj,q,o] = sum_{b,i,j} xpad[b, s_h*i + d_h*di, s_w*j + d_w*dj, g(o)*Cg + q] * dy[b,i,j,o]
    separable     = conv2d_1x1(depthwise(x, f), pointwise) + bias

Each gradient is exactly a forward conv2d of rearranged operands, so the forward oracle
(exact products, float64 sums; float64 compensated to one ulp) computes it with the same
guarantees:
- w.r.t. the input (the transposed convolution): dy with s - 1 zeros inserted between
  its pixels, padded by d*(k-1) - p_before before and d*(k-1) - p_after + output_padding
  after (a negative pad crops), convolved at stride 1 and dilation d with the filter
  flipped in both spatial axes and its channels transposed within each group;
- w.r.t. the filters: x with batch and channels exchanged ((C/groups, H, W, groups*N)),
  convolved with dy as the filter ((OH, OW, N, O), groups as the forward op's) at stride
  d and dilation s with the forward pads; the first kh x kw outputs are the gradient.
Depthwise is conv2d with groups = C and filters (kh, kw, 1, C*M) (channel k*M + q), so
both depthwise gradients are the conv2d ones through that reshape.

Which positions of the rearranged input hold real terms (`Forward.present`): the inserted
zeros and the pads are no terms of the gradient (no product is formed with them), so an
infinite filter tap meeting one gives no NaN; `oracle` also computes the result an
implementation that multiplies them (0 * Inf = NaN) gets, as the IEEE alternative.

No framework is imported; pads and sizes come from `spec.conv_geometry` alone.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from .spec import OP_INFO, Case, Padding, conv_geometry


class Forward(NamedTuple):
    """A conv2d problem whose output, passed through `finish`, is the op's result."""

    x: np.ndarray  # (N', H', W', C') float64, already cropped where a pad is negative
    w: np.ndarray  # (kh', kw', C'/groups, O')
    strides: tuple[int, int]
    dilations: tuple[int, int]
    padding: tuple[tuple[int, int], tuple[int, int]]
    groups: int
    present: np.ndarray | None  # x's positions that hold real terms (None: all of them)
    finish: Callable[[np.ndarray], np.ndarray]  # conv output -> the op's result layout


def _grouped_filters(case: Case, f: np.ndarray) -> tuple[np.ndarray, int]:
    """The filters as conv2d filters (kh, kw, C/groups, O) and the group count."""
    if case.forward_op == "depthwise_conv2d":
        return f.reshape(f.shape[0], f.shape[1], 1, -1), case.in_channels
    return f, case.groups


def backprop_input(case: Case, dy: np.ndarray, f: np.ndarray, *, strides, dilations, padding: Padding) -> Forward:
    """dx as a forward conv2d of the zero-inserted, padded (or cropped) dy."""
    n, h, wd, c = case.input_shape
    kernel = case.kernel
    geo = conv_geometry((h, wd), kernel, strides, dilations, padding)
    w, groups = _grouped_filters(case, f)
    kh, kw, cg, o = w.shape
    og = o // groups
    # Flip the taps, and within each group make the forward output channels the inputs.
    flipped = w[::-1, ::-1].reshape(kh, kw, cg, groups, og).transpose(0, 1, 4, 3, 2).reshape(kh, kw, og, groups * cg)
    oh, ow = dy.shape[1], dy.shape[2]
    sh, sw = strides
    spread = np.zeros((n, (oh - 1) * sh + 1, (ow - 1) * sw + 1, o))
    spread[:, ::sh, ::sw, :] = dy
    present = np.zeros(spread.shape[:3] + (1,), dtype=bool)
    present[:, ::sh, ::sw, :] = True
    pads, crops = [], []
    for axis in range(2):
        reach = dilations[axis] * (kernel[axis] - 1)
        lo, hi = geo.pads[axis]
        before, after = reach - lo, reach - hi + geo.output_padding[axis]
        crops.append((max(-before, 0), max(-after, 0)))
        pads.append((max(before, 0), max(after, 0)))
    (ct, cb), (cl, cr) = crops
    rows, cols = slice(ct, spread.shape[1] - cb), slice(cl, spread.shape[2] - cr)
    spread, present = spread[:, rows, cols], present[:, rows, cols]
    present = np.broadcast_to(present, spread.shape)
    return Forward(spread, np.ascontiguousarray(flipped), (1, 1), tuple(dilations), (pads[0], pads[1]), groups,
                   present, lambda y: y)


def backprop_filter(case: Case, x: np.ndarray, dy: np.ndarray, *, strides, dilations, padding: Padding) -> Forward:
    """dfilters as a forward conv2d of x (batch and channels exchanged) with dy as the filter."""
    n, h, wd, c = x.shape
    geo = conv_geometry((h, wd), case.kernel, strides, dilations, padding)
    groups = case.in_channels if case.forward_op == "depthwise_conv2d" else case.groups
    cg = c // groups
    # x'[q, h, w, g*N + b] = x[b, h, w, g*Cg + q]: one group of x' per group of the op.
    xt = x.reshape(n, h, wd, groups, cg).transpose(4, 1, 2, 3, 0).reshape(cg, h, wd, groups * n)
    wt = dy.transpose(1, 2, 0, 3)  # (OH, OW, N, O): N inputs per group, the group's O outputs
    kh, kw = case.kernel
    shape = case.filter_shape

    def finish(y: np.ndarray) -> np.ndarray:
        df = y[:, :kh, :kw, :].transpose(1, 2, 0, 3)  # (kh, kw, Cg, O)
        return df.reshape(shape)

    return Forward(np.ascontiguousarray(xt), np.ascontiguousarray(wt), tuple(dilations), tuple(strides), geo.pads,
                   groups, None, finish)


def as_forward(case: Case, a: np.ndarray, b: np.ndarray, *, strides=None, dilations=None,
               padding: Padding | None = None) -> Forward:
    """The gradient op of `case` on its operands (a, b) as a forward conv2d; another geometry
    than the case's where one is given (the hypotheses diagnosis tests)."""
    geometry = dict(strides=tuple(strides or case.strides), dilations=tuple(dilations or case.dilations),
                    padding=case.padding if padding is None else padding)
    result = OP_INFO[case.op].result
    if result == "input":
        return backprop_input(case, a, b, **geometry)
    if result == "filter":
        return backprop_filter(case, a, b, **geometry)
    raise ValueError(f"expected a gradient op, received {case.op!r}")
