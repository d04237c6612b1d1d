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
Kernel path (`facts`): the device, and Paddle's oneDNN switch (FLAGS_use_onednn, or its
older name FLAGS_use_mkldnn) with whether this build has oneDNN at all.
"""

from __future__ import annotations

from conformance.spec import Case

from typing import Any

from ._base import BuiltinAdapter, Fact, tiny_case
from ._layout import hwcm_to_oihw, hwio_to_oihw, nchw_to_nhwc, nhwc_to_nchw
from ._program import Program


class PaddleAdapter(BuiltinAdapter):
    """PaddlePaddle: paddle.nn.functional.conv2d on the CPU."""

    framework = "paddle"
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

        def tensor(expr: str) -> str:
            if bf16:
                return f"paddle.cast(paddle.to_tensor(np.asarray({expr}, dtype=np.float32)), 'bfloat16')"
            return f"paddle.to_tensor({expr})"

        w = hwio_to_oihw("filters") if case.op == "conv2d" else hwcm_to_oihw("filters")
        groups = case.groups if case.op == "conv2d" else case.in_channels
        if isinstance(case.padding, str):
            pad = case.padding
        else:
            (t, b), (l, r) = case.geometry.pads
            pad = [t, b, l, r]
        lines = [
            f"xp = {tensor(nhwc_to_nchw('x') if nchw else 'x')}" + ("  # NHWC -> NCHW" if nchw else ""),
            f"wp = {tensor(w)}  # OIHW",
            f"bp = {tensor('bias')}" if case.bias else "bp = None",
            f"yp = F.conv2d(xp, wp, bp, stride={list(case.strides)!r}, padding={pad!r}, "
            f"dilation={list(case.dilations)!r}, groups={groups}, data_format={case.data_format!r})",
        ]
        out = "paddle.cast(yp, 'float32').numpy()" if bf16 else "yp.numpy()"
        lines.append(f"y = {nchw_to_nhwc(out) if nchw else 'np.asarray(' + out + ')'}"
                     + (".astype(x.dtype)  # exact: bf16 values" if bf16 else ""))
        return Program(setup, "\n".join(lines) + "\n")
