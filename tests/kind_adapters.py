"""A NumPy-only adapter that produces every divergence kind on purpose (not collected).

What `Kinds` does is chosen by the first word of the case's *name*, so a test reads like
its case list. Each kind is the one correct program of tests/broken_adapters.py
(`_buggy_snippet`) with a bug planted in it (ownacc, flush, accept) or applied to its
result (the others). Like the built-ins, `run` executes exactly the source `repro_code`
returns, so a repro script sees what the suite saw:

  ok        correct: float64 accumulation, one rounding to the dtype        (pass)
  wrong     adds 1 to every element                                        (value)
  truncate  rounds toward zero instead of to nearest                        (rounding_bias)
  ownacc    accumulates tap by tap in the case dtype itself                 (precision under strict)
  nan       one NaN where the result is finite                              (nonfinite)
  transpose returns NCHW                                                    (shape)
  float64   returns float64                                                 (dtype)
  flush     flushes subnormal inputs and results to zero                    (subnormal_flush)
  bump      one element one ulp off (on the small_integers profile)         (inexact)
  saturate  clips results beyond the range to the largest finite value      (value)
  accept    returns an empty array for an invalid case with an empty output  (invalid_accepted)
"""

from __future__ import annotations

from tests.broken_adapters import _buggy_snippet

#: Kinds whose bug is planted inside the one correct program (`_buggy_snippet`).
_PLANTED = ("ownacc", "flush", "accept")
#: Kinds made from the correct program's result: the statements run after it, on `y` (the
#: output) and `acc` (the exact result, float64).
_AFTER = {
    "wrong": "y = (y.astype(np.float64) + 1).astype(x.dtype)",
    "truncate": "y = np.where(np.abs(y.astype(np.float64)) > np.abs(acc), np.nextafter(y, np.zeros_like(y)), y)",
    "nan": "y[0, 0, 0, 0] = np.nan",
    "transpose": "y = np.ascontiguousarray(y.transpose(0, 3, 1, 2))",
    "float64": "y = np.asarray(acc, dtype=np.float64)",
    "bump": "i = np.unravel_index(int(np.argmax(np.abs(acc))), y.shape)\n"
            "y[i] = np.nextafter(y[i], np.asarray(np.inf, dtype=y.dtype))",
    "saturate": "y = np.clip(acc, -float(np.finfo(x.dtype).max), float(np.finfo(x.dtype).max)).astype(x.dtype)",
}


def _snippet(case, mode=None) -> str:
    """The program of kind `mode` (default: the first word of the case's name) on `case`."""
    mode = mode or (case.name or "ok").split("-")[0]
    program = _buggy_snippet(case, mode if mode in _PLANTED else "none")
    if not case.is_valid or mode not in _AFTER:
        return program
    return program + _AFTER[mode] + "\n"


class Kinds:
    name = "kinds"

    def version(self) -> str:
        return "0.1"

    def device(self) -> str:
        return "cpu"

    def supports(self, case):
        return None

    def repro_code(self, case) -> str:
        return _snippet(case)

    def run(self, case, x, filters, bias):
        ns = {"x": x, "filters": filters, "bias": bias}
        exec(_snippet(case), ns)  # noqa: S102 (our own generated source)
        return ns["y"]


class OwnAccumulation(Kinds):
    """`ownacc` on every case, whatever its name (names do not survive minimisation)."""

    name = "own-accumulation"

    def repro_code(self, case) -> str:
        return _snippet(case, "ownacc")

    def run(self, case, x, filters, bias):
        ns = {"x": x, "filters": filters, "bias": bias}
        exec(_snippet(case, "ownacc"), ns)  # noqa: S102
        return ns["y"]


class SupportsRaises(Kinds):
    """supports() raises on every case: an `error` for a valid case, on every path."""

    name = "supports-raises"

    def supports(self, case):
        raise RuntimeError("supports() is broken")
