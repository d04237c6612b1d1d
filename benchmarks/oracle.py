"""Speed of the NumPy oracle against torch.nn.functional.conv2d in float64, one run.

    python benchmarks/oracle.py [--repeat N] [--quick] [--threads N]

On a shared machine pin both sides to one thread for stable figures:
    OPENBLAS_NUM_THREADS=1 python benchmarks/oracle.py --threads 1

For a few realistic layer shapes (conv2d and depthwise), times
- `oracle.conv2d` / `oracle.depthwise_conv2d` (the float64 value path every float32,
  float16 and bfloat16 case uses),
- `oracle.reference` (value + magnitude: what a run actually computes per case),
- the exact float64 path that float64 cases use (`compensated=True`: Ozaki-style slices,
  for conv2d two per operand in three float64 GEMMs, the input sliced once per band of
  rows; for depthwise one per operand and channel),
- Dot2 (TwoProduct + TwoSum): for conv2d over the same im2col matrix, timed once (the
  path the Ozaki one replaced); for depthwise per tap (the exact path before this one,
  still used outside the sliced paths' exponent range),
- torch.nn.functional.conv2d on the same float64 data (NCHW, groups = C for depthwise),
- NumPy's own float64 matmul on a square GEMM of the same multiply-add count (the
  ceiling an im2col + GEMM oracle can reach on this machine),
and prints a Markdown table of GFLOP/s (2 flops per multiply-add; padded taps count) and
the ratios. Targets: conv2d >= 1x torch and >= 50% of the GEMM ceiling; depthwise >=
0.5x torch (value and exact); the exact float64 conv2d >= 25% of the ceiling. Timings
are the best of `--repeat` round-robin runs (the machine may be shared: load from
elsewhere then hits every column alike).
torch is imported here, never by the engine.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time

import numpy as np

from conformance import exact as oracle_exact
from conformance import oracle, patches
from conformance.spec import Case

SHAPES = [
    # name, op, (N, H, W, C), kernel, out_channels or multiplier
    ("conv 1x56x56x64 k3 ->64", "conv2d", (1, 56, 56, 64), 3, 64),
    ("conv 1x28x28x128 k3 ->128", "conv2d", (1, 28, 28, 128), 3, 128),
    ("conv 1x14x14x256 k3 ->256", "conv2d", (1, 14, 14, 256), 3, 256),
    ("conv 8x14x14x32 k3 ->64", "conv2d", (8, 14, 14, 32), 3, 64),
    ("dw 1x112x112x32 k3 m1", "depthwise_conv2d", (1, 112, 112, 32), 3, 1),
    ("dw 1x56x56x128 k3 m1", "depthwise_conv2d", (1, 56, 56, 128), 3, 1),
    ("dw 2x14x14x32 k3 m64", "depthwise_conv2d", (2, 14, 14, 32), 3, 64),
    # Real layers: ResNet-50 stage 4 3x3 (K = 4,608) and a 1x1 expansion; MobileNetV2 depthwise.
    ("conv 1x7x7x512 k3 ->512", "conv2d", (1, 7, 7, 512), 3, 512),
    ("conv 1x56x56x64 k1 ->256", "conv2d", (1, 56, 56, 64), 1, 256),
    ("dw 1x56x56x144 k3 m1", "depthwise_conv2d", (1, 56, 56, 144), 3, 1),
    # A long reduction: a 3x3 over 1,024 channels (K = 9,216), as in DeepLab/ResNet stage-4 widths.
    ("conv 1x14x14x1024 k3 ->256", "conv2d", (1, 14, 14, 1024), 3, 256),
]


def dot2_conv(case: Case, x: np.ndarray, f: np.ndarray) -> np.ndarray:
    """conv2d by Dot2 over the im2col matrix: the exact path before the Ozaki one."""
    geo = case.geometry
    xp = patches.pad(x, geo.pads)
    win = patches.windows(xp, geo, case.kernel, case.strides, case.dilations)
    cols = win.reshape(-1, case.reduction_size)
    return oracle_exact.dot2(cols, f.reshape(case.reduction_size, -1))


def dot2_depthwise(case: Case, x: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Depthwise by Dot2 per tap: the oracle's exact path for data outside its fast range."""
    saved, oracle_exact.FAST_EXP = oracle_exact.FAST_EXP, -1  # no data is in range: Dot2 everywhere
    try:
        return oracle.convolve(case, x, f, compensated=True)
    finally:
        oracle_exact.FAST_EXP = saved


def best_times(fns: dict, repeat: int) -> dict:
    """Best wall time of each function, run round-robin so that load from other processes
    on a shared machine hits all of them alike."""
    for fn in fns.values():
        fn()  # warm-up (allocations, thread pools, lazy imports)
    best = {name: math.inf for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def make_case(op, shape, kernel, channels) -> Case:
    n, h, w, c = shape
    extra = dict(out_channels=channels) if op == "conv2d" else dict(channel_multiplier=channels)
    return Case(op=op, batch=n, height=h, width=w, in_channels=c, kernel=kernel, padding="SAME", **extra)


def torch_fn(case: Case, x: np.ndarray, f: np.ndarray):
    import torch
    import torch.nn.functional as F

    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    if case.op == "conv2d":
        wt = torch.from_numpy(np.ascontiguousarray(f.transpose(3, 2, 0, 1)))  # HWIO -> OIHW
        groups = 1
    else:
        kh, kw, c, m = f.shape
        wt = torch.from_numpy(np.ascontiguousarray(f.reshape(kh, kw, c * m).transpose(2, 0, 1)[:, None]))
        groups = c
    pads = case.geometry.pads
    assert pads[0][0] == pads[0][1] and pads[1][0] == pads[1][1], "benchmark shapes use symmetric SAME pads"

    def run():
        with torch.no_grad():
            return F.conv2d(xt, wt, stride=case.strides, padding=(pads[0][0], pads[1][0]), dilation=case.dilations,
                            groups=groups)

    return run


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="one repeat, first shape of each op only")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (set OPENBLAS_NUM_THREADS to match for NumPy)")
    args = parser.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    shapes = SHAPES if not args.quick else [SHAPES[0], SHAPES[4]]
    repeat = 1 if args.quick else args.repeat
    rng = np.random.default_rng(0)
    print(f"numpy {np.__version__}, torch {torch.__version__} (threads {torch.get_num_threads()}), "
          f"cpu count {os.cpu_count()}, {platform.processor() or platform.machine()}, "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', '(unset)')}, best of {repeat}\n")
    print("| shape | MACs | oracle GFLOP/s | reference GFLOP/s | exact f64 GFLOP/s | Dot2 GFLOP/s "
          "| torch f64 GFLOP/s | oracle / torch | GEMM ceiling GFLOP/s | oracle / ceiling | exact / ceiling "
          "| exact / Dot2 | exact / torch |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, op, shape, kernel, channels in shapes:
        case = make_case(op, shape, kernel, channels)
        x = rng.standard_normal(case.input_shape)
        f = rng.standard_normal(case.filter_shape)
        macs = math.prod(case.output_shape) * case.reduction_size
        run_torch = torch_fn(case, x, f)
        # Same numbers, same layout convention: the comparison is meaningless otherwise.
        want = run_torch().numpy().transpose(0, 2, 3, 1)
        got = oracle.convolve(case, x, f, compensated=False)
        assert np.allclose(got, want, rtol=1e-10, atol=1e-10), f"{name}: oracle and torch disagree"
        side = max(64, int(round(macs ** (1 / 3) / 32)) * 32)
        a, b = rng.standard_normal((side, side)), rng.standard_normal((side, side))
        t = best_times({"oracle": lambda: oracle.convolve(case, x, f, compensated=False),
                        "reference": lambda: oracle.reference(case, x, f),
                        "torch": run_torch, "gemm": lambda: a @ b}, repeat)
        t["compensated"] = best_times({"c": lambda: oracle.convolve(case, x, f, compensated=True)},
                                      max(1, repeat // 2))["c"]
        if op == "conv2d":  # Dot2 is ~100x the work of a GEMM: time it once
            t["dot2"] = best_times({"d": lambda: dot2_conv(case, x, f)}, 1)["d"]
        else:
            t["dot2"] = best_times({"d": lambda: dot2_depthwise(case, x, f)}, max(1, repeat // 2))["d"]
        g = {k: 2.0 * macs / v / 1e9 for k, v in t.items()}
        ceiling = 2.0 * side**3 / t["gemm"] / 1e9
        print(f"| {name} | {macs / 1e6:.0f} M | {g['oracle']:.2f} | {g['reference']:.2f} | {g['compensated']:.2f} | "
              f"{g['dot2']:.2f} | {g['torch']:.2f} | {t['torch'] / t['oracle']:.2f}x | {ceiling:.2f} (n={side}) | "
              f"{g['oracle'] / ceiling:.0%} | {g['compensated'] / ceiling:.0%} | {t['dot2'] / t['compensated']:.0f}x | "
              f"{t['torch'] / t['compensated']:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
