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




# ---- planted bugs, for the findings tests ---------------------------------------------
#
# One correct program (im2col + one product per group, float64, one rounding to the dtype)
# with bugs planted by name. Each bug's condition is written here in plain Python, so that
# a test can compare a finding's members with the cases the bug really covers.

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
}
_ON_INVALID = ("accept", "groups", "groups_exceed")


def _buggy_snippet(case, bugs) -> str:
    """NumPy source computing `case` right except for the planted `bugs` (names in PLANTED,
    or one name) whose conditions hold. "none" plants no bug: the program sums exact
    float64 products and rounds once to the dtype, leaving `acc` (the float64 result) and
    `y` (the output). Invalid cases raise unless a bug accepts them. Without a bug it reads
    only the case's fields and `geometry`, so it runs where a repro script passes the case
    as a plain namespace and conv-conformance is not installed (`NoRepro`)."""
    bugs = (bugs,) if isinstance(bugs, str) else tuple(bugs)
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
    lines = ["import numpy as np",
             f"xp = np.pad(np.asarray(x, dtype=np.float64), ((0, 0), {g.pads[0]}, {g.pads[1]}, (0, 0)))",
             "w = np.asarray(filters, dtype=np.float64)"]
    if "flush" in active:
        from conformance.dtypes import fmt

        tiny = fmt(case.dtype).smallest_normal
        lines += [f"xp[np.abs(xp) < {tiny!r}] = 0  # the bug: subnormals flushed", f"w[np.abs(w) < {tiny!r}] = 0"]
    window = (f"xp[:, di * {dh}: di * {dh} + {sh} * ({g.out_h} - 1) + 1: {sh}, "
              f"dj * {dw}: dj * {dw} + {sw} * ({g.out_w} - 1) + 1: {sw}, :]")
    if "ownacc" in active:  # tap by tap, each partial sum rounded to the dtype
        lines += ["acc = 0", f"for di in range({kh}):", f"    for dj in range({kw}):", f"        patch = {window}"]
        if case.op == "conv2d":
            cg, og = case.in_channels // case.groups, case.out_channels // case.groups
            lines.append(f"        acc = acc + np.concatenate([np.einsum('nhwc,co->nhwo', patch[..., k * {cg}:(k + 1) * "
                         f"{cg}], w[di, dj][:, k * {og}:(k + 1) * {og}]) for k in range({case.groups})], axis=-1)")
        else:
            lines.append("        acc = acc + np.einsum('nhwc,cm->nhwcm', patch, w[di, dj]).reshape(patch.shape[:3] + (-1,))")
        lines.append("        acc = np.asarray(acc).astype(x.dtype).astype(np.float64)  # the bug: summed in the dtype")
    else:
        lines.append(f"cols = np.stack([{window} for di in range({kh}) for dj in range({kw})], axis=3)"
                     "  # (N, OH, OW, taps, C)")
        if case.op == "conv2d":
            cg, og = case.in_channels // case.groups, case.out_channels // case.groups
            k = cg * kh * kw
            lines += ["parts = []", f"for grp in range({case.groups}):",
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
    lines.append("if bias is not None:\n    acc = acc + np.asarray(bias, dtype=np.float64)")
    if "bf16bias" in active:
        lines.append("acc = acc + np.asarray(bias, dtype=np.float64)  # the bug: the bias twice")
    if "bigout" in active:
        lines.append("acc[:, -1] += 1  # the bug: the last row is off by one")
    if "chaos" in active or "small_kernel" in active:
        lines.append("acc = acc + 1  # the bug")
    if "flush" in active:
        lines.append(f"acc[np.abs(acc) < {tiny!r}] = 0")
    lines.append("y = np.asarray(acc).astype(x.dtype)")
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
