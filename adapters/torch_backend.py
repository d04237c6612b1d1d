"""PyTorch: torch.nn.functional.conv2d (depthwise is groups = C) and its gradients.

Ops (all seven): conv2d / depthwise_conv2d: F.conv2d; *_backprop_input:
torch.nn.grad.conv2d_input, *_backprop_filter: torch.nn.grad.conv2d_weight (both are
aten.convolution_backward, the kernels autograd runs in training); separable_conv2d:
F.conv2d with groups = C, then a 1x1 F.conv2d with the bias (torch has no fused op).
Asymmetric pads: the gradient with respect to x is computed for the F.pad'ed input and
cropped, the one with respect to the filters reads the F.pad'ed x (what autograd gives
through F.pad); `native_pad` with a padding string takes torch.autograd.grad through
F.conv2d(padding='same' / 'valid'), torch having no explicit gradient taking one.

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

from conformance.spec import GRADIENT_OPS, OP_INFO, OPS, Case

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
    """PyTorch: torch.nn.functional.conv2d, torch.nn.grad.conv2d_input / conv2d_weight."""

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
    ops = OPS
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
        op = case.op

        def tensor(expr: str) -> str:
            # torch.from_numpy has no bfloat16: go through float32 (exact for bfloat16 values).
            if bf16:
                return f"torch.from_numpy(np.asarray({expr}, dtype=np.float32)).to(torch.bfloat16)"
            return f"torch.from_numpy({expr})"

        def image(name: str, expr: str) -> str:  # an NHWC array as an NCHW tensor in `memory`
            return f"{name} = {tensor(expr)}.permute(0, 3, 1, 2).to(dev).contiguous(memory_format={memory})"

        conv2d = case.forward_op == "conv2d"
        groups = case.groups if conv2d else case.in_channels
        layout = "HWIO -> OIHW" if conv2d else "HWCM -> (C*M, 1, kh, kw), channel k*M + q"
        weight_shape = (case.conv_channels, case.filter_in_channels, *case.kernel)
        lines = [f"dev = torch.device({self._device!r})",
                 f"# NHWC -> NCHW views; {memory} memory for data_format {case.data_format}"]
        if "x" in case.operands:
            lines.append(image("xt", "x"))
        if "dy" in case.operands:
            lines.append(image("dyt", "dy"))
        if "filters" in case.operands:
            w = hwio_to_oihw("filters") if conv2d else hwcm_to_oihw("filters")
            lines += [f"w = {w}  # {layout}", f"wt = {tensor('w')}.to(dev).contiguous(memory_format={memory})"]
        if op == "separable_conv2d":
            lines.append(f"pt = {tensor(hwio_to_oihw('pointwise'))}.to(dev).contiguous(memory_format={memory})"
                         "  # (1, 1, C*M, O) -> (O, C*M, 1, 1)")
        if "bias" in case.operands:
            lines.append(f"bt = {tensor('bias')}.to(dev)" if case.bias else "bt = None")

        geo = dict(stride=tuple(case.strides), dilation=tuple(case.dilations), groups=groups)
        args = ", ".join(f"{k}={v!r}" for k, v in geo.items())
        (t, b), (l, r) = case.geometry.pads
        strings = self.native_pad and isinstance(case.padding, str)
        asymmetric = (t, l) != (b, r)
        calls = []
        if strings and op in GRADIENT_OPS:
            # torch has no explicit gradient taking padding='same'/'valid': the gradient is
            # autograd's through F.conv2d with torch's own padding string.
            wrt, given = ("xt", "wt") if "dy" in case.operands and "filters" in case.operands else ("wt", "xt")
            shape = (case.batch, case.in_channels, case.height, case.width) if wrt == "xt" else weight_shape
            dtype = "torch.bfloat16" if bf16 else f"torch.{case.dtype}"
            calls += [f"{wrt} = torch.zeros({shape!r}, dtype={dtype}, device=dev)"
                      f".contiguous(memory_format={memory}).requires_grad_()  # the gradient does not depend on it",
                      f"yt = F.conv2d(xt, wt, None, padding={case.padding.lower()!r}, {args})",
                      f"(gt,) = torch.autograd.grad(yt, {wrt}, dyt)"]
        elif op in ("conv2d_backprop_input", "depthwise_conv2d_backprop_input"):
            size = (case.batch, case.in_channels, case.height + t + b, case.width + l + r) if asymmetric else \
                (case.batch, case.in_channels, case.height, case.width)
            calls.append(f"gt = torch.nn.grad.conv2d_input({size!r}, wt, dyt, padding={(0, 0) if asymmetric else (t, l)!r}, "
                         f"{args})")
            if asymmetric:
                calls.insert(0, "# torch's padding is symmetric: the gradient for the F.pad'ed input, cropped "
                                "(what autograd gives through F.pad)")
                calls.append(f"gt = gt[:, :, {t}:{t + case.height}, {l}:{l + case.width}]")
        elif op in ("conv2d_backprop_filter", "depthwise_conv2d_backprop_filter"):
            if asymmetric:
                calls += ["# torch's padding is symmetric: asymmetric pads are applied to x first (zeros)",
                          f"xt = F.pad(xt, ({l}, {r}, {t}, {b})).contiguous(memory_format={memory})"]
            calls.append(f"gt = torch.nn.grad.conv2d_weight(xt, {weight_shape!r}, dyt, "
                         f"padding={(0, 0) if asymmetric else (t, l)!r}, {args})")
        else:  # conv2d, depthwise_conv2d, separable_conv2d: a forward convolution
            if strings:
                pad_arg = repr(case.padding.lower())
            elif asymmetric:
                calls += ["# torch's conv2d padding is symmetric: asymmetric pads are applied first (zeros)",
                          f"xt = F.pad(xt, ({l}, {r}, {t}, {b})).contiguous(memory_format={memory})"]
                pad_arg = "(0, 0)"
            else:
                pad_arg = repr((t, l))
            if op == "separable_conv2d":  # depthwise, then the 1x1 pointwise conv (with the bias)
                calls += [f"yt = F.conv2d(xt, wt, None, padding={pad_arg}, {args})", "yt = F.conv2d(yt, pt, bt)"]
            else:
                calls.append(f"yt = F.conv2d(xt, wt, bt, padding={pad_arg}, {args})")
        if self.params["mkldnn"]:
            lines += calls
        else:
            lines.append("with torch.backends.mkldnn.flags(enabled=False):  # PyTorch's native CPU kernels")
            lines += ["    " + ln for ln in calls]
        if OP_INFO[op].result == "filter":
            back = "(kh, kw, C/groups, O)" if conv2d else "(kh, kw, 1, C*M) -> (kh, kw, C, M)"
            lines.append(f"# OIHW -> {back}")
            out = "gt.permute(2, 3, 1, 0).cpu()"
            final = f"np.ascontiguousarray({{}}).reshape({case.filter_shape!r})"
        else:
            out = ("gt" if op in GRADIENT_OPS else "yt") + ".permute(0, 2, 3, 1).cpu()"
            final = "np.ascontiguousarray({})"
        first = case.operands[0]
        lines.append(f"y = {final.format(f'{out}.float().numpy()')}.astype({first}.dtype)" if bf16
                     else f"y = {final.format(f'{out}.numpy()')}")
        return Program(setup, "\n".join(lines) + "\n")
