"""The bench every diagnosis hypothesis is tested on: the case, the backend's output and the
true reference, and the means to recompute the oracle under a hypothesis and judge the
output against it with the verdict's own element limits.

Invariants
- A hypothesis is judged exactly as the verdict judges (`tolerance.element_limit` and
  `tolerance.elementwise_error` under the same precision contract), against a Reference
  built by `oracle.reference`, the one reference builder.
- Cost is bounded: a recomputation above `MAX_MACS` multiply-adds or `MAX_OUTPUTS`
  output elements is not made (`affordable`), and is listed in `skipped`.
"""

from __future__ import annotations

import math

import numpy as np

from . import oracle, tolerance
from .oracle import Reference
from .spec import Case, conv_geometry

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


def need_same_shape(ctx: DiagnosisContext) -> None:
    """Skip a hypothesis that needs the output in the right shape when it is not."""
    if not ctx.same_shape:
        raise Skip
