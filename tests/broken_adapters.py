"""Deliberately broken NumPy-only adapters for the tools' tests (not collected: no test_ prefix).

`FlippedKernel` convolves with the kernel rotated by 180 degrees (true convolution instead
of the cross-correlation every framework computes): a classic porting bug. Like the
built-ins, its `run` executes exactly the source its `repro_code` returns, so a repro
script reproduces what the suite saw. The snippet imports NumPy only; it is the one
correct program of this module (`_buggy_snippet`) given a flipped kernel.
`NoRepro` is the same bug without `repro_code`: the repro script must load it by spec.

The `Planted` adapters run `_buggy_snippet`: a correct NumPy program with the bugs of
PLANTED planted, each under a condition written in plain Python (the findings tests compare
a finding's predicate with it). The `_OneBug` adapters name one bug as a string.
Those of the size model (`SIZE_BUGS`: a vector tail, a split-K tail, 16-bit, 22-bit and
float32 index arithmetic, an 11-bit channel counter, a 1-tap axis) are planted in a blocked
split-K float32 kernel and fire only on cases of one size class (`_fires`);
`SplitKFloat32` is that kernel without a bug, a correct vendor-style implementation.
"""

from __future__ import annotations

import math

import numpy as np


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




# ---- planted bugs, for the findings tests and the special-values tests -----------------
#
# One correct program (im2col + one product per group, float64, one rounding to the dtype)
# with bugs planted by name. Each bug's condition is written here in plain Python, so that
# a test can compare a finding's members with the cases the bug really covers.

#: Bugs of non-finite values in neighbouring vector lanes: each shows only where NaN, Inf
#: or zeros sit in the inputs (the `special` profile).
LANE_BUGS = ("oddpad", "lanepair", "blockscale", "skipzero")

#: Bugs planted in the blocked split-K kernel (`_buggy_snippet`), each gated on one size
#: class of cases/sizes.py, with what it does; "" is that kernel without a bug.
SIZE_BUGS = {
    "": "none",
    "tail": "the vector tail drops its last lane: conv2d input channels per group = 3 (mod 4) above 4, "
            "depthwise channels = 15 (mod 16) above 64",
    "splitk": "the last, partial split-K slice is dropped when K > 2304 and K % 256 != 0",
    "pixel16": "a 16-bit pixel counter: output pixel p >= 2^16 of an image gets pixel p mod 2^16",
    "index22": "a 22-bit offset: output element i >= 2^22 gets element i mod 2^22",
    "float_index": "float32 index arithmetic: output element i > 2^24 gets element float32(i)",
    "channels2048": "an 11-bit channel counter: input channel q >= 2048 (per group) is read as q - 2048",
    "size_one": "a 1-tap axis with stride > 1, dilation > 1 and padding starts one padded row late",
}
#: Products per split-K slice of the blocked kernel.
SLICE = 256


def _fires(case, bug: str) -> bool:
    """Whether size bug `bug` changes the result of `case` (each is gated on sizes)."""
    conv = case.op == "conv2d"
    cg = case.in_channels // case.groups if conv else case.in_channels
    outputs = math.prod(case.output_shape)
    return {
        "": False,
        "tail": (cg % 4 == 3 and cg > 4) if conv else (cg % 16 == 15 and cg > 64),
        "splitk": conv and case.reduction_size > 2304 and case.reduction_size % SLICE != 0,
        "pixel16": case.output_shape[1] * case.output_shape[2] > 1 << 16,
        "index22": outputs > 1 << 22,
        "float_index": outputs > 1 << 24,
        "channels2048": cg > 2048,
        "size_one": any(_one_tap_axis(case, a) for a in (0, 1)),
    }[bug]


def _one_tap_axis(case, a: int) -> bool:
    """Axis `a` has a 1-tap kernel between input and output larger than 1, stride > 1,
    dilation > 1 and padding: where the "size_one" bug lives."""
    n, out = (case.height, case.width)[a], case.output_shape[1 + a]
    return (case.kernel[a] == 1 and n > 1 and out > 1 and case.strides[a] > 1 and case.dilations[a] > 1
            and sum(case.geometry.pads[a]) > 0)


def _split_k_lines(case, bug: str, g, fires: bool) -> list[str]:
    """The blocked kernel: im2col, then K in slices of SLICE, each a float32 matrix product
    (float64 for float64 cases) added to a float32 accumulator; `fires` plants `bug`."""
    (kh, kw), (sh, sw), (dh, dw) = case.kernel, case.strides, case.dilations
    conv = case.op == "conv2d"
    cg = case.filter_in_channels if conv else case.in_channels
    acc = "np.float64" if case.dtype == "float64" else "np.float32"
    lines = []
    if fires and bug == "channels2048":
        lines.append(f"xp = xp[..., [c - c % {cg} + (c % {cg}) % 2048 for c in range(xp.shape[-1])]]  # the bug")
    if fires and bug == "tail":
        lines.append(f"w[:, :, {cg - 1}, :] = 0  # the bug: the tail's last lane is dropped")
    lines.append(f"cols = np.stack([xp[:, di * {dh}: di * {dh} + {sh} * ({g.out_h} - 1) + 1: {sh}, "
                 f"dj * {dw}: dj * {dw} + {sw} * ({g.out_w} - 1) + 1: {sw}, :] "
                 f"for di in range({kh}) for dj in range({kw})], axis=3)  # (N, OH, OW, taps, C)")
    k = case.reduction_size
    last = k - k % SLICE if fires and bug == "splitk" else k  # the bug: the partial slice is lost
    if conv:
        og = case.out_channels // case.groups
        lines += ["parts = []",
                  f"for g in range({case.groups}):",
                  f"    a = cols[..., g * {cg}:(g + 1) * {cg}].reshape(-1, {k})",
                  f"    b = w[..., g * {og}:(g + 1) * {og}].reshape({k}, {og})",
                  f"    acc = np.zeros((a.shape[0], {og}), dtype={acc})",
                  f"    for s in range(0, {last}, {SLICE}):",
                  f"        acc += a[:, s:s + {SLICE}].astype({acc}) @ b[s:s + {SLICE}].astype({acc})",
                  "    parts.append(acc)",
                  f"acc = np.concatenate(parts, axis=1).reshape(cols.shape[:3] + ({case.out_channels},))"]
    else:
        m = case.channel_multiplier
        lines += [f"wk = w.reshape({k}, {cg}, {m})",
                  f"acc = np.zeros(cols.shape[:3] + ({cg}, {m}), dtype={acc})",
                  f"for s in range(0, {last}, {SLICE}):",
                  f"    acc += np.einsum('nhwtc,tcm->nhwcm', cols[..., s:s + {SLICE}, :].astype({acc}), "
                  f"wk[s:s + {SLICE}].astype({acc}))",
                  f"acc = acc.reshape(cols.shape[:3] + ({cg * m},))"]
    lines.append(f"if bias is not None:\n    acc = acc + np.asarray(bias, dtype=np.float64).astype({acc})")
    if fires and bug == "pixel16":
        lines.append("flat = acc.reshape(acc.shape[0], -1, acc.shape[3])")
        lines.append("acc = flat[:, np.arange(flat.shape[1]) % 65536].reshape(acc.shape)  # the bug: 16-bit pixel index")
    if fires and bug == "index22":
        lines.append("acc = acc.reshape(-1)[np.arange(acc.size) % (1 << 22)].reshape(acc.shape)  # the bug: 22-bit offset")
    if fires and bug == "float_index":
        lines.append("i = np.minimum(np.arange(acc.size).astype(np.float32).astype(np.int64), acc.size - 1)")
        lines.append("acc = acc.reshape(-1)[i].reshape(acc.shape)  # the bug: the index went through float32")
    return lines


def _effective_dilation(case) -> int:
    return max([d for d, k in zip(case.dilations, case.kernel) if k > 1], default=1)


def _chaos(case) -> bool:
    import zlib

    return zlib.crc32(case.id.encode()) % 3 == 0


#: name -> the condition under which the bug changes the result (valid cases), or, for the
#: bugs on invalid cases, under which the program returns an output instead of raising.
PLANTED = {
    # depthwise with strides > 1 ignores the dilation: a wrong shape (VALID) or wrong values (SAME)
    "dilation": lambda c: c.op == "depthwise_conv2d" and max(c.strides) > 1 and _effective_dilation(c) > 1,
    # subnormal inputs, filters and results flushed to zero: it shows wherever there is one
    "flush": lambda c: True,
    "accept": lambda c: 0 in c.output_shape,  # an empty-output invalid case returns an empty array
    # every partial sum, tap by tap, rounded to the dtype (a precision divergence under strict)
    "ownacc": lambda c: True,
    # a vector tail: the last input channel of each group is skipped when there are 8k + 3
    "tail8": lambda c: c.op == "conv2d" and c.filter_in_channels % 8 == 3,
    # split-K in slices of 256 products: the last, partial slice is dropped once K > 2304
    "splitk": lambda c: c.reduction_size >= 2305 and c.reduction_size % 256 != 0,
    # bfloat16 with a bias: the bias is added twice
    "bf16bias": lambda c: c.dtype == "bfloat16" and c.bias,
    # dilations of 6 and more are taken as one less
    "dilation6": lambda c: _effective_dilation(c) >= 6,
    # outputs of 2^14 pixels and more get their last row wrong
    "bigout": lambda c: c.geometry.out_h * c.geometry.out_w >= 16384,
    # invalid groups (not dividing in_channels) are accepted: zeros come back
    "groups": lambda c: c.op == "conv2d" and c.in_channels % c.groups != 0,
    # only groups > in_channels are accepted
    "groups_exceed": lambda c: c.op == "conv2d" and c.groups > c.in_channels,
    # a condition no feature of a case describes: one in three case ids, by hash
    "chaos": _chaos,
    # kernels of at most 3 x 3 (on a path of their own) are off by one: the neutral kernels
    # (1 x 1 and 3 x 3) both show it, only a larger one tells
    "small_kernel": lambda c: max(c.kernel) <= 3,
    # conv2d (one group) over an odd channel count processes channels in pairs: the padding
    # lane reads the next element in memory (the next pixel's channel 0) times a zero weight,
    # so an Inf or NaN there gives NaN (0 * Inf) in the neighbouring pixel's outputs
    "oddpad": lambda c: c.op == "conv2d" and c.groups == 1 and c.in_channels % 2 == 1 and c.profile == "special",
    # output channels processed in pairs: a NaN in one lane of a pair makes its partner NaN
    "lanepair": lambda c: c.profile == "special",
    # x scaled in blocks of 8 channels by its largest magnitude (a power of two, as block
    # floating point does): exact for finite blocks, but an Inf or NaN makes its block NaN
    "blockscale": lambda c: c.profile == "special",
    # products with an input below the smallest normal (zeros, subnormals) are skipped, so
    # 0 * Inf and subnormal * Inf never give NaN
    "skipzero": lambda c: c.profile == "special",
}
_ON_INVALID = ("accept", "groups", "groups_exceed")


def _buggy_snippet(case, bugs) -> str:
    """NumPy source computing `case` right except for the planted `bugs` (names in PLANTED,
    or one name) whose conditions hold; or one name of SIZE_BUGS (a string: the `_OneBug`
    adapters), planted in a blocked split-K kernel that sums in float32 (a correct kernel
    with bug ""). "none" plants no bug: the program sums exact
    float64 products and rounds once to the dtype, leaving `acc` (the float64 result) and
    `y` (the output). Invalid cases raise unless a bug accepts them. Without a bug it reads
    only the case's fields and `geometry`, so it runs where a repro script passes the case
    as a plain namespace and conv-conformance is not installed (`NoRepro`)."""
    size_bug = bugs if isinstance(bugs, str) and bugs in SIZE_BUGS else None  # one name: the blocked kernel
    bugs = (bugs,) if isinstance(bugs, str) else tuple(bugs)
    if size_bug is not None:
        bugs = ()
    unknown = [b for b in bugs if b not in PLANTED and b != "none"]
    if unknown:
        raise ValueError(f"planted bugs: expected names in {sorted(PLANTED)} or 'none', received {unknown}")
    active = {b for b in bugs if b in PLANTED and PLANTED[b](case)}
    if not case.is_valid:
        if active & set(_ON_INVALID):
            shape = tuple(case.output_shape)
            return f"import numpy as np\ny = np.zeros({shape}, dtype=x.dtype)  # the bug: no error\n"
        return f"raise ValueError({('invalid case: ' + case.invalid_reason)!r})\n"
    (kh, kw), (sh, sw), (dh, dw) = case.kernel, case.strides, case.dilations
    if "dilation" in active:
        dh = dw = 1  # the bug: the dilation is dropped
    if "dilation6" in active:
        dh, dw = (d - 1 if d >= 6 else d for d in (dh, dw))  # the bug: one less
    g = case.geometry
    if (dh, dw) != tuple(case.dilations):
        from conformance.spec import conv_geometry

        g = conv_geometry((case.height, case.width), case.kernel, case.strides, (dh, dw), case.padding)
    tiny = None
    if active & {"flush", "skipzero"}:
        from conformance.dtypes import fmt

        tiny = fmt(case.dtype).smallest_normal
    lines = ["import numpy as np",
             "def f64(a):",
             "    if a.dtype.name == 'bfloat16':",
             "        return (a.view(np.uint16).astype(np.uint32) << 16).view(np.float32).astype(np.float64)",
             "    return np.array(a, dtype=np.float64)  # a copy: the caller's arrays stay as they are",
             "xx, w = f64(x), f64(filters)",
             "saved = np.seterr(invalid='ignore', over='ignore', divide='ignore')  # restored below"]
    groups, cg, og = (case.groups, case.in_channels // case.groups, case.out_channels // case.groups) \
        if case.op == "conv2d" else (1, case.in_channels, 0)
    if "oddpad" in active:
        lines += ["nxt = np.append(xx.reshape(-1)[xx.shape[-1]::xx.shape[-1]], 0.0)  # the element after each pixel",
                  "xx = np.concatenate([xx, nxt.reshape(xx.shape[:3] + (1,))], axis=-1)  # the bug: a pad lane",
                  "w = np.concatenate([w, np.zeros(w.shape[:2] + (1,) + w.shape[3:])], axis=2)  # times a zero weight"]
        cg += 1
    if "blockscale" in active:
        lines += ["c = xx.shape[-1]",
                  "blocks = np.pad(xx, ((0, 0),) * 3 + ((0, -c % 8),)).reshape(xx.shape[:3] + (-1, 8))",
                  "top = np.max(np.abs(blocks), axis=-1, keepdims=True)",
                  "scale = np.where(top > 0, np.exp2(np.ceil(np.log2(np.where(top > 0, top, 1.0)))), 1.0)",
                  "xx = ((blocks / scale) * scale).reshape(xx.shape[:3] + (-1,))[..., :c]  # the bug: Inf/Inf, 0 * Inf"]
    lines.append(f"xp = np.pad(xx, ((0, 0), {g.pads[0]}, {g.pads[1]}, (0, 0)))")
    fires = size_bug is not None and _fires(case, size_bug)
    if fires and size_bug == "size_one":
        for a in (0, 1):
            if _one_tap_axis(case, a):
                lines.append(f"xp = np.concatenate([xp.take(range(1, xp.shape[{a + 1}]), axis={a + 1}), "
                             f"np.zeros_like(xp.take([0], axis={a + 1}))], axis={a + 1})  # the bug: one row late")
    if size_bug is not None:
        lines += _split_k_lines(case, size_bug, g, fires)
        lines += ["y = np.asarray(acc).astype(x.dtype)", "np.seterr(**saved)"]
        return "\n".join(lines) + "\n"
    if "flush" in active:
        lines += [f"xp[np.abs(xp) < {tiny!r}] = 0  # the bug: subnormals flushed", f"w[np.abs(w) < {tiny!r}] = 0"]
    window = (f"xp[:, di * {dh}: di * {dh} + {sh} * ({g.out_h} - 1) + 1: {sh}, "
              f"dj * {dw}: dj * {dw} + {sw} * ({g.out_w} - 1) + 1: {sw}, :]")
    if active & {"ownacc", "skipzero"}:  # tap by tap
        lines += ["acc = 0", f"for di in range({kh}):", f"    for dj in range({kw}):", f"        patch = {window}"]
        if "skipzero" in active:  # products formed one by one, the skipped ones left out
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
            lines.append(f"        acc = acc + np.concatenate([np.einsum('nhwc,co->nhwo', patch[..., k * {cg}:(k + 1) * "
                         f"{cg}], w[di, dj][:, k * {og}:(k + 1) * {og}]) for k in range({groups})], axis=-1)")
        else:
            lines.append("        acc = acc + np.einsum('nhwc,cm->nhwcm', patch, w[di, dj]).reshape(patch.shape[:3] + (-1,))")
        if "ownacc" in active:
            lines.append("        acc = np.asarray(acc).astype(x.dtype).astype(np.float64)  # the bug: summed in the dtype")
    else:
        lines.append(f"cols = np.stack([{window} for di in range({kh}) for dj in range({kw})], axis=3)"
                     "  # (N, OH, OW, taps, C)")
        if case.op == "conv2d":
            k = cg * kh * kw
            lines += ["parts = []", f"for grp in range({groups}):",
                      f"    a = cols[..., grp * {cg}:(grp + 1) * {cg}].reshape(cols.shape[:3] + ({k},))",
                      f"    wg = w[..., grp * {og}:(grp + 1) * {og}].reshape({k}, {og}).copy()"]
            if "tail8" in active:
                lines.append(f"    wg[{cg - 1}::{cg}] = 0  # the bug: the vector tail's last channel is skipped")
            if "splitk" in active:
                lines.append(f"    wg[{k - k % 256}:] = 0  # the bug: the last partial slice of 256 is dropped")
            lines += ["    parts.append(a @ wg)", "acc = np.concatenate(parts, axis=-1)"]
        else:
            lines.append("acc = np.einsum('nhwtc,tcm->nhwcm', cols, w.reshape((-1,) + w.shape[2:]))"
                         ".reshape(cols.shape[:3] + (-1,))")
    lines.append("if bias is not None:\n    acc = acc + f64(bias)")
    if "bf16bias" in active:
        lines.append("acc = acc + f64(bias)  # the bug: the bias twice")
    if "lanepair" in active:
        lines += ["o = acc.shape[-1]",
                  "pairs = np.pad(acc, ((0, 0),) * 3 + ((0, o % 2),)).reshape(acc.shape[:3] + (-1, 2))",
                  "pairs = np.where(np.isnan(pairs).any(axis=-1, keepdims=True), np.nan, pairs)  # the bug",
                  "acc = pairs.reshape(acc.shape[:3] + (-1,))[..., :o]"]
    if "bigout" in active:
        lines.append("acc[:, -1] += 1  # the bug: the last row is off by one")
    if "chaos" in active or "small_kernel" in active:
        lines.append("acc = acc + 1  # the bug")
    if "flush" in active:
        lines.append(f"acc[np.abs(acc) < {tiny!r}] = 0")
    lines += ["y = np.asarray(acc).astype(x.dtype)", "np.seterr(**saved)"]
    return "\n".join(lines) + "\n"


class Planted:
    """A backend computing every case right except for its planted `bugs` (PLANTED names)."""

    bugs: tuple[str, ...] = ()
    name = "planted"

    def version(self) -> str:
        return "0.1"

    def device(self) -> str:
        return "cpu"

    def supports(self, case):
        return None

    def repro_code(self, case) -> str:
        return _buggy_snippet(case, self.bugs)

    def run(self, case, x, filters, bias):
        ns = {"x": x, "filters": filters, "bias": bias}
        exec(_buggy_snippet(case, self.bugs), ns)  # noqa: S102 (our own generated source)
        return ns["y"]


class DropsDilation(Planted):
    """Depthwise with strides > 1 and dilations > 1 ignores the dilation (a wrong shape or wrong values)."""

    bugs, name = ("dilation",), "drops-dilation"


class FlushesSubnormals(Planted):
    """Flushes subnormal inputs, filters and results to zero (FTZ/DAZ)."""

    bugs, name = ("flush",), "flushes-subnormals"


class AcceptsEmptyOutput(Planted):
    """Returns an empty array for an invalid case whose output would be empty."""

    bugs, name = ("accept",), "accepts-empty"


class FourBugs(Planted):
    """The depthwise stride x dilation bug, a vector tail, bfloat16 + bias and invalid groups accepted."""

    bugs, name = ("dilation", "tail8", "bf16bias", "groups"), "four-bugs"


class ThresholdBugs(Planted):
    """Split-K past K = 2304, dilations >= 6, outputs of 2^14 pixels, groups > in_channels accepted."""

    bugs, name = ("splitk", "dilation6", "bigout", "groups_exceed"), "threshold-bugs"


class Chaotic(Planted):
    """One in three cases wrong, by a hash of the case id: no predicate describes it."""

    bugs, name = ("chaos",), "chaotic"


class SmallKernels(Planted):
    """Off by one on every kernel of at most 3 x 3."""

    bugs, name = ("small_kernel",), "small-kernels"


class Correct(Planted):
    """No bug at all."""

    name = "correct"


# ---- a blocked split-K kernel, correct or with one size-gated bug (SIZE_BUGS) ----------

class _OneBug(Planted):
    """One bug by name, as a string (`bug`): a SIZE_BUGS name is planted in the blocked kernel."""

    bug = ""

    @property
    def bugs(self) -> str:  # type: ignore[override]  (_buggy_snippet takes one name as a string)
        return self.bug


class SplitKFloat32(_OneBug):
    """Correct: im2col, K in slices of 256, float32 products and accumulator, one rounding."""

    bug, name = "", "split-k-float32"


class VectorTail(_OneBug):
    """SplitKFloat32 whose vector tail drops its last lane (conv2d: input channels per group
    = 3 mod 4 above 4; depthwise: channels = 15 mod 16 above 64)."""

    bug, name = "tail", "vector-tail"


class SplitKTail(_OneBug):
    """SplitKFloat32 that loses the partial last slice when K > 2304 and K % 256 != 0."""

    bug, name = "splitk", "split-k-tail"


class PixelIndex16(_OneBug):
    """SplitKFloat32 whose output pixel counter is 16 bits: pixel p >= 2^16 gets pixel p mod 2^16."""

    bug, name = "pixel16", "pixel-index-16"


class OffsetIndex22(_OneBug):
    """SplitKFloat32 whose output offsets are 22 bits: element i >= 2^22 gets element i mod 2^22."""

    bug, name = "index22", "offset-index-22"


class FloatIndex24(_OneBug):
    """SplitKFloat32 computing output indices in float32: above 2^24 odd ones land on a neighbour."""

    bug, name = "float_index", "float-index-24"


class Channels2048(_OneBug):
    """SplitKFloat32 with an 11-bit channel counter: input channel q >= 2048 (per group) reads q - 2048."""

    bug, name = "channels2048", "channels-2048"


class SizeOneAxis(_OneBug):
    """SplitKFloat32 whose 1-tap axis with stride > 1, dilation > 1 and padding starts one padded row late."""

    bug, name = "size_one", "size-one-axis"


# ---- the same program without a bug, and with one lane bug (LANE_BUGS) --------------

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
