"""The default case set catches every classic convolution bug, and flags no correct one.

Each mutant below is a deliberately broken adapter (a plain class: the contract is
duck-typed) built on the oracle's own helpers; each correct variant computes the right
answer in another legitimate way (another summation order, another accumulator, float64
then one rounding). All are judged in-process exactly as the runner judges a backend:
`make_inputs` -> `run` -> `reference` -> `compare`, over the valid cases of the
*default* case set (`_default_cases`, up to 4 M output elements).

Pinned: every mutant is caught by at least one default case, with the kind of
divergence that bug produces at least once; no correct variant is ever flagged.
`test_report_catch_counts` prints how many default cases catch each mutant.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import pytest

from conformance.compare import compare
from conformance.dtypes import np_dtype, round_mantissa
from conformance.inputs import make_inputs
from conformance.oracle import convolve, reference
from conformance.spec import FORWARD_OPS, Case


#: Default cases with more output elements are left out: these mutants do not depend on
#: size, and the size witnesses near 2^22 and 2^24 elements (tests/test_size_bugs.py judges
#: bugs that live there) would hold gigabytes of references for the whole session. The
#: largest real layer of the default set (3.2 M outputs) stays in.
MAX_OUTPUTS = 4_000_000


def _default_cases() -> list[Case]:
    """The valid forward-op cases of `select("default")` up to MAX_OUTPUTS output elements
    (the mutants here are forward kernels; the training ops' planted bugs are
    tests/test_training_downstream.py's); a fixed representative list until that exists."""
    try:
        from conformance.cases.sets import select
    except ImportError:
        cases = _FALLBACK_CASES
    else:
        cases = select("default")
    return [c for c in cases if c.op in FORWARD_OPS and c.is_valid and math.prod(c.output_shape) <= MAX_OUTPUTS]


def _fallback_cases() -> list[Case]:
    """~40 cases covering each bug's trigger: odd SAME totals, unequal strides, dilation,
    multi-channel depthwise, bias, float32 with large K, every dtype and profile."""
    out = []
    for op in ("conv2d", "depthwise_conv2d"):
        shape = dict(out_channels=6, groups=1) if op == "conv2d" else dict(channel_multiplier=3)
        for dtype, profile in (("float32", "normal"), ("float16", "normal"), ("bfloat16", "normal"),
                               ("float64", "normal"), ("float32", "small_integers"), ("float32", "wide_range"),
                               ("float32", "special"), ("float32", "subnormal")):
            for kernel, strides, dilations, padding, bias in (
                    ((3, 3), (1, 1), (1, 1), "SAME", False), ((4, 2), (2, 1), (1, 1), "SAME", True),
                    ((3, 2), (1, 2), (2, 1), "VALID", False)):
                out.append(Case(op=op, batch=2, height=9, width=8, in_channels=4, kernel=kernel, strides=strides,
                                dilations=dilations, padding=padding, dtype=dtype, profile=profile, bias=bias,
                                **shape))
    out.append(Case(op="conv2d", batch=1, height=14, width=14, in_channels=32, kernel=(3, 3), out_channels=16,
                    padding=((1, 0), (0, 2)), groups=2))
    return out


_FALLBACK_CASES = _fallback_cases()


@lru_cache(maxsize=1)
def judged_cases():
    """(case, inputs, reference) for every valid default case, computed once per session."""
    out = []
    for case in _default_cases():
        inputs = make_inputs(case)
        out.append((case, inputs, reference(case, *inputs)))
    return out


# ---- building blocks ------------------------------------------------------------------------


def _round(case: Case, y64: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):  # beyond the range: Inf, as IEEE rounds
        return np.asarray(y64, dtype=np.float64).astype(np_dtype(case.dtype))


def _tap_partials(case: Case, x, f) -> list[np.ndarray]:
    """Per kernel tap (di, dj), its float64 contribution (N, OH, OW, O), each tap's products
    summed over channels. Built by 1x1 oracle convolutions of shifted input windows, so that
    no extra 0 * Inf product appears."""
    g = case.geometry
    (t, b), (l, r) = g.pads
    (sh, sw), (dh, dw) = case.strides, case.dilations
    xp = np.pad(np.asarray(x, dtype=np.float64), ((0, 0), (t, b), (l, r), (0, 0)))
    one = case.replace(kernel=(1, 1), strides=(1, 1), dilations=(1, 1), padding="VALID", height=g.out_h,
                       width=g.out_w, bias=False)
    parts = []
    for i in range(case.kernel[0]):
        for j in range(case.kernel[1]):
            window = xp[:, i * dh: i * dh + (g.out_h - 1) * sh + 1: sh, j * dw: j * dw + (g.out_w - 1) * sw + 1: sw]
            parts.append(convolve(one, window, np.asarray(f, dtype=np.float64)[i: i + 1, j: j + 1]))
    return parts


def _accumulate(case: Case, parts, bias, accumulator, order=1) -> np.ndarray:
    """Recursive sum of the tap partials (and bias last) in `accumulator`, in tap order or reversed."""
    acc = np.zeros_like(parts[0], dtype=accumulator)
    with np.errstate(invalid="ignore", over="ignore"):
        for p in parts[::order]:
            acc = (acc + p.astype(accumulator)).astype(accumulator)
        if bias is not None:
            acc = (acc + np.asarray(bias, dtype=np.float64).astype(accumulator)).astype(accumulator)
    return _round(case, acc)


def _wide(case: Case):
    """The accumulator a correct implementation uses: float32 for 16-bit types, else the dtype."""
    return np.float32 if case.dtype in ("float16", "bfloat16", "float32") else np.float64


class _Adapter:
    """Contract boilerplate; subclasses define `compute(case, x, filters, bias) -> array`."""

    name = "mutant"

    def version(self) -> str:
        return "0"

    def device(self) -> str:
        return "cpu"

    def supports(self, case: Case):
        return None

    def run(self, case: Case, x, filters, bias):
        if not case.is_valid:
            raise ValueError(f"invalid case {case.id}: {case.invalid_reason}")
        return self.compute(case, x, filters, bias)

    def compute(self, case, x, filters, bias):
        return _round(case, convolve(case, x, filters, bias))


# ---- mutants ----------------------------------------------------------------------------------


class DepthwiseChannelOrderQC(_Adapter):
    """Depthwise output channel q*C + k instead of k*M + q."""

    def compute(self, case, x, filters, bias):
        y = super().compute(case, x, filters, bias)
        if case.op != "depthwise_conv2d":
            return y
        c, m = case.in_channels, case.channel_multiplier
        return np.ascontiguousarray(y.reshape(*y.shape[:3], c, m).swapaxes(3, 4).reshape(y.shape))


class FlippedKernel(_Adapter):
    """True convolution (kernel flipped in both spatial axes) instead of correlation."""

    def compute(self, case, x, filters, bias):
        return super().compute(case, x, filters[::-1, ::-1], bias)


class SameSplitSwapped(_Adapter):
    """SAME padding with the odd pixel at the top/left instead of the bottom/right."""

    def compute(self, case, x, filters, bias):
        if case.padding == "SAME":
            (t, b), (l, r) = case.geometry.pads
            case = case.replace(padding=((b, t), (r, l)))
        return super().compute(case, x, filters, bias)


class StridesSwapped(_Adapter):
    """The height stride applied to the width axis and vice versa."""

    def compute(self, case, x, filters, bias):
        return super().compute(case.replace(strides=case.strides[::-1]), x, filters, bias)


class DroppedLastTap(_Adapter):
    """The last kernel tap (kh-1, kw-1) never contributes (an off-by-one loop bound)."""

    def compute(self, case, x, filters, bias):
        f = np.array(filters, copy=True)
        f[-1, -1] = 0
        return super().compute(case, x, f, bias)


class Tf32Inputs(_Adapter):
    """float32 inputs rounded to TF32's 11 significant bits before an exact product-sum."""

    def compute(self, case, x, filters, bias):
        if case.dtype != "float32":
            return super().compute(case, x, filters, bias)
        return _round(case, convolve(case, round_mantissa(x, 11), round_mantissa(filters, 11), bias))


class Float16Accumulator(_Adapter):
    """float32 cases summed in a float16 accumulator."""

    def compute(self, case, x, filters, bias):
        if case.dtype != "float32":
            return super().compute(case, x, filters, bias)
        return _accumulate(case, _tap_partials(case, x, filters), bias, np.float16)


class DilationHIgnored(_Adapter):
    """The height dilation is ignored (taken as 1); the width dilation is honoured."""

    def compute(self, case, x, filters, bias):
        return super().compute(case.replace(dilations=(1, case.dilations[1])), x, filters, bias)


class BiasIgnored(_Adapter):
    """The bias is never added."""

    def compute(self, case, x, filters, bias):
        return super().compute(case, x, filters, None)


# (mutant, a divergence kind it must produce at least once)
MUTANTS = [
    (DepthwiseChannelOrderQC, "value"),
    (FlippedKernel, "value"),
    (SameSplitSwapped, "value"),
    (StridesSwapped, "shape"),
    (DroppedLastTap, "value"),
    (Tf32Inputs, "precision"),  # meets `tf32`, not `strict`: the kind says so
    (Float16Accumulator, "value"),
    (DilationHIgnored, "shape"),
    (BiasIgnored, "value"),
]


# ---- correct variants ---------------------------------------------------------------------------


class ReverseTapOrder(_Adapter):
    """Tap partials summed last tap first, in the usual accumulator (float32 for <= 32 bits)."""

    def compute(self, case, x, filters, bias):
        return _accumulate(case, _tap_partials(case, x, filters), bias, _wide(case), order=-1)


class PairwiseFloat32(_Adapter):
    """Tap partials rounded to the accumulator, then summed as a balanced tree."""

    def compute(self, case, x, filters, bias):
        acc = _wide(case)
        with np.errstate(invalid="ignore", over="ignore"):
            parts = [p.astype(acc) for p in _tap_partials(case, x, filters)]
            while len(parts) > 1:
                parts = [(parts[i] + parts[i + 1]).astype(acc) if i + 1 < len(parts) else parts[i]
                         for i in range(0, len(parts), 2)]
            y = parts[0] if bias is None else (parts[0] + np.asarray(bias, dtype=np.float64).astype(acc)).astype(acc)
        return _round(case, y)


class Float64ThenRound(_Adapter):
    """Plain float64 (no compensated summation, even for float64 cases), rounded once."""

    def compute(self, case, x, filters, bias):
        return _round(case, convolve(case, x, filters, bias, compensated=False))


CORRECT = [ReverseTapOrder, PairwiseFloat32, Float64ThenRound]


# ---- tests ----------------------------------------------------------------------------------------


@lru_cache(maxsize=None)
def caught_by(adapter_class) -> list[tuple[str, str]]:
    """(case id, kind) of every default case whose comparison fails (computed once per class)."""
    adapter = adapter_class()
    out = []
    for case, inputs, ref in judged_cases():
        result = compare(case, adapter.run(case, *inputs), ref, inputs)
        if not result.passed:
            out.append((case.id, result.kind))
    return out


@pytest.mark.parametrize("mutant,kind", MUTANTS, ids=lambda v: getattr(v, "__name__", v))
def test_mutant_is_caught_by_the_default_cases(mutant, kind):
    caught = caught_by(mutant)
    assert caught, f"{mutant.__name__} ({mutant.__doc__.strip()}) passed all {len(judged_cases())} default cases"
    kinds = {k for _, k in caught}
    assert kind in kinds, f"{mutant.__name__}: expected some {kind!r} divergence, received kinds {sorted(kinds)}"


@pytest.mark.parametrize("impl", CORRECT, ids=lambda c: c.__name__)
def test_correct_variant_is_never_flagged(impl):
    caught = caught_by(impl)
    assert not caught, f"{impl.__name__} is correct but was flagged on {len(caught)} cases: {caught[:5]}"


@pytest.mark.parametrize("impl", CORRECT, ids=lambda c: c.__name__)
def test_correct_variant_is_not_the_oracle_in_disguise(impl):
    adapter = impl()
    differs = [case.id for case, inputs, ref in judged_cases()
               if not np.array_equal(adapter.run(case, *inputs), _round(case, ref.value), equal_nan=True)]
    assert differs, f"{impl.__name__} matches the rounded oracle bit for bit on every case: it tests nothing"


def test_fallback_cases_are_valid_and_distinct():
    ids = [c.id for c in _FALLBACK_CASES]
    assert len(ids) == len(set(ids)) >= 40
    assert all(c.is_valid for c in _FALLBACK_CASES)


def test_report_catch_counts(capsys):
    counts = {m.__name__: len(caught_by(m)) for m, _ in MUTANTS}
    with capsys.disabled():
        print(f"\nmutants caught, of {len(judged_cases())} valid default cases: "
              + ", ".join(f"{k} {v}" for k, v in counts.items()))
    assert all(counts.values())
