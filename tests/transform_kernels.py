"""Faithful emulations of the transform convolutions vendors ship (not collected: no test_ prefix).

Shared by the tests (tests/test_transforms.py) and the calibration (benchmarks/calibration.py).
Each computes a case the way a vendor kernel does, one IEEE operation at a time in the
working precision (float32 for float32 and the 16-bit types, whose inputs are exact in
float32 and whose result is rounded once at the end; float64 for float64):

- `winograd(case, x, f, b, m)`: Winograd F(m x m, 3 x 3) (m = 2, 4, 6; stride 1, dilation 1,
  3 x 3 filters), tiles of m x m outputs aligned at output (0, 0), the input padded with
  zeros (the case's pads, then whatever the last tile needs):
    U = G g G^T per (input channel, output channel) (G's fractions rounded to the working
        precision, like a vendor's constant tables);
    V = B^T d B per (tile, input channel);
    M = sum over input channels of U * V, per transformed position: a GEMM in the working
        precision (BLAS, as oneDNN, NNPACK and cuDNN batch it);
    Y = A^T M A per tile; then the bias, added in the working precision.
  Each matrix product is a sequence of multiplies and adds, each rounded (zero coefficients
  skipped, as vendors' unrolled code does).
- `fft_conv(case, x, f, b)`: FFT convolution (cuDNN's FFT algorithm): each padded input plane
  and each filter (zero-padded to the same size) transformed by a radix-2 decimation-in-time
  FFT in complex64 (complex128 for float64), twiddle factors rounded to the working
  precision; the spectra multiplied and summed over the input channels by a complex GEMM; an
  inverse FFT; the 1/N normalisation as one multiplication by the rounded reciprocal (exact
  for power-of-two sizes, which `size="pow2"` chooses; `size="exact"` transforms at the
  smallest size that holds the plane, by a DFT matrix, as a mixed-radix FFT would, and then
  1/N is rounded).

`rounding="truncate"` makes every operation of the working precision round toward zero
instead of to nearest (float32 working precision only): a directed rounding the sign test
must still flag under the transform's own contract.

`bug=` plants one index bug inside the algorithm (the error model must still flag it):
- "edge-coefficient": the last tile row and column use a B^T with one coefficient wrong
  (the 1 of B^T's last row replaced by a 2: an edge-tile specialisation typo);
- "tile-offset": the tiles of the last tile column read their input one column too far right;
- "twiddle": (FFT) one twiddle factor of the last butterfly stage conjugated.

Correct and wrong variants are listed in `TRANSFORMS` and `TRANSFORM_BUGS`.
"""

from __future__ import annotations

import numpy as np

from conformance.dtypes import np_dtype
from conformance.transforms import winograd_matrices


def _work(case):
    """The working float and complex types of a case."""
    return (np.float64, np.complex128) if case.dtype == "float64" else (np.float32, np.complex64)


def _as(a, dt):
    return np.asarray(np.asarray(a, dtype=np.float64), dtype=dt)


def _toward_zero(v, dt):
    """`v` (float64/complex128) rounded toward zero to `dt` (float32/complex64), per component."""
    if np.iscomplexobj(v):
        real = np.float32 if dt == np.complex64 else np.float64
        return (_toward_zero(v.real, real) + 1j * _toward_zero(v.imag, real)).astype(dt)
    r = v.astype(dt)
    with np.errstate(invalid="ignore"):
        return np.where(np.abs(r.astype(np.float64)) > np.abs(v), np.nextafter(r, dt(0)), r)


class _Arith:
    """The working precision's operations, each rounded to nearest or toward zero."""

    def __init__(self, dt, rounding: str):
        if rounding not in ("nearest", "truncate"):
            raise ValueError(f"rounding: expected 'nearest' or 'truncate', received {rounding!r}")
        if rounding == "truncate" and dt in (np.float64, np.complex128):
            raise ValueError("rounding: 'truncate' needs a float32 working precision")
        self.dt, self.truncate = dt, rounding == "truncate"
        self.wide = np.complex128 if np.dtype(dt).kind == "c" else np.float64

    def _r(self, v):
        return _toward_zero(v, self.dt) if self.truncate else v.astype(self.dt)

    def mul(self, a, b):
        if not self.truncate:
            return (a * b).astype(self.dt)
        if np.iscomplexobj(a) or np.iscomplexobj(b):
            a, b = np.asarray(a, self.wide), np.asarray(b, self.wide)
            real = np.float32 if self.dt == np.complex64 else np.float64
            r = lambda v: _toward_zero(v, real).astype(np.float64)  # noqa: E731 (one component rounded)
            re = r(r(a.real * b.real) - r(a.imag * b.imag))
            im = r(r(a.real * b.imag) + r(a.imag * b.real))
            return (re + 1j * im).astype(self.dt)
        return self._r(np.asarray(a, self.wide) * np.asarray(b, self.wide))

    def add(self, a, b):
        if not self.truncate:
            return (a + b).astype(self.dt)
        return self._r(np.asarray(a, self.wide) + np.asarray(b, self.wide))

    def matmul(self, a, b):
        """a @ b: BLAS in the working precision, or one rounded multiply-add at a time."""
        if not self.truncate:
            return np.matmul(a, b).astype(self.dt)
        acc = self.mul(a[..., :, 0:1], b[..., 0:1, :])
        for k in range(1, a.shape[-1]):
            acc = self.add(acc, self.mul(a[..., :, k:k + 1], b[..., k:k + 1, :]))
        return acc


def _finish(case, y, bias, ar: _Arith):
    """Add the bias in the working precision, then round once to the case dtype."""
    if bias is not None:
        y = ar.add(y, _as(bias, ar.dt))
    return np.asarray(y, dtype=np.float64).astype(np_dtype(case.dtype))


def winograd_applies(case) -> bool:
    """Winograd F(m x m, 3 x 3) computes this case: 3 x 3 filters, stride 1, dilation 1."""
    return case.is_valid and tuple(case.kernel) == (3, 3) and tuple(case.strides) == (1, 1) \
        and tuple(case.dilations) == (1, 1)


def fft_applies(case) -> bool:
    """An FFT convolution computes this case: stride 1, dilation 1."""
    return case.is_valid and tuple(case.strides) == (1, 1) and tuple(case.dilations) == (1, 1)


def _transform(mat, a, axis, ar: _Arith):
    """out[..., j, ...] = sum_k mat[j, k] a[..., k, ...] along `axis`, one rounded multiply
    and one rounded add at a time, zero coefficients skipped."""
    a = np.moveaxis(a, axis, -1)
    coef = [[ar.dt(float(v)) for v in row] for row in mat]
    rows = []
    for row in coef:
        acc = None
        for k, c in enumerate(row):
            if c == 0:
                continue
            term = a[..., k] if c == 1 else (-a[..., k] if c == -1 else ar.mul(a[..., k], c))
            acc = term if acc is None else ar.add(acc, term)
        rows.append(acc if acc is not None else np.zeros(a.shape[:-1], ar.dt))
    return np.moveaxis(np.stack(rows, axis=-1), -1, axis)


def winograd(case, x, f, b, m: int, bug: str | None = None, rounding: str = "nearest") -> np.ndarray:
    """Winograd F(m x m, 3 x 3) of `case` (see the module docstring); canonical output, case dtype."""
    if not winograd_applies(case):
        raise ValueError(f"winograd: expected a 3x3, stride 1, dilation 1 case, received {case.id}")
    dt, _ = _work(case)
    ar = _Arith(dt, rounding)
    at, g, bt = winograd_matrices(m)
    n = m + 2
    geo = case.geometry
    oh, ow = geo.out_h, geo.out_w
    th, tw = -(-oh // m), -(-ow // m)
    (pt, pb), (pl, pr) = geo.pads
    xp = np.pad(_as(x, dt), ((0, 0), (pt, pb + th * m - oh), (pl, pr + tw * m - ow), (0, 0)))
    if bug == "tile-offset":  # one more column of zeros, for the shifted last tiles to read
        xp = np.pad(xp, ((0, 0), (0, 0), (0, 1), (0, 0)))
    # Tiles (N, TH, TW, n, n, C): origin (i m, j m) of the padded input.
    tiles = np.lib.stride_tricks.sliding_window_view(xp, (n, n), axis=(1, 2))[:, ::m, ::m]
    tiles = np.ascontiguousarray(np.moveaxis(tiles, 3, -1)[:, :th, :tw])  # (N, TH, TW, n, n, C)
    if bug == "tile-offset":
        shifted = np.lib.stride_tricks.sliding_window_view(xp, (n, n), axis=(1, 2))[:, ::m, 1::m]
        tiles[:, :, -1] = np.moveaxis(shifted, 3, -1)[:, :th, tw - 1]
    v = _transform(bt, _transform(bt, tiles, 3, ar), 4, ar)  # B^T d B
    if bug == "edge-coefficient":
        wrong = bt.copy()
        wrong[-1, -1] = 2 * wrong[-1, -1]
        edge = _transform(wrong, _transform(wrong, tiles, 3, ar), 4, ar)
        v[:, -1] = edge[:, -1]
        v[:, :, -1] = edge[:, :, -1]
    u = _transform(g, _transform(g, _as(f, dt), 0, ar), 1, ar)  # G g G^T: (n, n, Cf, O or M)
    nb = tiles.shape[0]
    if case.op == "conv2d":
        groups, cg = case.groups, case.filter_in_channels
        og = case.out_channels // groups
        # Per transformed position (xi, nu): (N*TH*TW, C_g) @ (C_g, O_g) in the working precision.
        vv = v.reshape(nb * th * tw, n, n, case.in_channels).transpose(1, 2, 0, 3)
        uu = u  # (n, n, Cg, O)
        mm = np.concatenate([ar.matmul(vv[..., k * cg:(k + 1) * cg], uu[..., k * og:(k + 1) * og])
                             for k in range(groups)], axis=-1)  # (n, n, tiles, O)
        mm = mm.transpose(2, 0, 1, 3).reshape(nb, th, tw, n, n, case.out_channels)
    else:
        mult = case.channel_multiplier
        mm = ar.mul(v[..., :, None], u[None, None, None])  # (N, TH, TW, n, n, C, M)
        mm = mm.reshape(nb, th, tw, n, n, case.in_channels * mult)
    y = _transform(at, _transform(at, mm, 3, ar), 4, ar)  # (N, TH, TW, m, m, O)
    y = y.transpose(0, 1, 3, 2, 4, 5).reshape(nb, th * m, tw * m, -1)[:, :oh, :ow]
    return _finish(case, y, b, ar)


# ---- FFT ------------------------------------------------------------------------------------


def _twiddles(size: int, inverse: bool, ct):
    k = np.arange(size // 2)
    return np.exp((2j if inverse else -2j) * np.pi * k / size).astype(ct)


def _fft_pow2(a, axis: int, inverse: bool, ar: _Arith, bug: str | None = None):
    """Radix-2 decimation-in-time FFT along `axis`, every butterfly operation rounded."""
    ct = ar.dt
    a = np.moveaxis(np.asarray(a, dtype=ct), axis, -1)
    size = a.shape[-1]
    bits = size.bit_length() - 1
    rev = np.array([int(f"{i:0{bits}b}"[::-1], 2) if bits else 0 for i in range(size)])
    a = a[..., rev]
    span = 2
    while span <= size:
        half = span // 2
        tw = _twiddles(span, inverse, ct)
        if bug == "twiddle" and span == size and half > 1:
            tw = tw.copy()
            tw[1] = np.conj(tw[1])
        blocks = a.reshape(a.shape[:-1] + (size // span, span))
        even, odd = blocks[..., :half], ar.mul(blocks[..., half:], tw)
        a = np.concatenate([ar.add(even, odd), ar.add(even, -odd)], axis=-1).reshape(a.shape)
        span *= 2
    return np.moveaxis(a, -1, axis)


def _dft(a, axis: int, inverse: bool, ar: _Arith):
    """A DFT along `axis` of any length as one complex matrix product."""
    ct = ar.dt
    size = a.shape[axis]
    k = np.arange(size)
    # The exponent reduced modulo the size first, as FFT libraries tabulate their twiddles.
    mat = np.exp((2j if inverse else -2j) * np.pi * (np.outer(k, k) % size) / size).astype(ct)
    return np.moveaxis(ar.matmul(np.moveaxis(np.asarray(a, dtype=ct), axis, -1), mat.T), -1, axis)


def fft_conv(case, x, f, b, size: str = "pow2", bug: str | None = None, rounding: str = "nearest") -> np.ndarray:
    """FFT convolution of `case` (see the module docstring); canonical output, case dtype."""
    if not fft_applies(case):
        raise ValueError(f"fft: expected a stride 1, dilation 1 case, received {case.id}")
    dt, ct = _work(case)
    ar, arc = _Arith(dt, rounding), _Arith(ct, rounding)
    geo = case.geometry
    (pt, pb), (pl, pr) = geo.pads
    xp = np.pad(_as(x, dt), ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    hp, wp = xp.shape[1:3]
    if size == "pow2":
        lh, lw = 1 << (hp - 1).bit_length(), 1 << (wp - 1).bit_length()
        transform = lambda a, axis, inverse: _fft_pow2(a, axis, inverse, arc, bug)  # noqa: E731
    else:
        lh, lw = hp, wp
        transform = lambda a, axis, inverse: _dft(a, axis, inverse, arc)  # noqa: E731
    kh, kw = case.kernel
    xs = np.zeros((xp.shape[0], lh, lw, xp.shape[3]), dt)
    xs[:, :hp, :wp] = xp
    ws = np.zeros((lh, lw) + tuple(f.shape[2:]), dt)
    ws[:kh, :kw] = _as(f, dt)
    xf = transform(transform(xs, 1, False), 2, False)  # (N, LH, LW, C)
    wf = np.conj(transform(transform(ws, 0, False), 1, False))  # correlation: conj of the filter's spectrum
    nb = xs.shape[0]
    if case.op == "conv2d":
        groups, cg = case.groups, case.filter_in_channels
        og = case.out_channels // groups
        xv = xf.reshape(nb, lh * lw, case.in_channels).transpose(1, 0, 2)  # (F, N, C)
        wv = wf.reshape(lh * lw, cg, case.out_channels)  # (F, Cg, O)
        yf = np.concatenate([arc.matmul(xv[..., k * cg:(k + 1) * cg], wv[..., k * og:(k + 1) * og])
                             for k in range(groups)], axis=-1)  # (F, N, O)
        yf = yf.transpose(1, 0, 2).reshape(nb, lh, lw, case.out_channels)
    else:
        yf = arc.mul(xf[..., :, None], wf[None]).reshape(nb, lh, lw, -1)
    y = transform(transform(yf, 1, True), 2, True)
    scale = dt(1.0 / (lh * lw))  # exact for power-of-two sizes, rounded otherwise
    y = ar.mul(np.ascontiguousarray(y.real), scale)[:, :geo.out_h, :geo.out_w]
    return _finish(case, y, b, ar)


#: The correct transform emulations: name -> (the contract it is a correct implementation of,
#: whether it computes a case, the function of (case, x, f, b)).
TRANSFORMS = {
    "winograd F(2x2,3x3)": ("winograd", winograd_applies, lambda c, x, f, b: winograd(c, x, f, b, 2)),
    "winograd F(4x4,3x3)": ("winograd4", winograd_applies, lambda c, x, f, b: winograd(c, x, f, b, 4)),
    "winograd F(6x6,3x3)": ("winograd6", winograd_applies, lambda c, x, f, b: winograd(c, x, f, b, 6)),
    "fft radix-2": ("fft", fft_applies, lambda c, x, f, b: fft_conv(c, x, f, b, "pow2")),
    "fft exact-size": ("fft", fft_applies, lambda c, x, f, b: fft_conv(c, x, f, b, "exact")),
}
#: Index bugs inside them: name -> (the contract that must still flag it, applies, function).
TRANSFORM_BUGS = {
    f"winograd F({m}x{m},3x3) {bug}": (level, winograd_applies,
                                        lambda c, x, f, b, m=m, bug=bug: winograd(c, x, f, b, m, bug))
    for m, level in ((2, "winograd"), (4, "winograd4"), (6, "winograd6"))
    for bug in ("edge-coefficient", "tile-offset")
} | {"fft twiddle": ("fft", fft_applies, lambda c, x, f, b: fft_conv(c, x, f, b, "pow2", "twiddle"))}
#: The correct ones with every operation rounded toward zero (float32 working precision):
#: name -> (the contract under which the sign test must still flag it, applies, function).
TRUNCATING = {
    "winograd F(2x2,3x3) truncating": ("winograd", winograd_applies,
                                       lambda c, x, f, b: winograd(c, x, f, b, 2, rounding="truncate")),
    "winograd F(4x4,3x3) truncating": ("winograd4", winograd_applies,
                                       lambda c, x, f, b: winograd(c, x, f, b, 4, rounding="truncate")),
    "winograd F(6x6,3x3) truncating": ("winograd6", winograd_applies,
                                       lambda c, x, f, b: winograd(c, x, f, b, 6, rounding="truncate")),
    "fft radix-2 truncating": ("fft", fft_applies, lambda c, x, f, b: fft_conv(c, x, f, b, "pow2", rounding="truncate")),
}
