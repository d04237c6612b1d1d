"""The sizes kernels branch on: a coverage model of a case selection, as data.

Kernels choose code paths by size. Vector loops of 4, 8 or 16 lanes leave a *tail* when a
dimension is not a multiple of the width; channel blocks of 16-64 and split-K slices of
128-512 do the same at a larger scale; index arithmetic changes at powers of two (16-bit
row counters, 22-bit offsets, float32 indices that are exact only below 2^24); and a
dimension of size one takes special paths (broadcasts, GEMV, skipped loops) that may
forget the stride, dilation or padding on its axis. A selection that never reaches a
class cannot see a bug that lives there. docs/coverage.md states the model and why.

`CLASSES` is the model: `SizeClass`es, each a target (a predicate over a Case) with the op
and the dtype it must be covered in. Families:
- `residue`: a dimension (`DIMENSIONS`: channels per group, channel multiplier, output
  width and height, K, batch) congruent to r modulo m, for m in 4, 8, 16, 32, 64 (conv2d's
  K also 128, 256, 512) and r in `residues(m)`, in each magnitude band (`Span`);
- `near`: just below or just above a power of two (`NEAR`): 2^8..2^12 channels, K around
  2^8..2^14 (conv2d) or 2^8..2^10 (depthwise), 2^16, 2^22 and 2^24 output elements, 2^16
  pixels per output image; K's classes are also required in float16 and bfloat16, where a
  kernel changes its accumulation with K;
- `size-one`: an axis whose input, output or kernel is 1, crossed with exactly which of
  stride > 1, dilation > 1 and padding > 0 it has (`Axis`); the combination of all three,
  with the same pad on both sides, is also required in float16 and bfloat16.
`SIZE_CLASSES` are issue 12's plain thresholds (channels >= 256, outputs >= 1e6, ...),
counted over every op and dtype.

Invariants
- Data only: every class is a frozen `SizeClass` built in a fixed order, its `label`
  unique; a class counts the *valid* cases of its op and its dtype that its target holds
  for (`counts`). Nothing here builds cases: cases/witnesses.py derives a witness of every
  class from these targets, and a test checks that every class is feasible and covered.
- Bands: `small` is 1 <= v < the dimension's largest modulus (64; conv2d's K: 512): there the
  whole dimension is one partial block, and a kernel runs only its tail or small-size
  path; `large` is v >= that modulus: full blocks and a tail run in the same call.
  Residue classes no value of a band can have (0 mod 64 below 64) are not in the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from conformance.spec import DTYPES, FORWARD_OPS, OPS, Case

# ---- dimensions ------------------------------------------------------------------------


def _cin_per_group(c: Case) -> int:
    return c.in_channels // c.groups if c.forward_op == "conv2d" else 1


def _outputs(c: Case) -> int:
    return math.prod(c.output_shape)


def facts(case: Case) -> dict:
    """What the classes look at, computed once per case: the dimensions by name, and per
    axis (input, kernel, stride, dilation, (leading, trailing) pads, output)."""
    n, oh, ow, o = case.conv_output_shape  # the convolution's output (= the result of a forward op)
    pads = case.geometry.pads
    conv = case.forward_op == "conv2d"
    return {
        "input channels per group": _cin_per_group(case),
        "output channels per group": case.out_channels // case.groups if conv else case.channel_multiplier,
        "input channels": case.in_channels,
        "channel multiplier": 1 if conv else case.channel_multiplier,
        "output width": ow, "output height": oh, "K": case.reduction_size, "batch": n,
        "output elements": n * oh * ow * o, "output pixels per image": oh * ow,
        "axes": tuple(((case.height, case.width)[a], case.kernel[a], case.strides[a], case.dilations[a],
                       tuple(pads[a]), (oh, ow)[a]) for a in (0, 1)),
    }


#: SIMD widths and channel blocks (lanes of 4 to 64); K is also split in slices of 128-512.
MODULI = (4, 8, 16, 32, 64)
K_MODULI = MODULI + (128, 256, 512)

#: The residue dimensions of each op and their moduli. For depthwise, `input channels` is
#: the vectorised dimension (each group has one input channel), `channel multiplier` its
#: output channels per group, and K the kernel's taps (9 to 961 in real networks), which
#: kernels unroll or vectorise but never split in slices.
DIMENSIONS: dict[str, tuple[tuple[str, tuple[int, ...]], ...]] = {
    "conv2d": (("input channels per group", MODULI), ("output channels per group", MODULI), ("K", K_MODULI),
               ("output width", MODULI), ("output height", MODULI), ("batch", MODULI)),
    "depthwise_conv2d": (("input channels", MODULI), ("channel multiplier", MODULI), ("K", MODULI),
                         ("output width", MODULI), ("output height", MODULI), ("batch", MODULI)),
}

#: The dtype every class is required in; some are also required in the 16-bit types.
BASE_DTYPE = "float32"
HALF_DTYPES = ("float16", "bfloat16")


def residues(m: int) -> tuple[int, ...]:
    """The residues mod m the model asks for: every one for 4 and 8 lanes (each tail
    length of a 128/256-bit float32 vector); for wider blocks, no tail (0), the shortest
    (1), exactly a half block (m/2: the half-width path alone) and the longest (m-1,
    which runs every sub-path of a tail handled in halves: m/2, m/4, ..., 1)."""
    return tuple(range(m)) if m <= 8 else (0, 1, m // 2, m - 1)


# ---- targets ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    """lo <= dimension < hi and dimension = residue (mod modulus)."""

    dimension: str
    lo: int
    hi: int
    modulus: int = 1
    residue: int = 0
    downward: bool = False  # values() from the top: "just below 2^p" is 2^p - 1 first

    def holds(self, f: dict) -> bool:
        """On a case's `facts`."""
        v = f[self.dimension]
        return self.lo <= v < self.hi and v % self.modulus == self.residue

    def values(self) -> range:
        """The values it allows, nearest its threshold first: smallest first, or largest
        first when `downward` (a lazy range: the span may be wide)."""
        first = self.lo + (self.residue - self.lo) % self.modulus
        up = range(first, self.hi, self.modulus)
        return up[::-1] if self.downward else up


AXES = ("height", "width")
KINDS = ("input 1", "output 1", "kernel 1")
FEATURES = ("stride", "dilation", "padding")


@dataclass(frozen=True)
class Axis:
    """On one axis: a size-one `kind`, and exactly the `features` (> 1 / > 0) of FEATURES;
    with `symmetric`, a padding that is the same on both sides.

    `input 1`: the input is 1 there; `output 1`: the output is 1 from a larger input;
    `kernel 1`: a 1-tap kernel with input and output larger than 1. Symmetric pads are
    what frameworks hand on to their kernels as they are (torch pads asymmetric ones
    itself first, then calls the kernel unpadded). With `beside_wide`, the other axis's
    input and output are larger than 1: a one-pixel column of a taller image, not a
    one-pixel image (torch 2.13's channels_last bfloat16 kernel crashes on the first
    and not on the second).
    """

    axis: int  # 0: height, 1: width
    kind: str
    features: frozenset
    symmetric: bool = False
    beside_wide: bool = False

    def holds(self, f: dict) -> bool:
        """On a case's `facts`."""
        n, _, _, _, _, out = f["axes"][1 - self.axis]
        return self.holds_axis(*f["axes"][self.axis]) and (not self.beside_wide or (n > 1 and out > 1))

    def holds_axis(self, n: int, k: int, s: int, d: int, pads: tuple[int, int], out: int) -> bool:
        """On one axis: input, kernel, stride, dilation, (leading, trailing) pads, output."""
        kind = {"input 1": n == 1, "output 1": n > 1 and out == 1, "kernel 1": k == 1 and n > 1 and out > 1}
        have = {"stride": s > 1, "dilation": d > 1, "padding": sum(pads) > 0}
        return (out > 0 and kind[self.kind] and all(have[x] == (x in self.features) for x in FEATURES)
                and (not self.symmetric or pads[0] == pads[1]))


@dataclass(frozen=True)
class SizeClass:
    """One class of the model: `group` and `key` name it (`label`), `target` decides it."""

    family: str  # "residue", "near" or "size-one"
    op: str
    dtype: str
    group: str  # what is printed once for a row of classes: "input channels per group < 64"
    key: str  # the class within its group: "3 mod 4"
    target: Span | Axis

    @property
    def label(self) -> str:
        return f"{self.op} {self.group}: {self.key} [{self.dtype}]"

    def holds(self, case: Case, f: dict | None = None) -> bool:
        """Whether the class holds for `case` (whose `facts` may be given, to save computing them)."""
        if case.op != self.op or case.dtype != self.dtype or not case.is_valid:
            return False
        return self.target.holds(f if f is not None else facts(case))


# ---- the model ---------------------------------------------------------------------------

#: Powers of two, per op and dimension, whose near neighbours are classes.
NEAR: dict[str, tuple[tuple[str, tuple[int, ...], tuple[str, ...]], ...]] = {
    "conv2d": (("input channels per group", (8, 9, 10, 11, 12), (BASE_DTYPE,)),
               ("output channels per group", (8, 9, 10, 11, 12), (BASE_DTYPE,)),
               ("K", (8, 9, 10, 11, 12, 13, 14), (BASE_DTYPE,) + HALF_DTYPES),
               ("output elements", (16, 22, 24), (BASE_DTYPE,)),
               ("output pixels per image", (16,), (BASE_DTYPE,))),
    "depthwise_conv2d": (("input channels", (8, 9, 10, 11, 12), (BASE_DTYPE,)),
                         ("K", (8, 9, 10), (BASE_DTYPE,) + HALF_DTYPES),
                         ("output elements", (16, 22, 24), (BASE_DTYPE,)),
                         ("output pixels per image", (16,), (BASE_DTYPE,))),
}


def near_spans(dimension: str, p: int) -> tuple[tuple[str, Span], tuple[str, Span]]:
    """("just below 2^p", odd v with 2^p - 2^(p-3) <= v < 2^p), ("just above 2^p", odd v
    with 2^p + 2^(p-8) <= v <= 2^p + 2^(p-3)).

    Odd: a value near a threshold also leaves a tail in every lane width and block (a
    split-K path taken above 2^12 meets its partial slice). Above by at least 2^(p-8) (257
    channels; 2^24 + 65,536 elements): enough indices past the power that one wrapping or
    rounding there (a float32 index is exact up to 2^24 + 1 only) reaches many elements."""
    n, w = 1 << p, 1 << (p - 3)
    return ((f"just below 2^{p}", Span(dimension, n - w, n, 2, 1, downward=True)),
            (f"just above 2^{p}", Span(dimension, n + (1 << max(p - 8, 0)), n + w + 1, 2, 1)))


def _residue_classes(op: str) -> list[SizeClass]:
    out = []
    for dimension, moduli in DIMENSIONS[op]:
        limit = max(moduli)  # the band boundary (module docstring)
        for lo, hi, name in ((1, limit, f"< {limit}"), (limit, 1 << 62, f">= {limit}")):
            for m in moduli:
                for r in residues(m):
                    span = Span(dimension, lo, hi, m, r)
                    if next(iter(span.values()), None) is None:
                        continue  # no value of the band has this residue
                    out.append(SizeClass("residue", op, BASE_DTYPE, f"{dimension} {name}", f"{r} mod {m}", span))
    return out


def _near_classes(op: str) -> list[SizeClass]:
    out = []
    for dimension, powers, dtypes in NEAR[op]:
        for dtype in dtypes:
            for p in powers:
                for key, span in near_spans(dimension, p):
                    out.append(SizeClass("near", op, dtype, f"{dimension} near a power of two", key, span))
    return out


def _feature_sets() -> list[frozenset]:
    """Every subset of FEATURES, the empty one first, the full one last."""
    return sorted((frozenset(f for i, f in enumerate(FEATURES) if bits >> i & 1) for bits in range(8)),
                  key=lambda s: (len(s), [FEATURES.index(f) for f in sorted(s, key=FEATURES.index)]))


def _feature_key(features: frozenset) -> str:
    return "+".join(f for f in FEATURES if f in features) or "none"


def _size_one_classes(op: str) -> list[SizeClass]:
    out = []
    every = frozenset(FEATURES)
    for a, axis in enumerate(AXES):
        for kind in KINDS:
            for features in _feature_sets():
                out.append(SizeClass("size-one", op, BASE_DTYPE, f"{axis}: {kind}", _feature_key(features),
                                     Axis(a, kind, features)))
    # The 16-bit types: all three with symmetric pads beside a wider axis, the combination
    # that crashes torch 2.13's channels_last bfloat16 kernel (an input width of 1 under a
    # taller image, stride 2, dilation 2, pad 1 on the width; 1x1 images are computed).
    for dtype in HALF_DTYPES:
        for a, axis in enumerate(AXES):
            for kind in KINDS:
                out.append(SizeClass("size-one", op, dtype, f"{axis}: {kind}",
                                     _feature_key(every) + " (symmetric, beside a wider axis)",
                                     Axis(a, kind, every, symmetric=True, beside_wide=True)))
    return out


def _model() -> tuple[SizeClass, ...]:
    classes = []
    for op in FORWARD_OPS:
        classes += _residue_classes(op) + _near_classes(op) + _size_one_classes(op)
    labels = [c.label for c in classes]
    assert len(set(labels)) == len(labels), "size class labels must be unique"
    return tuple(classes)


CLASSES: tuple[SizeClass, ...] = _model()


def counts(cases, classes=CLASSES) -> dict[SizeClass, int]:
    """{class: number of cases it holds for}, in model order."""
    by: dict[tuple[str, str], list[dict]] = {}
    for c in cases:
        if c.is_valid:
            by.setdefault((c.op, c.dtype), []).append(facts(c))
    return {k: sum(k.target.holds(f) for f in by.get((k.op, k.dtype), ())) for k in classes}


def uncovered(cases, classes=CLASSES) -> list[SizeClass]:
    """The classes no case of `cases` falls in, in model order."""
    return [k for k, n in counts(cases, classes).items() if n == 0]


# ---- issue 12's plain thresholds --------------------------------------------------------

#: (label, predicate): thresholds on one dimension, over every op and dtype.
SIZE_CLASSES: tuple[tuple[str, Callable[[Case], bool]], ...] = (
    ("input channels per group >= 256", lambda c: _cin_per_group(c) >= 256),
    ("input channels per group >= 512", lambda c: _cin_per_group(c) >= 512),
    ("input channels per group >= 1024", lambda c: _cin_per_group(c) >= 1024),
    ("input channels per group >= 2048", lambda c: _cin_per_group(c) >= 2048),
    ("output width >= 128", lambda c: c.conv_output_shape[2] >= 128),
    ("output width >= 224", lambda c: c.conv_output_shape[2] >= 224),
    ("reduction K >= 4096", lambda c: c.reduction_size >= 4096),
    ("reduction K >= 16384", lambda c: c.reduction_size >= 16384),
    ("outputs >= 1e6 elements", lambda c: _outputs(c) >= 10**6),
    ("outputs >= 1e7 elements", lambda c: _outputs(c) >= 10**7),
    ("multiply-adds >= 1e9", lambda c: _outputs(c) * c.reduction_size >= 10**9),
    ("depthwise channels >= 512", lambda c: c.forward_op == "depthwise_conv2d" and c.in_channels >= 512),
    ("dilation >= 6", lambda c: max(c.dilations) >= 6),
    ("batch >= 8", lambda c: c.batch >= 8),
)


def size_classes(cases) -> dict[str, dict[str, int]]:
    """{class label: {"cases": n, <dtype>: n, ...}} over the valid cases, in SIZE_CLASSES order."""
    valid = [c for c in cases if c.is_valid]
    out: dict[str, dict[str, int]] = {}
    for label, pred in SIZE_CLASSES:
        hit = [c for c in valid if pred(c)]
        out[label] = {"cases": len(hit), **{d: sum(c.dtype == d for c in hit) for d in DTYPES}}
    return out


def largest(cases) -> dict[str, int]:
    """The largest value of each dimension over the valid cases (empty when there are none)."""
    valid = [c for c in cases if c.is_valid]
    if not valid:
        return {}
    return {
        "input channels per group": max(_cin_per_group(c) for c in valid),
        "output width": max(c.conv_output_shape[2] for c in valid),
        "output pixels per image": max(c.conv_output_shape[1] * c.conv_output_shape[2] for c in valid),
        "reduction K": max(c.reduction_size for c in valid),
        "outputs": max(_outputs(c) for c in valid),
        "multiply-adds": max(_outputs(c) * c.reduction_size for c in valid),
    }


# ---- for people ----------------------------------------------------------------------------


#: The title each family's rows are printed under.
FAMILY_TITLES = {"residue": "residues (value mod m: count)", "near": "near powers of two (odd values)",
                 "size-one": "size-one axes, by which of stride, dilation, padding they have"}


def describe_model(cases) -> str:
    """The model's classes with their counts: per op and family, one row per (dtype,
    group[, modulus]); an uncovered class shows as `key:0!` and its row ends `<- uncovered`."""
    n = counts(cases)
    rows: dict[tuple, list[SizeClass]] = {}
    for k in CLASSES:
        modulus = k.target.modulus if k.family == "residue" else None
        rows.setdefault((k.op, k.family, k.dtype, k.group, modulus), []).append(k)
    lines = []
    heading = (None, None)
    for (op, family, dtype, group, modulus), members in rows.items():
        if heading != (op, family):
            lines.append(f"  {op} {FAMILY_TITLES[family]}:")
            heading = (op, family)
        keys = " ".join(f"{k.key.split(' ')[0] if family == 'residue' else k.key}:{n[k]}{'' if n[k] else '!'}"
                        for k in members)
        head = (f"{dtype} " if dtype != BASE_DTYPE else "") + group + (f" mod {modulus}" if modulus else "")
        lines.append(f"    {head}: {keys}" + ("  <- uncovered" if any(n[k] == 0 for k in members) else ""))
    missing = [k for k in CLASSES if n[k] == 0]
    lines.append(f"  {len(CLASSES) - len(missing)} of {len(CLASSES)} size classes covered"
                 + (f"; uncovered: {', '.join(k.label for k in missing[:8])}" + (" ..." if len(missing) > 8 else "")
                    if missing else ""))
    return "\n".join(lines) + "\n"


def describe_ops(cases) -> str:
    """One line: how many cases of each op (spec.OPS order; ops with none left out)."""
    n = {op: 0 for op in OPS}
    for c in cases:
        n[c.op] += 1
    return "cases per op: " + ", ".join(f"{op} {k}" for op, k in n.items() if k) + "\n"


def describe_sizes(cases) -> str:
    """What `conformance cases SELECTOR --coverage` prints after the sweep coverage: the
    cases per op, the model's classes (describe_model; forward ops), issue 12's thresholds
    by dtype, and the largest sizes (every op: a gradient's K and result are its own)."""
    lines = [describe_ops(cases).rstrip("\n"),
             "size classes kernels branch on (valid cases per class; docs/coverage.md):",
             describe_model(cases).rstrip("\n"), "  thresholds (valid cases; by dtype):"]
    for label, c in size_classes(cases).items():
        by = ", ".join(f"{d} {c[d]}" for d in DTYPES if c[d])
        lines.append(f"    {label}: {c['cases']}" + (f" ({by})" if by else "") + ("" if c["cases"] else "  <- none"))
    big = largest(cases)
    if big:
        lines.append("  largest: " + ", ".join(f"{k} {v:,}" for k, v in big.items()))
    return "\n".join(lines) + "\n"
