"""Why did a backend diverge? Named hypotheses, each tested by recomputing the oracle.

`diagnose(case, actual, inputs)` is asked about one divergence (a valid case whose output
failed `compare`). It tries a fixed list of hypotheses, cheapest and most specific
first, and returns the first one that explains the output, with a sentence a framework
maintainer can act on ("output equals the oracle with the kernel flipped in both axes").

Invariants
- A hypothesis is *tested*, never guessed from the error pattern alone: the oracle is
  recomputed under the hypothesis (transformed filters, geometry or inputs, through
  `oracle.conv2d` / `oracle.depthwise_conv2d`) and the backend's output must match that
  recomputation per the same tolerance model and precision contract `compare` uses
  (`tolerance.beyond` against a `Reference` built for the hypothesis by
  `oracle.reference`, the one reference builder).
  The exceptions are the *facts* (`nan_not_propagated`, right after `subnormal_flush`; `border_only`,
  `channel_subset`, `batch_subset` last, after every tested hypothesis), which describe
  where the errors are, and `float16_accumulation`, an error-size consistency test.
- `wrong_shape_subblock` / `wrong_sampling` search, for each candidate geometry (the
  true one, strides or dilations ignored, VALID, SAME, SAME_LOWER), a row and column
  selection of that output equal to the backend's (TensorFlow's depthwise_conv2d with
  strides > 1 and dilations > 1 keeps rows/columns r % 4 < 2 of the stride-1 output).
- Pads and output sizes come from `spec.conv_geometry` only; a geometric hypothesis
  (stride ignored, SAME's odd pixel swapped, ...) first predicts the output shape and
  is only recomputed when that shape equals the backend's.
- Cost is bounded: a recomputation above `MAX_MACS` multiply-adds or `MAX_OUTPUTS`
  output elements is skipped; every diagnosis lists what it skipped at this size
  (`Diagnosis.skipped`, and in the explanation when nothing else explains the output).
- Hypothesis names are a stable vocabulary (`HYPOTHESES`); `None` means unexplained and
  the explanation then lists the facts found (which channels, batch items, pixels).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from . import oracle, tolerance
from .compare import flush_explains
from .dtypes import count_subnormals, dtype_name, flush_subnormals, fmt, has_subnormal, np_dtype, round_mantissa, round_to
from .oracle import Reference
from .spec import Case, conv_geometry
from .text import number

#: A recomputation (value and magnitude) above this many multiply-adds is skipped (about
#: a second of the float64 oracle on one core: real layers up to ResNet scale are tested).
MAX_MACS = 10**9
#: ... and one of more output elements (each recomputation holds a few float64 arrays of
#: the output's size: this bounds diagnosis memory at a few hundred MB).
MAX_OUTPUTS = 10**7
#: A reduced-precision hypothesis explains the output when the backend's error against
#: it is at most this fraction of its error against the exact result (or within tolerance).
REDUCED_PRECISION_RATIO = 1 / 16
#: float16 accumulation leaves errors of the order of float16 rounding: at least this
#: many float16 unit roundoffs of the magnitude somewhere (and at most the threshold).
F16_ACCUMULATION_FLOOR = 0.05
#: Sub-block search compares every backend pixel with every candidate pixel; bounded.
MAX_PIXEL_PAIRS = 2 * 10**7


@dataclass
class Diagnosis:
    hypothesis: str | None  # a name from HYPOTHESES, or None: unexplained
    explanation: str
    checked: list[str] = field(default_factory=list)  # hypotheses actually tested, in order
    skipped: list[str] = field(default_factory=list)  # recomputations not tried at this size, and why

    def to_dict(self) -> dict[str, Any]:
        return {"hypothesis": self.hypothesis, "explanation": self.explanation, "checked": list(self.checked),
                "skipped": list(self.skipped)}


class _Skip(Exception):
    """A hypothesis that does not apply to this case (not listed as checked)."""


class _Context:
    """The case, the backend output and the true reference, plus helpers shared by tests."""

    def __init__(self, case: Case, y: np.ndarray, x, w, b, precision: str = tolerance.DEFAULT_PRECISION):
        self.case, self.y, self.x, self.w, self.b = case, y, x, w, b
        self.precision = precision
        self.ref = oracle.reference(case, x, w, b)
        self.same_shape = tuple(y.shape) == tuple(case.output_shape)
        self.threshold = tolerance.threshold(case)
        self.skipped: list[str] = []
        if self.same_shape:
            self.e_true = self.error(self.ref)
            self.bad = self.e_true > self.limit(self.ref)
        else:
            self.e_true = self.bad = None

    # ---- judging against a hypothesis -----------------------------------------

    def limit(self, ref: Reference) -> np.ndarray:
        # The verdict's own per-element limit (with the cancellation-aware bound where the
        # reference carries its product norm).
        return tolerance.element_limit(self.case, ref, self.precision)

    def error(self, ref: Reference) -> np.ndarray:
        return tolerance.elementwise_error(self.case, self.y, ref, self.precision)

    def matches(self, ref: Reference) -> bool:
        if tuple(ref.value.shape) != tuple(self.y.shape):
            return False
        return not (self.error(ref) > self.limit(ref)).any()

    # ---- recomputing the oracle under a hypothesis -------------------------------

    def shape_for(self, strides, dilations, padding) -> tuple[int, ...] | None:
        c = self.case
        g = conv_geometry((c.height, c.width), c.kernel, strides, dilations, padding)
        if g.out_h <= 0 or g.out_w <= 0:
            return None
        return (c.batch, g.out_h, g.out_w, c.output_channels)

    def affordable(self, name: str, out_shape) -> bool:
        macs = 2 * math.prod(out_shape) * self.case.reduction_size
        why = (f"{macs:.2g} multiply-adds > {MAX_MACS:.0g}" if macs > MAX_MACS else
               f"{math.prod(out_shape):.2g} outputs > {MAX_OUTPUTS:.0g}" if math.prod(out_shape) > MAX_OUTPUTS else None)
        if why is None:
            return True
        if f"{name} ({why})" not in self.skipped:  # variants of one hypothesis share a name
            self.skipped.append(f"{name} ({why})")
        return False

    def reference(self, x, w, b, *, strides=None, dilations=None, padding=None) -> Reference:
        """The oracle on the given inputs and geometry (with the product norm, so that a
        hypothesis is judged as strictly as the verdict)."""
        return oracle.reference(self.case, x, w, b, strides=strides, dilations=dilations, padding=padding)

    def geometry_matches(self, name: str, *, strides=None, dilations=None, padding=None) -> bool:
        c = self.case
        strides, dilations = tuple(strides or c.strides), tuple(dilations or c.dilations)
        padding = c.padding if padding is None else padding
        shape = self.shape_for(strides, dilations, padding)
        if shape is None or shape != tuple(self.y.shape) or not self.affordable(name, shape):
            return False
        return self.matches(self.reference(self.x, self.w, self.b, strides=strides, dilations=dilations,
                                           padding=padding))


def _pads(case: Case):
    return case.geometry.pads


def _fmt_pads(p) -> str:
    (t, b), (l, r) = p
    return f"top {t}, bottom {b}, left {l}, right {r}"


# ---- the hypotheses (each returns an explanation, None when it does not match, or
#      raises _Skip when it does not apply) ----------------------------------------

def _need_same_shape(ctx: _Context) -> None:
    if not ctx.same_shape:
        raise _Skip


def _nan_not_propagated(ctx: _Context):
    _need_same_shape(ctx)
    special = ~np.isfinite(ctx.ref.value)
    if not special.any():
        raise _Skip
    bad = ctx.bad
    if not (bad & ~special).any():
        n = int(bad.sum())
        got = ctx.y[bad]
        finite = int(np.isfinite(got).sum())
        return (f"errors only where the exact result is NaN or Inf: {n} of {int(special.sum())} such elements "
                f"came back wrong ({finite} of them finite, e.g. {number(got[0])} where {number(ctx.ref.value[bad][0])} "
                f"was expected); every finite result is within tolerance")
    return None


def _subnormal_flush(ctx: _Context):
    _need_same_shape(ctx)
    value = ctx.ref.value
    tiny = fmt(ctx.case.dtype).smallest_normal
    if not (has_subnormal((ctx.x, ctx.w, ctx.b), ctx.case.dtype) or ((np.abs(value) < tiny) & (value != 0)).any()):
        raise _Skip
    if flush_explains(ctx.case, ctx.y, (ctx.x, ctx.w, ctx.b), ctx.precision):
        return (f"output equals the oracle with subnormal inputs and results flushed to zero "
                f"(FTZ/DAZ: values below {tiny:.3g} in {ctx.case.dtype} treated as 0)")
    return None


def _constants_flushed(which: str):
    """Hypothesis: subnormal constants flushed to zero while subnormal activations (x) are
    kept. `which` is "bias" (only the bias) or "filters" (the filters and the bias): what a
    runtime that folds weights into a compiled model and fuses the bias may do (OpenVINO)."""
    def test(ctx: _Context):
        _need_same_shape(ctx)
        c = ctx.case
        n_w, n_b = count_subnormals(ctx.w, c.dtype), count_subnormals(ctx.b, c.dtype)
        if (which == "bias" and n_b == 0) or (which == "filters" and n_w == 0):
            raise _Skip
        w = flush_subnormals(ctx.w, c.dtype) if which == "filters" else ctx.w
        b = None if ctx.b is None else flush_subnormals(ctx.b, c.dtype)
        if not ctx.affordable(f"subnormal_{which}_flushed", ctx.y.shape):
            return None
        if not ctx.matches(ctx.reference(ctx.x, w, b)):
            return None
        n_x = count_subnormals(ctx.x, c.dtype)
        kept = (f"; the {n_x} subnormal input values of x were kept" if n_x else "")
        tiny = fmt(c.dtype).smallest_normal
        if which == "bias":
            return (f"output equals the oracle with the bias's {n_b} subnormal values (below {tiny:.3g} in {c.dtype}) "
                    f"flushed to zero: the bias is added, but its subnormals are treated as 0{kept}")
        also = f" and the bias's {n_b}" if n_b else ""
        return (f"output equals the oracle with the filters' {n_w} subnormal values{also} (below {tiny:.3g} in "
                f"{c.dtype}) flushed to zero: subnormal constants are flushed{kept}")
    return test


def _depthwise_channel_order(ctx: _Context):
    _need_same_shape(ctx)
    c = ctx.case
    if c.op != "depthwise_conv2d" or c.in_channels < 2 or c.channel_multiplier < 2:
        raise _Skip
    C, M = c.in_channels, c.channel_multiplier

    def reorder(a):  # channel k*M + q of the truth placed at q*C + k
        return a.reshape(a.shape[:3] + (C, M)).swapaxes(3, 4).reshape(a.shape)

    r = ctx.ref
    if ctx.matches(Reference(*(None if a is None else reorder(a) for a in r))):
        return (f"output channels are ordered q*C + k (multiplier-major) instead of k*M + q "
                f"(C={C} input channels, M={M} multiplier): the values are right, the channel order is "
                f"transposed")
    return None


def _bias_ignored(ctx: _Context):
    _need_same_shape(ctx)
    if not ctx.case.bias or ctx.b is None or not np.any(ctx.b != 0):
        raise _Skip
    if ctx.matches(ctx.reference(ctx.x, ctx.w, None)):
        return "output equals the oracle without the bias: the bias was not added"
    return None


def _flipped(axes: tuple[int, ...], words: str):
    def test(ctx: _Context):
        _need_same_shape(ctx)
        if any(ctx.case.kernel[a] < 2 for a in axes):
            raise _Skip
        if not ctx.affordable("flipped_kernel", ctx.y.shape):
            return None
        w = np.flip(ctx.w, axis=axes)
        if ctx.matches(ctx.reference(ctx.x, w, ctx.b)):
            return (f"output equals the oracle with the kernel flipped {words}: a true convolution "
                    f"instead of the cross-correlation every framework defines")
        return None
    return test


def _same_split_swapped(ctx: _Context):
    c = ctx.case
    if c.padding != "SAME":
        raise _Skip
    (t, b), (l, r) = _pads(c)
    if t == b and l == r:
        raise _Skip
    swapped = ((b, t), (r, l))
    if ctx.geometry_matches("same_split_swapped", padding=swapped):
        return (f"output equals the oracle with SAME's odd padding pixel on the top/left "
                f"({_fmt_pads(swapped)}) instead of the bottom/right ({_fmt_pads(((t, b), (l, r)))}), "
                f"like ONNX SAME_LOWER")
    return None


def _explicit_padding_symmetric(ctx: _Context):
    c = ctx.case
    if isinstance(c.padding, str):
        raise _Skip
    (t, b), (l, r) = c.padding
    if t == b and l == r:
        raise _Skip
    options_h = {(t, b), (t, t), (b, b)}
    options_w = {(l, r), (l, l), (r, r)}
    for ph in sorted(options_h):
        for pw in sorted(options_w):
            pads = (ph, pw)
            if pads == c.padding:
                continue
            if ctx.geometry_matches("explicit_padding_symmetric", padding=pads):
                return (f"output equals the oracle with symmetric padding {_fmt_pads(pads)} instead of the "
                        f"asymmetric {_fmt_pads(c.padding)}")
    return None


def _swapped(field: str):
    """Hypothesis: the (H, W) pair of `field` ("strides" or "dilations") was used as (W, H)."""
    def test(ctx: _Context):
        h, w = getattr(ctx.case, field)
        if h == w:
            raise _Skip
        if ctx.geometry_matches(f"{field}_swapped", **{field: (w, h)}):
            return f"output equals the oracle with {field} ({w}, {h}) instead of ({h}, {w}): H and W swapped"
        return None
    return test


def _ignored(field: str, axis: int):
    """Hypothesis: `field` ("strides" or "dilations") was taken as 1 along one axis."""
    noun = field[:-1]  # stride, dilation
    def test(ctx: _Context):
        values = list(getattr(ctx.case, field))
        # A dilation along an axis with a one-tap kernel changes nothing: nothing to test.
        if values[axis] == 1 or (field == "dilations" and ctx.case.kernel[axis] == 1):
            raise _Skip
        old = tuple(values)
        values[axis] = 1
        if ctx.geometry_matches(f"{noun}_ignored_{'hw'[axis]}", **{field: tuple(values)}):
            return (f"output equals the oracle with {field} {tuple(values)} instead of {old}: the {noun} along "
                    f"{'HW'[axis]} was ignored")
        return None
    return test


def _ignored_both(field: str):
    """Hypothesis: `field` ("dilations") taken as 1 along both axes at once."""
    noun = field[:-1]
    def test(ctx: _Context):
        values = tuple(getattr(ctx.case, field))
        effective = [v > 1 and (field != "dilations" or ctx.case.kernel[a] > 1) for a, v in enumerate(values)]
        if not all(effective):  # along one axis only: the one-axis hypotheses say it
            raise _Skip
        if ctx.geometry_matches(f"{noun}_ignored", **{field: (1, 1)}):
            return (f"output equals the oracle with {field} (1, 1) instead of {values}: the {noun} was ignored "
                    f"along both axes")
        return None
    return test


def _padding_ignored(ctx: _Context):
    pads = _pads(ctx.case)
    if not any(sum(p) for p in pads):
        raise _Skip
    if ctx.geometry_matches("padding_ignored", padding="VALID"):
        return (f"output equals the oracle with no padding (VALID) instead of {ctx.case.padding!r} "
                f"({_fmt_pads(pads)}): the padding was ignored")
    return None


def _reduced_precision(name: str, bits: int, label: str, rounder: Callable[[np.ndarray], np.ndarray]):
    def test(ctx: _Context):
        _need_same_shape(ctx)
        if fmt(ctx.case.dtype).precision <= bits:
            raise _Skip
        if name == "reduced_precision_float16":
            # In the float16 range this is the TF32 hypothesis again (11 bits both): only
            # worth testing where float16's range changes the inputs.
            same = all(np.array_equal(round_mantissa(a, 11), rounder(a), equal_nan=True)
                       for a in (ctx.x, ctx.w) if a is not None)
            if same:
                raise _Skip
        if not ctx.affordable(name, ctx.y.shape):
            return None
        hyp = ctx.reference(rounder(ctx.x), rounder(ctx.w), None if ctx.b is None else rounder(ctx.b))
        e_hyp = ctx.error(hyp)
        if not np.isfinite(e_hyp).all():
            return None
        finite_true = ctx.e_true[np.isfinite(ctx.e_true)]
        worst_true = float(finite_true.max()) if finite_true.size else 0.0
        allowed = np.maximum(ctx.limit(hyp), REDUCED_PRECISION_RATIO * worst_true)
        if (e_hyp > allowed).any():
            return None
        note = ""
        if name == "reduced_precision_tf32":
            f16 = round_to(ctx.x, "float16"), round_to(ctx.w, "float16")
            if all(np.array_equal(a, round_mantissa(b, 11), equal_nan=True) for a, b in zip(f16, (ctx.x, ctx.w))):
                note = " (float16 inputs give the same values here)"
        return (f"output matches the oracle on inputs rounded to {label}{note}: max normalised error "
                f"{float(e_hyp.max()):.3g} against that, {number(ctx.e_true.max())} against the exact result "
                f"(threshold {ctx.threshold:.3g})")
    return test


def _roundoff_consistent(ctx: _Context, precision: str) -> float | None:
    """The backend's worst error in units of `precision`'s roundoff of the magnitude, when it
    lies between a clear excess over the dtype's own and the sqrt(K) threshold; else None."""
    c = ctx.case
    u = fmt(precision).unit_roundoff
    with np.errstate(invalid="ignore", over="ignore"):
        e = np.abs(ctx.y - ctx.ref.value) / (u * ctx.ref.magnitude + tolerance.underflow_floor(c))
    finite = np.isfinite(ctx.ref.value)
    if not finite.any() or not np.isfinite(e[finite]).all():
        return None
    worst = float(e[finite].max())
    if not F16_ACCUMULATION_FLOOR <= worst <= ctx.threshold:
        return None
    # And within the cancellation-aware bound of a sum in that precision: an error of the
    # right overall size but far larger than that precision's expected error is a bug.
    norm = ctx.ref.norm
    if norm is not None:
        sigma = tolerance.error_sigma(c, ctx.ref.value, norm) * (u / tolerance.unit_roundoff(c))
        with np.errstate(invalid="ignore", over="ignore"):
            if (np.abs(ctx.y - ctx.ref.value)[finite] > tolerance.SIGMA_LIMIT * sigma[finite]).any():
                return None
    return worst


def _float16_accumulation(ctx: _Context):
    _need_same_shape(ctx)
    c = ctx.case
    if fmt(c.dtype).precision <= 11 or tolerance.is_exact(c):
        raise _Skip
    worst = _roundoff_consistent(ctx, "float16")
    if worst is None:
        return None
    return (f"errors are consistent with accumulation in float16 (unit roundoff 2**-11): max error "
            f"{worst:.3g} float16 roundoffs of the magnitude, within the sqrt(K) threshold {ctx.threshold:.3g} "
            f"for K={tolerance.k_eff(c)}; {number(ctx.e_true.max())} in {c.dtype} roundoffs")


def _computed_in_float32(ctx: _Context):
    _need_same_shape(ctx)
    c = ctx.case
    if c.dtype != "float64" or tolerance.is_exact(c):
        raise _Skip
    worst = _roundoff_consistent(ctx, "float32")
    if worst is None:
        return None
    return (f"errors are consistent with computing this float64 case in float32 (unit roundoff 2**-24): "
            f"max error {worst:.3g} float32 roundoffs of the magnitude, within the threshold "
            f"{ctx.threshold:.3g}; {number(ctx.e_true.max())} in float64 roundoffs")


def _nonfinite_leak(ctx: _Context):
    _need_same_shape(ctx)
    finite_ref = np.isfinite(ctx.ref.value)
    leaked = ctx.bad & finite_ref & ~np.isfinite(ctx.y)
    if not leaked.any():
        raise _Skip
    # Every other wrong element must be a special-value one too: this is about where NaN/Inf go.
    if (ctx.bad & finite_ref & np.isfinite(ctx.y)).any():
        return None
    chans = np.nonzero(leaked.any(axis=(0, 1, 2)))[0].tolist()
    first = tuple(int(i) for i in np.argwhere(leaked)[0])
    return (f"NaN/Inf where the exact result is finite: {int(leaked.sum())} elements (output channels "
            f"{_ranges(chans)}; e.g. {number(ctx.y[first])} at {first} where {number(ctx.ref.value[first])} was "
            f"expected), whose terms hold no NaN or Inf: a NaN or Inf reached outputs that do not depend on it, "
            f"through products the formula does not form (0 * Inf across groups, channels or batch items, e.g. a "
            f"dense block-diagonal weight for grouped/depthwise convolution, or zeros inserted into the kernel "
            f"for dilation)")


def _output_layout_nchw(ctx: _Context):
    c, y = ctx.case, ctx.y
    n, oh, ow, o = c.output_shape
    if y.size != n * oh * ow * o or (oh == 1 and ow == 1) or o == 1:
        raise _Skip
    candidate = y.reshape(n, o, oh, ow).transpose(0, 2, 3, 1)
    if tolerance.within_tolerance(c, candidate, ctx.ref, ctx.precision):
        return (f"the values are right but laid out NCHW: the output, read as (N, C, H, W) = {(n, o, oh, ow)} and "
                f"transposed to NHWC, equals the oracle (the contract returns canonical NHWC whatever "
                f"data_format says)")
    return None


def _border_masks(case: Case):
    """Per output row / column: does its receptive field reach into the padding? top, bottom, left, right."""
    g = case.geometry
    (pt, pb), (pl, pr) = g.pads
    out = []
    for axis, (lo, n_in, n_out) in enumerate(((pt, case.height, g.out_h), (pl, case.width, g.out_w))):
        s, eff = case.strides[axis], g.effective_kernel[axis]
        start = np.arange(n_out) * s - lo
        out.append((start < 0, start + eff - 1 > n_in - 1))
    return out  # [(top, bottom), (left, right)]


def _border_only(ctx: _Context):
    _need_same_shape(ctx)
    if not any(sum(p) for p in _pads(ctx.case)):
        raise _Skip
    (top, bottom), (left, right) = _border_masks(ctx.case)
    border = top[:, None] | bottom[:, None] | left[None, :] | right[None, :]
    if border.all():
        raise _Skip  # every output pixel touches the padding: nothing to tell apart
    bad_px = ctx.bad.any(axis=(0, 3))
    if (bad_px & ~border).any():
        return None
    # Name the fewest borders that cover every wrong pixel (a corner belongs to two).
    sides = {"top": top[:, None] & bad_px, "bottom": bottom[:, None] & bad_px,
             "left": left[None, :] & bad_px, "right": right[None, :] & bad_px}
    left_over, chosen = bad_px.copy(), set()
    while left_over.any():
        best = max(sides, key=lambda n: int((sides[n] & left_over).sum()))
        chosen.add(best)
        left_over &= ~sides[best]
    names = [n for n in sides if n in chosen]
    rows, cols = np.nonzero(bad_px)
    return (f"errors confined to output pixels whose receptive field touches the padding: the "
            f"{', '.join(names)} border{'s' if len(names) > 1 else ''} ({int(bad_px.sum())} pixels, rows "
            f"{_ranges(sorted(set(rows.tolist())))}, columns {_ranges(sorted(set(cols.tolist())))}); interior pixels are within tolerance")


def _candidate_geometries(case: Case):
    """Alternative geometries a wrong-shaped output may come from, true geometry first."""
    s, d, p = case.strides, case.dilations, case.padding
    out = [("the true output", s, d, p)]
    if s != (1, 1):
        out.append(("the stride-(1, 1) output (strides ignored)", (1, 1), d, p))
    if d != (1, 1):
        out.append(("the dilation-(1, 1) output (dilations ignored)", s, (1, 1), p))
    if s != (1, 1) and d != (1, 1):
        out.append(("the output with strides and dilations ignored", (1, 1), (1, 1), p))
    if p != "VALID":
        out.append(("the VALID output", s, d, "VALID"))
    if p != "SAME":
        out.append(("the SAME output", s, d, "SAME"))
    if p == "SAME":
        (t, b), (l, r) = _pads(case)
        if (t, l) != (b, r):
            out.append(("the SAME_LOWER output (odd pixel top/left)", s, d, ((b, t), (r, l))))
    return out


def _pixel_map(ctx: _Context, ref: Reference):
    """Row and column indices (rows, cols) with y == ref[:, rows][:, :, cols], or None."""
    y = ctx.y
    n, hy, wy, ch = y.shape
    _, ha, wa, _ = ref.value.shape
    if hy * wy * ha * wa * n * ch > MAX_PIXEL_PAIRS:
        ctx.skipped.append(f"wrong_shape_subblock pixel search ({hy}x{wy} against {ha}x{wa})")
        return None
    yv = y.transpose(1, 2, 0, 3).reshape(hy * wy, n * ch)
    av = ref.value.transpose(1, 2, 0, 3).reshape(ha * wa, n * ch)
    am = ref.magnitude.transpose(1, 2, 0, 3).reshape(ha * wa, n * ch)
    scale = tolerance.unit_roundoff(ctx.case) * am + tolerance.underflow_floor(ctx.case)
    match = np.zeros((hy * wy, ha * wa), dtype=bool)
    step = max(1, MAX_PIXEL_PAIRS // max(ha * wa * n * ch, 1) // 4)
    with np.errstate(invalid="ignore", over="ignore"):
        for start in range(0, hy * wy, step):
            diff = np.abs(yv[start:start + step, None, :] - av[None, :, :])
            same = (diff <= ctx.threshold * scale[None]) | (yv[start:start + step, None, :] == av[None, :, :])
            match[start:start + step] = same.all(axis=2)
    match = match.reshape(hy, wy, ha, wa)
    rows, cols = [], []
    for i in range(hy):
        cand = match[i].any(axis=2).all(axis=0)  # rows of A matching every pixel of row i somewhere
        if not cand.any():
            return None
        rows.append(int(np.argmax(cand)))
    for j in range(wy):
        cand = match[:, j].any(axis=1).all(axis=0)
        if not cand.any():
            return None
        cols.append(int(np.argmax(cand)))
    sub = Reference(*(None if a is None else a[:, rows][:, :, cols] for a in ref._replace(alternative=None)))
    return (rows, cols) if ctx.matches(sub) else None


def _search_alternatives(ctx: _Context, name: str):
    """(label, geometry, shape, rows, cols) of the first candidate output that, with some row
    and column selection, equals the backend's output; None when none does."""
    c, y = ctx.case, ctx.y
    if y.ndim != 4 or y.shape[0] != c.batch or y.shape[3] != c.output_channels:
        return None
    for label, s, d, p in _candidate_geometries(c):
        shape = ctx.shape_for(s, d, p)
        if shape is None or shape[1] < y.shape[1] or shape[2] < y.shape[2] or not ctx.affordable(name, shape):
            continue
        ref = ctx.reference(ctx.x, ctx.w, ctx.b, strides=s, dilations=d, padding=p)
        if tuple(shape) == tuple(y.shape) and ctx.matches(ref):
            return label, (s, d, p), shape, None, None
        found = _pixel_map(ctx, ref)
        if found:
            return label, (s, d, p), shape, found[0], found[1]
    return None


def _wrong_shape_subblock(ctx: _Context):
    if ctx.same_shape:
        raise _Skip
    found = _search_alternatives(ctx, "wrong_shape_subblock")
    if found is None:
        return None
    label, (s, d, p), shape, rows, cols = found
    head = f"expected shape {tuple(ctx.case.output_shape)}, received {tuple(ctx.y.shape)}: the output "
    if rows is None:
        return head + f"equals {label} (strides {s}, dilations {d}, padding {p!r})"
    return head + (f"is a sub-block of {label} (strides {s}, dilations {d}, padding {p!r}, shape {tuple(shape)}): "
                   f"rows {_ranges(rows)}, columns {_ranges(cols)}")


def _wrong_sampling(ctx: _Context):
    """Right shape, wrong pixels: the rows/columns of some candidate output, wrongly chosen."""
    _need_same_shape(ctx)
    found = _search_alternatives(ctx, "wrong_sampling")
    if found is None:
        return None
    label, (s, d, p), shape, rows, cols = found
    if rows is None:  # a whole alternative geometry of the same shape: not a resampling
        return None
    return (f"the output has the right shape {tuple(ctx.y.shape)} but its pixels are rows {_ranges(rows)} and "
            f"columns {_ranges(cols)} of {label} (strides {s}, dilations {d}, padding {p!r}, shape "
            f"{tuple(shape)})")


def _subset(axis_name: str, axis: int, noun: str):
    def test(ctx: _Context):
        _need_same_shape(ctx)
        other = tuple(a for a in range(4) if a != axis)
        wrong = ctx.bad.any(axis=other)
        if wrong.size < 2 or wrong.all():
            raise _Skip
        idx = np.nonzero(wrong)[0].tolist()
        return (f"only {len(idx)} of {wrong.size} {noun} are wrong: {_ranges(idx)}; the others are within "
                f"tolerance")
    return test


#: The hypotheses in the order they are tried (cheapest and most specific first).
HYPOTHESES: tuple[tuple[str, Callable[[_Context], str | None]], ...] = (
    # Flushing subnormals turns subnormal * Inf into 0 * Inf = NaN: the tested hypothesis
    # that explains the whole output goes before the fact about where the errors are.
    ("subnormal_flush", _subnormal_flush),
    ("output_layout_nchw", _output_layout_nchw),
    ("nonfinite_leak", _nonfinite_leak),
    ("nan_not_propagated", _nan_not_propagated),
    ("depthwise_channel_order", _depthwise_channel_order),
    # A flushed subnormal bias looks like an ignored bias when every bias value is subnormal:
    # the cause is tested first.
    ("subnormal_bias_flushed", _constants_flushed("bias")),
    ("subnormal_filters_flushed", _constants_flushed("filters")),
    ("bias_ignored", _bias_ignored),
    ("flipped_kernel", _flipped((0, 1), "in both spatial axes")),
    ("flipped_kernel_h", _flipped((0,), "along H only")),
    ("flipped_kernel_w", _flipped((1,), "along W only")),
    ("same_split_swapped", _same_split_swapped),
    ("explicit_padding_symmetric", _explicit_padding_symmetric),
    ("strides_swapped", _swapped("strides")),
    ("stride_ignored_h", _ignored("strides", 0)),
    ("stride_ignored_w", _ignored("strides", 1)),
    ("dilations_swapped", _swapped("dilations")),
    ("dilation_ignored_h", _ignored("dilations", 0)),
    ("dilation_ignored_w", _ignored("dilations", 1)),
    ("dilation_ignored", _ignored_both("dilations")),
    ("padding_ignored", _padding_ignored),
    ("reduced_precision_tf32", _reduced_precision("reduced_precision_tf32", 11, "TF32 (11 significand bits)",
                                                  lambda a: round_mantissa(a, 11))),
    ("reduced_precision_float16", _reduced_precision("reduced_precision_float16", 11,
                                                     "float16 (11 significand bits, float16 range)",
                                                     lambda a: round_to(a, "float16"))),
    ("reduced_precision_bfloat16", _reduced_precision("reduced_precision_bfloat16", 8,
                                                      "bfloat16 (8 significand bits)",
                                                      lambda a: round_mantissa(a, 8))),
    ("float32_computation", _computed_in_float32),
    ("float16_accumulation", _float16_accumulation),
    ("wrong_shape_subblock", _wrong_shape_subblock),
    ("wrong_sampling", _wrong_sampling),
    ("border_only", _border_only),
    ("channel_subset", _subset("channel_subset", 3, "output channels")),
    ("batch_subset", _subset("batch_subset", 0, "batch items")),
)

NAMES = tuple(name for name, _ in HYPOTHESES)


def diagnose(case: Case, actual: Any, inputs, precision: str = tolerance.DEFAULT_PRECISION) -> Diagnosis:
    """The first hypothesis that explains a divergent `actual` (N, OH, OW, O), or None.

    `inputs` is (x, filters, bias) as given to the backend (canonical, case dtype);
    `precision` the contract the divergence was judged under. A diagnosis never changes
    the verdict or its kind: it only adds to the record.
    """
    x, w, b = (None if a is None else np.asarray(a, dtype=np.float64) for a in inputs)
    if not case.is_valid:
        return Diagnosis(None, f"unexplained: invalid case ({case.invalid_reason}) returned an output; "
                               f"there is no reference to diagnose against")
    y = np.asarray(actual)
    if y.dtype.kind != "f" and dtype_name(y) != "bfloat16":
        return Diagnosis(None, f"unexplained: expected a floating-point array, received dtype {y.dtype}")
    if dtype_name(y) != case.dtype:
        y = y.astype(np_dtype(case.dtype))  # judged in the case dtype, as compare does
    ctx = _Context(case, y.astype(np.float64), x, w, b, precision)
    if ctx.same_shape and not ctx.bad.any():
        return Diagnosis(None, "nothing to diagnose: the output is within tolerance")
    checked: list[str] = []
    for name, test in HYPOTHESES:
        try:
            found = test(ctx)
        except _Skip:
            continue
        checked.append(name)
        if found:
            return Diagnosis(name, found, checked, list(ctx.skipped))
    return Diagnosis(None, _unexplained(ctx), checked, list(ctx.skipped))


def _unexplained(ctx: _Context) -> str:
    c, y = ctx.case, ctx.y
    parts = ["unexplained"]
    if not ctx.same_shape:
        parts.append(f"expected shape {tuple(c.output_shape)}, received {tuple(y.shape)}, and no alternative "
                     f"geometry or sub-block of one reproduces it")
    else:
        bad = ctx.bad
        parts.append(f"{int(bad.sum())} of {bad.size} elements beyond tolerance (max normalised error "
                     f"{number(ctx.e_true.max())}, threshold {ctx.threshold:.3g})")
        chans = np.nonzero(bad.any(axis=(0, 1, 2)))[0].tolist()
        parts.append(f"output channels {_ranges(chans)} of {bad.shape[3]}")
        batches = np.nonzero(bad.any(axis=(1, 2, 3)))[0].tolist()
        parts.append(f"batch items {_ranges(batches)} of {bad.shape[0]}")
        px = bad.any(axis=(0, 3))
        rows = np.nonzero(px.any(axis=1))[0].tolist()
        cols = np.nonzero(px.any(axis=0))[0].tolist()
        parts.append(f"{int(px.sum())} of {px.size} pixels (rows {_ranges(rows)}, columns {_ranges(cols)})")
    if ctx.skipped:
        parts.append("not tested at this size (too costly): " + ", ".join(ctx.skipped))
    return "; ".join(parts)


def _ranges(idx: list[int], limit: int = 12) -> str:
    """[0, 1, 2, 5, 7, 8] -> '0-2, 5, 7-8' (at most `limit` runs)."""
    if not idx:
        return "none"
    runs, start, prev = [], idx[0], idx[0]
    for i in idx[1:] + [None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        runs.append(f"{start}" if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    more = f", ... ({len(runs) - limit} more runs)" if len(runs) > limit else ""
    return ", ".join(runs[:limit]) + more
