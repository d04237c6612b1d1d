"""Kernel bugs gated on a size class are caught by the default set, and a correct blocked
kernel is not flagged there.

Each backend is a blocked split-K float32 kernel with one planted bug (tests/broken_adapters.py,
SIZE_BUGS), plugged in as a user plugs one in (`conformance run --adapter file.py:Class`).
For each, the test takes the smallest default case of each class the bug is gated on (the model's own
predicates pick it: the test fails if the default set has none), and one of each neighbouring
class the bug does not reach, and runs the backend on them: the first must diverge, the
second pass. Only those cases run, to keep the test fast; that they are in `default` is what
makes the default run catch the bug.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import pytest

from conformance import results
from conformance.cases import sets
from conformance.cases.catalogue import dump_cases
from conformance.cases.sizes import CLASSES

from tests._runner_util import run_cli

BROKEN = Path(__file__).resolve().parent / "broken_adapters.py"
BY_LABEL = {k.label: k for k in CLASSES}


@lru_cache(maxsize=1)
def _default():
    return tuple(sets.select("default"))


def cases_of(*labels: str) -> list:
    """The smallest default case (fewest output elements) of each of these classes; each must have one."""
    out = []
    for label in labels:
        inside = [c for c in _default() if BY_LABEL[label].holds(c)]
        assert inside, f"no default case in class {label!r}"
        smallest = min(inside, key=lambda c: (math.prod(c.output_shape), c.id))
        if smallest not in out:
            out.append(smallest)
    return out


def run(tmp_path: Path, adapter: str, cases: list, *extra: str) -> dict[str, str]:
    """{case id: status} of `adapter` (a class of broken_adapters.py) on `cases`, through the CLI."""
    path = tmp_path / "cases.yaml"
    path.write_text(dump_cases(cases))
    out = tmp_path / "out"
    run_cli("run", "--adapter", f"{BROKEN}:{adapter}", "--cases", str(path), "--out", str(out), "--no-report",
            "--no-minimise", "--no-confirm", "--quiet", *extra)
    records = results.load(out / "results.json")["records"]
    return {r["case_id"]: r["status"] for r in records}


def f32(*labels: str) -> tuple[str, ...]:
    return tuple(f"{label} [float32]" for label in labels)


#: (adapter, the classes it is gated on, a neighbouring class it does not reach)
BUGS = [
    ("VectorTail", f32("conv2d input channels per group >= 64: 3 mod 4", "conv2d input channels per group < 64: 7 mod 8",
                       "depthwise_conv2d input channels >= 64: 15 mod 16"),
     f32("conv2d input channels per group >= 64: 0 mod 4", "depthwise_conv2d input channels >= 64: 0 mod 16")),
    ("SplitKTail", f32("conv2d K near a power of two: just above 2^12", "conv2d K near a power of two: just below 2^14")
     + ("conv2d K near a power of two: just below 2^13 [bfloat16]",),  # 255 products lost: beyond bfloat16 rounding
     f32("conv2d K near a power of two: just below 2^11")),
    ("Channels2048", f32("conv2d input channels per group near a power of two: just above 2^11",
                         "depthwise_conv2d input channels near a power of two: just above 2^11"),
     f32("conv2d input channels per group near a power of two: just below 2^11",
         "depthwise_conv2d input channels near a power of two: just below 2^11")),
    ("SizeOneAxis", f32("conv2d height: kernel 1: stride+dilation+padding",
                        "depthwise_conv2d width: kernel 1: stride+dilation+padding")
     + ("conv2d width: kernel 1: stride+dilation+padding (symmetric, beside a wider axis) [float16]",
        "conv2d height: kernel 1: stride+dilation+padding (symmetric, beside a wider axis) [bfloat16]"),
     f32("conv2d height: kernel 1: stride+dilation", "depthwise_conv2d width: kernel 1: stride+dilation")),
    ("PixelIndex16", f32("conv2d output pixels per image near a power of two: just above 2^16",
                         "depthwise_conv2d output pixels per image near a power of two: just above 2^16"),
     f32("conv2d output pixels per image near a power of two: just below 2^16")),
    ("OffsetIndex22", f32("conv2d output elements near a power of two: just above 2^22"),
     f32("conv2d output elements near a power of two: just below 2^22")),
    ("FloatIndex24", f32("depthwise_conv2d output elements near a power of two: just above 2^24"),
     f32("depthwise_conv2d output elements near a power of two: just below 2^24")),
]
#: The 2^22 and 2^24 output classes: 4-17 Mi elements, whose oracle and judgement of a
#: divergence take tens of seconds on a shared machine (the run's default is 60 s).
SLOW = ("--timeout", "600", "--max-memory", "12G")


@pytest.mark.parametrize("adapter,gated,control", BUGS, ids=[b[0] for b in BUGS])
def test_a_bug_gated_on_a_size_class_is_caught_by_the_default_set(tmp_path, adapter, gated, control):
    inside, outside = cases_of(*gated), cases_of(*control)
    statuses = run(tmp_path, adapter, inside + outside, *SLOW)
    assert {c.id: statuses[c.id] for c in inside} == {c.id: "diverge" for c in inside}
    assert {c.id: statuses[c.id] for c in outside} == {c.id: "pass" for c in outside}, "the bug fires outside its class"


def test_a_correct_blocked_split_k_kernel_passes_every_class_those_bugs_live_in(tmp_path):
    labels = sorted({label for _, gated, control in BUGS for label in gated + control})
    statuses = run(tmp_path, "SplitKFloat32", cases_of(*labels), *SLOW)
    assert set(statuses.values()) == {"pass"}, {k: v for k, v in statuses.items() if v != "pass"}
