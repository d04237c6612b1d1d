"""Diagnosis hypotheses that search alternative geometries: is a wrong output some other
geometry's output, or a row and column selection of one?

Invariants
- The candidates (`candidate_geometries`) are the true geometry and the ones a backend
  gets by ignoring strides or dilations, or by another padding (VALID, SAME, SAME_LOWER),
  every one through `spec.conv_geometry`; each is recomputed by the oracle and judged
  with the verdict's element limits (`DiagnosisContext.matches`).
- Forward ops and separable only: a gradient op's result is not a forward output (its
  alternative geometries are tested through `DiagnosisContext.geometry_matches`).
- The pixel search compares every backend pixel with every candidate pixel, so it is
  bounded by `MAX_PIXEL_PAIRS` (what it skips is listed in the diagnosis).
"""

from __future__ import annotations

import numpy as np

from . import tolerance
from .diagnose_context import DiagnosisContext, Skip, need_same_shape
from .oracle import Reference
from .spec import GRADIENT_OPS, Case
from .text import ranges

#: Sub-block search compares every backend pixel with every candidate pixel; bounded.
MAX_PIXEL_PAIRS = 2 * 10**7


def candidate_geometries(case: Case):
    """Alternative geometries a wrong-shaped output may come from, true geometry first."""
    s, d, p = case.strides, case.dilations, case.padding
    out = [("the true output", s, d, p)]
    if s != (1, 1):
        out.append(("the stride-(1, 1) output (strides ignored)", (1, 1), d, p))
    if d != (1, 1):
        out.append(("the dilation-(1, 1) output (dilations ignored)", s, (1, 1), p))
    if s != (1, 1) and d != (1, 1):
        out.append(("the output with strides and dilations ignored", (1, 1), (1, 1), p))
    if p != "VALID":
        out.append(("the VALID output", s, d, "VALID"))
    if p != "SAME":
        out.append(("the SAME output", s, d, "SAME"))
    if p == "SAME":
        (t, b), (l, r) = case.geometry.pads
        if (t, l) != (b, r):
            out.append(("the SAME_LOWER output (odd pixel top/left)", s, d, ((b, t), (r, l))))
    return out


def _pixel_map(ctx: DiagnosisContext, ref: Reference):
    """Row and column indices (rows, cols) with y == ref[:, rows][:, :, cols], or None."""
    y = ctx.y
    n, hy, wy, ch = y.shape
    _, ha, wa, _ = ref.value.shape
    if hy * wy * ha * wa * n * ch > MAX_PIXEL_PAIRS:
        ctx.skipped.append(f"wrong_shape_subblock pixel search ({hy}x{wy} against {ha}x{wa})")
        return None
    yv = y.transpose(1, 2, 0, 3).reshape(hy * wy, n * ch)
    av = ref.value.transpose(1, 2, 0, 3).reshape(ha * wa, n * ch)
    am = ref.magnitude.transpose(1, 2, 0, 3).reshape(ha * wa, n * ch)
    scale = tolerance.unit_roundoff(ctx.case) * am + tolerance.underflow_floor(ctx.case)
    match = np.zeros((hy * wy, ha * wa), dtype=bool)
    step = max(1, MAX_PIXEL_PAIRS // max(ha * wa * n * ch, 1) // 4)
    with np.errstate(invalid="ignore", over="ignore"):
        for start in range(0, hy * wy, step):
            diff = np.abs(yv[start:start + step, None, :] - av[None, :, :])
            same = (diff <= ctx.threshold * scale[None]) | (yv[start:start + step, None, :] == av[None, :, :])
            match[start:start + step] = same.all(axis=2)
    match = match.reshape(hy, wy, ha, wa)
    rows, cols = [], []
    for i in range(hy):
        cand = match[i].any(axis=2).all(axis=0)  # rows of A matching every pixel of row i somewhere
        if not cand.any():
            return None
        rows.append(int(np.argmax(cand)))
    for j in range(wy):
        cand = match[:, j].any(axis=1).all(axis=0)
        if not cand.any():
            return None
        cols.append(int(np.argmax(cand)))
    sub = Reference(*(None if a is None else a[:, rows][:, :, cols] for a in ref._replace(alternative=None)))
    return (rows, cols) if ctx.matches(sub) else None


def _search_alternatives(ctx: DiagnosisContext, name: str):
    """(label, geometry, shape, rows, cols) of the first candidate output that, with some row
    and column selection, equals the backend's output; None when none does."""
    c, y = ctx.case, ctx.y
    if c.op in GRADIENT_OPS:  # the search is over forward output pixels (a gradient's: `diagnose_gradient`)
        raise Skip
    if y.ndim != 4 or y.shape[0] != c.batch or y.shape[3] != c.output_channels:
        return None
    for label, s, d, p in candidate_geometries(c):
        shape = ctx.shape_for(s, d, p)
        if shape is None or shape[1] < y.shape[1] or shape[2] < y.shape[2] or not ctx.affordable(name, shape):
            continue
        ref = ctx.reference(*ctx.operands, strides=s, dilations=d, padding=p)
        if tuple(shape) == tuple(y.shape) and ctx.matches(ref):
            return label, (s, d, p), shape, None, None
        found = _pixel_map(ctx, ref)
        if found:
            return label, (s, d, p), shape, found[0], found[1]
    return None


def wrong_shape_subblock(ctx: DiagnosisContext):
    if ctx.same_shape:
        raise Skip
    found = _search_alternatives(ctx, "wrong_shape_subblock")
    if found is None:
        return None
    label, (s, d, p), shape, rows, cols = found
    head = f"expected shape {tuple(ctx.case.output_shape)}, received {tuple(ctx.y.shape)}: the output "
    if rows is None:
        return head + f"equals {label} (strides {s}, dilations {d}, padding {p!r})"
    return head + (f"is a sub-block of {label} (strides {s}, dilations {d}, padding {p!r}, shape {tuple(shape)}): "
                   f"rows {ranges(rows)}, columns {ranges(cols)}")


def wrong_sampling(ctx: DiagnosisContext):
    """Right shape, wrong pixels: the rows/columns of some candidate output, wrongly chosen."""
    need_same_shape(ctx)
    found = _search_alternatives(ctx, "wrong_sampling")
    if found is None:
        return None
    label, (s, d, p), shape, rows, cols = found
    if rows is None:  # a whole alternative geometry of the same shape: not a resampling
        return None
    return (f"the output has the right shape {tuple(ctx.y.shape)} but its pixels are rows {ranges(rows)} and "
            f"columns {ranges(cols)} of {label} (strides {s}, dilations {d}, padding {p!r}, shape "
            f"{tuple(shape)})")
