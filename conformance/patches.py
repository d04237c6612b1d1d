"""The input patch under each output pixel, as views, and the memory-bounded blocks the oracle walks.

`pad` pads an NHWC array with a constant; `windows` views the padded input as
(N, OH, OW, kh, kw, C), the patch under each output pixel; `row_chunks` cuts output rows
into blocks whose temporaries fit a byte budget; `scratch` arrays are reused between
blocks; `tile` lays a tap's weights out over a row of outputs.

Invariants
- Views, never copies: `windows` is a strided read-only view of the padded input; every
  im2col matrix or temporary the oracle builds from it is made block by block, at most
  CHUNK_BYTES (or a cache-sized budget) at a time, so memory stays bounded whatever the
  size of the case.
- The block sizes and the depthwise strategy threshold below change only how the oracle
  groups its float64 work, never its result: tests/test_oracle.py forces each of them to
  extremes against a loop transcription of the formulas.
- Geometry (pads and output size) comes from `spec.conv_geometry`, passed in as `geo`.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

#: Upper bound on the im2col matrix a single chunk may build (bytes).
CHUNK_BYTES = 64 << 20


def pad(x: np.ndarray, pads, value: float = 0.0) -> np.ndarray:
    (t, b), (l, r) = pads
    if t == b == l == r == 0:
        return x
    return np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)), constant_values=value)


def windows(xp: np.ndarray, geo, kernel, strides, dilations) -> np.ndarray:
    """View of shape (N, OH, OW, kh, kw, C): the input patch under each output pixel."""
    n, _, _, c = xp.shape
    s0, s1, s2, s3 = xp.strides
    shape = (n, geo.out_h, geo.out_w, kernel[0], kernel[1], c)
    st = (s0, s1 * strides[0], s2 * strides[1], s1 * dilations[0], s2 * dilations[1], s3)
    return np.lib.stride_tricks.as_strided(xp, shape=shape, strides=st, writeable=False)


def row_chunks(n_rows: int, row_bytes: int, budget: int | None = None) -> Iterator[slice]:
    step = max(1, (CHUNK_BYTES if budget is None else budget) // max(row_bytes, 1))
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))


#: Elementwise work is done in blocks of about this many bytes per array, which stay in
#: the cache across the passes over them.
L2_BYTES = 1 << 17


def scratch(bufs: dict, name: str, shape) -> np.ndarray:
    """A reused scratch array (fresh large temporaries cost page faults), viewed to `shape`."""
    size = int(np.prod(shape))
    if name not in bufs or bufs[name].size < size:
        bufs[name] = np.empty(size)
    return bufs[name][:size].reshape(shape)


def scratch_bool(bufs: dict, shape) -> np.ndarray:
    size = int(np.prod(shape))
    if "bool" not in bufs or bufs["bool"].size < size:
        bufs["bool"] = np.empty(size, dtype=bool)
    return bufs["bool"][:size].reshape(shape)


def tile(f: np.ndarray, ow: int) -> np.ndarray:
    """(kh, kw, C) tap weights -> (kh, kw, OW, C), contiguous."""
    return np.ascontiguousarray(np.broadcast_to(f[:, :, None, :], f.shape[:2] + (ow, f.shape[2])))


#: Depthwise with at least this channel multiplier runs as one small GEMM per channel.
DW_GEMM_MIN_M = 4
#: Below it, depthwise accumulates the taps block by block of output rows, small enough
#: for the block and its temporary to stay in cache across the taps (measured 1.2-1.5x).
DW_BLOCK_BYTES = 1 << 17
