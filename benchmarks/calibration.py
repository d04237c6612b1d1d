"""Regenerate the tolerance calibration figures quoted in conformance/tolerance.py.

    python benchmarks/calibration.py [--cases NAME ...] [--dtype D ...] [--profile P ...]

For every grid point of tests/test_tolerance.py (CALIBRATION_CASES x dtypes x profiles)
it runs the correct and the wrong emulations there (the same functions the tests use)
and prints, per emulation: the contract it emulates (or must fail), the kind under
`strict`, the strongest contract it meets, its max normalised error (in the dtype's
units, against the `any` threshold) and its max error in sigma of a correct sum. The
pass/fail checks stay in the tests; this is the measuring grid behind their numbers.
Takes minutes (the long K = 21,952 reduction dominates).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the checkout: its tests import their helpers as tests.<module>

import tests.test_tolerance as cal  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", nargs="*", default=list(cal.CALIBRATION_CASES), choices=list(cal.CALIBRATION_CASES))
    p.add_argument("--dtype", nargs="*", default=list(cal.CALIBRATION_DTYPES), choices=list(cal.CALIBRATION_DTYPES))
    p.add_argument("--profile", nargs="*", default=list(cal.CALIBRATION_PROFILES),
                   choices=list(cal.CALIBRATION_PROFILES))
    args = p.parse_args(argv)
    print(f"{'case':<14} {'dtype':<9} {'profile':<11} {'emulation':<32} {'contract':<8} {'kind':<15} "
          f"{'meets':<8} {'max e':>9} {'threshold':>9} {'max sigma':>10}")
    for name in args.cases:
        for dtype in args.dtype:
            for profile in args.profile:
                case, threshold, results, correct, wrong = cal.measure(name, dtype, profile)
                for emu, (kind, e, sigma, met) in results.items():
                    level = correct.get(emu) or wrong.get(emu)
                    print(f"{name:<14} {dtype:<9} {profile:<11} {emu:<32} {level:<8} {kind or 'pass':<15} "
                          f"{met or 'none':<8} {e:>9.3g} {threshold:>9.3g} {sigma or 0:>10.3g}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
