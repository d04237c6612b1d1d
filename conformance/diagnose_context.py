"""The bench every diagnosis hypothesis is tested on: the case, the backend's output and the
true reference, and the means to recompute the oracle under a hypothesis and judge the
output against it with the verdict's own element limits.

Invariants
- A hypothesis is judged exactly as the verdict judges (`tolerance.element_limit` and
  `tolerance.elementwise_error` under the same precision contract), against a Reference
  built by `oracle.reference`, the one reference builder.
- Cost is bounded: a recomputation above `MAX_MACS` multiply-adds or `MAX_OUTPUTS`
  output elements is not made (`affordable`), and is listed in `skipped`.
- The operands are the op's (`case.operands` order); a hypothesis changes them by name
  (`operands_with`). Another geometry of a gradient op (`geometry_matches`) is the
  adjoint of that geometry's forward conv over the same dy (`gradient_reference`): its
  full extent, read from that geometry's top/left pad (`conv_geometry`'s), zero beyond,
  computed by `oracle.reference` on a case whose padding is VALID.
"""

from __future__ import annotations

import math

import numpy as np

from . import oracle, tolerance
from .oracle import Reference
from .spec import GRADIENT_OPS, OP_INFO, Case, CaseError, conv_geometry

#: A recomputation (value and magnitude) above this many multiply-adds is skipped (about
#: a second of the float64 oracle on one core: real layers up to ResNet scale are tested).
MAX_MACS = 10**9
#: ... and one of more output elements (each recomputation holds a few float64 arrays of
#: the output's size: this bounds diagnosis memory at a few hundred MB).
MAX_OUTPUTS = 10**7


class Skip(Exception):
    """A hypothesis that does not apply to this case (not listed as checked)."""


class DiagnosisContext:
    """The case, the backend output and the true reference, plus helpers shared by the hypotheses."""

    def __init__(self, case: Case, y: np.ndarray, operands, precision: str = tolerance.DEFAULT_PRECISION):
        self.case, self.y, self.operands = case, y, tuple(operands)
        named = dict(zip(case.operands, self.operands))
        # The forward meanings (None where the op has no such operand).
        self.x, self.w, self.b = named.get("x"), named.get("filters"), named.get("bias")
        self.precision = precision
        self.ref = oracle.reference(case, *self.operands)
        self.same_shape = tuple(y.shape) == tuple(case.output_shape)
        self.threshold = tolerance.threshold(case)
        self.skipped: list[str] = []
        if self.same_shape:
            self.e_true = self.error(self.ref)
            self.bad = self.e_true > self.limit(self.ref)
        else:
            self.e_true = self.bad = None

    def operand(self, name: str):
        """The operand called `name` (`case.operands`)."""
        return self.operands[self.case.operands.index(name)]

    def operands_with(self, **named) -> tuple:
        """The operands, in order, with those named replaced (e.g. filters=flipped, bias=None)."""
        unknown = set(named) - set(self.case.operands)
        if unknown:
            raise ValueError(f"expected operands of {self.case.op} ({', '.join(self.case.operands)}), "
                             f"received {sorted(unknown)}")
        return tuple(named.get(name, a) for name, a in zip(self.case.operands, self.operands))

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
        """The result's shape under another geometry (None: empty); a gradient's does not change."""
        c = self.case
        g = conv_geometry((c.height, c.width), c.kernel, strides, dilations, padding)
        if g.out_h <= 0 or g.out_w <= 0:
            return None
        if c.op in GRADIENT_OPS:
            return tuple(c.output_shape)
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

    def reference(self, *operands, strides=None, dilations=None, padding=None) -> Reference:
        """The oracle on the given operands and geometry (with the product norm, so that a
        hypothesis is judged as strictly as the verdict)."""
        return oracle.reference(self.case, *operands, strides=strides, dilations=dilations, padding=padding)

    def reference_of(self, case: Case, *operands) -> Reference:
        """The oracle for another case of the same result shape (e.g. one batch item fewer)."""
        return oracle.reference(case, *operands)

    def gradient_reference(self, operands, strides, dilations, pads_before) -> Reference | None:
        """A gradient op's result had its forward conv had `strides` and `dilations` and
        started `pads_before` = (top, left) pixels into the padding (any integers), over the
        same dy: the adjoint's full extent ((OH - 1) * s + (k - 1) * d + 1 per axis) read
        from `pads_before`, zero beyond (grad-input); grad-filter: x shifted by it. None
        where no such case can be built."""
        c = self.case
        n, oh, ow, _ = c.conv_output_shape
        full = tuple((o - 1) * s + (k - 1) * d + 1 for o, s, d, k in zip((oh, ow), strides, dilations, c.kernel))
        try:
            alt = c.replace(height=full[0], width=full[1], strides=tuple(strides), dilations=tuple(dilations),
                            padding="VALID")
        except CaseError:
            return None
        if not alt.is_valid or alt.conv_output_shape != c.conv_output_shape:
            return None
        if OP_INFO[c.op].result == "filter":
            x, dy = operands
            return oracle.reference(alt, _window(x, [-p for p in pads_before], full), dy)
        ref = oracle.reference(alt, *operands)
        size = (c.height, c.width)
        return Reference(*(None if a is None else _window(a, pads_before, size) for a in ref))

    def geometry_matches(self, name: str, *, strides=None, dilations=None, padding=None) -> bool:
        c = self.case
        strides, dilations = tuple(strides or c.strides), tuple(dilations or c.dilations)
        padding = c.padding if padding is None else padding
        shape = self.shape_for(strides, dilations, padding)
        if shape is None or shape != tuple(self.y.shape) or not self.affordable(name, shape):
            return False
        if c.op in GRADIENT_OPS:
            pads = conv_geometry((c.height, c.width), c.kernel, strides, dilations, padding).pads
            ref = self.gradient_reference(self.operands, strides, dilations, (pads[0][0], pads[1][0]))
            return ref is not None and self.matches(ref)
        return self.matches(self.reference(*self.operands, strides=strides, dilations=dilations, padding=padding))


def _window(a: np.ndarray, start, size) -> np.ndarray:
    """a (N, FH, FW, C) read at rows start[0] .. start[0] + size[0] - 1 and columns likewise
    (any integers): (N, size[0], size[1], C), zero where that reads outside a."""
    out = np.zeros(a.shape[:1] + tuple(size) + a.shape[3:], dtype=a.dtype)
    src, dst = [], []
    for axis in range(2):
        lo, hi = max(start[axis], 0), min(start[axis] + size[axis], a.shape[axis + 1])
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - start[axis], hi - start[axis]))
    out[:, dst[0], dst[1]] = a[:, src[0], src[1]]
    return out


def need_same_shape(ctx: DiagnosisContext) -> None:
    """Skip a hypothesis that needs the output in the right shape when it is not."""
    if not ctx.same_shape:
        raise Skip
