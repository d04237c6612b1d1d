"""Facts about the floating-point formats in scope, in one place, with their subnormals.

bfloat16 comes from `ml_dtypes` (imported only when a bfloat16 array is needed, so the
engine runs with NumPy alone for the other dtypes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Format:
    name: str
    precision: int  # significand bits, implicit bit included (p)
    min_exponent: int  # exponent of the smallest normal number: 2**min_exponent
    max_finite: float

    @property
    def unit_roundoff(self) -> float:
        """u = 2**-p: the largest relative error of one correctly rounded operation."""
        return 2.0 ** -self.precision

    @property
    def smallest_normal(self) -> float:
        return 2.0 ** self.min_exponent

    @property
    def smallest_subnormal(self) -> float:
        return 2.0 ** (self.min_exponent - self.precision + 1)


FORMATS = {
    "float64": Format("float64", 53, -1022, float(np.finfo(np.float64).max)),
    "float32": Format("float32", 24, -126, float(np.finfo(np.float32).max)),
    "float16": Format("float16", 11, -14, 65504.0),
    "bfloat16": Format("bfloat16", 8, -126, 3.3895313892515355e38),
}


def fmt(dtype: str) -> Format:
    try:
        return FORMATS[dtype]
    except KeyError:
        raise ValueError(f"dtype: expected one of {sorted(FORMATS)}, received {dtype!r}") from None


def np_dtype(dtype: str) -> np.dtype:
    """The NumPy dtype for a case dtype name (bfloat16 through ml_dtypes)."""
    if dtype == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    fmt(dtype)
    return np.dtype(dtype)


def dtype_name(arr: np.ndarray) -> str:
    """The case dtype name of an array's dtype ('bfloat16' for ml_dtypes.bfloat16)."""
    return "bfloat16" if arr.dtype.name == "bfloat16" else arr.dtype.name


def round_to(values: np.ndarray, dtype: str) -> np.ndarray:
    """Round float64 values to `dtype` (round to nearest even) and back to float64.

    Values beyond the dtype's range become infinities, as IEEE rounding says (no warning).
    """
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(values, dtype=np.float64).astype(np_dtype(dtype)).astype(np.float64)


def round_mantissa(values: np.ndarray, bits: int) -> np.ndarray:
    """Round float64 values to `bits` significand bits (nearest even), exponent range kept.

    Used to emulate TF32 (11 bits) and other reduced formats in tests and diagnosis.
    """
    v = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        m, e = np.frexp(v)  # v = m * 2**e, 0.5 <= |m| < 1
        scaled = np.ldexp(m, bits)
        out = np.ldexp(np.rint(scaled), e - bits)
    return np.where(np.isfinite(v), out, v)


# ---- subnormals: the values FTZ/DAZ flush to zero ------------------------------------

def _subnormal_mask(a, dtype: str) -> np.ndarray:
    v = np.abs(np.asarray(a, dtype=np.float64))
    with np.errstate(invalid="ignore"):
        return np.isfinite(v) & (v > 0) & (v < fmt(dtype).smallest_normal)


def has_subnormal(arrays, dtype: str) -> bool:
    """Is any finite, nonzero value of `arrays` (None entries skipped) subnormal in `dtype`?"""
    return any(_subnormal_mask(a, dtype).any() for a in arrays if a is not None)


def count_subnormals(a, dtype: str) -> int:
    """How many values of `a` (None: none) are subnormal in `dtype`."""
    return 0 if a is None else int(_subnormal_mask(a, dtype).sum())


def flush_subnormals(values: np.ndarray, dtype: str) -> np.ndarray:
    """Values below the smallest normal of `dtype` in magnitude become (signed) zero."""
    v = np.asarray(values, dtype=np.float64)
    tiny = fmt(dtype).smallest_normal
    return np.where(np.abs(v) < tiny, np.copysign(0.0, v), v)
