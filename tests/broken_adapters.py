"""Deliberately broken NumPy-only adapters for the tools' tests (not collected: no test_ prefix).

`FlippedKernel` convolves with the kernel rotated by 180 degrees (true convolution instead
of the cross-correlation every framework computes): a classic porting bug. Like the
built-ins, its `run` executes exactly the source its `repro_code` returns, so a repro
script reproduces what the suite saw. The snippet imports NumPy only; it is the one
correct program of this module (`_buggy_snippet`) given a flipped kernel.
`NoRepro` is the same bug without `repro_code`: the repro script must load it by spec.
"""

from __future__ import annotations


def _snippet(case) -> str:
    """FlippedKernel's program: the one correct program (`_buggy_snippet`, no bug planted)
    given the kernel rotated by 180 degrees."""
    return ("import numpy as np\n_given = filters\n"
            "filters = np.asarray(filters)[::-1, ::-1]  # the bug: the kernel is flipped\n"
            + _buggy_snippet(case, "none") + "filters = _given  # (a repro script judges with the filters it gave)\n")


class FlippedKernel:
    name = "flipped"

    def version(self) -> str:
        return "0.1"

    def device(self) -> str:
        return "cpu"

    def supports(self, case):
        if case.op == "conv2d" and case.groups != 1 and case.is_valid:
            return "grouped convolution is not implemented"
        return None

    def repro_code(self, case) -> str:
        return _snippet(case)

    def run(self, case, x, filters, bias):
        ns = {"x": x, "filters": filters, "bias": bias}
        exec(_snippet(case), ns)  # noqa: S102 (our own generated source)
        return ns["y"]


class NoRepro:
    """FlippedKernel's behaviour without repro_code (a typical third-party adapter)."""

    name = "norepro"

    def __init__(self):
        self._inner = FlippedKernel()

    def version(self) -> str:
        return "0.1"

    def device(self) -> str:
        return "cpu"

    def supports(self, case):
        return self._inner.supports(case)

    def run(self, case, x, filters, bias):
        return self._inner.run(case, x, filters, bias)




# ---- one bug each, for the findings tests ----------------------------------------------

def _buggy_snippet(case, bug: str) -> str:
    """NumPy source computing `case` right except for `bug`: "dilation" (ignored by
    depthwise with strides > 1 and dilations > 1), "flush" (subnormal inputs and results
    flushed to zero), "accept" (an empty-output invalid case returns an empty array) or
    "ownacc" (every partial sum, tap by tap, rounded to the dtype). Any other name ("none")
    plants no bug: the program sums exact float64 products and rounds once to the dtype,
    leaving `acc` (the float64 result) and `y` (the output). Unless a bug needs the suite,
    it reads only the case's fields and `geometry`, so it runs where a repro script passes
    the case as a plain namespace and conv-conformance is not installed (`NoRepro`)."""
    if not case.is_valid:
        if bug == "accept" and 0 in case.output_shape:
            return f"import numpy as np\ny = np.zeros({tuple(case.output_shape)}, dtype=x.dtype)  # the bug: no error\n"
        return f"raise ValueError({('invalid case: ' + case.invalid_reason)!r})\n"
    (kh, kw), (sh, sw), (dh, dw) = case.kernel, case.strides, case.dilations
    if bug == "dilation" and case.op == "depthwise_conv2d" and max(case.strides) > 1 and max(case.dilations) > 1:
        dh = dw = 1  # the bug: the dilation is dropped
    g = case.geometry
    if (dh, dw) != tuple(case.dilations):
        from conformance.spec import conv_geometry

        g = conv_geometry((case.height, case.width), case.kernel, case.strides, (dh, dw), case.padding)
    lines = ["import numpy as np",
             f"xp = np.pad(np.asarray(x, dtype=np.float64), ((0, 0), {g.pads[0]}, {g.pads[1]}, (0, 0)))",
             "w = np.asarray(filters, dtype=np.float64)"]
    if bug == "flush":
        from conformance.dtypes import fmt

        tiny = fmt(case.dtype).smallest_normal
        lines += [f"xp[np.abs(xp) < {tiny!r}] = 0  # the bug: subnormals flushed", f"w[np.abs(w) < {tiny!r}] = 0"]
    lines.append("acc = 0")
    lines.append(f"for di in range({kh}):")
    lines.append(f"    for dj in range({kw}):")
    lines.append(f"        patch = xp[:, di * {dh}: di * {dh} + {sh} * ({g.out_h} - 1) + 1: {sh}, "
                 f"dj * {dw}: dj * {dw} + {sw} * ({g.out_w} - 1) + 1: {sw}, :]")
    if case.op == "conv2d":
        cg, og = case.in_channels // case.groups, case.out_channels // case.groups
        lines.append(f"        acc = acc + np.concatenate([np.einsum('nhwc,co->nhwo', patch[..., k * {cg}:(k + 1) * {cg}], "
                     f"w[di, dj][:, k * {og}:(k + 1) * {og}]) for k in range({case.groups})], axis=-1)")
    else:
        lines.append("        acc = acc + np.einsum('nhwc,cm->nhwcm', patch, w[di, dj]).reshape(patch.shape[:3] + (-1,))")
    if bug == "ownacc":
        lines.append("        acc = np.asarray(acc).astype(x.dtype).astype(np.float64)  # the bug: summed in the dtype")
    lines.append("if bias is not None:\n    acc = acc + np.asarray(bias, dtype=np.float64)")
    if bug == "flush":
        lines.append(f"acc[np.abs(acc) < {tiny!r}] = 0")
    lines.append("y = np.asarray(acc).astype(x.dtype)")
    return "\n".join(lines) + "\n"


class _OneBug:
    bug = ""
    name = ""

    def version(self) -> str:
        return "0.1"

    def device(self) -> str:
        return "cpu"

    def supports(self, case):
        return None

    def repro_code(self, case) -> str:
        return _buggy_snippet(case, self.bug)

    def run(self, case, x, filters, bias):
        ns = {"x": x, "filters": filters, "bias": bias}
        exec(_buggy_snippet(case, self.bug), ns)  # noqa: S102 (our own generated source)
        return ns["y"]


class DropsDilation(_OneBug):
    """Depthwise with strides > 1 and dilations > 1 ignores the dilation (a wrong shape or wrong values)."""

    bug, name = "dilation", "drops-dilation"


class FlushesSubnormals(_OneBug):
    """Flushes subnormal inputs, filters and results to zero (FTZ/DAZ)."""

    bug, name = "flush", "flushes-subnormals"


class AcceptsEmptyOutput(_OneBug):
    """Returns an empty array for an invalid case whose output would be empty."""

    bug, name = "accept", "accepts-empty"
