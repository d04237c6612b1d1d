"""A NumPy-only adapter that produces every divergence kind on purpose (not collected).

What `Kinds` does is chosen by the first word of the case's *name*, so a test reads like
its case list. Like the built-ins, `run` executes exactly the source `repro_code`
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
  accept    returns zeros for an invalid case                               (invalid_accepted)
"""

from __future__ import annotations


def _snippet(case, mode=None) -> str:
    mode = mode or (case.name or "ok").split("-")[0]
    if not case.is_valid:
        if mode == "accept":
            return f"import numpy as np\ny = np.zeros({tuple(case.output_shape)!r}, dtype=x.dtype)\n"
        return f"raise ValueError({('invalid case: ' + case.invalid_reason)!r})\n"
    g = case.geometry
    (kh, kw), (sh, sw), (dh, dw) = case.kernel, case.strides, case.dilations
    if case.op == "conv2d":
        groups, cg, og = case.groups, case.filter_in_channels, case.out_channels // case.groups
        tap = (f"np.concatenate([np.einsum('nhwc,co->nhwo', patch[..., g * {cg}:(g + 1) * {cg}], "
               f"w[di, dj][:, g * {og}:(g + 1) * {og}]) for g in range({groups})], axis=-1)")
    else:
        tap = "np.einsum('nhwc,cm->nhwcm', patch, w[di, dj]).reshape(patch.shape[:3] + (-1,))"
    dtype_of = "x.dtype"
    lines = [
        "import numpy as np",
        "def f64(a):",
        "    if a.dtype.name == 'bfloat16':",
        "        return (a.view(np.uint16).astype(np.uint32) << 16).view(np.float32).astype(np.float64)",
        "    return np.asarray(a, dtype=np.float64)",
        "xx, w = f64(x), f64(filters)",
        "bb = None if bias is None else f64(bias)",
    ]
    if mode == "flush":
        tiny = {"float16": 2.0 ** -14, "bfloat16": 2.0 ** -126, "float32": 2.0 ** -126, "float64": 2.0 ** -1022}
        lines += [f"TINY = {tiny[case.dtype]!r}",
                  "flush = lambda a: np.where(np.abs(a) < TINY, 0.0, a)",
                  "xx, w = flush(xx), flush(w)",
                  "bb = None if bb is None else flush(bb)"]
    lines += [
        f"xp = np.pad(xx, ((0, 0), {g.pads[0]}, {g.pads[1]}, (0, 0)))",
        "acc = 0",
        "with np.errstate(over='ignore', invalid='ignore'):",
        f"    for di in range({kh}):",
        f"        for dj in range({kw}):",
        f"            patch = xp[:, di * {dh}: di * {dh} + {sh} * ({g.out_h} - 1) + 1: {sh}, "
        f"dj * {dw}: dj * {dw} + {sw} * ({g.out_w} - 1) + 1: {sw}, :]",
        f"            term = {tap}",
    ]
    if mode == "ownacc":  # every partial sum rounded to the dtype
        lines.append(f"            acc = f64((acc + term).astype({dtype_of}))")
    else:
        lines.append("            acc = acc + term")
    lines += [
        "    if bb is not None:",
        "        acc = acc + bb",
        "    acc = np.asarray(acc, dtype=np.float64)",
        f"    y = acc.astype({dtype_of})",
    ]
    if mode == "flush":
        lines.append(f"    y = np.where(np.abs(f64(y)) < TINY, 0.0, f64(y)).astype({dtype_of})")
    elif mode == "wrong":
        lines.append(f"    y = (f64(y) + 1).astype({dtype_of})")
    elif mode == "truncate":
        lines.append(f"    y = np.where(np.abs(f64(y)) > np.abs(acc), np.nextafter(y, np.zeros_like(y)), y)")
    elif mode == "nan":
        lines.append("    y[0, 0, 0, 0] = np.nan")
    elif mode == "transpose":
        lines.append("    y = np.ascontiguousarray(y.transpose(0, 3, 1, 2))")
    elif mode == "float64":
        lines.append("    y = acc")
    elif mode == "bump":
        lines += ["    i = np.unravel_index(int(np.argmax(np.abs(acc))), y.shape)",
                  "    y[i] = np.nextafter(y[i], np.asarray(np.inf, dtype=y.dtype))"]
    elif mode == "saturate":
        lines.append(f"    y = np.clip(acc, -float(np.finfo({dtype_of}).max), float(np.finfo({dtype_of}).max))"
                     f".astype({dtype_of})")
    return "\n".join(lines) + "\n"


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
