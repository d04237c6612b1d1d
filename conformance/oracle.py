"""The NumPy oracle: the formulas of DESIGN.md, computed in float64, beyond doubt.

    conv2d:     out[b,i,j,k]     = sum_{di,dj,q} in[b, s_h*i + d_h*di - p_top, s_w*j + d_w*dj - p_left, g*Cg + q] * f[di,dj,q,k]
    depthwise:  out[b,i,j,k*M+q] = sum_{di,dj}   in[b, s_h*i + d_h*di - p_top, s_w*j + d_w*dj - p_left, k] * f[di,dj,k,q]

Invariants
- Canonical layouts in and out: x (N, H, W, C); filters (kh, kw, C/groups, O) or
  (kh, kw, C, M); the result is a float64 (N, OH, OW, O or C*M) array.
- Pads and output size come from `spec.conv_geometry` and nowhere else.
- No framework is imported: the oracle must be independent of everything it judges.
- Inputs of float32 and narrower are exact in float64 and so are their products; the
  float64 sums add an error of about K * 2**-53 * magnitude, which is 2**-29 * K of a
  float32 unit roundoff: negligible. How they are summed is chosen for speed and never
  changes that bound: conv2d is an im2col + one GEMM per group and block of rows (built in blocks
  of output rows, so memory stays bounded: `conformance.patches`); depthwise is one small
  GEMM per channel for channel multipliers >= 4, else per-tap multiply-adds over strided
  views of the input, block by block of output rows (tests/test_oracle.py forces every
  strategy against a loop transcription of the formulas).
- For float64 inputs `compensated=True` makes every output within one float64 ulp of the
  exact result (`conformance.exact`: Ozaki-style error-free slicing whose slice products
  and partial sums are exact in float64 in any order, with or without FMA, a rigorous
  per-output error bound, never an estimate, and recomputation with more slices down to
  exact rationals where the bound is not met). Where every nonzero |x| and |w| lies within
  2**-FAST_EXP .. 2**FAST_EXP conv2d slices each padded image once (`ExactConv`) and
  depthwise each channel once (`depthwise_exact`); elsewhere conv2d uses per-row slices
  (`exact_matmul`; subnormal results may round once more there, as any float64
  computation would) and depthwise Dot2 per tap (TwoProduct by Dekker splitting and
  TwoSum, Ogita, Rump & Oishi). tests/test_oracle.py forces every path against exact
  rationals, adversarial inputs included.
- IEEE semantics for NaN and Inf are computed exactly and separately from the finite
  part (BLAS kernels are not trusted with them): an output is NaN when any product is
  NaN (NaN operand, 0 * Inf) or when +Inf and -Inf products meet; otherwise +-Inf when
  an infinite product occurs. Whether a padded zero meeting an infinite filter tap
  contributes NaN is the one choice IEEE leaves open (the formula says zero times Inf;
  an implementation that skips padded taps never forms that product): see
  `zero_times_inf`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import adjoint, patches
from .exact import SplitWeights, conv2d_exact_group, depthwise_exact, exact_matmul, in_fast_range, two_product, two_sum
from .patches import pad, row_chunks, tile, windows
from .spec import FORWARD_OPS, OP_INFO, Case, Padding, conv_geometry


class Reference(NamedTuple):
    """What a backend's output is judged against (all float64, output shape)."""

    value: np.ndarray  # the exact result (NaN/Inf per IEEE, padded zero * Inf = NaN)
    magnitude: np.ndarray  # sum |x| |w| (+ |bias|): the scale of rounding errors
    alternative: np.ndarray | None  # the result when padded taps are skipped, if it differs
    # sqrt(sum (x w)^2 (+ bias^2)): with `value`, the scale of a correct sum's *expected*
    # rounding error, which cancellation makes far smaller than `magnitude` (None: not computed).
    norm: np.ndarray | None = None
    # The exact result without the bias (None: the case has no bias, or not computed): the
    # `strict` contract allows one more rounding for a bias added as a separate operation.
    unbiased: np.ndarray | None = None


def _linear(x, w, *, op, strides, padding, dilations, groups, compensated, pad_value=0.0):
    """The convolution of finite float64 arrays (the core shared by every quantity).

    Every strategy below sums the same exact products in float64; they differ only in
    the order of the float64 additions (error <= K * 2**-53 * magnitude either way).
    """
    n, h, wd, c = x.shape
    kh, kw = w.shape[0], w.shape[1]
    geo = conv_geometry((h, wd), (kh, kw), strides, dilations, padding)
    xp = pad(x, geo.pads, pad_value)
    if op == "conv2d":
        return _conv2d_im2col(xp, w, geo, strides, dilations, groups, compensated)
    return _depthwise(xp, w, geo, strides, dilations, compensated)


#: Reductions up to this length take the per-row exact path (`exact_matmul`), see below.
_EXACT_CONV_MIN_K = 16


def _conv2d_im2col(xp, w, geo, strides, dilations, groups, compensated):
    """conv2d as im2col + GEMM (or Dot2), built in blocks of output rows to bound memory.

    One GEMM with the full reduction K = kh*kw*C/groups beats kh*kw GEMMs over shifted
    views of the input (measured 2x): the im2col copy costs far less than the GEMM.
    """
    n = xp.shape[0]
    kh, kw, cg, co = w.shape
    og = co // groups
    oh, ow = geo.out_h, geo.out_w
    win = windows(xp, geo, (kh, kw), strides, dilations)
    out = np.empty((n, oh, ow, co))
    k = kh * kw * cg
    # Short reductions keep the per-row path: its per-row scale makes each product's
    # slices exact, so results are correctly rounded in practice, where the band-sliced
    # path guarantees one ulp (its bound), which is two units of the normalised error
    # when K = 1 (magnitude = |value|), a margin the tolerance tests keep for correct sums.
    fast = compensated and k > _EXACT_CONV_MIN_K and in_fast_range(xp) and in_fast_range(w)
    for g in range(groups):
        wg = w[:, :, :, g * og : (g + 1) * og].reshape(k, og)
        if fast:
            conv2d_exact_group(xp[..., g * cg : (g + 1) * cg], np.ascontiguousarray(wg), geo, (kh, kw), strides,
                                dilations, out[..., g * og : (g + 1) * og])
            continue
        split = SplitWeights(np.ascontiguousarray(wg)) if compensated else None
        for b in range(n):
            # The exact path holds about eight (rows, K) arrays at once (slices, remainders).
            for rs in row_chunks(oh, ow * k * 8 * (8 if compensated else 1)):
                # (rows, ow, kh, kw, cg) -> (rows * ow, K), K ordered (di, dj, q) like wg.
                cols = win[b, rs, :, :, :, g * cg : (g + 1) * cg].reshape(-1, k)
                if groups == 1 and not compensated:  # straight into the output, no copy
                    np.matmul(cols, wg, out=out[b, rs].reshape(-1, co))
                    continue
                res = exact_matmul(cols, split) if compensated else cols @ wg
                out[b, rs, :, g * og : (g + 1) * og] = res.reshape(-1, ow, og)
    return out


def _depthwise(xp, w, geo, strides, dilations, compensated):
    """Depthwise: per-tap multiply-adds over strided window views, or per-channel GEMMs."""
    n, c = xp.shape[0], xp.shape[3]
    kh, kw, _, m = w.shape
    oh, ow = geo.out_h, geo.out_w
    win = windows(xp, geo, (kh, kw), strides, dilations)  # (N, OH, OW, kh, kw, C) view
    if not compensated and m >= patches.DW_GEMM_MIN_M:
        out = np.empty((n, oh, ow, c, m))
        wc = np.ascontiguousarray(w.reshape(kh * kw, c, m).transpose(1, 0, 2))  # (C, T, M)
        for b in range(n):
            for rs in row_chunks(oh, ow * kh * kw * c * 8):
                # (rows, ow, kh, kw, C) -> (C, rows * ow, T): one (P, T) @ (T, M) GEMM per channel.
                taps = win[b, rs].reshape(-1, kh * kw, c).transpose(2, 0, 1)
                out[b, rs] = np.matmul(taps, wc).transpose(1, 0, 2).reshape(-1, ow, c, m)
        return out.reshape(n, oh, ow, c * m)
    # One multiplier at a time over (N, OH, OW, C) arrays, with each tap's weights tiled
    # to (OW, C): then every NumPy loop runs over OW * C contiguous elements instead of
    # M (often 1) or C (measured 3-5x and 1.5x faster).
    if compensated and in_fast_range(xp) and in_fast_range(w):
        return depthwise_exact(xp, w, geo, strides, dilations).reshape(n, oh, ow, c * m)
    outs = []
    for q in range(m):
        tiled = tile(w[..., q], ow)
        out = np.empty((n, oh, ow, c))
        for b in range(n):
            for rs in row_chunks(oh, ow * c * 8, patches.DW_BLOCK_BYTES):
                _depthwise_block(win[b, rs], tiled, out[b, rs], compensated)
        outs.append(out)
    if m == 1:
        return outs[0]
    return np.stack(outs, axis=-1).reshape(n, oh, ow, c * m)


def _depthwise_block(win, f, out, compensated):
    """out = sum over taps of win[:, :, di, dj, :] * f[di, dj].

    win (rows, OW, kh, kw, C) a strided view; f (kh, kw, OW, C); out (rows, OW, C).
    """
    kh, kw = f.shape[0], f.shape[1]
    s = comp = tmp = None
    for di in range(kh):
        for dj in range(kw):
            a = win[:, :, di, dj, :]  # (rows, OW, C), a strided view
            if compensated:
                p, ep = two_product(a, f[di, dj])
                if s is None:
                    s, comp = p, ep
                else:
                    s, es = two_sum(s, p)
                    comp += ep + es
            elif tmp is None:
                np.multiply(a, f[di, dj], out=out)
                tmp = np.empty(out.shape)
            else:
                np.multiply(a, f[di, dj], out=tmp)
                out += tmp
    if compensated:
        np.add(s, comp, out=out)


def _check(x, w, op, groups):
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"expected 4-D x (N, H, W, C) and filters, received shapes {x.shape} and {w.shape}")
    c = x.shape[3]
    if op == "conv2d":
        if w.shape[2] * groups != c or w.shape[3] % groups:
            raise ValueError(
                f"expected filters (kh, kw, C/groups, O) with groups dividing C and O, received "
                f"x {x.shape}, filters {w.shape}, groups {groups}"
            )
    elif w.shape[2] != c:
        raise ValueError(f"expected depthwise filters (kh, kw, C={c}, M), received {w.shape}")


def _convolve(x, w, bias, *, op, strides, padding, dilations, groups, compensated, zero_times_inf, present=None):
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    _check(x, w, op, groups)
    strides, dilations = tuple(strides), tuple(dilations)
    kw_ = dict(op=op, strides=strides, padding=padding, dilations=dilations, groups=groups)
    finite_x, finite_w = np.isfinite(x), np.isfinite(w)
    all_finite = finite_x.all() and finite_w.all()
    xf = x if all_finite else np.where(finite_x, x, 0.0)
    wf = w if all_finite else np.where(finite_w, w, 0.0)
    out = _linear(xf, wf, compensated=compensated, **kw_)
    if not all_finite:
        out = _apply_nonfinite(out, x, w, zero_times_inf=zero_times_inf, present=present, **kw_)
    if bias is not None:
        with np.errstate(invalid="ignore"):  # Inf + -Inf = NaN is the IEEE answer, not an accident
            out = out + np.asarray(bias, dtype=np.float64)
    return out


def _apply_nonfinite(out, x, w, *, zero_times_inf, present=None, **kw_):
    """Overlay IEEE NaN/Inf results, counted exactly with 0/1 indicator convolutions.

    `present`: the positions of x that hold terms (None: all); the others (the zeros a
    gradient's rearrangement inserts) form no product, like skipped pads."""
    def count(a, b, pad_value=0.0):
        return _linear(a.astype(np.float64), b.astype(np.float64), compensated=False, pad_value=pad_value, **kw_)

    ones_x, ones_w = (np.ones_like(x) if present is None else present.astype(np.float64)), np.ones_like(w)
    x_nan, w_nan = np.isnan(x), np.isnan(w)
    x_pinf, x_ninf = x == np.inf, x == -np.inf
    w_pinf, w_ninf = w == np.inf, w == -np.inf
    x_zero, w_zero = (x == 0) if present is None else (x == 0) & present, w == 0
    x_pos, x_neg = (x > 0) & ~x_pinf, (x < 0) & ~x_ninf
    w_pos, w_neg = (w > 0) & ~w_pinf, (w < 0) & ~w_ninf
    # Padded positions hold zeros: they meet an infinite tap as 0 * Inf = NaN, unless
    # the implementation skips them (zero_times_inf="skip").
    pad_zero = 1.0 if zero_times_inf == "nan" else 0.0
    nan = (count(x_nan, ones_w) + count(ones_x, w_nan, pad_value=0.0)
           + count(x_pinf | x_ninf, w_zero) + count(x_zero, w_pinf | w_ninf, pad_value=pad_zero))
    if zero_times_inf == "nan" and (w_nan.any()):
        nan = nan + count(np.zeros_like(x), w_nan, pad_value=1.0)  # padded zero * NaN
    pinf = count(x_pinf, w_pos | w_pinf) + count(x_ninf, w_neg | w_ninf) + count(x_pos, w_pinf) + count(x_neg, w_ninf)
    ninf = count(x_pinf, w_neg | w_ninf) + count(x_ninf, w_pos | w_pinf) + count(x_pos, w_ninf) + count(x_neg, w_pinf)
    out = np.where(pinf > 0, np.inf, out)
    out = np.where(ninf > 0, -np.inf, out)
    return np.where((nan > 0) | ((pinf > 0) & (ninf > 0)), np.nan, out)


def conv2d(x, filters, *, strides=(1, 1), padding: Padding = "VALID", dilations=(1, 1), groups=1,
           bias=None, compensated=False, zero_times_inf="nan") -> np.ndarray:
    """(N, H, W, C) x (kh, kw, C/groups, O) -> float64 (N, OH, OW, O), per DESIGN.md."""
    return _convolve(x, filters, bias, op="conv2d", strides=strides, padding=padding, dilations=dilations,
                     groups=groups, compensated=compensated, zero_times_inf=zero_times_inf)


def depthwise_conv2d(x, filters, *, strides=(1, 1), padding: Padding = "VALID", dilations=(1, 1),
                     bias=None, compensated=False, zero_times_inf="nan") -> np.ndarray:
    """(N, H, W, C) x (kh, kw, C, M) -> float64 (N, OH, OW, C*M), channel k*M + q."""
    return _convolve(x, filters, bias, op="depthwise_conv2d", strides=strides, padding=padding,
                     dilations=dilations, groups=1, compensated=compensated, zero_times_inf=zero_times_inf)


def convolve(case: Case, x, filters, bias=None, *, zero_times_inf="nan", compensated=None, strides=None,
             dilations=None, padding=None) -> np.ndarray:
    """The case's op on (x, filters, bias), with the case's geometry (or the one given); float64 out.

    Compensated summation is used for float64 cases unless told otherwise.
    """
    if compensated is None:
        compensated = case.dtype == "float64"
    fn = conv2d if case.op == "conv2d" else depthwise_conv2d
    kwargs = dict(strides=tuple(strides or case.strides), padding=case.padding if padding is None else padding,
                  dilations=tuple(dilations or case.dilations), bias=bias, compensated=compensated,
                  zero_times_inf=zero_times_inf)
    if case.op == "conv2d":
        kwargs["groups"] = case.groups
    return fn(x, filters, **kwargs)


def _pow2_scale(a: np.ndarray) -> float:
    top = float(np.max(a)) if a.size else 0.0
    return float(2.0 ** np.floor(np.log2(top))) if top > 0 else 1.0


def product_norm(conv, ax, aw, ab=None) -> np.ndarray:
    """sqrt(sum (x w)^2 (+ b^2)) per output, for |x|, |w|, |b| and a convolution `conv(x, w, b)`.

    The squares are taken after scaling by powers of two, so neither subnormal inputs
    (whose squares underflow) nor huge ones (whose squares overflow) lose the result.
    """
    xs, ws = _pow2_scale(ax), _pow2_scale(aw)
    with np.errstate(under="ignore", over="ignore", invalid="ignore"):
        squares = conv(np.square(ax / xs), np.square(aw / ws), None if ab is None else np.square(ab / (xs * ws)))
        return np.sqrt(squares) * xs * ws


def _flush(a, dtype: str):
    from .dtypes import flush_subnormals

    return None if a is None else flush_subnormals(np.asarray(a, dtype=np.float64), dtype)


def reference(case: Case, *operands, flush_subnormals: bool = False, strides=None, dilations=None,
              padding=None) -> Reference:
    """The exact answer for a valid case on its operands (`case.operands`: x, filters, bias
    for the forward ops): value, magnitude, norm and unbiased arrays and the IEEE
    alternative. The one reference builder every judgement uses.

    Options (for the hypotheses tested by `compare` and `diagnose`):
    - `flush_subnormals`: inputs and results flushed to zero (FTZ/DAZ) in the case dtype;
    - `strides`, `dilations`, `padding`: another geometry than the case's.
    """
    if not case.is_valid:
        raise ValueError(f"case {case.id} is invalid ({case.invalid_reason}): it has no reference")
    if len(operands) > len(case.operands) or len(operands) < len(case.operands) - (case.operands[-1] == "bias"):
        raise ValueError(f"expected the operands {', '.join(case.operands)} of op {case.op!r}, received "
                         f"{len(operands)} arrays")
    geo = dict(strides=strides, dilations=dilations, padding=padding)
    if flush_subnormals:
        operands = tuple(_flush(a, case.dtype) for a in operands)
    if case.op == "separable_conv2d":
        ref = _separable(case, *operands, **geo)
    elif case.op not in FORWARD_OPS:
        ref = _gradient(case, *operands, **geo)
    else:
        ref = _forward(case, *operands, **geo)
    if flush_subnormals:
        ref = Reference(_flush(ref.value, case.dtype), ref.magnitude, _flush(ref.alternative, case.dtype), ref.norm,
                        _flush(ref.unbiased, case.dtype))
    return ref


def _forward(case: Case, x, filters, bias=None, *, strides=None, dilations=None, padding=None) -> Reference:
    geo = dict(strides=strides, dilations=dilations, padding=padding)
    value = convolve(case, x, filters, bias, **geo)
    ax = np.abs(np.asarray(x, dtype=np.float64))
    aw = np.abs(np.asarray(filters, dtype=np.float64))
    ab = None if bias is None else np.abs(np.asarray(bias, dtype=np.float64))
    with np.errstate(invalid="ignore"):
        ax, aw = np.where(np.isfinite(ax), ax, 0.0), np.where(np.isfinite(aw), aw, 0.0)
        ab = None if ab is None else np.where(np.isfinite(ab), ab, 0.0)
        magnitude = convolve(case, ax, aw, ab, compensated=False, **geo)
        if case.reduction_size == 1 and ab is None:
            norm = magnitude.copy()  # one term per output: sqrt((x w)^2) = |x w|, no second conv needed
        else:
            norm = product_norm(lambda xx, ww, bb: convolve(case, xx, ww, bb, compensated=False, **geo), ax, aw, ab)
    finite = np.isfinite(value)
    magnitude = np.where(finite, magnitude, np.inf)
    norm = np.where(finite, norm, np.inf)
    unbiased = None
    if bias is not None:  # exact to a float64 rounding of `value`: far below any contract's allowance
        with np.errstate(invalid="ignore"):
            unbiased = value - np.asarray(bias, dtype=np.float64)
    alternative = None
    pads = conv_geometry((case.height, case.width), case.kernel, tuple(strides or case.strides),
                         tuple(dilations or case.dilations), case.padding if padding is None else padding).pads
    if not np.isfinite(np.asarray(filters, dtype=np.float64)).all() and any(sum(p) for p in pads):
        alt = convolve(case, x, filters, bias, zero_times_inf="skip", **geo)
        if not np.array_equal(alt, value, equal_nan=True):
            alternative = alt
    return Reference(value, magnitude, alternative, norm, unbiased)


def _finite_abs(a) -> np.ndarray:
    a = np.abs(np.asarray(a, dtype=np.float64))
    return np.where(np.isfinite(a), a, 0.0)


def _taps_fit(case: Case, a, b, *, strides=None, dilations=None, padding=None) -> bool:
    """Does dy have the output size of this geometry (`_gradient_by_taps` needs it; another
    geometry than the case's, tried by a diagnosis, may not)?"""
    dy = a if OP_INFO[case.op].result == "input" else b
    geo = conv_geometry((case.height, case.width), case.kernel, tuple(strides or case.strides),
                        tuple(dilations or case.dilations), case.padding if padding is None else padding)
    return dy.shape[1:3] == (geo.out_h, geo.out_w)


def _gradient_by_taps(case: Case, a, b, *, strides=None, dilations=None, padding=None) -> np.ndarray:
    """A gradient of finite operands as one batched GEMM per filter tap, float64 sums of
    exact products (the path for float32 and narrower, and for magnitudes and norms): dx
    scatters dy x tap into the padded input's positions and crops the pads; df gathers
    the padded x under each tap against dy. The same terms as `adjoint`'s conv (tests
    hold both to the formulas), summed in another order: far faster where groups are
    many (depthwise) or the reduction is the batch and image (df)."""
    strides, dilations = tuple(strides or case.strides), tuple(dilations or case.dilations)
    padding = case.padding if padding is None else padding
    n, h, w, c = case.input_shape
    kh, kw = case.kernel
    geo = conv_geometry((h, w), case.kernel, strides, dilations, padding)
    (pt, pb), (pl, pr) = geo.pads
    groups = c if case.forward_op == "depthwise_conv2d" else case.groups
    cg = c // groups
    (sh, sw), (dh, dw) = strides, dilations

    def under(di, dj, oh, ow):  # the padded input's positions tap (di, dj) meets
        return (slice(dh * di, dh * di + sh * (oh - 1) + 1, sh), slice(dw * dj, dw * dj + sw * (ow - 1) + 1, sw))

    if OP_INFO[case.op].result == "input":
        dy, f = a, b
        oh, ow, o = dy.shape[1], dy.shape[2], dy.shape[3]
        og = o // groups
        taps = f.reshape(kh, kw, cg, groups, og).transpose(0, 1, 3, 4, 2)  # (kh, kw, G, og, cg)
        rows = dy.reshape(-1, groups, og).transpose(1, 0, 2)  # (G, P, og)
        dxp = np.zeros((n, h + pt + pb, w + pl + pr, c))
        for di in range(kh):
            for dj in range(kw):
                part = np.matmul(rows, taps[di, dj])  # (G, P, cg)
                dxp[(slice(None),) + under(di, dj, oh, ow)] += part.transpose(1, 0, 2).reshape(n, oh, ow, c)
        return dxp[:, pt:pt + h, pl:pl + w]
    x, dy = a, b
    oh, ow, o = dy.shape[1], dy.shape[2], dy.shape[3]
    og = o // groups
    xp = pad(x, geo.pads)
    cols = dy.reshape(-1, groups, og).transpose(1, 0, 2)  # (G, P, og)
    df = np.empty((kh, kw, cg, groups, og))
    for di in range(kh):
        for dj in range(kw):
            patch = xp[(slice(None),) + under(di, dj, oh, ow)].reshape(-1, groups, cg).transpose(1, 2, 0)
            df[di, dj] = np.matmul(patch, cols).transpose(1, 0, 2)  # (cg, G, og)
    return df.reshape(case.filter_shape)


def _gradient(case: Case, a, b, *, strides=None, dilations=None, padding=None) -> Reference:
    """A gradient op through `adjoint`: value (real terms only), magnitude, norm, and the
    alternative of an implementation that multiplies the inserted zeros and the pads."""
    geo = dict(strides=strides, dilations=dilations, padding=padding)
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)

    def run(p, q, *, compensated=False, zero_times_inf="skip", real_terms=True, finite=True):
        if finite and not compensated and _taps_fit(case, p, q, **geo):
            return _gradient_by_taps(case, p, q, **geo)
        fwd = adjoint.as_forward(case, p, q, **geo)
        kw_ = dict(op="conv2d", strides=fwd.strides, padding=fwd.padding, dilations=fwd.dilations, groups=fwd.groups,
                   compensated=compensated)
        if finite:
            out = _linear(fwd.x, fwd.w, **kw_)
        else:
            out = _convolve(fwd.x, fwd.w, None, zero_times_inf=zero_times_inf,
                            present=fwd.present if real_terms else None, **kw_)
        return fwd.finish(out)

    finite = bool(np.isfinite(a).all() and np.isfinite(b).all())
    value = run(a, b, compensated=case.dtype == "float64", finite=finite)
    aa, ab = _finite_abs(a), _finite_abs(b)
    with np.errstate(invalid="ignore"):
        magnitude = run(aa, ab)
        norm = product_norm(lambda p, q, _: run(p, q), aa, ab)
    alternative = None
    if not finite:
        alt = run(a, b, zero_times_inf="nan", real_terms=False, finite=False)
        if not np.array_equal(alt, value, equal_nan=True):
            alternative = alt
    ok = np.isfinite(value)
    return Reference(value, np.where(ok, magnitude, np.inf), alternative, np.where(ok, norm, np.inf), None)


def _separable_as_one_conv(case: Case, x, filters, pointwise, bias, geo) -> np.ndarray:
    """y = sum_{t,c,q} x[t,c] * (f[t,c,q] * p[c*M+q,o]) exactly: each product f * p split
    exactly in two (TwoProduct), so y is one compensated conv2d of x (each channel repeated
    for its M multipliers, twice) with the filters [hi; lo], within one ulp."""
    x = np.asarray(x, dtype=np.float64)
    f = np.asarray(filters, dtype=np.float64)
    p = np.asarray(pointwise, dtype=np.float64)[0, 0]  # (C*M, O)
    kh, kw, c, m = f.shape
    hi, lo = two_product(f.reshape(kh, kw, c * m, 1), p[None, None])  # (kh, kw, C*M, O)
    xs = np.repeat(x, m, axis=3)
    return conv2d(np.concatenate([xs, xs], axis=3), np.concatenate([hi, lo], axis=2), bias=bias, compensated=True,
                  **geo)


def _separable(case: Case, x, filters, pointwise, bias=None, *, strides=None, dilations=None,
               padding=None) -> Reference:
    """Depthwise, then the 1x1 pointwise conv2d of its float64 result, then the bias.

    For float32 and narrower the depthwise stage is exact and the pointwise stage sums
    float64 products of it (error ~ C*M * 2**-53 * magnitude, as a float64 sum). For
    finite float64 operands the composition is one exact sum (`_separable_as_one_conv`):
    within one ulp, as the other ops (with a bias, one more rounding, as the forward ops);
    with non-finite ones each stage is within one ulp."""
    geo = dict(strides=tuple(strides or case.strides), dilations=tuple(dilations or case.dilations),
               padding=case.padding if padding is None else padding)
    compensated = case.dtype == "float64"

    def stages(xx, ff, pp, bb, *, comp=False, zero_times_inf="nan"):
        z = depthwise_conv2d(xx, ff, compensated=comp, zero_times_inf=zero_times_inf, **geo)
        return conv2d(z, pp, bias=bb, compensated=comp, zero_times_inf=zero_times_inf)

    finite = all(np.isfinite(np.asarray(a, dtype=np.float64)).all() for a in (x, filters, pointwise))
    if compensated and finite:
        value = _separable_as_one_conv(case, x, filters, pointwise, bias, geo)
    else:
        value = stages(x, filters, pointwise, bias, comp=compensated)
    ax, af, ap = _finite_abs(x), _finite_abs(filters), _finite_abs(pointwise)
    ab = None if bias is None else _finite_abs(bias)
    with np.errstate(invalid="ignore", over="ignore"):
        magnitude = stages(ax, af, ap, ab)
        nz = product_norm(lambda p, q, _: depthwise_conv2d(p, q, **geo), ax, af)
        norm = product_norm(lambda p, q, bb: conv2d(p, q, bias=bb), nz, ap, ab)
    unbiased = None
    if bias is not None:
        with np.errstate(invalid="ignore"):
            unbiased = value - np.asarray(bias, dtype=np.float64)
    alternative = None
    pads = conv_geometry((case.height, case.width), case.kernel, geo["strides"], geo["dilations"], geo["padding"]).pads
    if not np.isfinite(np.asarray(filters, dtype=np.float64)).all() and any(sum(p) for p in pads):
        alt = stages(x, filters, pointwise, bias, comp=compensated, zero_times_inf="skip")
        if not np.array_equal(alt, value, equal_nan=True):
            alternative = alt
    ok = np.isfinite(value)
    return Reference(value, np.where(ok, magnitude, np.inf), alternative, np.where(ok, norm, np.inf), unbiased)
