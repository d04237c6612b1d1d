"""The reference a full repro script writes out for the training ops: DESIGN.md's formulas of
grad-input, grad-filter and separable_conv2d in NumPy, with the case's sizes as literals.

Invariants
- The source imports nothing (the script has `np`, `DTYPE`, `_as_float64` already) and
  defines `reference(<the op's operands>)` returning (value, alternative, magnitude, norm,
  unbiased) as float64 arrays of the op's result shape, exactly what the embedded rule
  (`conformance/_rule.py`) takes, like the forward script's reference.
- It is written from the formulas as sums over taps (grad-input scatters each tap's
  contribution to the positions it reaches, grad-filter gathers each tap's products over
  the batch and the output pixels), not from the oracle's adjoint construction: a second,
  independent computation, accumulated in float64 (`np.longdouble` for float64 cases).
- Pads, output sizes and output_padding come from `spec.conv_geometry` (through the case).
"""

from __future__ import annotations

from .spec import OP_INFO, Case

_COMMON = '''

# ---- the reference: the {what} formula, in NumPy ------------------------------
KH, KW = {kernel!r}
SH, SW = {strides!r}
DH, DW = {dilations!r}
(PT, PB), (PL, PR) = {pads!r}  # the forward padding {padding!r} resolved as TensorFlow does
OH, OW = {out_h}, {out_w}  # the forward output (dy) size
H, W = {height}, {width}  # the forward input (x) size
ACC = np.longdouble if DTYPE == "float64" else np.float64  # more precise than what it judges


def _pow2(a):
    top = float(np.max(a)) if a.size else 0.0
    return float(2.0 ** np.floor(np.log2(top))) if top > 0 else 1.0


def _parts(a):
    """a in ACC, |a| (non-finite as 0), (|a| / 2**k)**2 and 2**k: the value, magnitude and norm operands."""
    a = _as_float64(a).astype(ACC)
    m = np.abs(np.where(np.isfinite(a), a, 0))
    s = _pow2(m)  # squares scaled by powers of two: no under/overflow
    return a, m, np.square(m / s), s


def _finish(value, alternative, magnitude, squares, scale, unbiased=None):
    value, alternative, magnitude = (np.asarray(a, dtype=np.float64) for a in (value, alternative, magnitude))
    norm = np.sqrt(np.asarray(squares, dtype=np.float64)) * scale
    finite = np.isfinite(value)
    magnitude, norm = np.where(finite, magnitude, np.inf), np.where(finite, norm, np.inf)
    if np.array_equal(alternative, value, equal_nan=True):
        alternative = None
    return value, alternative, magnitude, norm, unbiased
'''

_GRAD_INPUT = '''

def _tap(d, w):
    """dx contribution of one tap: d (N, OH, OW, O or C*M) against w = filters[di, dj]."""
{tap}

def reference(dy, filters):
    """(value, alternative, magnitude, norm, unbiased), float64 (N, H, W, C):
    dx[b, SH*i + DH*di - PT, SW*j + DW*dj - PL, c] += dy[b, i, j, k] * filters[di, dj, c, k]."""
    d, w = _parts(dy), _parts(filters)
    full = (d[0].shape[0], (OH - 1) * SH + (KH - 1) * DH + 1, (OW - 1) * SW + (KW - 1) * DW + 1, {channels})
    sums = [np.zeros(full, dtype=ACC) for _ in range(3)]
    with np.errstate(invalid="ignore", over="ignore", under="ignore"):
        for di in range(KH):
            for dj in range(KW):
                rows = slice(di * DH, di * DH + SH * (OH - 1) + 1, SH)
                cols = slice(dj * DW, dj * DW + SW * (OW - 1) + 1, SW)
                for total, a, b in zip(sums, d[:3], w[:3]):
                    total[:, rows, cols] += _tap(a, b[di, dj])
    # The forward padding is cropped; rows/columns no output reached (output_padding) are 0.
    grown = [np.pad(t, ((0, 0), (0, max(PT + H - full[1], 0)), (0, max(PL + W - full[2], 0)), (0, 0))) for t in sums]
    value, magnitude, squares = (t[:, PT:PT + H, PL:PL + W] for t in grown)
    return _finish(value, value, magnitude, squares, d[3] * w[3])
'''

_GRAD_FILTER = '''

def _tap(p, d):
    """One tap of the filter gradient: p (N, OH, OW, C) the input it reads, d = dy."""
{tap}

def reference(x, dy):
    """(value, alternative, magnitude, norm, unbiased), float64 (KH, KW, C/groups or C, O or M):
    df[di, dj, q, k] = sum over b, i, j of x[b, SH*i + DH*di - PT, SW*j + DW*dj - PL, q of k's group] * dy[b, i, j, k].
    The alternative leaves out the products of padded positions (zero times an infinite dy)."""
    xs, d = _parts(x), _parts(dy)
    pads = ((0, 0), (PT, PB), (PL, PR), (0, 0))
    xp = [np.pad(a, pads) for a in xs[:3]]
    inside = np.pad(np.ones((H, W), bool), pads[1:3])
    value, alternative, magnitude, squares = ([[None] * KW for _ in range(KH)] for _ in range(4))
    with np.errstate(invalid="ignore", over="ignore", under="ignore"):
        for di in range(KH):
            for dj in range(KW):
                rows = slice(di * DH, di * DH + SH * (OH - 1) + 1, SH)
                cols = slice(dj * DW, dj * DW + SW * (OW - 1) + 1, SW)
                value[di][dj] = _tap(xp[0][:, rows, cols], d[0])
                alternative[di][dj] = _tap(xp[0][:, rows, cols], np.where(inside[rows, cols][None, :, :, None], d[0], 0))
                magnitude[di][dj] = _tap(xp[1][:, rows, cols], d[1])
                squares[di][dj] = _tap(xp[2][:, rows, cols], d[2])
    value, alternative, magnitude, squares = (np.array(t) for t in (value, alternative, magnitude, squares))
    return _finish(value, alternative, magnitude, squares, xs[3] * d[3])
'''

_SEPARABLE = '''

def reference(x, filters, pointwise, bias):
    """(value, alternative, magnitude, norm, unbiased), float64 (N, OH, OW, O): the depthwise
    conv (channel k*M + q) then the 1x1 pointwise conv, then the bias. The alternative skips
    the depthwise stage's padded taps."""
    xs, w, p = _parts(x), _parts(filters), _parts(pointwise)
    pads = ((0, 0), (PT, PB), (PL, PR), (0, 0))
    xp = [np.pad(a, pads) for a in xs[:3]]
    inside = np.pad(np.ones((H, W), bool), pads[1:3])
    mid = [0, 0, 0, 0]  # value, alternative, magnitude, squares of the depthwise stage
    with np.errstate(invalid="ignore", over="ignore", under="ignore"):
        for di in range(KH):
            for dj in range(KW):
                rows = slice(di * DH, di * DH + SH * (OH - 1) + 1, SH)
                cols = slice(dj * DW, dj * DW + SW * (OW - 1) + 1, SW)
                for n, (a, b) in enumerate(zip((xp[0], xp[0], xp[1], xp[2]), (w[0], w[0], w[1], w[2]))):
                    t = np.einsum("nhwc,cm->nhwcm", a[:, rows, cols], b[di, dj])
                    if n == 1:
                        t = np.where(inside[rows, cols][None, :, :, None, None], t, 0)
                    mid[n] = mid[n] + t.reshape(t.shape[:3] + (-1,))
        value, alternative, magnitude, squares = (m @ q[0, 0] for m, q in zip(mid, (p[0], p[0], p[1], p[2])))
        unbiased, scale = None, xs[3] * w[3] * p[3]
        if bias is not None:
            b = _parts(bias)
            unbiased = np.asarray(value, dtype=np.float64)
            value, alternative, magnitude = value + b[0], alternative + b[0], magnitude + b[1]
            squares = squares + np.square(b[1] / scale)
    return _finish(value, alternative, magnitude, squares, scale, unbiased)
'''

_TAPS = {  # (op, the body of its `_tap`)
    "conv2d_backprop_input": "    return np.concatenate([d[..., g * {og}:(g + 1) * {og}] @ w[:, g * {og}:(g + 1) * {og}].T\n"
                             "                           for g in range({groups})], axis=-1)\n",
    "depthwise_conv2d_backprop_input": "    return (d.reshape(d.shape[:3] + ({channels}, {m})) * w).sum(axis=-1)  # channel k*M + q\n",
    "conv2d_backprop_filter": "    return np.concatenate([np.einsum('nhwc,nhwo->co', p[..., g * {cg}:(g + 1) * {cg}], "
                              "d[..., g * {og}:(g + 1) * {og}])\n                           for g in range({groups})], "
                              "axis=-1)\n",
    "depthwise_conv2d_backprop_filter": "    return np.einsum('nhwc,nhwcm->cm', p, d.reshape(d.shape[:3] + ({channels}, {m})))\n",
}


def reference_source(case: Case) -> str:
    """The constants and `reference(...)` of a training op's full repro script."""
    g = case.geometry
    result = OP_INFO[case.op].result
    what = {"input": "gradient with respect to the input (transposed convolution)",
            "filter": "gradient with respect to the filters", "output": "separable convolution"}[result]
    head = _COMMON.format(what=what, kernel=case.kernel, strides=case.strides, dilations=case.dilations, pads=g.pads,
                          padding=case.padding, out_h=g.out_h, out_w=g.out_w, height=case.height, width=case.width)
    if case.op == "separable_conv2d":
        return head + _SEPARABLE
    per = case.conv_channels // case.groups if case.forward_op == "conv2d" else case.channel_multiplier
    tap = _TAPS[case.op].format(og=per, cg=case.filter_in_channels, groups=case.groups, channels=case.in_channels,
                                m=case.channel_multiplier)
    body = _GRAD_INPUT if result == "input" else _GRAD_FILTER
    return head + body.format(tap=tap, channels=case.in_channels)
