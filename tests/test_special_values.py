"""The `special` profile: dense IEEE special values where vector kernels treat lanes apart.

Pinned here: where the profile puts NaN, +-Inf, +-0 and subnormals (x and filters); that
every non-finite input has finite neighbours along H, W and C and no output window reads
two sites (so finite outputs sit beside poisoned ones); that the sites visit the lanes
vector kernels treat apart (first and last, even and odd, each side of a 4/8/16-lane
boundary, along C and W); and that the default set's special cases catch every lane bug of
tests/broken_adapters.py (`LANE_BUGS`: a pad lane reading its neighbour, NaN spreading to
a lane's partner, block scaling, skipped zeros) in every dtype and op where it applies,
while the same program without a bug passes every one of them.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest

from tests import broken_adapters
from conformance.compare import compare
from conformance.dtypes import fmt
from conformance.inputs import (NONFINITE_KINDS, lane_positions, make_inputs, special_filter_positions,
                                special_filter_subnormals, special_filter_zeros, special_positions)
from conformance.oracle import reference
from conformance.spec import FORWARD_OPS, DTYPES, Case

CONV = Case(op="conv2d", batch=2, height=11, width=19, in_channels=19, kernel=3, out_channels=9, padding="SAME",
            profile="special")
GROUPED = Case(op="conv2d", batch=1, height=8, width=11, in_channels=15, kernel=3, out_channels=6, groups=3,
               padding=((1, 0), (2, 1)), profile="special", bias=True)
DEPTHWISE = Case(op="depthwise_conv2d", batch=1, height=10, width=17, in_channels=19, kernel=3, channel_multiplier=2,
                 padding="SAME", profile="special", bias=True)
STRIDED = Case(op="depthwise_conv2d", batch=2, height=9, width=18, in_channels=18, kernel=2, strides=2,
               channel_multiplier=1, padding=((0, 1), (1, 0)), profile="special")
DILATED = Case(op="conv2d", batch=1, height=12, width=13, in_channels=5, kernel=(2, 3), dilations=(2, 3),
               out_channels=8, padding="VALID", profile="special")
CASES = {"conv": CONV, "grouped": GROUPED, "depthwise": DEPTHWISE, "strided": STRIDED, "dilated": DILATED}


def as64(a):
    return np.asarray(a, dtype=np.float64)


def nonfinite_sites(case):
    return [p for kind in NONFINITE_KINDS for p in special_positions(case).get(kind, [])]


# ---- where the values are ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["conv", "depthwise"])
def test_special_values_sit_where_the_positions_say(name, dtype):
    case = CASES[name].replace(dtype=dtype)
    x, w, _ = (as64(a) if a is not None else None for a in make_inputs(case))
    tiny = fmt(dtype).smallest_normal
    checks = {"nan": np.isnan, "+inf": lambda v: v == np.inf, "-inf": lambda v: v == -np.inf,
              "-0": lambda v: v == 0 and np.signbit(v), "+0": lambda v: v == 0 and not np.signbit(v),
              "subnormal": lambda v: 0 < abs(v) < tiny}
    pos = special_positions(case)
    assert set(pos) == set(checks), f"expected every kind placed in x, received {sorted(pos)}"
    for kind, places in pos.items():
        assert all(checks[kind](x[p]) for p in places), f"{kind} not where special_positions says"
    others = np.ones(x.shape, bool)
    for places in pos.values():
        for p in places:
            others[p] = False
    assert np.isfinite(x[others]).all() and (np.abs(x[others]) >= tiny).all(), "special values outside the sites"
    for kind, places in special_filter_positions(case).items():
        assert all(checks[kind](w[p]) for p in places)
    assert all(w[p] == 0 for p in special_filter_zeros(case))
    assert all(0 < abs(w[p]) < tiny for p in special_filter_subnormals(case))


@pytest.mark.parametrize("name", CASES)
def test_every_nonfinite_input_has_finite_neighbours_along_h_w_and_c(name):
    case = CASES[name]
    x = as64(make_inputs(case).x)
    for n, h, w, c in nonfinite_sites(case):
        for axis, at in ((1, h), (2, w), (3, c)):
            for step in (-1, 1):
                if 0 <= at + step < x.shape[axis]:
                    near = [n, h, w, c]
                    near[axis] += step
                    assert np.isfinite(x[tuple(near)]), f"{case.id}: site {(n, h, w, c)} has a non-finite neighbour"


@pytest.mark.parametrize("name", CASES)
def test_no_output_window_reads_two_sites(name):
    case = CASES[name]
    marks = np.zeros(case.input_shape[:3])
    for places in special_positions(case).values():
        for n, h, w, _ in places:
            marks[n, h, w] += 1
    g = case.geometry
    (pt, pb), (pl, pr) = g.pads
    padded = np.pad(marks, ((0, 0), (pt, pb), (pl, pr)))
    (kh, kw), (sh, sw), (dh, dw) = case.kernel, case.strides, case.dilations
    counts = sum(padded[:, i * dh: i * dh + sh * (g.out_h - 1) + 1: sh, j * dw: j * dw + sw * (g.out_w - 1) + 1: sw]
                 for i in range(kh) for j in range(kw))
    assert counts.max() <= 1, f"{case.id}: an output window reads {int(counts.max())} sites"


def test_sites_visit_the_lanes_along_channels_and_widths():
    sites = nonfinite_sites(CONV)
    channels = {c for *_, c in sites}
    widths = {w % 16 for _, _, w, _ in sites}
    assert {0, 18, 1, 17, 15, 16} <= channels, f"expected the first/last lanes and both sides of 16, received {channels}"
    assert {0, 15} <= widths, f"expected widths at lane 0 and 15 of 16, received {sorted(widths)}"
    assert lane_positions(19)[:6] == [0, 18, 1, 17, 3, 4]


@pytest.mark.parametrize("name", CASES)
def test_filter_sites_poison_at_most_a_quarter_of_the_output_channels_never_two_neighbours(name):
    case = CASES[name]
    taps = [pos for places in special_filter_positions(case).values() for pos in places]
    out = sorted(o if case.op == "conv2d" else c * case.channel_multiplier + o for _, _, c, o in taps)
    assert 1 <= len(out) <= max(1, case.output_channels // 4)
    assert all(b - a > 1 for a, b in zip(out, out[1:])), f"{case.id}: neighbouring poisoned channels {out}"


def test_one_output_channel_keeps_the_filters_finite():
    case = Case(op="conv2d", batch=1, height=3, width=3, in_channels=2, kernel=2, out_channels=1, profile="special")
    assert special_filter_positions(case) == {}
    assert np.isfinite(as64(make_inputs(case).filters)).all()


def test_zero_and_subnormal_sites_sit_on_a_channel_an_infinite_tap_reads():
    reads = {q for kind in ("+inf", "-inf") for _, _, q, _ in special_filter_positions(CONV).get(kind, [])}
    pos = special_positions(CONV)
    quiet = [c for kind in ("-0", "+0", "subnormal") for *_, c in pos[kind]]
    assert reads and quiet and set(quiet) <= reads


@pytest.mark.parametrize("name", CASES)
def test_finite_outputs_sit_beside_nonfinite_ones_along_w_h_and_channels(name):
    case = CASES[name]
    value = reference(case, *make_inputs(case)).value
    finite = np.isfinite(value)
    for axis in (1, 2, 3):
        a, b = np.swapaxes(finite, axis, -1)[..., :-1], np.swapaxes(finite, axis, -1)[..., 1:]
        assert (a != b).any(), f"{case.id}: no finite output beside a non-finite one along axis {axis}"
    assert 0.2 < finite.mean() < 0.9, f"{case.id}: {finite.mean():.0%} of the outputs are finite"


# ---- the default set catches the lane bugs --------------------------------------------------


@lru_cache(maxsize=1)
def default_special_cases():
    """(case, inputs, reference) of every valid forward-op `special` case of the default set
    (the planted lane bugs are forward kernels)."""
    from cases.sets import select

    out = []
    for case in select("default"):
        if case.profile == "special" and case.is_valid and case.op in FORWARD_OPS:
            inputs = make_inputs(case)
            out.append((case, inputs, reference(case, *inputs)))
    return out


@lru_cache(maxsize=None)
def caught(bug: str) -> tuple[tuple[Case, str], ...]:
    adapter = next(cls() for cls in vars(broken_adapters).values()
                   if isinstance(cls, type) and getattr(cls, "bug", None) == bug)
    out = []
    for case, inputs, ref in default_special_cases():
        c = compare(case, adapter.run(case, *inputs), ref, inputs)
        if not c.passed:
            out.append((case, c.kind))
    return tuple(out)


def _applies(bug: str, op: str) -> bool:
    return not (bug == "oddpad" and op == "depthwise_conv2d")  # the pad lane is a conv2d channel pair


LANE_CELLS = [(bug, op, dtype) for bug in broken_adapters.LANE_BUGS for op in ("conv2d", "depthwise_conv2d")
              for dtype in DTYPES if _applies(bug, op)]


@pytest.mark.parametrize("bug, op, dtype", LANE_CELLS, ids=["-".join(c) for c in LANE_CELLS])
def test_the_default_special_cases_catch_the_lane_bug_in_every_dtype_and_op(bug, op, dtype):
    hits = [(case.id, kind) for case, kind in caught(bug) if case.op == op and case.dtype == dtype]
    assert hits, f"no default special case of {op} in {dtype} caught the {bug!r} bug"
    assert {kind for _, kind in hits} == {"nonfinite"}, hits


def test_the_program_without_a_bug_passes_every_default_special_case():
    assert len(default_special_cases()) >= 24
    assert caught("none") == (), [case.id for case, _ in caught("none")]
