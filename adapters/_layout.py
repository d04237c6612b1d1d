"""Layout translation between the canonical layouts and the frameworks' own, as source text.

Adapters compute by executing a generated Python snippet (see `_program`), and the same
snippet is the repro a bug report carries. These helpers therefore return *expressions*
(NumPy source) rather than arrays: one spelling of every layout change, used by `run`
and by `repro_code` alike.

Invariants (tests/test_adapters.py checks each on arrays):
- `nhwc_to_nchw` / `nchw_to_nhwc` are inverse transposes of (N, H, W, C) <-> (N, C, H, W).
- `hwio_to_oihw` turns conv2d filters (kh, kw, C/groups, O) into (O, C/groups, kh, kw).
- `hwcm_to_hw1o` turns depthwise filters (kh, kw, C, M) into conv2d filters
  (kh, kw, 1, C*M) whose output channel k*M + q is input channel k, multiplier q: the
  canonical depthwise channel order, so depthwise = conv2d with groups = C.
- `hwcm_to_oihw` composes the two: (C*M, 1, kh, kw), the PyTorch / ONNX depthwise weight.
- `oihw_to_hwio` and `oihw_to_hwcm` are the inverses of `hwio_to_oihw` and `hwcm_to_oihw`:
  a filter gradient computed in a framework's OIHW read back in the canonical layout.
Every result is C-contiguous: frameworks that take a NumPy buffer see a dense array.
"""

from __future__ import annotations


def nhwc_to_nchw(expr: str) -> str:
    """(N, H, W, C) -> (N, C, H, W)."""
    return f"np.ascontiguousarray({expr}.transpose(0, 3, 1, 2))"


def nchw_to_nhwc(expr: str) -> str:
    """(N, C, H, W) -> (N, H, W, C)."""
    return f"np.ascontiguousarray({expr}.transpose(0, 2, 3, 1))"


def hwio_to_oihw(expr: str) -> str:
    """(kh, kw, I, O) -> (O, I, kh, kw)."""
    return f"np.ascontiguousarray({expr}.transpose(3, 2, 0, 1))"


def hwcm_to_hw1o(expr: str) -> str:
    """(kh, kw, C, M) -> (kh, kw, 1, C*M), output channel k*M + q (row-major reshape)."""
    # A row-major reshape of a C-contiguous array is one (and of any other, a fresh copy).
    return f"{expr}.reshape({expr}.shape[0], {expr}.shape[1], 1, -1)"


def hwcm_to_oihw(expr: str) -> str:
    """(kh, kw, C, M) -> (C*M, 1, kh, kw), output channel k*M + q."""
    return hwio_to_oihw(hwcm_to_hw1o(expr))


def oihw_to_hwio(expr: str) -> str:
    """(O, I, kh, kw) -> (kh, kw, I, O): the inverse of `hwio_to_oihw`."""
    return f"np.ascontiguousarray({expr}.transpose(2, 3, 1, 0))"


def oihw_to_hwcm(expr: str, channels: int) -> str:
    """(C*M, 1, kh, kw), output channel k*M + q -> (kh, kw, C, M): the inverse of `hwcm_to_oihw`."""
    # (kh, kw, 1, C*M) reshaped row-major splits C*M into (C, M) as k*M + q.
    return f"{oihw_to_hwio(expr)}.reshape({expr}.shape[2], {expr}.shape[3], {channels}, -1)"
