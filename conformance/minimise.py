"""Shrink a diverging case to a small one that still diverges (greedy delta debugging).

`minimise(case, diverges)` repeatedly tries simpler variants of the current case and
keeps the first variant for which `diverges(variant)` is still True. The moves (batch,
spatial size, channels, multiplier, groups, kernel, strides, dilations, padding) are
tried cheapest variant first (`cost`: multiply-adds plus elements), so on a real layer
the expensive dimensions shrink first and each later predicate call is cheap; moves that
leave the cost unchanged keep that fixed order. What the divergence is about (dtype,
data format, value profile, bias: `KEPT_FIELDS`) is kept while shrinking and changed at
the end only where the divergence persists without it. It stops when no move helps,
after `max_steps` calls of the predicate, or after `time_limit` seconds.

Invariants
- The result is the input case or a case for which `diverges` returned True, and it is
  well-formed, of the same op (no move changes it: a gradient case stays one, and has no
  bias to drop); a valid case stays valid and an invalid case stays invalid (the
  predicate decides whether it is still the *same* divergence).
- Deterministic: the same case and predicate give the same result whenever neither
  limit is reached (moves are tried in a fixed order, no randomness).
- Backend-agnostic: the predicate wraps whatever runs the case (the run's and explore's
  run it on the backend's worker); `same_divergence` builds one from an adapter object,
  called in this process, with the one verdict (`record.record_here`).
"""

from __future__ import annotations

import math
import time
from typing import Callable, Iterable, Iterator

from . import tolerance
from .record import record_here
from .spec import Case, CaseError

#: Default bound on predicate calls (each runs the backend once).
MAX_STEPS = 500


def _shrink_int(value: int, low: int) -> list[int]:
    """Smaller values to try, boldest first: low, value/2, value-1 (distinct, > low..)."""
    out = []
    for v in (low, value // 2, value - 1):
        if low <= v < value and v not in out:
            out.append(v)
    return out


def _divisors_below(n: int, below: int) -> list[int]:
    return [d for d in range(1, below) if n % d == 0]


def _min_valid(c: Case, name: str, value: int) -> int:
    """Smallest size of `name` (height/width) that keeps the case's validity, or `value`."""
    for v in range(1, value):
        try:
            if c.replace(**{name: v}).is_valid == c.is_valid:
                return v
        except CaseError:
            pass
    return value


def _moves(c: Case) -> Iterator[dict]:
    """Field changes to try on `c`, simplest-making first. Invalid results are skipped."""
    for b in _shrink_int(c.batch, 1):
        yield {"batch": b}
    # Spatial: the smallest input the geometry allows first, then 1, halving, one less.
    for name in ("height", "width"):
        value = getattr(c, name)
        for v in [_min_valid(c, name, value)] + _shrink_int(value, 1):
            if v < value:
                yield {name: v}
    if c.forward_op == "conv2d":
        # Channels per group (keeps a valid grouping), then plain counts (invalid cases).
        g = c.groups
        for k in _shrink_int(c.in_channels // g, 1):
            yield {"in_channels": g * k}
        for k in _shrink_int(c.in_channels, 1):
            yield {"in_channels": k}
        for o in _shrink_int(c.out_channels // g, 1):
            yield {"out_channels": g * o}
        for o in _shrink_int(c.out_channels, 1):
            yield {"out_channels": o}
        if g > 1:
            # Fewer groups, keeping the channels per group (a smaller case) or the channels.
            for d in _divisors_below(g, g):
                yield {"groups": d, "in_channels": c.in_channels // g * d, "out_channels": c.out_channels // g * d}
                yield {"groups": d}
        if c.filter_channels is not None:
            for f in _shrink_int(c.filter_channels, 1):
                yield {"filter_channels": f}
    else:
        for k in _shrink_int(c.in_channels, 1):
            yield {"in_channels": k}
        for m in _shrink_int(c.channel_multiplier, 1):
            yield {"channel_multiplier": m}
        if c.op == "separable_conv2d":  # its pointwise stage's outputs
            for o in _shrink_int(c.out_channels, 1):
                yield {"out_channels": o}
    kh, kw = c.kernel
    for k in _shrink_int(kh, 1):
        yield {"kernel": (k, kw)}
    for k in _shrink_int(kw, 1):
        yield {"kernel": (kh, k)}
    for axis, name in ((0, "strides"), (1, "strides"), (0, "dilations"), (1, "dilations")):
        pair = getattr(c, name)
        for v in _shrink_int(pair[axis], 1):
            yield {name: (v, pair[1]) if axis == 0 else (pair[0], v)}
    if c.padding != "VALID":
        yield {"padding": "VALID"}
        if not isinstance(c.padding, str):
            (t, b), (l, r) = c.padding
            yield {"padding": "SAME"}
            for i, v in enumerate((t, b, l, r)):
                for s in _shrink_int(v, 0):
                    p = [t, b, l, r]
                    p[i] = s
                    yield {"padding": ((p[0], p[1]), (p[2], p[3]))}
    if c.bias:
        yield {"bias": False}
    if c.dtype != "float32":
        yield {"dtype": "float32"}
    if c.data_format != "NHWC":
        yield {"data_format": "NHWC"}
    if c.profile != "normal":
        yield {"profile": "normal"}


def cost(c: Case) -> int:
    """What one predicate call on `c` roughly costs: multiply-adds plus tensor elements."""
    if not c.is_valid:
        return c.batch * c.height * c.width * c.in_channels + c.kernel[0] * c.kernel[1] * c.in_channels
    # The op's multiply-adds (a gradient's are its forward conv's), its result and x-sized work.
    inputs = c.batch * c.height * c.width * c.in_channels
    return c.macs + math.prod(c.output_shape) + inputs + c.kernel[0] * c.kernel[1] * c.in_channels


def _ordered(current: Case, changes: Iterable[dict]) -> list[dict]:
    """The moves, the cheapest variant of `current` they make first (stable: ties keep move
    order); moves that make no case at all (a kernel that no longer fits the input) are dropped."""
    scored = []
    for change in changes:
        try:
            scored.append((cost(current.replace(**change)), len(scored), change))
        except CaseError:
            continue
    return [change for _, _, change in sorted(scored, key=lambda t: t[:2])]


def _size(c: Case) -> tuple:
    """Order used to accept only strictly simpler variants (guarantees termination)."""
    return (c.batch * c.height * c.width * c.in_channels * c.output_channels,
            c.kernel[0] * c.kernel[1], c.strides[0] * c.strides[1] * c.dilations[0] * c.dilations[1],
            c.padding != "VALID", c.bias, c.dtype != "float32", c.data_format != "NHWC", c.profile != "normal",
            c.batch, c.height + c.width, c.in_channels, c.output_channels, c.groups,
            c.channel_multiplier or 0, sum(map(sum, c.padding)) if not isinstance(c.padding, str) else 0)


def _simpler(a: Case, b: Case) -> bool:
    """Is `a` no bigger than `b` in every counted respect and smaller in one?"""
    sa, sb = _size(a), _size(b)
    return all(x <= y for x, y in zip(sa, sb)) and sa != sb


#: Fields that say what a divergence is about (its dtype, layout, value profile, bias):
#: changed only once the case is as small as it gets with them kept, and then only where
#: the divergence persists, which shows it does not depend on them. No shrinking follows
#: such a change, so the result with the original value diverges too.
KEPT_FIELDS = ("dtype", "data_format", "profile", "bias")


def minimise(case: Case, diverges: Callable[[Case], bool], *, time_limit: float = 30.0,
             max_steps: int = MAX_STEPS) -> Case:
    """The smallest variant of `case` found for which `diverges` stays True.

    `diverges(case)` is assumed True (it is not called on `case` itself). At most
    `max_steps` predicate calls and about `time_limit` seconds (checked between calls).
    The KEPT_FIELDS keep their values while the sizes shrink; each is then tried once on
    the smallest case (see KEPT_FIELDS).
    """
    if time_limit <= 0 or max_steps < 0:
        raise ValueError(f"expected time_limit > 0 and max_steps >= 0, received {time_limit!r}, {max_steps!r}")
    deadline = time.monotonic() + time_limit
    steps = 0
    current = case
    tried: set[str] = set()

    def attempt(change: dict) -> bool | None:
        """True/False: the variant diverges or not; None: not tried (not a simpler case of the same validity)."""
        nonlocal steps, current
        try:
            candidate = current.replace(**change)
        except CaseError:
            return None  # e.g. a kernel that no longer fits the input: not a case at all
        if candidate.is_valid != case.is_valid or candidate.id in tried or not _simpler(candidate, current):
            return None
        tried.add(candidate.id)
        steps += 1
        if diverges(candidate):
            current = candidate
            return True
        return False

    def out_of_time() -> bool:
        return steps >= max_steps or time.monotonic() >= deadline

    improved = True
    while improved:
        improved = False
        for change in _ordered(current, (m for m in _moves(current) if not set(m) & set(KEPT_FIELDS))):
            if out_of_time():
                return current
            if attempt(change):
                improved = True
                break  # restart from the cheapest moves on the smaller case
    for change in [m for m in _moves(current) if set(m) & set(KEPT_FIELDS)]:
        if out_of_time():
            return current
        attempt(change)
    return current


def same_divergence(adapter, kind: str | None, precision: str = tolerance.DEFAULT_PRECISION) -> Callable[[Case], bool]:
    """Predicate: `adapter` still diverges on a case, with divergence `kind` (None: any),
    under the contract `precision`.

    The case is judged by the one verdict (`record.record_here`, the record a worker's reply
    gets): a case the adapter does not support, or on which it (or its supports()) raises,
    is *not* the same divergence.
    """
    def diverges(case: Case) -> bool:
        rec = record_here(case, adapter, precision=precision, diagnose=False)
        return rec["status"] == "diverge" and (kind is None or rec["kind"] == kind)

    return diverges
