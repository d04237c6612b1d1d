"""PyTorch: torch.nn.functional.conv2d (depthwise is groups = C).

Translation: x NHWC -> NCHW (channels_last memory for data_format NHWC, contiguous NCHW
for NCHW); filters HWIO -> OIHW, depthwise HWCM -> (C*M, 1, kh, kw) in k*M + q order.
Padding: SAME/VALID are resolved to explicit pads by `conv_geometry` (torch has no
TensorFlow SAME); torch's `padding` argument is symmetric per axis, so asymmetric pads
(an odd SAME total, or explicit ones) are applied first with F.pad (zeros), the way
ported TensorFlow models do it.
Variant `native_pad`: padding="same" / "valid", torch's own strings (torch refuses
"same" with strides > 1: supports() quotes it); explicit pads as in the canonical
adapter. torch's "same" may split an odd total differently from TensorFlow's: exposing
that is the variant's purpose.
Variant `channels_last` (memory=channels_last): input and weight in channels_last memory
whatever the data_format (the path `model.to(memory_format=torch.channels_last)` users
take); `memory=contiguous` forces NCHW-contiguous memory likewise. Variant `mkldnn_off`
(mkldnn=false): the call runs under `torch.backends.mkldnn.flags(enabled=False)`, so
PyTorch's native CPU kernels (im2col + GEMM, slow_conv2d) compute instead of oneDNN.
Defaults are PyTorch's: on CUDA, cuDNN may use TF32 for float32 convolutions
(torch.backends.cudnn.allow_tf32 is True by default); the suite reports it, the
adapter does not switch it off.
Kernel path (`facts`): ATen's CPU capability, whether oneDNN may compute this adapter's
convolutions (built, enabled, and not switched off by `mkldnn_off`: the variant's
`flags(enabled=False)` is scoped to its call, so the process default says nothing about
it), and oneDNN's float32 precision mode (`torch.backends.mkldnn.conv.fp32_precision`:
"none" keeps float32; "bf16"/"tf32" let oneDNN compute float32 convolutions narrower).
"""

from __future__ import annotations

from conformance.spec import Case

from typing import Any

from ._base import BuiltinAdapter, Device, Fact, Variant, tiny_case
from ._layout import hwcm_to_oihw, hwio_to_oihw
from ._program import Program


def torch_path(torch: Any, *, mkldnn: bool = True) -> dict[str, Any]:
    """torch's build and CPU kernel path in this process; `mkldnn=False`: the caller's
    convolutions run with oneDNN switched off (also used by keras[backend=torch])."""
    conv = getattr(getattr(torch.backends.mkldnn, "conv", None), "fp32_precision", None)
    return {"version": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "mkldnn": bool(mkldnn and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled),
            # Before torch 2.9 there was no such mode: oneDNN kept float32 as float32.
            "mkldnn_fp32_precision": str(conv) if conv is not None else "none",
            "mkl": bool(torch.backends.mkl.is_available()), "openmp": bool(torch.backends.openmp.is_available()),
            "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
            "cuda": torch.version.cuda, "git": getattr(torch.version, "git_version", None)}


class TorchAdapter(BuiltinAdapter):
    """PyTorch: torch.nn.functional.conv2d."""

    framework = "torch"
    base_name = "torch"
    extra = "torch"
    distributions = ("torch",)
    parameters = {"native_pad": (False, True), "memory": ("auto", "channels_last", "contiguous"),
                  "mkldnn": (True, False)}
    variants = {
        "native_pad": Variant({"native_pad": True}, "torch's own padding='same'/'valid' strings",
                              excluded="over the default run's 5-minute budget: torch's own kernels with only the "
                                       "padding argument changed, and no finding of its own on the default set "
                                       "(measured: every one of its findings is torch's); run it by name"),
        "channels_last": Variant({"memory": "channels_last"}, "input and weight in channels_last memory"),
        "mkldnn_off": Variant({"mkldnn": False}, "oneDNN off: PyTorch's native CPU conv kernels"),
    }
    devices = {"cuda": Device("cuda:0", "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 3)")}
    facts = {
        "torch.cpu_capability": Fact(str, "ATen's CPU kernel ISA (torch.backends.cpu.get_cpu_capability(): "
                                          "DEFAULT, AVX2, AVX512, ...)"),
        "torch.mkldnn": Fact(bool, "oneDNN (mkldnn) may compute the convolutions: built, enabled, and not "
                                   "switched off by the variant (torch[mkldnn_off]: false)"),
        "torch.mkldnn_fp32_precision": Fact(str, "oneDNN's float32 convolution precision "
                                                 "(torch.backends.mkldnn.conv.fp32_precision): none keeps "
                                                 "float32; bf16 or tf32 compute narrower"),
    }

    @property
    def native_pad(self) -> bool:
        return self.params["native_pad"]

    def _kernel_path(self, ns: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {"torch": torch_path(ns["torch"], mkldnn=self.params["mkldnn"])}

    def _probe(self, case: Case) -> Case:
        strings = self.native_pad and isinstance(case.padding, str)
        return tiny_case(case, dtype=case.dtype, data_format=case.data_format, bias=case.bias,
                         padding=case.padding if strings else "VALID",
                         strides=(2, 2) if strings and case.strides != (1, 1) else (1, 1))

    def _program(self, case: Case) -> Program:
        setup = "import numpy as np\nimport torch\nimport torch.nn.functional as F\n"
        memory = {"channels_last": "torch.channels_last", "contiguous": "torch.contiguous_format"}.get(
            self.params["memory"], "torch.channels_last" if case.data_format == "NHWC" else "torch.contiguous_format")
        bf16 = case.dtype == "bfloat16"

        def tensor(expr: str) -> str:
            # torch.from_numpy has no bfloat16: go through float32 (exact for bfloat16 values).
            if bf16:
                return f"torch.from_numpy(np.asarray({expr}, dtype=np.float32)).to(torch.bfloat16)"
            return f"torch.from_numpy({expr})"

        w = hwio_to_oihw("filters") if case.op == "conv2d" else hwcm_to_oihw("filters")
        groups = case.groups if case.op == "conv2d" else case.in_channels
        layout = "HWIO -> OIHW" if case.op == "conv2d" else "HWCM -> (C*M, 1, kh, kw), channel k*M + q"
        lines = [
            f"dev = torch.device({self._device!r})",
            f"w = {w}  # {layout}",
            f"# NHWC -> NCHW view; {memory} memory for data_format {case.data_format}",
            f"xt = {tensor('x')}.permute(0, 3, 1, 2).to(dev).contiguous(memory_format={memory})",
            f"wt = {tensor('w')}.to(dev).contiguous(memory_format={memory})",
            f"bt = {tensor('bias')}.to(dev)" if case.bias else "bt = None",
        ]
        if self.native_pad and isinstance(case.padding, str):
            pad_arg = repr(case.padding.lower())
        else:
            (t, b), (l, r) = case.geometry.pads
            if (t, l) == (b, r):
                pad_arg = repr((t, l))
            else:
                lines.append("# torch's conv2d padding is symmetric: asymmetric pads are applied first (zeros)")
                lines.append(f"xt = F.pad(xt, ({l}, {r}, {t}, {b})).contiguous(memory_format={memory})")
                pad_arg = "(0, 0)"
        call = (f"yt = F.conv2d(xt, wt, bt, stride={tuple(case.strides)!r}, padding={pad_arg}, "
                f"dilation={tuple(case.dilations)!r}, groups={groups})")
        if self.params["mkldnn"]:
            lines.append(call)
        else:
            lines += ["with torch.backends.mkldnn.flags(enabled=False):  # PyTorch's native CPU kernels",
                      "    " + call]
        out = "yt.permute(0, 2, 3, 1).cpu()"
        lines.append(f"y = np.ascontiguousarray({out}.float().numpy()).astype(x.dtype)" if bf16
                     else f"y = np.ascontiguousarray({out}.numpy())")
        return Program(setup, "\n".join(lines) + "\n")
