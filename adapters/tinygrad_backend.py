"""tinygrad: Tensor.conv2d on tinygrad's CPU device (which compiles kernels with clang).

Translation: NCHW / OIHW (a single-layout backend: data_format NCHW takes the same
path); depthwise is groups = C with weights (C*M, 1, kh, kw) in k*M + q order. Padding:
explicit (left, right, top, bottom) from `conv_geometry` (tinygrad has no SAME string).
DEV=CPU is set by the program's setup before tinygrad is imported (tinygrad picks its
device from it; otherwise it takes the first usable device, which on a GPU machine is
not the CPU). bfloat16 enters as float32 and is cast (exact), and leaves as float32
(exact) cast back in NumPy.
Training ops: the input gradients are Tensor.conv_transpose2d (the forward OIHW weights,
explicit (left, right, top, bottom) pads, output_padding); the filter gradients are
Tensor.gradient of conv2d at zero filters (tinygrad has no filter-gradient function);
separable is two conv2d.
Left out of the default run: tinygrad compiles one kernel per shape, and with a cold
kernel cache the 375-case default set took about 9 minutes on 2 cores (2026-12-01),
beyond the default run's 5-minute budget. Run it by name: `conformance run --backend tinygrad`.
Kernel path (`facts`): the device, its compiler and target (`-march=native` is this
CPU's ISA), BEAM search and Winograd convolutions, as tinygrad reads them after the
program's setup selected the CPU device.
"""

from __future__ import annotations

from conformance.spec import FORWARD_OPS, OPS, OP_INFO, Case

from typing import Any

from ._base import BuiltinAdapter, Fact, env_preamble, tiny_case
from ._layout import hwcm_to_oihw, hwio_to_oihw, nchw_to_nhwc, nhwc_to_nchw, oihw_to_hwcm, oihw_to_hwio
from ._program import Program

_TG_TYPES = {"float32": "float32", "float16": "float16", "bfloat16": "bfloat16", "float64": "float64"}


class TinygradAdapter(BuiltinAdapter):
    """tinygrad: Tensor.conv2d on the CPU device (needs clang)."""

    framework = "tinygrad"
    ops = OPS
    base_name = "tinygrad"
    extra = "tinygrad"
    executables = ("clang",)  # its CPU device compiles every kernel with clang
    distributions = ("tinygrad",)
    excluded = ("over the default run's 5-minute budget: it compiles a kernel per shape, and the default set took "
                "about 9 minutes on 2 cores with a cold kernel cache; run it by name")
    facts = {
        "tinygrad.device": Fact(str, "tinygrad's device (Device.DEFAULT; the adapter sets DEV=CPU)"),
        "tinygrad.compiler": Fact(str, "the device's compiler (ClangCompiler, LLVMCompiler, ...)"),
        "tinygrad.arch": Fact(str, "the target the CPU device compiles for (x86_64,native: -march=native)"),
        "tinygrad.beam": Fact(int, "BEAM kernel search width (0: tinygrad's heuristics)"),
        "tinygrad.winograd": Fact(bool, "WINO: convolutions computed by Winograd transforms"),
    }

    def _env(self) -> dict[str, str]:
        return {"DEV": "CPU"}

    def version(self) -> str:
        import importlib.metadata

        return importlib.metadata.version("tinygrad")  # tinygrad has no __version__

    def _kernel_path(self, ns: dict[str, Any]) -> dict[str, dict[str, Any]]:
        from tinygrad import Device
        from tinygrad import helpers

        device = Device[Device.DEFAULT]
        arch = getattr(device, "arch", None)
        return {"tinygrad": {"version": self.version(), "device": Device.DEFAULT,
                             "compiler": type(device.compiler).__name__,
                             "arch": ",".join(arch) if isinstance(arch, (list, tuple)) else arch,
                             "beam": int(helpers.BEAM.value), "winograd": bool(helpers.WINO.value)}}

    def _probe(self, case: Case) -> Case:
        return tiny_case(case, dtype=case.dtype, bias=case.bias)

    def _program(self, case: Case) -> Program:
        setup = (env_preamble("tinygrad", self._env()) + "import numpy as np\n"
                 "from tinygrad import Tensor, dtypes\n")
        bf16 = case.dtype == "bfloat16"
        dtype = "x.dtype" if "x" in case.operands else "dy.dtype"

        def tensor(expr: str) -> str:
            if bf16:
                return f"Tensor(np.asarray({expr}, dtype=np.float32)).cast(dtypes.bfloat16)"
            return f"Tensor({expr})"

        def numpy(expr: str) -> str:
            out = f"{expr}.cast(dtypes.float32).numpy()" if bf16 else f"{expr}.numpy()"
            return out + (f".astype({dtype})" if bf16 else "")

        weights = hwio_to_oihw("filters") if case.forward_op == "conv2d" else hwcm_to_oihw("filters")
        groups = case.groups if case.forward_op == "conv2d" else case.in_channels
        (t, b), (l, r) = case.geometry.pads
        conv = (f"groups={groups}, stride={tuple(case.strides)!r}, dilation={tuple(case.dilations)!r}, "
                f"padding={(l, r, t, b)!r}")  # (left, right, top, bottom)
        if case.op in FORWARD_OPS:
            lines = [f"xt = {tensor(nhwc_to_nchw('x'))}  # NHWC -> NCHW", f"wt = {tensor(weights)}  # OIHW",
                     f"bt = {tensor('bias')}" if case.bias else "bt = None",
                     f"yt = xt.conv2d(wt, bt, {conv})",
                     f"y = {nchw_to_nhwc(numpy('yt'))}"]
        elif OP_INFO[case.op].result == "input":
            # conv_transpose2d's weight is (C_in, C_out / groups, kh, kw) with C_in dy's channels:
            # the forward conv's OIHW weights as they are; the forward pads, cropped.
            lines = [f"dyt = {tensor(nhwc_to_nchw('dy'))}  # NHWC -> NCHW", f"wt = {tensor(weights)}  # OIHW",
                     f"yt = dyt.conv_transpose2d(wt, None, {conv}, "
                     f"output_padding={tuple(case.geometry.output_padding)!r})",
                     f"y = {nchw_to_nhwc(numpy('yt'))}"]
        elif OP_INFO[case.op].result == "filter":
            # tinygrad has no filter-gradient function: its autograd of Tensor.conv2d. The
            # gradient does not depend on the filter's values, so zeros stand in for them.
            kh, kw = case.kernel
            shape = (case.conv_channels, case.filter_in_channels, kh, kw)
            back = (oihw_to_hwio if case.op == "conv2d_backprop_filter"
                    else lambda e: oihw_to_hwcm(e, case.in_channels))
            lines = [f"xt = {tensor(nhwc_to_nchw('x'))}  # NHWC -> NCHW", f"dyt = {tensor(nhwc_to_nchw('dy'))}",
                     f"wt = Tensor.zeros(*{shape!r}, dtype=xt.dtype)  # OIHW",
                     f"yt = xt.conv2d(wt, None, {conv})",
                     "(gt,) = yt.gradient(wt, gradient=dyt)",
                     f"y = {back(numpy('gt'))}  # OIHW -> the canonical filter layout"]
        else:  # separable: the depthwise conv, then the 1x1 conv with the bias
            lines = [f"xt = {tensor(nhwc_to_nchw('x'))}  # NHWC -> NCHW",
                     f"wt = {tensor(weights)}  # (C*M, 1, kh, kw)",
                     f"pt = {tensor(hwio_to_oihw('pointwise'))}  # OIHW",
                     f"bt = {tensor('bias')}" if case.bias else "bt = None",
                     f"yt = xt.conv2d(wt, None, {conv}).conv2d(pt, bt)",
                     f"y = {nchw_to_nhwc(numpy('yt'))}"]
        return Program(setup, "\n".join(lines) + "\n")
