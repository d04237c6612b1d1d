"""The transform contracts (`winograd`, `fft`, `winograd4`, `winograd6`): calibration that must hold.

Correct transform algorithms are emulated in NumPy one rounded operation at a time
(tests/transform_kernels.py: Winograd F(2x2,3x3), F(4x4,3x3), F(6x6,3x3), a radix-2 FFT and a
DFT-by-matrix of any size), on a grid of shapes x dtypes x profiles (`TRANSFORM_GRID`; K from
9 to 2,304, planes up to 64 x 64).
Pinned:
- each passes its own contract and every weaker one of the case's chain;
- Winograd F(2x2,3x3) passes `strict` off wide-range data (policy: a correct float32
  algorithm), while float32 with TF32 products or a float16 accumulator is still caught
  under `strict` on the same 3x3 cases;
- F(4x4,3x3), F(6x6,3x3) and the FFT, where `strict` flags them, are `precision`
  divergences that name a transform contract (never `tf32`, never a wrong value);
- index bugs inside them (a wrong transform coefficient at an edge tile, a wrong tile
  offset, a wrong twiddle factor) are wrong values under their contract;
- the same algorithms with every operation rounded toward zero are a `rounding_bias`
  under their contract (the gain a transform's rounded constants give is allowed, a
  directed rounding is not).
`benchmarks/calibration.py --transforms` prints the figures behind these margins.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

import tests.test_tolerance as cal
from conformance import oracle, tolerance
from conformance.compare import compare
from conformance.inputs import make_inputs
from conformance.spec import Case
from tests.transform_kernels import TRANSFORM_BUGS, TRANSFORMS, TRUNCATING

#: 3 x 3 stride-1 shapes (every transform), one 5 x 5 (the FFT only), one large plane (the
#: FFT's gain grows with log2 of its size); K from 9 to 2,304.
TRANSFORM_CASES = {
    "dw-k3x3-m2": dict(op="depthwise_conv2d", batch=2, height=20, width=20, in_channels=8, kernel=3,
                       channel_multiplier=2, padding="SAME"),
    "k3x3x4": dict(op="conv2d", batch=1, height=16, width=16, in_channels=4, kernel=3, out_channels=16,
                   padding="SAME"),
    "k3x3x64-bias": dict(op="conv2d", batch=1, height=14, width=14, in_channels=64, kernel=3, out_channels=16,
                         padding="SAME", bias=True),
    "k3x3x256": dict(op="conv2d", batch=1, height=8, width=8, in_channels=256, kernel=3, out_channels=8,
                     padding="SAME"),
    "k3x3-g3-pads": dict(op="conv2d", batch=1, height=12, width=13, in_channels=12, kernel=3, out_channels=6,
                         groups=3, padding=((1, 0), (2, 1))),
    "k5x5x8": dict(op="conv2d", batch=1, height=20, width=20, in_channels=8, kernel=5, out_channels=8,
                   padding="SAME"),
    "k3x3x3-plane64": dict(op="conv2d", batch=1, height=64, width=64, in_channels=3, kernel=3, out_channels=8,
                           padding="SAME"),
}
#: Every shape in float32, a few in float64 and bfloat16 (transformed in float32, rounded once).
TRANSFORM_GRID = [(n, "float32", p) for n in TRANSFORM_CASES for p in ("normal", "wide_range")] + \
    [(n, "float64", p) for n in ("dw-k3x3-m2", "k3x3x64-bias", "k5x5x8") for p in ("normal", "wide_range")] + \
    [(n, "bfloat16", "normal") for n in ("k3x3-g3-pads", "k3x3x256", "k3x3x3-plane64")]
TABLES = {"correct": TRANSFORMS, "bug": TRANSFORM_BUGS, "truncating": TRUNCATING}


@functools.lru_cache(maxsize=None)
def measure(name: str, dtype: str, profile: str, table: str = "correct"):
    """(case, {emulation: (its contract, {contract: Comparison under it})}) for the emulations
    of `table` that compute the grid point, each judged under its own contract, and the
    correct ones also under `strict` (the weaker contracts nest: `test_contracts_nest`)."""
    case = Case(**TRANSFORM_CASES[name], dtype=dtype, profile=profile)
    x, w, b = make_inputs(case)
    ref = oracle.reference(case, x, w, b)
    out = {}
    for emu, (level, applies, fn) in TABLES[table].items():
        if not applies(case) or (table == "truncating" and dtype == "float64"):
            continue
        y = fn(case, x, w, b)
        own = tolerance.canonical(case, level)
        levels = dict.fromkeys(["strict", own] if table == "correct" else [own])
        out[emu] = level, {lv: compare(case, y, ref, (x, w, b), lv) for lv in levels}
    return case, out


def _points(table):
    return [(g, emu) for g in TRANSFORM_GRID for emu, (_, applies, _) in TABLES[table].items()
            if applies(Case(**TRANSFORM_CASES[g[0]], dtype=g[1], profile=g[2]))
            and not (table == "truncating" and g[1] == "float64")]


def _ids(points):
    return ["-".join(g) + "-" + emu.replace(" ", "_") for g, emu in points]


CORRECT_POINTS = _points("correct")


@pytest.mark.parametrize("point, emu", CORRECT_POINTS, ids=_ids(CORRECT_POINTS))
def test_a_correct_transform_passes_its_contract(point, emu):
    case, results = measure(*point)
    level, judged = results[emu]
    c = judged[tolerance.canonical(case, level)]
    assert c.passed, f"{case.id}: {emu} (a correct `{level}` implementation) diverged: {c.kind}: {c.message}"


@pytest.mark.parametrize("name, dtype, profile", TRANSFORM_GRID, ids=["-".join(g) for g in TRANSFORM_GRID])
def test_contracts_nest_allowances_and_sign_rules(name, dtype, profile):
    # Each contract of a case's chain allows at least what every stronger one allows, per
    # element and in the sign test: what passes one contract passes every weaker one.
    case = Case(**TRANSFORM_CASES[name], dtype=dtype, profile=profile)
    x, w, b = make_inputs(case)
    ref = oracle.reference(case, x, w, b)
    scales = tolerance.transform_scales(case, (x, w, b))
    chain = tolerance.chain_of(case)
    limits = [tolerance.element_limit(case, ref, lv, scales) for lv in chain]
    assert all((weak >= strong).all() for strong, weak in zip(limits, limits[1:]))
    rules = [tolerance.sign_rule(case, lv) for lv in chain]
    assert all(w[0] >= s[0] and w[1] >= s[1] for s, w in zip(rules, rules[1:]))


F2_OFF_WIDE_RANGE = [p for p in CORRECT_POINTS if p[1] == "winograd F(2x2,3x3)" and p[0][2] != "wide_range"]


@pytest.mark.parametrize("point, emu", F2_OFF_WIDE_RANGE, ids=_ids(F2_OFF_WIDE_RANGE))
def test_winograd_f2_passes_strict_off_wide_range_data(point, emu):
    case, results = measure(*point)
    c = results[emu][1]["strict"]
    assert c.passed, f"{case.id}: Winograd F(2x2,3x3) flagged under strict: {c.kind}: {c.message}"


WINOGRAD_F2_3X3 = [g for g in TRANSFORM_GRID if g[1] == "float32" and g[2] == "normal" and
                   tolerance.winograd_applies(Case(**TRANSFORM_CASES[g[0]], dtype=g[1], profile=g[2]))]


@pytest.mark.parametrize("name, dtype, profile", WINOGRAD_F2_3X3, ids=["-".join(g) for g in WINOGRAD_F2_3X3])
def test_tf32_products_and_float16_accumulation_are_still_caught_under_strict_where_f2_applies(
        name, dtype, profile):
    case = Case(**TRANSFORM_CASES[name], dtype=dtype, profile=profile)
    x, w, b = make_inputs(case)
    ref = oracle.reference(case, x, w, b)
    wrong = cal.wrong_emulations(case, x, w, b)
    for emu in ("tf32", "f16-acc"):
        c = compare(case, wrong[emu][0], ref, (x, w, b))
        assert not c.passed, f"{case.id}: {emu} passed `strict`"
        assert c.precision_met not in ("strict", "winograd"), f"{case.id}: {emu} meets {c.precision_met}"


NAMED_LEVELS = {"winograd F(4x4,3x3)", "winograd F(6x6,3x3)", "fft radix-2", "fft exact-size"}


@pytest.mark.parametrize("emu", sorted(NAMED_LEVELS))
def test_larger_transforms_flagged_under_strict_are_precision_naming_a_transform_contract(emu):
    flagged = []
    for point in TRANSFORM_GRID:
        case, results = measure(*point)
        if emu in results and point[1] == "float32" and not results[emu][1]["strict"].passed:
            c = results[emu][1]["strict"]
            flagged.append(case.id)
            assert c.kind == "precision", f"{case.id}: {emu} under strict: {c.kind}: {c.message}"
            assert c.precision_met in tolerance.TRANSFORM_LEVELS, f"{case.id}: {emu} meets {c.precision_met}"
            assert c.message.startswith(f"meets `{c.precision_met}`, not `strict`: consistent with "), c.message
    assert flagged, f"{emu} passed `strict` on every float32 grid point: the calibration shows nothing"


#: float32 on normal data, on the wide-range data of the largest plane and reduction, and
#: one bfloat16 point (the transform's errors hide under the 16-bit rounding there).
BUG_POINTS = [p for p in _points("bug") if p[0][1:] == ("float32", "normal")
              or p[0] in (("k3x3x3-plane64", "float32", "wide_range"), ("k3x3x256", "float32", "wide_range"),
                          ("k3x3x256", "bfloat16", "normal"))]


@pytest.mark.parametrize("point, emu", BUG_POINTS, ids=_ids(BUG_POINTS))
def test_an_index_bug_inside_a_transform_is_flagged_under_its_contract(point, emu):
    case, results = measure(*point, "bug")
    level, judged = results[emu]
    c = judged[tolerance.canonical(case, level)]
    assert not c.passed and c.kind != "rounding_bias", f"{case.id}: {emu} under `{level}`: {c.kind}"
    # A wrong value, or (16-bit types at large K) within only the loose 16-bit accumulation
    # contracts: never explained by a transform contract.
    assert c.precision_met is None or c.precision_met in ("relaxed", "any"), (case.id, emu, c.precision_met)


#: float32 only: a 16-bit output rounds the float32 truncation errors away (the 16-bit
#: types' directed roundings are pinned in tests/test_tolerance.py).
TRUNCATING_POINTS = [p for p in _points("truncating") if p[0][1] == "float32" and p[0][2] == "normal"]


@pytest.mark.parametrize("point, emu", TRUNCATING_POINTS, ids=_ids(TRUNCATING_POINTS))
def test_a_transform_rounding_toward_zero_is_a_rounding_bias_under_its_contract(point, emu):
    case, results = measure(*point, "truncating")
    level, judged = results[emu]
    c = judged[tolerance.canonical(case, level)]
    assert not c.passed, f"{case.id}: {emu} passed `{level}` (sign test z = {c.figures.get('rounding_bias_z')})"
    assert c.kind in ("rounding_bias", "precision"), f"{case.id}: {emu}: {c.kind}: {c.message}"


def test_winograd_turns_an_infinite_result_into_nan_and_no_contract_accepts_it():
    # Its transforms subtract values (B^T d B, G g G^T, A^T M A): an Inf input or tap gives
    # Inf - Inf = NaN where IEEE's direct sum gives the infinity. The contracts are about
    # rounding: non-finite values are judged exactly under every one.
    case = Case(**TRANSFORM_CASES["k3x3x4"], profile="special")
    x, w, b = make_inputs(case)
    ref = oracle.reference(case, x, w, b)
    _, _, f2 = TRANSFORMS["winograd F(2x2,3x3)"]
    y = f2(case, x, w, b)
    assert (np.isinf(ref.value) & np.isnan(y.astype(np.float64))).any()
    for level in ("strict", "winograd", "winograd6"):
        c = compare(case, y, ref, (x, w, b), level)
        assert (c.passed, c.kind) == (False, "nonfinite"), (level, c.kind)


@functools.lru_cache(maxsize=1)
def default_winograd_cases() -> list[Case]:
    """The default set's float32 cases Winograd F(2x2, 3x3) computes, on finite data."""
    from cases.sets import select

    return [c for c in select("default", dtypes=["float32"])
            if tolerance.winograd_applies(c) and c.profile != "special"]


def test_winograd_f2_passes_strict_on_every_default_float32_case_it_computes():
    # The policy's "a correct float32 algorithm" on the data the default run judges: the
    # wide-range cases of the default set included (the `winograd` contract is for data
    # whose tiles mix scales further still).
    _, _, f2 = TRANSFORMS["winograd F(2x2,3x3)"]
    flagged = []
    cases = default_winograd_cases()
    for case in cases:
        x, w, b = make_inputs(case)
        c = compare(case, f2(case, x, w, b), oracle.reference(case, x, w, b), (x, w, b))
        if not c.passed:
            flagged.append((case.id, c.kind, c.message[:120]))
    assert len(cases) >= 20 and not flagged, flagged
