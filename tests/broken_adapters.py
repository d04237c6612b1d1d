"""Deliberately broken NumPy-only adapters for the tools' tests (not collected: no test_ prefix).

`FlippedKernel` convolves with the kernel rotated by 180 degrees (true convolution instead
of the cross-correlation every framework computes): a classic porting bug. Like the
built-ins, its `run` executes exactly the source its `repro_code` returns, so a repro
script reproduces what the suite saw. The snippet imports NumPy only.
`NoRepro` is the same bug without `repro_code`: the repro script must load it by spec.
"""

from __future__ import annotations

import numpy as np


def _snippet(case) -> str:
    if not case.is_valid:
        return f"raise ValueError({('invalid case: ' + case.invalid_reason)!r})\n"
    g = case.geometry
    (kh, kw), (sh, sw), (dh, dw) = case.kernel, case.strides, case.dilations
    if case.op == "conv2d":
        tap = "np.einsum('nhwc,co->nhwo', patch, w[di, dj])"
    else:
        tap = "np.einsum('nhwc,cm->nhwcm', patch, w[di, dj]).reshape(patch.shape[:3] + (-1,))"
    return f"""\
import numpy as np
w = np.asarray(filters, dtype=np.float64)[::-1, ::-1]  # the bug: the kernel is flipped
xp = np.pad(np.asarray(x, dtype=np.float64), ((0, 0), {g.pads[0]}, {g.pads[1]}, (0, 0)))
acc = 0
for di in range({kh}):
    for dj in range({kw}):
        patch = xp[:, di * {dh}: di * {dh} + {sh} * ({g.out_h} - 1) + 1: {sh}, dj * {dw}: dj * {dw} + {sw} * ({g.out_w} - 1) + 1: {sw}, :]
        acc = acc + {tap}
if bias is not None:
    acc = acc + np.asarray(bias, dtype=np.float64)
y = np.asarray(acc).astype(x.dtype)
"""


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




# ---- one bug each, for the findings tests and the special-values tests -----------------

#: Bugs of non-finite values in neighbouring vector lanes (see `_buggy_snippet`).
LANE_BUGS = ("oddpad", "lanepair", "blockscale", "skipzero")


def _buggy_snippet(case, bug: str) -> str:
    """NumPy source computing `case` right (float64, one rounding to the dtype) except for
    `bug` ("none": no bug):
    - "dilation": depthwise with strides > 1 and dilations > 1 ignores the dilation;
    - "flush": subnormal inputs and results flushed to zero;
    - "accept": an empty-output invalid case returns an empty array;
    lane bugs (`LANE_BUGS`), each invisible without NaN/Inf/zeros in the inputs:
    - "oddpad": conv2d (one group) over an odd channel count processes channels in pairs:
      the padding lane reads the next element in memory (the next pixel's channel 0)
      and multiplies it by a zero weight, so an Inf or NaN there gives NaN (0 * Inf) in the
      neighbouring pixel's outputs;
    - "lanepair": output channels are processed in pairs, and a NaN in one lane of a pair
      makes its partner NaN too;
    - "blockscale": x is scaled in blocks of 8 channels by its largest magnitude (a power
      of two, as block floating point does): exact for finite blocks, but an Inf or NaN
      makes its whole block NaN;
    - "skipzero": a sparse kernel skips inputs below the smallest normal (zeros of either
      sign, subnormals): a zero or subnormal input never meets an infinite tap, so 0 * Inf
      (NaN) and subnormal * Inf (Inf) are never formed.
    """
    from conformance.dtypes import fmt
    from conformance.spec import conv_geometry

    if not case.is_valid:
        if bug == "accept" and 0 in case.output_shape:
            return f"import numpy as np\ny = np.zeros({tuple(case.output_shape)}, dtype=x.dtype)  # the bug: no error\n"
        return f"raise ValueError({('invalid case: ' + case.invalid_reason)!r})\n"
    (kh, kw), (sh, sw), (dh, dw) = case.kernel, case.strides, case.dilations
    if bug == "dilation" and case.op == "depthwise_conv2d" and max(case.strides) > 1 and max(case.dilations) > 1:
        dh = dw = 1  # the bug: the dilation is dropped
    g = conv_geometry((case.height, case.width), case.kernel, case.strides, (dh, dw), case.padding)
    tiny = fmt(case.dtype).smallest_normal
    lines = ["import numpy as np",
             "def f64(a):",
             "    if a.dtype.name == 'bfloat16':",
             "        return (a.view(np.uint16).astype(np.uint32) << 16).view(np.float32).astype(np.float64)",
             "    return np.array(a, dtype=np.float64)  # a copy: the caller's arrays stay as they are",
             "xx, w = f64(x), f64(filters)",
             "saved = np.seterr(invalid='ignore', over='ignore', divide='ignore')  # restored below"]
    groups, cg, og = (case.groups, case.filter_in_channels, case.out_channels // case.groups) \
        if case.op == "conv2d" else (1, case.in_channels, 0)
    if bug == "oddpad" and case.op == "conv2d" and groups == 1 and cg % 2:
        lines += ["nxt = np.append(xx.reshape(-1)[xx.shape[-1]::xx.shape[-1]], 0.0)  # the element after each pixel",
                  "xx = np.concatenate([xx, nxt.reshape(xx.shape[:3] + (1,))], axis=-1)  # the bug: a pad lane",
                  "w = np.concatenate([w, np.zeros(w.shape[:2] + (1,) + w.shape[3:])], axis=2)  # times a zero weight"]
        cg += 1
    if bug == "blockscale":
        lines += ["c = xx.shape[-1]",
                  "blocks = np.pad(xx, ((0, 0),) * 3 + ((0, -c % 8),)).reshape(xx.shape[:3] + (-1, 8))",
                  "top = np.max(np.abs(blocks), axis=-1, keepdims=True)",
                  "scale = np.where(top > 0, np.exp2(np.ceil(np.log2(np.where(top > 0, top, 1.0)))), 1.0)",
                  "xx = ((blocks / scale) * scale).reshape(xx.shape[:3] + (-1,))[..., :c]  # the bug: Inf/Inf, 0 * Inf"]
    lines.append(f"xp = np.pad(xx, ((0, 0), {g.pads[0]}, {g.pads[1]}, (0, 0)))")
    if bug == "flush":
        lines += [f"xp[np.abs(xp) < {tiny!r}] = 0  # the bug: subnormals flushed", f"w[np.abs(w) < {tiny!r}] = 0"]
    lines.append("acc = 0")
    lines.append(f"for di in range({kh}):")
    lines.append(f"    for dj in range({kw}):")
    lines.append(f"        patch = xp[:, di * {dh}: di * {dh} + {sh} * ({g.out_h} - 1) + 1: {sh}, "
                 f"dj * {dw}: dj * {dw} + {sw} * ({g.out_w} - 1) + 1: {sw}, :]")
    if bug == "skipzero":  # products formed one by one, the skipped ones left out
        lines.append(f"        skip = np.abs(patch) < {tiny!r}  # the bug: zeros and subnormals skipped")
        if case.op == "conv2d":
            lines.append(f"        prod = [np.where(skip[..., k * {cg}:(k + 1) * {cg}, None], 0.0, "
                         f"patch[..., k * {cg}:(k + 1) * {cg}, None] * w[di, dj][:, k * {og}:(k + 1) * {og}])"
                         f".sum(axis=3) for k in range({groups})]")
            lines.append("        acc = acc + np.concatenate(prod, axis=-1)")
        else:
            lines.append("        prod = np.where(skip[..., None], 0.0, patch[..., None] * w[di, dj])")
            lines.append("        acc = acc + prod.reshape(patch.shape[:3] + (-1,))")
    elif case.op == "conv2d":
        lines.append(f"        acc = acc + np.concatenate([np.einsum('nhwc,co->nhwo', patch[..., k * {cg}:(k + 1) * {cg}], "
                     f"w[di, dj][:, k * {og}:(k + 1) * {og}]) for k in range({groups})], axis=-1)")
    else:
        lines.append("        acc = acc + np.einsum('nhwc,cm->nhwcm', patch, w[di, dj]).reshape(patch.shape[:3] + (-1,))")
    lines.append("if bias is not None:\n    acc = acc + f64(bias)")
    if bug == "lanepair":
        lines += ["o = acc.shape[-1]",
                  "pairs = np.pad(acc, ((0, 0),) * 3 + ((0, o % 2),)).reshape(acc.shape[:3] + (-1, 2))",
                  "pairs = np.where(np.isnan(pairs).any(axis=-1, keepdims=True), np.nan, pairs)  # the bug",
                  "acc = pairs.reshape(acc.shape[:3] + (-1,))[..., :o]"]
    if bug == "flush":
        lines.append(f"acc[np.abs(acc) < {tiny!r}] = 0")
    lines += ["y = np.asarray(acc).astype(x.dtype)", "np.seterr(**saved)"]
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


class Faithful(_OneBug):
    """The same program with no bug: float64 products and sums, one rounding to the dtype."""

    bug, name = "none", "faithful-program"


class OddChannelPadLane(_OneBug):
    """conv2d over an odd channel count reads the next pixel's channel 0 into its pad lane
    (times a zero weight): an Inf or NaN there gives NaN in the neighbouring pixel."""

    bug, name = "oddpad", "odd-pad-lane"


class NanLanePairs(_OneBug):
    """Output channels processed in pairs: a NaN in one lane makes its partner NaN."""

    bug, name = "lanepair", "nan-lane-pairs"


class BlockScaled(_OneBug):
    """x scaled in blocks of 8 channels by its largest magnitude: an Inf or NaN poisons its block."""

    bug, name = "blockscale", "block-scaled"


class SkipsZeros(_OneBug):
    """Skips inputs below the smallest normal (zeros, subnormals): 0 * Inf and subnormal * Inf never formed."""

    bug, name = "skipzero", "skips-zeros"
