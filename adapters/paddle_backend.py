"""PaddlePaddle: paddle.nn.functional.conv2d (depthwise is groups = C) on the CPU.

Translation: data_format NHWC passes x as it is with data_format="NHWC"; NCHW transposes
x and passes "NCHW". Weights are Paddle's OIHW whatever the data_format: conv2d
(O, C/groups, kh, kw), depthwise (C*M, 1, kh, kw) in the canonical k*M + q order.
Padding: "SAME" / "VALID" are Paddle's own strings (its SAME rule is what is tested);
explicit pads as Paddle's [top, bottom, left, right] list. The bias is conv2d's `bias`
argument.
bfloat16 enters as float32 and is cast with paddle.cast (exact) and leaves as float32
(exact) cast back in NumPy; Paddle's CPU kernels for float16/bfloat16 are what supports()
asks about.
Training ops: the input gradients are F.conv2d_transpose with the forward OIHW weights,
explicit pads and output_padding (Paddle's "SAME" for a transposed conv sizes the output
input * stride, the adjoint of a forward SAME conv only where H is a multiple of the
stride); the filter gradients are paddle.grad of F.conv2d at zero filters (Paddle has no
public filter-gradient function); separable is two F.conv2d.
Kernel path (`facts`): the device, and Paddle's oneDNN switch (FLAGS_use_onednn, or its
older name FLAGS_use_mkldnn) with whether this build has oneDNN at all.
"""

from __future__ import annotations

from conformance.spec import FORWARD_OPS, OPS, OP_INFO, Case

from typing import Any

from ._base import BuiltinAdapter, Fact, tiny_case
from ._layout import hwcm_to_oihw, hwio_to_oihw, nchw_to_nhwc, nhwc_to_nchw, oihw_to_hwcm, oihw_to_hwio
from ._program import Program


class PaddleAdapter(BuiltinAdapter):
    """PaddlePaddle: paddle.nn.functional.conv2d on the CPU."""

    framework = "paddle"
    ops = OPS
    base_name = "paddle"
    extra = "paddle"
    distributions = ("paddlepaddle", "paddlepaddle-gpu")
    facts = {
        "paddle.device": Fact(str, "the device Paddle computes on (paddle.get_device(): cpu)"),
        "paddle.use_onednn": Fact(bool, "Paddle's oneDNN switch is on (FLAGS_use_onednn or FLAGS_use_mkldnn) in "
                                        "a build with oneDNN"),
        "paddle.onednn_built": Fact(bool, "this Paddle build includes oneDNN"),
    }

    def _kernel_path(self, ns: dict[str, Any]) -> dict[str, dict[str, Any]]:
        paddle = ns["paddle"]
        core = paddle.base.core
        built = bool(getattr(core, "is_compiled_with_onednn", getattr(core, "is_compiled_with_mkldnn", bool))())
        flags = {}
        for name in ("FLAGS_use_onednn", "FLAGS_use_mkldnn"):  # the newer name first; either may be absent
            try:
                flags.update(paddle.get_flags([name]))
            except Exception:  # noqa: BLE001 (an unknown flag in this version)
                continue
        mkl = getattr(paddle.version, "with_mkl", None)
        return {"paddle": {"version": paddle.__version__, "device": paddle.get_device(),
                           "use_onednn": built and any(flags.values()), "onednn_built": built, "flags": flags,
                           "mkl": str(mkl() if callable(mkl) else mkl)}}

    def _probe(self, case: Case) -> Case:
        return tiny_case(case, dtype=case.dtype, bias=case.bias, data_format=case.data_format)

    def _program(self, case: Case) -> Program:
        setup = "import numpy as np\nimport paddle\nimport paddle.nn.functional as F\n\npaddle.set_device('cpu')\n"
        nchw = case.data_format == "NCHW"
        bf16 = case.dtype == "bfloat16"
        dtype = "x.dtype" if "x" in case.operands else "dy.dtype"

        def tensor(expr: str, layout: bool = False) -> str:
            """A paddle tensor of the NumPy `expr`; `layout`: an NHWC activation, in the case's data_format."""
            if layout and nchw:
                expr = nhwc_to_nchw(expr)
            if bf16:
                return f"paddle.cast(paddle.to_tensor(np.asarray({expr}, dtype=np.float32)), 'bfloat16')"
            return f"paddle.to_tensor({expr})"

        def numpy(expr: str, layout: bool = False) -> str:
            """The NumPy result of the paddle tensor `expr` (an activation: back to NHWC)."""
            out = f"paddle.cast({expr}, 'float32').numpy()" if bf16 else f"{expr}.numpy()"
            out = nchw_to_nhwc(out) if layout and nchw else f"np.asarray({out})"
            return out + (f".astype({dtype})  # exact: bf16 values" if bf16 else "")

        weights = hwio_to_oihw("filters") if case.forward_op == "conv2d" else hwcm_to_oihw("filters")
        groups = case.groups if case.forward_op == "conv2d" else case.in_channels
        if isinstance(case.padding, str):
            pad = case.padding
        else:
            (t, b), (l, r) = case.geometry.pads
            pad = [t, b, l, r]
        conv = (f"stride={list(case.strides)!r}, padding={pad!r}, dilation={list(case.dilations)!r}, "
                f"groups={groups}, data_format={case.data_format!r}")
        note = "  # NHWC -> NCHW" if nchw else ""
        if case.op in FORWARD_OPS:
            lines = [f"xp = {tensor('x', True)}{note}", f"wp = {tensor(weights)}  # OIHW",
                     f"bp = {tensor('bias')}" if case.bias else "bp = None",
                     f"yp = F.conv2d(xp, wp, bp, {conv})",
                     f"y = {numpy('yp', True)}"]
        elif OP_INFO[case.op].result == "input":
            # conv2d_transpose's weight is (C_in, C_out / groups, kh, kw) with C_in dy's channels:
            # the forward conv's OIHW weights as they are. The pads are explicit: Paddle's
            # "SAME" for conv2d_transpose sizes the output input * stride (output_size may add
            # up to stride - 1), the adjoint of a forward SAME conv only where H and W are
            # multiples of the strides.
            (t, b), (l, r) = case.geometry.pads
            transpose = conv.replace(f"padding={pad!r}", f"padding={[t, b, l, r]!r}")
            size = f"output_padding={list(case.geometry.output_padding)!r}"
            lines = [f"dyp = {tensor('dy', True)}{note}", f"wp = {tensor(weights)}  # OIHW",
                     f"yp = F.conv2d_transpose(dyp, wp, None, {transpose}, {size})",
                     f"y = {numpy('yp', True)}"]
        elif OP_INFO[case.op].result == "filter":
            # Paddle has no public filter-gradient function: its autograd of F.conv2d. The
            # gradient does not depend on the filter's values, so zeros stand in for them.
            kh, kw = case.kernel
            shape = [case.conv_channels, case.filter_in_channels, kh, kw]
            zeros = f"paddle.zeros({shape!r}, dtype={'paddle.bfloat16' if bf16 else 'str(x.dtype)'})"
            back = (oihw_to_hwio if case.op == "conv2d_backprop_filter"
                    else lambda e: oihw_to_hwcm(e, case.in_channels))
            lines = [f"xp = {tensor('x', True)}{note}", f"dyp = {tensor('dy', True)}",
                     f"wp = {zeros}  # OIHW", "wp.stop_gradient = False",
                     f"yp = F.conv2d(xp, wp, None, {conv})",
                     "(gp,) = paddle.grad([yp], [wp], grad_outputs=[dyp])",
                     f"y = {back(numpy('gp'))}  # OIHW -> the canonical filter layout"]
        else:  # separable: the depthwise conv, then the 1x1 conv with the bias
            lines = [f"xp = {tensor('x', True)}{note}", f"wp = {tensor(weights)}  # (C*M, 1, kh, kw)",
                     f"pp = {tensor(hwio_to_oihw('pointwise'))}  # OIHW",
                     f"bp = {tensor('bias')}" if case.bias else "bp = None",
                     f"mp = F.conv2d(xp, wp, None, {conv})",
                     f"yp = F.conv2d(mp, pp, bp, data_format={case.data_format!r})",
                     f"y = {numpy('yp', True)}"]
        return Program(setup, "\n".join(lines) + "\n")
