"""The NumPy backend: the forward ops are the oracle itself, rounded to the case dtype;
the training ops are plain NumPy written here, independently of the oracle.

It must pass every valid case (a failure means the suite, not a framework, is wrong)
and raise ValueError on every invalid case. Its repro imports the oracle (forward ops)
or this module (training ops), which are NumPy only.

Training ops (canonical layouts in and out, float64 sums of the operands' exact products,
rounded once to the case dtype; float64 cases are ordinary float64 sums, within the
strict error model):
- `*_backprop_input`: the transposed convolution as a scatter: every tap (di, dj) adds
  dy @ w[di, dj]^T into the rows and columns of the padded input that tap read in the
  forward conv, then the pads are cropped (output_padding rows stay zero-gradient rows
  at the bottom/right). Only real products dy * w are formed: no inserted zeros.
- `*_backprop_filter`: per tap, the forward conv's strided view of the zero-padded x
  contracted with dy over batch and image (padded zeros are multiplied, as in the
  forward op: 0 * Inf is NaN).
- `separable_conv2d`: the depthwise stage kept in float64 (not rounded to the case
  dtype), then the pointwise 1x1 conv and the bias.
Every tap's rows and columns come from `spec.conv_geometry` (`_tap_windows`).
Kernel path (`facts`): the BLAS its float64 GEMMs run on (the oracle's sums are exact
whatever the BLAS's order or FMA use: recorded to explain, not to excuse).
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from conformance.spec import FORWARD_OPS, OP_INFO, OPS, Case

from ._base import BuiltinAdapter, Fact
from ._program import Program

#: The ops this module computes (the forward ops are the oracle's).
TRAINING_OPS = tuple(op for op in OPS if op not in FORWARD_OPS)


def _tap_windows(case: Case) -> Iterator[tuple[int, int, tuple[slice, slice]]]:
    """(di, dj, rows and columns of the *padded* input that tap (di, dj) reads, one per output pixel)."""
    g = case.geometry
    (kh, kw), (sh, sw), (dh, dw) = case.kernel, case.strides, case.dilations
    for di in range(kh):
        for dj in range(kw):
            yield di, dj, (slice(di * dh, di * dh + sh * (g.out_h - 1) + 1, sh),
                           slice(dj * dw, dj * dw + sw * (g.out_w - 1) + 1, sw))


def _padded(case: Case, x: np.ndarray) -> np.ndarray:
    (t, b), (l, r) = case.geometry.pads
    return np.pad(np.asarray(x, dtype=np.float64), ((0, 0), (t, b), (l, r), (0, 0)))


def _group_slices(case: Case) -> list[tuple[slice, slice]]:
    """(input channels, output channels) of each group of a conv2d case."""
    cg, og = case.in_channels // case.groups, case.out_channels // case.groups
    return [(slice(k * cg, (k + 1) * cg), slice(k * og, (k + 1) * og)) for k in range(case.groups)]


def backprop_input(case: Case, dy: np.ndarray, filters: np.ndarray) -> np.ndarray:
    """dx (N, H, W, C), float64: the gradient of the forward conv of `case` w.r.t. x."""
    n, h, w, c = case.input_shape
    (t, b), (l, r) = case.geometry.pads
    dy64, f64 = np.asarray(dy, dtype=np.float64), np.asarray(filters, dtype=np.float64)
    dxp = np.zeros((n, h + t + b, w + l + r, c))
    depthwise = case.forward_op == "depthwise_conv2d"
    if depthwise:
        dy64 = dy64.reshape(dy64.shape[:3] + (c, case.channel_multiplier))  # channel k*M + q
    for di, dj, (rows, cols) in _tap_windows(case):
        if depthwise:
            dxp[:, rows, cols, :] += np.einsum("nhwcm,cm->nhwc", dy64, f64[di, dj])
        else:
            for cin, cout in _group_slices(case):
                dxp[:, rows, cols, cin] += dy64[..., cout] @ f64[di, dj, :, cout].T
    return dxp[:, t:t + h, l:l + w, :]


def backprop_filter(case: Case, x: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """df (kh, kw, C/groups, O) or (kh, kw, C, M), float64: the gradient w.r.t. the filters."""
    xp, dy64 = _padded(case, x), np.asarray(dy, dtype=np.float64)
    df = np.zeros(case.filter_shape)
    depthwise = case.forward_op == "depthwise_conv2d"
    if depthwise:
        dy64 = dy64.reshape(dy64.shape[:3] + (case.in_channels, case.channel_multiplier))
    for di, dj, (rows, cols) in _tap_windows(case):
        taps = xp[:, rows, cols, :]  # (N, OH, OW, C)
        if depthwise:
            df[di, dj] = np.einsum("nhwc,nhwcm->cm", taps, dy64)
        else:
            for cin, cout in _group_slices(case):
                df[di, dj, :, cout] = np.tensordot(taps[..., cin], dy64[..., cout], axes=([0, 1, 2], [0, 1, 2]))
    return df


def separable(case: Case, x: np.ndarray, filters: np.ndarray, pointwise: np.ndarray,
              bias: np.ndarray | None) -> np.ndarray:
    """(N, OH, OW, O), float64: depthwise (kept in float64), then the 1x1 pointwise conv, then the bias."""
    xp, f64 = _padded(case, x), np.asarray(filters, dtype=np.float64)
    mid = np.zeros(case.conv_output_shape[:3] + (case.in_channels, case.channel_multiplier))
    for di, dj, (rows, cols) in _tap_windows(case):
        mid += xp[:, rows, cols, :, None] * f64[di, dj]
    y = mid.reshape(case.conv_output_shape) @ np.asarray(pointwise, dtype=np.float64)[0, 0]
    return y if bias is None else y + np.asarray(bias, dtype=np.float64)


def compute(case: Case, *operands: np.ndarray | None) -> np.ndarray:
    """The training op of `case` on its operands (`case.operands` order), rounded to their dtype.

    Raises ValueError for an invalid case or operands of the wrong shape."""
    if not case.is_valid:
        raise ValueError(f"invalid case {case.id}: {case.invalid_reason}")
    got = tuple(None if a is None else np.shape(a) for a in operands)
    if got != case.operand_shapes:
        raise ValueError(f"expected operands {', '.join(case.operands)} of shapes {case.operand_shapes}, "
                         f"received {got}")
    result = OP_INFO[case.op].result
    if case.op == "separable_conv2d":
        y = separable(case, *operands)
    elif result == "input":
        y = backprop_input(case, *operands)
    else:
        y = backprop_filter(case, *operands)
    with np.errstate(over="ignore"):  # results beyond the dtype's range round to +-Inf, as IEEE says
        return y.astype(operands[0].dtype)


class NumpyAdapter(BuiltinAdapter):
    """The oracle itself as a backend (forward ops), plain NumPy for the training ops: the self-check."""

    framework = "numpy"
    base_name = "numpy"
    distributions = ("numpy",)
    ops = OPS
    facts = {"numpy.blas": Fact(str, "the BLAS NumPy's matrix products run on (numpy.show_config: "
                                     "scipy-openblas, mkl, accelerate, ...)")}

    def __init__(self, device: str = "cpu"):
        if device != "cpu":
            raise ValueError(f"device: expected 'cpu' for the NumPy backend, received {device!r}")
        super().__init__(device)

    def _kernel_path(self, ns: dict[str, Any]) -> dict[str, dict[str, Any]]:
        np = ns["np"]
        try:
            blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        except (TypeError, KeyError):  # NumPy < 1.26 prints its configuration only
            blas = {}
        return {"numpy": {"version": np.__version__, "blas": blas.get("name"), "blas_version": blas.get("version")}}

    def _program(self, case: Case) -> Program:
        if case.op in TRAINING_OPS:
            setup = "import numpy as np\nfrom conformance.adapters.numpy_backend import compute\n" \
                    "from conformance.spec import Case\n"
            compute = (f"case = Case.from_json({case.to_json()!r})\n"
                       f"# float64 sums of exact products, rounded once to the case dtype\n"
                       f"y = compute(case, {', '.join(case.operands)})\n")
            return Program(setup, compute)
        setup = "import numpy as np\nfrom conformance.oracle import convolve\nfrom conformance.spec import Case\n"
        compute = f"""\
case = Case.from_json({case.to_json()!r})
if not case.is_valid:
    raise ValueError(f"invalid case {{case.id}}: {{case.invalid_reason}}")
if x.shape != case.input_shape or filters.shape != case.filter_shape:
    raise ValueError(f"expected x {{case.input_shape}} and filters {{case.filter_shape}}, received {{x.shape}} and {{filters.shape}}")
# float64 (compensated for float64 cases), rounded once to the case dtype.
with np.errstate(over="ignore"):  # results beyond the dtype's range round to +-Inf, as IEEE says
    y = convolve(case, x, filters, bias).astype(x.dtype)
"""
        return Program(setup, compute)
