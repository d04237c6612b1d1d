"""Regenerate the tolerance calibration figures quoted in conformance/tolerance.py.

    python benchmarks/calibration.py [--cases NAME ...] [--dtype D ...] [--profile P ...]
    python benchmarks/calibration.py --transforms [--cases NAME ...]
    python benchmarks/calibration.py --sign-test

Default: for every grid point of tests/test_tolerance.py (CALIBRATION_CASES x dtypes x
profiles) it runs the correct and the wrong emulations there (the same functions the tests
use) and prints, per emulation: the contract it emulates (or must fail), the kind under
`strict`, the strongest contract it meets, its max normalised error (in the dtype's units,
against the `any` threshold) and its max error in sigma of a correct sum. Takes minutes
(the long K = 21,952 reduction dominates).

`--transforms`: for every grid point of tests/test_transforms.py (TRANSFORM_GRID), each
transform emulation (tests/transform_kernels.py: correct, with an index bug, rounding toward
zero): its contract, the kind under `strict` and the strongest contract it meets, the kind
under its own contract, its max error in units of its transform scale (u_w S + omega floor_w:
the coefficient c of the contract must stay above it: WINOGRAD_C, FFT_C, and for F(2x2, 3x3)
under `strict` STRICT_WINOGRAD_C), its least-squares common gain in units of u_w (against
WINOGRAD_GAIN, FFT_GAIN_PER_LOG2 x log2 N), and the sign test's z at no gain.

`--sign-test`: the sign test at the default set's largest 16-bit layers, for accumulation
in the dtype (rounding to nearest, and toward zero) and a float32 accumulation converted
toward zero: z, the lean (2t - n) / n against BIAS_LEAN, and the verdict under each contract.

The pass/fail checks stay in the tests; this is the measuring grid behind their numbers.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the checkout: its tests import their helpers as tests.<module>

import tests.test_tolerance as cal  # noqa: E402
import tests.test_transforms as tcal  # noqa: E402

from conformance import _rule, oracle, tolerance  # noqa: E402
from conformance.compare import compare, sign_test  # noqa: E402
from conformance.inputs import make_inputs  # noqa: E402
from conformance.spec import Case  # noqa: E402


def direct(args) -> None:
    print(f"{'case':<14} {'dtype':<9} {'profile':<11} {'emulation':<32} {'contract':<8} {'kind':<15} "
          f"{'meets':<8} {'max e':>9} {'threshold':>9} {'max sigma':>10}")
    for name in args.cases or list(cal.CALIBRATION_CASES):
        for dtype in args.dtype:
            for profile in args.profile:
                case, threshold, results, correct, wrong = cal.measure(name, dtype, profile)
                for emu, (kind, e, sigma, met) in results.items():
                    level = correct.get(emu) or wrong.get(emu)
                    print(f"{name:<14} {dtype:<9} {profile:<11} {emu:<32} {level:<8} {kind or 'pass':<15} "
                          f"{met or 'none':<8} {e:>9.3g} {threshold:>9.3g} {sigma or 0:>10.3g}", flush=True)


def _transform_figures(case, y, ref, inputs, level):
    """(max error in units of the transform's scale, common gain in units of u_w); None, None
    for a 16-bit case (its output's own rounding hides the working precision's errors)."""
    P = tolerance.rule_params(case)
    half = P["dtype_class"] == "half"
    if half:
        return None, None
    u, floor = (P["acc_u"], P["acc_floor"]) if half else (P["u"], P["floor"])
    y64 = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(y64) & np.isfinite(ref.value)
    e_s = None
    if level in P["transforms"]:
        t = P["transforms"][level]
        s = _rule.transform_scale(P, level, *inputs)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.abs(y64 - ref.value) / (u * s + t["omega"] * floor)
        e_s = float(np.max(np.where(ok, r, 0.0)))
    v = np.where(ok, ref.value, 0.0)
    gain = float(np.sum(np.where(ok, y64 - v, 0.0) * v) / np.sum(v * v)) / u if np.any(v) else 0.0
    return e_s, gain


def transforms(args) -> None:
    print(f"{'grid point':<34} {'emulation':<38} {'contract':<10} {'strict':<14} {'meets':<10} "
          f"{'own':<14} {'e / u S':>8} {'gain/u':>7} {'z':>7}")
    for point in tcal.TRANSFORM_GRID:
        if args.cases and point[0] not in args.cases:
            continue
        case = Case(**tcal.TRANSFORM_CASES[point[0]], dtype=point[1], profile=point[2])
        inputs = make_inputs(case)
        ref = oracle.reference(case, *inputs)
        for table in tcal.TABLES.values():
            for emu, (level, applies, fn) in table.items():
                if not applies(case) or ("truncating" in emu and point[1] != "float32"):
                    continue
                y = fn(case, *inputs)
                strict = compare(case, y, ref, inputs)
                own = compare(case, y, ref, inputs, level)
                e_s, gain = _transform_figures(case, y, ref, inputs, tolerance.canonical(case, level))
                z = tolerance.rounding_bias_z(case, np.asarray(y, dtype=np.float64), ref)
                print(f"{'-'.join(point):<34} {emu:<38} {level:<10} {strict.kind or 'pass':<14} "
                      f"{strict.precision_met or 'none':<10} {own.kind or 'pass':<14} "
                      f"{'-' if e_s is None else f'{e_s:.3g}':>8} {'-' if gain is None else f'{gain:.3f}':>7} "
                      f"{'-' if z is None else z:>7}",
                      flush=True)


def default_f2() -> None:
    """F(2x2, 3x3) on every float32/float64 case of the default set it computes (finite data):
    the max error in units of its tile scale per profile (STRICT_WINOGRAD_C stays above the
    profiles of one scale), and the verdict under `strict`."""
    from cases.sets import select

    worst: dict[str, tuple[float, str]] = {}
    flagged = []
    _, _, f2 = tcal.TRANSFORMS["winograd F(2x2,3x3)"]
    for case in select("default", dtypes=["float32", "float64"]):
        if not tolerance.winograd_applies(case) or case.profile == "special":
            continue
        inputs = make_inputs(case)
        ref = oracle.reference(case, *inputs)
        y = f2(case, *inputs)
        e_s, _ = _transform_figures(case, y, ref, inputs, "winograd")
        if e_s is not None and e_s > worst.get(case.profile, (-1.0, ""))[0]:
            worst[case.profile] = (e_s, case.id)
        c = compare(case, y, ref, inputs)
        if not c.passed:
            flagged.append(f"{case.id} ({c.kind})")
    print("\nWinograd F(2x2,3x3) on the default set (float32, float64): max error / (u S_T) per profile")
    for profile, (e_s, cid) in sorted(worst.items()):
        print(f"  {profile:<18} {e_s:8.3g}   {cid}")
    print(f"  flagged under strict: {', '.join(flagged) or 'none'}")


def sign(args) -> None:
    from cases.sets import select

    layers = sorted((c for c in select("default") if c.dtype in ("float16", "bfloat16") and c.is_valid
                     and c.profile == "normal" and c.op == "conv2d" and c.groups == 1 and c.dilations == (1, 1)),
                    key=lambda c: -math.prod(c.output_shape))[:3]
    levels = ("strict", "relaxed", "any")
    print(f"{'layer':<60} {'accumulation':<18} {'n':>8} {'z':>8} {'lean':>7} " + " ".join(f"{lv:<14}" for lv in levels))
    for case in layers:
        inputs = make_inputs(case)
        ref = oracle.reference(case, *inputs)
        for how in ("float32-rounded", "own", "own-truncating", "float32-truncated"):
            if how == "float32-rounded":
                y = ref.value.astype(np.float32).astype(inputs.x.dtype)
            else:
                y = cal.accumulated_16bit(case, *inputs[:2], how)
                if inputs.bias is not None:  # added in the dtype, rounded to nearest
                    y = (y.astype(np.float64) + inputs.bias.astype(np.float64)).astype(inputs.x.dtype)
            y64 = y.astype(np.float64)
            n, t = tolerance.rounding_counts(case, y64, ref)
            verdicts = [compare(case, y, ref, inputs, lv).kind or "pass" for lv in levels]
            z = sign_test(case, y64, ref, "strict")[0]
            print(f"{case.id[:60]:<60} {how:<18} {n:>8} {z!s:>8} {(2 * t - n) / max(n, 1):>7.3f} "
                  + " ".join(f"{v:<14}" for v in verdicts), flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--transforms", action="store_true", help="the transform contracts' grid")
    p.add_argument("--sign-test", action="store_true", help="the sign test at the largest 16-bit layers")
    p.add_argument("--cases", nargs="*", default=[], help="grid case names (default: all)")
    p.add_argument("--dtype", nargs="*", default=list(cal.CALIBRATION_DTYPES), choices=list(cal.CALIBRATION_DTYPES))
    p.add_argument("--profile", nargs="*", default=list(cal.CALIBRATION_PROFILES),
                   choices=list(cal.CALIBRATION_PROFILES))
    args = p.parse_args(argv)
    if args.transforms:
        transforms(args)
        if not args.cases:
            default_f2()
    elif args.sign_test:
        sign(args)
    else:
        direct(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
