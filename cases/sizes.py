"""The size distribution of a case selection: how many cases reach each size class.

Kernels choose code paths by size (channel blocking, width tiles, split-K, Winograd or
direct, JIT specialisation), so a selection that never reaches a class cannot see a bug
that lives there. `SIZE_CLASSES` are the classes issue 12 asks the default set to cover;
`size_classes(cases)` counts the valid cases in each, and `describe_sizes` prints them
with the dtypes that reach them (what `conformance cases SELECTOR --coverage` shows).
"""

from __future__ import annotations

import math
from typing import Callable

from conformance.spec import DTYPES, Case


def _cin_per_group(c: Case) -> int:
    return c.in_channels // c.groups if c.op == "conv2d" else 1


def _outputs(c: Case) -> int:
    return math.prod(c.output_shape)


#: (label, predicate): the size classes, each a threshold on one dimension.
SIZE_CLASSES: tuple[tuple[str, Callable[[Case], bool]], ...] = (
    ("input channels per group >= 256", lambda c: _cin_per_group(c) >= 256),
    ("input channels per group >= 512", lambda c: _cin_per_group(c) >= 512),
    ("input channels per group >= 1024", lambda c: _cin_per_group(c) >= 1024),
    ("input channels per group >= 2048", lambda c: _cin_per_group(c) >= 2048),
    ("output width >= 128", lambda c: c.output_shape[2] >= 128),
    ("output width >= 224", lambda c: c.output_shape[2] >= 224),
    ("reduction K >= 4096", lambda c: c.reduction_size >= 4096),
    ("reduction K >= 16384", lambda c: c.reduction_size >= 16384),
    ("outputs >= 1e6 elements", lambda c: _outputs(c) >= 10**6),
    ("outputs >= 1e7 elements", lambda c: _outputs(c) >= 10**7),
    ("multiply-adds >= 1e9", lambda c: _outputs(c) * c.reduction_size >= 10**9),
    ("depthwise channels >= 512", lambda c: c.op == "depthwise_conv2d" and c.in_channels >= 512),
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
    """The largest value of each dimension over the valid cases (0 when there are none)."""
    valid = [c for c in cases if c.is_valid]
    if not valid:
        return {}
    return {
        "input channels per group": max(_cin_per_group(c) for c in valid),
        "output width": max(c.output_shape[2] for c in valid),
        "reduction K": max(c.reduction_size for c in valid),
        "outputs": max(_outputs(c) for c in valid),
        "multiply-adds": max(_outputs(c) * c.reduction_size for c in valid),
    }


def describe_sizes(cases) -> str:
    """A few lines for people: the cases in each size class, by dtype, and the largest sizes."""
    lines = ["size classes (valid cases; by dtype):"]
    for label, counts in size_classes(cases).items():
        by = ", ".join(f"{d} {counts[d]}" for d in DTYPES if counts[d])
        lines.append(f"  {label}: {counts['cases']}" + (f" ({by})" if by else "") + ("" if counts["cases"] else "  <- none"))
    big = largest(cases)
    if big:
        lines.append("  largest: " + ", ".join(f"{k} {v:,}" for k, v in big.items()))
    return "\n".join(lines) + "\n"
