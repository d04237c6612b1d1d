"""Diagnosis hypotheses for the gradient ops: the classic bugs of backward convolution
kernels, each tested by recomputing the oracle with the alteration.

The backward kernels are separate code with their own bugs: strides and dilations swap
roles in the adjoint (the stride becomes the input dilation of grad-input and the
dilation of grad-filter's "filter" dy), the forward padding becomes a crop, an
output_padding appears, the filter must be flipped and its channels swapped per group,
and grad-filter sums over the whole batch.

Invariants
- Every hypothesis is tested, never guessed: the oracle (`oracle.reference`, through
  `DiagnosisContext`) is recomputed under the alteration, on altered operands or on the
  adjoint of another geometry (`DiagnosisContext.gradient_reference`, pads from
  `conv_geometry`), and the backend's output must match it with the verdict's own
  element limits.
- A hypothesis that does not apply to the case (symmetric pads, no output_padding, one
  group, one batch item, a one-tap kernel) raises Skip: it is not listed as checked.
"""

from __future__ import annotations

import numpy as np

from .diagnose_context import DiagnosisContext, Skip, need_same_shape
from .oracle import Reference
from .spec import OP_INFO


def _result(ctx: DiagnosisContext) -> str:
    """"input" (dx) or "filter" (dfilters); Skip for the other ops."""
    result = OP_INFO[ctx.case.op].result
    if result not in ("input", "filter"):
        raise Skip
    return result


def _pads_before(ctx: DiagnosisContext) -> tuple[int, int]:
    (t, _), (l, _) = ctx.case.geometry.pads
    return t, l


def _adjoint_matches(ctx: DiagnosisContext, name: str, strides, dilations, pads_before) -> bool:
    need_same_shape(ctx)
    if not ctx.affordable(name, ctx.y.shape):
        return False
    ref = ctx.gradient_reference(ctx.operands, strides, dilations, pads_before)
    return ref is not None and ctx.matches(ref)


def strides_dilations_swapped(ctx: DiagnosisContext):
    c = ctx.case
    _result(ctx)
    if c.strides == c.dilations or all(k == 1 for k in c.kernel):
        raise Skip
    if _adjoint_matches(ctx, "strides_dilations_swapped", c.dilations, c.strides, _pads_before(ctx)):
        role = "input dilation" if _result(ctx) == "input" else "dilation of dy"
        return (f"output equals the oracle with strides {c.dilations} and dilations {c.strides} swapped: the "
                f"gradient used the dilation where the stride belongs (the stride becomes the adjoint's {role})")
    return None


def padding_not_cropped(ctx: DiagnosisContext):
    """grad-input returned the transposed convolution's full output from its first pixel."""
    if _result(ctx) != "input" or _pads_before(ctx) == (0, 0):
        raise Skip
    c = ctx.case
    if _adjoint_matches(ctx, "padding_not_cropped", c.strides, c.dilations, (0, 0)):
        t, l = _pads_before(ctx)
        return (f"output equals the transposed convolution's full output read from its first row and column: "
                f"the forward padding (top {t}, left {l}) was applied as padding instead of cropped")
    return None


def padding_other_end(ctx: DiagnosisContext):
    """The pads (grad-input: the crop) taken at the other end: bottom for top, right for left."""
    c = ctx.case
    _result(ctx)
    (t, b), (l, r) = c.geometry.pads
    if (t, l) == (b, r):
        raise Skip
    if _adjoint_matches(ctx, "padding_other_end", c.strides, c.dilations, (b, r)):
        what = "cropped" if _result(ctx) == "input" else "padded"
        return (f"output equals the oracle with the pads at the other end (top {b}, bottom {t}, left {r}, right "
                f"{l} instead of top {t}, bottom {b}, left {l}, right {r}): the input was {what} at the wrong side")
    return None


def output_padding_wrong_side(ctx: DiagnosisContext):
    """grad-input's output_padding (rows and columns no output reads) put at the top/left."""
    c = ctx.case
    op_h, op_w = c.geometry.output_padding
    if _result(ctx) != "input" or (op_h, op_w) == (0, 0):
        raise Skip
    t, l = _pads_before(ctx)
    for moved in {(op_h, op_w), (op_h, 0), (0, op_w)} - {(0, 0)}:
        if _adjoint_matches(ctx, "output_padding_wrong_side", c.strides, c.dilations, (t - moved[0], l - moved[1])):
            sides = " and ".join(side for side, m in (("top", moved[0]), ("left", moved[1])) if m)
            return (f"output equals the oracle shifted by the output_padding {moved}: the rows/columns no output "
                    f"reads (output_padding {c.geometry.output_padding}, at the bottom/right) were put at the {sides}")
    return None


def filter_not_flipped(ctx: DiagnosisContext):
    need_same_shape(ctx)
    c = ctx.case
    if _result(ctx) != "input" or all(k == 1 for k in c.kernel):
        raise Skip
    if not ctx.affordable("filter_not_flipped", ctx.y.shape):
        return None
    flipped = np.flip(ctx.operand("filters"), axis=(0, 1))
    if ctx.matches(ctx.reference(*ctx.operands_with(filters=flipped))):
        return ("output equals the oracle with the filter flipped in both spatial axes: the transposed "
                "convolution used the forward filter unflipped")
    return None


def _regroup(a: np.ndarray, groups: int, how: str) -> np.ndarray:
    """The last axis's `groups` blocks reversed ("reversed") or rotated by one ("rolled")."""
    blocks = a.reshape(a.shape[:-1] + (groups, a.shape[-1] // groups))
    blocks = blocks[..., ::-1, :] if how == "reversed" else np.roll(blocks, 1, axis=-2)
    return blocks.reshape(a.shape)


def _channel_transposed(a: np.ndarray, c: int, m: int) -> np.ndarray:
    """Channel k*M + q of `a` read from q*C + k: a depthwise output's order, transposed."""
    return a.reshape(a.shape[:-1] + (m, c)).swapaxes(-1, -2).reshape(a.shape)


def groups_mixed(ctx: DiagnosisContext):
    """conv2d: one group's gradient computed from another group's dy (or x) or written to
    another group's place; depthwise: dy's channels read multiplier-major (q*C + k)."""
    need_same_shape(ctx)
    c = ctx.case
    _result(ctx)
    dy = ctx.operand("dy")
    if c.forward_op == "depthwise_conv2d":
        if c.in_channels < 2 or c.channel_multiplier < 2:
            raise Skip
        if not ctx.affordable("groups_mixed", ctx.y.shape):
            return None
        if ctx.matches(ctx.reference(*ctx.operands_with(dy=_channel_transposed(dy, c.in_channels,
                                                                                c.channel_multiplier)))):
            return (f"output equals the oracle with dy's channels read as q*C + k (multiplier-major) instead of "
                    f"k*M + q (C={c.in_channels}, M={c.channel_multiplier}): channels of different depthwise groups "
                    f"mixed")
        return None
    g = c.groups
    if g < 2:
        raise Skip
    if not ctx.affordable("groups_mixed", ctx.y.shape):
        return None
    for how in ("reversed", "rolled") if g > 2 else ("reversed",):
        if ctx.matches(ctx.reference(*ctx.operands_with(dy=_regroup(dy, g, how)))):
            return (f"output equals the oracle with dy's {g} channel groups {how}: each group's gradient was "
                    f"computed from another group's output gradient")
        moved = Reference(*(None if a is None else _regroup(a, g, how) for a in ctx.ref))
        if ctx.matches(moved):
            return (f"output equals the oracle with its {g} channel groups {how}: each group's gradient was "
                    f"written to another group's channels")
    return None


def batch_item_missing(ctx: DiagnosisContext):
    """grad-filter's sum over the batch stops one item short (first or last)."""
    need_same_shape(ctx)
    c = ctx.case
    if _result(ctx) != "filter" or c.batch < 2:
        raise Skip
    if not ctx.affordable("grad_filter_batch_missing", ctx.y.shape):
        return None
    short = c.replace(batch=c.batch - 1)
    x, dy = ctx.operands
    for which, keep in (("last", slice(0, -1)), ("first", slice(1, None))):
        if ctx.matches(ctx.reference_of(short, x[keep], dy[keep])):
            return (f"output equals the oracle summed over batch items without the {which} one ({c.batch - 1} of "
                    f"{c.batch}): grad-filter's reduction over the batch stops one item short")
    return None
