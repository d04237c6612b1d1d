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
- `wrong_shape_subblock` / `wrong_sampling` (`diagnose_geometry`) search, for each
  candidate geometry (the true one, strides or dilations ignored, VALID, SAME,
  SAME_LOWER), a row and column selection of that output equal to the backend's (TensorFlow's depthwise_conv2d with
  strides > 1 and dilations > 1 keeps rows/columns r % 4 < 2 of the stride-1 output).
- Pads and output sizes come from `spec.conv_geometry` only; a geometric hypothesis
  (stride ignored, SAME's odd pixel swapped, ...) first predicts the output shape and
  is only recomputed when that shape equals the backend's.
- Cost is bounded: a recomputation above `MAX_MACS` multiply-adds or `MAX_OUTPUTS`
  output elements (`diagnose_context`) is skipped; every diagnosis lists what it skipped at this size
  (`Diagnosis.skipped`, and in the explanation when nothing else explains the output).
- Hypothesis names are a stable vocabulary (`HYPOTHESES`); `None` means unexplained and
  the explanation then lists the facts found (which channels, batch items, pixels).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from . import diagnose_gradient, tolerance
from .compare import flush_explains
from .diagnose_context import DiagnosisContext, Skip, need_same_shape
from .diagnose_geometry import wrong_sampling, wrong_shape_subblock
from .dtypes import (count_subnormals, dtype_name, flush_subnormals, fmt, has_subnormal, np_dtype, round_mantissa,
                     round_to)
from .oracle import Reference
from .spec import GRADIENT_OPS, OP_INFO, Case
from .text import number, ranges

#: A reduced-precision hypothesis explains the output when the backend's error against
#: it is at most this fraction of its error against the exact result (or within tolerance).
REDUCED_PRECISION_RATIO = 1 / 16
#: float16 accumulation leaves errors of the order of float16 rounding: at least this
#: many float16 unit roundoffs of the magnitude somewhere (and at most the threshold).
F16_ACCUMULATION_FLOOR = 0.05


@dataclass
class Diagnosis:
    hypothesis: str | None  # a name from HYPOTHESES, or None: unexplained
    explanation: str
    checked: list[str] = field(default_factory=list)  # hypotheses actually tested, in order
    skipped: list[str] = field(default_factory=list)  # recomputations not tried at this size, and why

    def to_dict(self) -> dict[str, Any]:
        return {"hypothesis": self.hypothesis, "explanation": self.explanation, "checked": list(self.checked),
                "skipped": list(self.skipped)}


def _fmt_pads(p) -> str:
    (t, b), (l, r) = p
    return f"top {t}, bottom {b}, left {l}, right {r}"


# ---- the hypotheses (each returns an explanation, None when it does not match, or
#      raises Skip when it does not apply; wrong_shape_subblock and wrong_sampling are
#      in diagnose_geometry) ---------------------------------------------------------

def _nan_not_propagated(ctx: DiagnosisContext):
    need_same_shape(ctx)
    special = ~np.isfinite(ctx.ref.value)
    if not special.any():
        raise Skip
    bad = ctx.bad
    if not (bad & ~special).any():
        n = int(bad.sum())
        got = ctx.y[bad]
        finite = int(np.isfinite(got).sum())
        return (f"errors only where the exact result is NaN or Inf: {n} of {int(special.sum())} such elements "
                f"came back wrong ({finite} of them finite, e.g. {number(got[0])} where {number(ctx.ref.value[bad][0])} "
                f"was expected); every finite result is within tolerance")
    return None


def _subnormal_flush(ctx: DiagnosisContext):
    need_same_shape(ctx)
    value = ctx.ref.value
    tiny = fmt(ctx.case.dtype).smallest_normal
    if not (has_subnormal(ctx.operands, ctx.case.dtype) or ((np.abs(value) < tiny) & (value != 0)).any()):
        raise Skip
    if flush_explains(ctx.case, ctx.y, ctx.operands, ctx.precision):
        return (f"output equals the oracle with subnormal inputs and results flushed to zero "
                f"(FTZ/DAZ: values below {tiny:.3g} in {ctx.case.dtype} treated as 0)")
    return None


def _constants_flushed(which: str):
    """Hypothesis: subnormal constants flushed to zero while subnormal activations (x) are
    kept. `which` is "bias" (only the bias) or "filters" (the filters and the bias): what a
    runtime that folds weights into a compiled model and fuses the bias may do (OpenVINO).
    Inference ops only (forward, separable): a gradient op has no constants."""
    def test(ctx: DiagnosisContext):
        need_same_shape(ctx)
        c = ctx.case
        if c.op in GRADIENT_OPS:
            raise Skip
        n_w, n_b = count_subnormals(ctx.w, c.dtype), count_subnormals(ctx.b, c.dtype)
        if (which == "bias" and n_b == 0) or (which == "filters" and n_w == 0):
            raise Skip
        w = flush_subnormals(ctx.w, c.dtype) if which == "filters" else ctx.w
        b = None if ctx.b is None else flush_subnormals(ctx.b, c.dtype)
        if not ctx.affordable(f"subnormal_{which}_flushed", ctx.y.shape):
            return None
        if not ctx.matches(ctx.reference(*ctx.operands_with(filters=w, bias=b))):
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


def _depthwise_channel_order(ctx: DiagnosisContext):
    need_same_shape(ctx)
    c = ctx.case
    if c.op != "depthwise_conv2d" or c.in_channels < 2 or c.channel_multiplier < 2:
        raise Skip
    C, M = c.in_channels, c.channel_multiplier

    def reorder(a):  # channel k*M + q of the truth placed at q*C + k
        return a.reshape(a.shape[:3] + (C, M)).swapaxes(3, 4).reshape(a.shape)

    r = ctx.ref
    if ctx.matches(Reference(*(None if a is None else reorder(a) for a in r))):
        return (f"output channels are ordered q*C + k (multiplier-major) instead of k*M + q "
                f"(C={C} input channels, M={M} multiplier): the values are right, the channel order is "
                f"transposed")
    return None


def _bias_ignored(ctx: DiagnosisContext):
    need_same_shape(ctx)
    if not ctx.case.bias or ctx.b is None or not np.any(ctx.b != 0):
        raise Skip
    if ctx.matches(ctx.reference(*ctx.operands_with(bias=None))):
        return "output equals the oracle without the bias: the bias was not added"
    return None


def _flipped(axes: tuple[int, ...], words: str):
    """Forward ops and separable (its depthwise filter); a grad-input's unflipped filter is
    `diagnose_gradient.filter_not_flipped`."""
    def test(ctx: DiagnosisContext):
        need_same_shape(ctx)
        if ctx.case.op in GRADIENT_OPS or any(ctx.case.kernel[a] < 2 for a in axes):
            raise Skip
        if not ctx.affordable("flipped_kernel", ctx.y.shape):
            return None
        w = np.flip(ctx.w, axis=axes)
        if ctx.matches(ctx.reference(*ctx.operands_with(filters=w))):
            return (f"output equals the oracle with the kernel flipped {words}: a true convolution "
                    f"instead of the cross-correlation every framework defines")
        return None
    return test


def _same_split_swapped(ctx: DiagnosisContext):
    c = ctx.case
    if c.padding != "SAME":
        raise Skip
    (t, b), (l, r) = c.geometry.pads
    if t == b and l == r:
        raise Skip
    swapped = ((b, t), (r, l))
    if ctx.geometry_matches("same_split_swapped", padding=swapped):
        return (f"output equals the oracle with SAME's odd padding pixel on the top/left "
                f"({_fmt_pads(swapped)}) instead of the bottom/right ({_fmt_pads(((t, b), (l, r)))}), "
                f"like ONNX SAME_LOWER")
    return None


def _explicit_padding_symmetric(ctx: DiagnosisContext):
    c = ctx.case
    if isinstance(c.padding, str):
        raise Skip
    (t, b), (l, r) = c.padding
    if t == b and l == r:
        raise Skip
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
    def test(ctx: DiagnosisContext):
        h, w = getattr(ctx.case, field)
        if h == w:
            raise Skip
        if ctx.geometry_matches(f"{field}_swapped", **{field: (w, h)}):
            return f"output equals the oracle with {field} ({w}, {h}) instead of ({h}, {w}): H and W swapped"
        return None
    return test


def _ignored(field: str, axis: int):
    """Hypothesis: `field` ("strides" or "dilations") was taken as 1 along one axis."""
    noun = field[:-1]  # stride, dilation
    def test(ctx: DiagnosisContext):
        values = list(getattr(ctx.case, field))
        # A dilation along an axis with a one-tap kernel changes nothing: nothing to test.
        if values[axis] == 1 or (field == "dilations" and ctx.case.kernel[axis] == 1):
            raise Skip
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
    def test(ctx: DiagnosisContext):
        values = tuple(getattr(ctx.case, field))
        effective = [v > 1 and (field != "dilations" or ctx.case.kernel[a] > 1) for a, v in enumerate(values)]
        if not all(effective):  # along one axis only: the one-axis hypotheses say it
            raise Skip
        if ctx.geometry_matches(f"{noun}_ignored", **{field: (1, 1)}):
            return (f"output equals the oracle with {field} (1, 1) instead of {values}: the {noun} was ignored "
                    f"along both axes")
        return None
    return test


def _padding_ignored(ctx: DiagnosisContext):
    pads = ctx.case.geometry.pads
    if not any(sum(p) for p in pads):
        raise Skip
    if ctx.geometry_matches("padding_ignored", padding="VALID"):
        return (f"output equals the oracle with no padding (VALID) instead of {ctx.case.padding!r} "
                f"({_fmt_pads(pads)}): the padding was ignored")
    return None


def _reduced_precision(name: str, bits: int, label: str, rounder: Callable[[np.ndarray], np.ndarray]):
    def test(ctx: DiagnosisContext):
        need_same_shape(ctx)
        if fmt(ctx.case.dtype).precision <= bits:
            raise Skip
        if name == "reduced_precision_float16":
            # In the float16 range this is the TF32 hypothesis again (11 bits both): only
            # worth testing where float16's range changes the inputs.
            same = all(np.array_equal(round_mantissa(a, 11), rounder(a), equal_nan=True)
                       for a in ctx.operands if a is not None)
            if same:
                raise Skip
        if not ctx.affordable(name, ctx.y.shape):
            return None
        hyp = ctx.reference(*(None if a is None else rounder(a) for a in ctx.operands))
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
            given = [a for a in ctx.operands if a is not None]
            if all(np.array_equal(round_to(a, "float16"), round_mantissa(a, 11), equal_nan=True) for a in given):
                note = " (float16 inputs give the same values here)"
        return (f"output matches the oracle on inputs rounded to {label}{note}: max normalised error "
                f"{float(e_hyp.max()):.3g} against that, {number(ctx.e_true.max())} against the exact result "
                f"(threshold {ctx.threshold:.3g})")
    return test


def _roundoff_consistent(ctx: DiagnosisContext, precision: str) -> float | None:
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


def _float16_accumulation(ctx: DiagnosisContext):
    need_same_shape(ctx)
    c = ctx.case
    if fmt(c.dtype).precision <= 11 or tolerance.is_exact(c):
        raise Skip
    worst = _roundoff_consistent(ctx, "float16")
    if worst is None:
        return None
    return (f"errors are consistent with accumulation in float16 (unit roundoff 2**-11): max error "
            f"{worst:.3g} float16 roundoffs of the magnitude, within the sqrt(K) threshold {ctx.threshold:.3g} "
            f"for K={tolerance.k_eff(c)}; {number(ctx.e_true.max())} in {c.dtype} roundoffs")


def _computed_in_float32(ctx: DiagnosisContext):
    need_same_shape(ctx)
    c = ctx.case
    if c.dtype != "float64" or tolerance.is_exact(c):
        raise Skip
    worst = _roundoff_consistent(ctx, "float32")
    if worst is None:
        return None
    return (f"errors are consistent with computing this float64 case in float32 (unit roundoff 2**-24): "
            f"max error {worst:.3g} float32 roundoffs of the magnitude, within the threshold "
            f"{ctx.threshold:.3g}; {number(ctx.e_true.max())} in float64 roundoffs")


def _nonfinite_leak(ctx: DiagnosisContext):
    need_same_shape(ctx)
    finite_ref = np.isfinite(ctx.ref.value)
    leaked = ctx.bad & finite_ref & ~np.isfinite(ctx.y)
    if not leaked.any():
        raise Skip
    # Every other wrong element must be a special-value one too: this is about where NaN/Inf go.
    if (ctx.bad & finite_ref & np.isfinite(ctx.y)).any():
        return None
    chans = np.nonzero(leaked.any(axis=(0, 1, 2)))[0].tolist()
    first = tuple(int(i) for i in np.argwhere(leaked)[0])
    return (f"NaN/Inf where the exact result is finite: {int(leaked.sum())} elements (output channels "
            f"{ranges(chans)}; e.g. {number(ctx.y[first])} at {first} where {number(ctx.ref.value[first])} was "
            f"expected), whose terms hold no NaN or Inf: a NaN or Inf reached outputs that do not depend on it, "
            f"through products the formula does not form (0 * Inf across groups, channels or batch items, e.g. a "
            f"dense block-diagonal weight for grouped/depthwise convolution, or zeros inserted into the kernel "
            f"for dilation)")


def _output_layout_nchw(ctx: DiagnosisContext):
    c, y = ctx.case, ctx.y
    n, oh, ow, o = c.output_shape
    if OP_INFO[c.op].result == "filter":  # a filter gradient has no NCHW
        raise Skip
    if y.size != n * oh * ow * o or (oh == 1 and ow == 1) or o == 1:
        raise Skip
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


def _border_only(ctx: DiagnosisContext):
    need_same_shape(ctx)
    if ctx.case.op in GRADIENT_OPS:  # its borders are the forward output's, not the result's
        raise Skip
    if not any(sum(p) for p in ctx.case.geometry.pads):
        raise Skip
    (top, bottom), (left, right) = _border_masks(ctx.case)
    border = top[:, None] | bottom[:, None] | left[None, :] | right[None, :]
    if border.all():
        raise Skip  # every output pixel touches the padding: nothing to tell apart
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
            f"{ranges(sorted(set(rows.tolist())))}, columns {ranges(sorted(set(cols.tolist())))}); interior pixels are within tolerance")


def _subset(axis_name: str, axis: int, noun: str):
    def test(ctx: DiagnosisContext):
        need_same_shape(ctx)
        if OP_INFO[ctx.case.op].result == "filter" and axis == 0:  # a filter gradient's axis 0 is kh
            raise Skip
        other = tuple(a for a in range(4) if a != axis)
        wrong = ctx.bad.any(axis=other)
        if wrong.size < 2 or wrong.all():
            raise Skip
        idx = np.nonzero(wrong)[0].tolist()
        return (f"only {len(idx)} of {wrong.size} {noun} are wrong: {ranges(idx)}; the others are within "
                f"tolerance")
    return test


#: The hypotheses in the order they are tried (cheapest and most specific first). A
#: hypothesis that does not apply to a case's op raises Skip: `diagnose_gradient`'s test
#: the gradient ops only, before the geometric ones they share with the forward ops (whose
#: wording they make specific: an uncropped grad-input is `padding_ignored` too).
HYPOTHESES: tuple[tuple[str, Callable[[DiagnosisContext], str | None]], ...] = (
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
    ("filter_not_flipped", diagnose_gradient.filter_not_flipped),
    ("strides_dilations_swapped", diagnose_gradient.strides_dilations_swapped),
    ("padding_not_cropped", diagnose_gradient.padding_not_cropped),
    ("padding_other_end", diagnose_gradient.padding_other_end),
    ("output_padding_wrong_side", diagnose_gradient.output_padding_wrong_side),
    ("groups_mixed", diagnose_gradient.groups_mixed),
    ("grad_filter_batch_missing", diagnose_gradient.batch_item_missing),
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
    ("wrong_shape_subblock", wrong_shape_subblock),
    ("wrong_sampling", wrong_sampling),
    ("border_only", _border_only),
    ("channel_subset", _subset("channel_subset", 3, "output channels")),
    ("batch_subset", _subset("batch_subset", 0, "batch items")),
)

NAMES = tuple(name for name, _ in HYPOTHESES)


def diagnose(case: Case, actual: Any, inputs, precision: str = tolerance.DEFAULT_PRECISION) -> Diagnosis:
    """The first hypothesis that explains a divergent `actual` (the op's result), or None.

    `inputs` are the operands as given to the backend (`case.operands`: (x, filters, bias)
    for the forward ops; canonical, case dtype);
    `precision` the contract the divergence was judged under. A diagnosis never changes
    the verdict or its kind: it only adds to the record.
    """
    operands = tuple(None if a is None else np.asarray(a, dtype=np.float64) for a in inputs)
    if not case.is_valid:
        return Diagnosis(None, f"unexplained: invalid case ({case.invalid_reason}) returned an output; "
                               f"there is no reference to diagnose against")
    y = np.asarray(actual)
    if y.dtype.kind != "f" and dtype_name(y) != "bfloat16":
        return Diagnosis(None, f"unexplained: expected a floating-point array, received dtype {y.dtype}")
    if dtype_name(y) != case.dtype:
        y = y.astype(np_dtype(case.dtype))  # judged in the case dtype, as compare does
    ctx = DiagnosisContext(case, y.astype(np.float64), operands, precision)
    if ctx.same_shape and not ctx.bad.any():
        return Diagnosis(None, "nothing to diagnose: the output is within tolerance")
    checked: list[str] = []
    for name, test in HYPOTHESES:
        try:
            found = test(ctx)
        except Skip:
            continue
        checked.append(name)
        if found:
            return Diagnosis(name, found, checked, list(ctx.skipped))
    return Diagnosis(None, _unexplained(ctx), checked, list(ctx.skipped))


def _unexplained(ctx: DiagnosisContext) -> str:
    c, y = ctx.case, ctx.y
    parts = ["unexplained"]
    if not ctx.same_shape:
        parts.append(f"expected shape {tuple(c.output_shape)}, received {tuple(y.shape)}, and no alternative "
                     f"geometry or sub-block of one reproduces it")
    else:
        bad = ctx.bad
        parts.append(f"{int(bad.sum())} of {bad.size} elements beyond tolerance (max normalised error "
                     f"{number(ctx.e_true.max())}, threshold {ctx.threshold:.3g})")
        filters = OP_INFO[c.op].result == "filter"  # (kh, kw, C/groups or C, O or M)
        chans = np.nonzero(bad.any(axis=(0, 1, 2)))[0].tolist()
        parts.append(f"{'filter output channels' if filters else 'output channels'} {ranges(chans)} of {bad.shape[3]}")
        firsts = np.nonzero(bad.any(axis=(1, 2, 3) if not filters else (0, 1, 3)))[0].tolist()
        parts.append(f"input channels {ranges(firsts)} of {bad.shape[2]}" if filters else
                     f"batch items {ranges(firsts)} of {bad.shape[0]}")
        px = bad.any(axis=(0, 3)) if not filters else bad.any(axis=(2, 3))
        rows = np.nonzero(px.any(axis=1))[0].tolist()
        cols = np.nonzero(px.any(axis=0))[0].tolist()
        noun = "taps" if filters else "pixels"
        parts.append(f"{int(px.sum())} of {px.size} {noun} (rows {ranges(rows)}, columns {ranges(cols)})")
    if ctx.skipped:
        parts.append("not tested at this size (too costly): " + ", ".join(ctx.skipped))
    return "; ".join(parts)
