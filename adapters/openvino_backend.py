"""OpenVINO: a one-op model (opset13 Convolution / GroupConvolution) compiled for the CPU plugin.

Translation: the model takes x in NHWC and transposes it to NCHW inside the graph
(OpenVINO's convolutions are NCHW / OIHW only: a single-layout backend, so data_format
NCHW takes the same path); the filters are a Constant in OIHW, grouped conv2d and
depthwise a GroupConvolution with weights (G, O/G, I/G, kh, kw) (depthwise: G = C,
O/G = M, in the canonical k*M + q order); the bias is a Constant added in NCHW (the
plugin fuses it into the convolution). Weights and bias are constants, as in a model a
user converts, so the model is built and compiled per call (a few ms).
Padding: explicit pads_begin / pads_end from `conv_geometry` (SAME/VALID resolved by us).
dtypes: the model's element type is the case dtype. bfloat16 has no NumPy spelling in
OpenVINO's Python API, so x enters as float32 and is converted to bf16 in the graph, the
output converted back to float32 (both conversions are exact for bf16 values).
Variant `f32` (precision=f32): the compile property INFERENCE_PRECISION_HINT=f32. The
plain backend leaves the plugin's default hint, which is f32 on CPUs without native bf16
and bf16 on CPUs with AMX / AVX-512 BF16: the suite reports what a user gets.
Training ops: the input gradients are ConvolutionBackpropData / GroupConvolutionBackpropData
(dy is the parameter; the filters the forward weights as they are, with explicit pads and
output_padding); separable is GroupConvolution then a 1x1 Convolution, then the bias.
OpenVINO has no filter gradient: the program lists the backprop operations of every opset
the installed OpenVINO ships and raises, which is supports()'s reason.
Kernel path (`facts`): the compiled model's precision hint and device, and the CPU
plugin's implementation of a float32 3x3 Convolution compiled with the same properties
(its profiling `exec_type`, e.g. brgconv_avx512_bf16: the ISA and the type it computes in).
"""

from __future__ import annotations

from conformance.spec import OPS, OP_INFO, Case

from typing import Any

from ._base import BuiltinAdapter, Fact, Variant, tiny_case
from ._layout import hwcm_to_oihw, hwio_to_oihw, nchw_to_nhwc
from ._program import Program

_COSTLY = "over the default run's 5-minute budget: it costs as much as {what}; run it by name"
_OV_TYPES = {"float32": "f32", "float16": "f16", "bfloat16": "bf16", "float64": "f64"}


class OpenvinoAdapter(BuiltinAdapter):
    """OpenVINO: opset13 Convolution / GroupConvolution compiled for the CPU plugin."""

    framework = "openvino"
    ops = OPS
    base_name = "openvino"
    extra = "openvino"
    distributions = ("openvino",)
    parameters = {"precision": ("default", "f32")}
    variants = {"f32": Variant({"precision": "f32"}, "INFERENCE_PRECISION_HINT=f32 forced",
                               excluded=_COSTLY.format(what="openvino (it builds and compiles a model per case)"))}
    facts = {
        "openvino.inference_precision": Fact(str, "the compiled model's INFERENCE_PRECISION_HINT: the type the "
                                                  "CPU plugin computes float32 models in (bf16 by default on CPUs "
                                                  "with native bfloat16; openvino[f32]: f32)"),
        "openvino.conv_kernel": Fact(str, "the CPU plugin's implementation of a float32 3x3 convolution with the "
                                          "adapter's properties (profiling exec_type: ISA and compute type, e.g. "
                                          "brgconv_avx512_bf16)"),
        "openvino.device": Fact(str, "the device the model is compiled for (CPU)"),
        "openvino.denormals_optimization": Fact(bool, "CPU_DENORMALS_OPTIMIZATION: the plugin flushes "
                                                      "subnormals (FTZ/DAZ) in its threads"),
        "openvino.capabilities": Fact(list, "the device's OPTIMIZATION_CAPABILITIES (FP32, BF16, FP16, INT8, "
                                            "WINOGRAD, ...)"),
    }

    def _config(self) -> dict[str, str]:
        """compile_model's properties: the plugin's defaults, or the f32 precision hint."""
        return {} if self.params["precision"] == "default" else {"INFERENCE_PRECISION_HINT": "f32"}

    def version(self) -> str:
        import importlib.metadata

        # openvino.__version__ is a build string ("2026.4.1-22982-e213a147257-releases/2026/4");
        # the distribution's version is the PEP 440 one manifests match.
        return importlib.metadata.version("openvino")

    def _kernel_path(self, ns: dict[str, Any]) -> dict[str, dict[str, Any]]:
        ov, core, compiled = ns["ov"], ns["core"], ns["compiled"]
        # Profiling names the implementation each node ran with; the program's own compile
        # does not ask for it, so the same model is compiled once more with PERF_COUNT.
        request = core.compile_model(ns["model"], "CPU", {**self._config(), "PERF_COUNT": True}).create_infer_request()
        request.infer([ns["xin"]])
        kernels = [p.exec_type for p in request.profiling_info if p.node_type == "Convolution"]
        return {"openvino": {
            "version": self.version(), "build": ov.__version__,
            "inference_precision": compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name(),
            "conv_kernel": kernels[0] if kernels else None,
            "device": compiled.get_property("EXECUTION_DEVICES")[0],
            "denormals_optimization": bool(core.get_property("CPU", "CPU_DENORMALS_OPTIMIZATION")),
            "capabilities": list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")),
            "full_device_name": core.get_property("CPU", "FULL_DEVICE_NAME")}}

    def _probe(self, case: Case) -> Case:
        return tiny_case(case, dtype=case.dtype, bias=case.bias)

    def _program(self, case: Case) -> Program:
        ty = _OV_TYPES[case.dtype]
        bf16 = case.dtype == "bfloat16"
        config = repr(self._config())
        setup = ("import numpy as np\nimport openvino as ov\nimport openvino.opset13 as ops\n\n"
                 "core = ov.Core()\n")
        if OP_INFO[case.op].result == "filter":
            return Program(setup, _NO_FILTER_GRADIENT)
        (t, b), (l, r) = case.geometry.pads
        kh, kw = case.kernel
        if case.forward_op == "conv2d":
            g, oc = case.groups, case.out_channels
            weights = hwio_to_oihw("filters")
            if g > 1:
                weights += f".reshape({g}, {oc // g}, {case.filter_in_channels}, {kh}, {kw})"
        else:
            g = case.in_channels
            weights = hwcm_to_oihw("filters") + f".reshape({g}, {case.channel_multiplier}, 1, {kh}, {kw})"
        grouped = g > 1 or case.forward_op == "depthwise_conv2d"
        to_f32 = (lambda e: f"np.asarray({e}, dtype=np.float32)") if bf16 else (lambda e: e)
        const = (lambda e: f"ops.convert(ops.constant({e}), ov.Type.bf16)") if bf16 else (lambda e: f"ops.constant({e})")
        source = "dy" if OP_INFO[case.op].result == "input" else "x"
        geometry = (f"strides={list(case.strides)!r}, pads_begin={[t, l]!r}, pads_end={[b, r]!r}, "
                    f"dilations={list(case.dilations)!r}")
        lines = [
            f"xp = ops.parameter({list(_operand_shape(case, source))!r}, ov.Type.{'f32' if bf16 else ty}, name={source!r})"
            "  # NHWC",
            "xi = ops.convert(xp, ov.Type.bf16)" if bf16 else "xi = xp",
            "xn = ops.transpose(xi, ops.constant(np.array([0, 3, 1, 2], dtype=np.int64)))  # NHWC -> NCHW",
            f"wc = {const(to_f32(weights))}  # OIHW, or (G, O/G, I/G, kh, kw) grouped",
        ]
        if OP_INFO[case.op].result == "input":
            # (Group)ConvolutionBackpropData's filters are (C_in, C_out, kh, kw) with C_in dy's
            # channels (grouped: (G, C_in/G, C_out/G, kh, kw)): the forward weights as they are.
            op = "ops.group_convolution_backprop_data" if grouped else "ops.convolution_backprop_data"
            lines.append(f"yn = {op}(xn, wc, {geometry}, "
                         f"output_padding={list(case.geometry.output_padding)!r})")
        else:
            op = "ops.group_convolution" if grouped else "ops.convolution"
            lines.append(f"yn = {op}(xn, wc, {geometry})")
        if case.op == "separable_conv2d":  # the 1x1 pointwise convolution, then the bias
            lines += [f"pc = {const(to_f32(hwio_to_oihw('pointwise')))}  # OIHW",
                      "yn = ops.convolution(yn, pc, strides=[1, 1], pads_begin=[0, 0], pads_end=[0, 0], "
                      "dilations=[1, 1])"]
        if case.bias:
            lines.append(f"yn = ops.add(yn, {const(to_f32('bias') + '.reshape(1, -1, 1, 1)')})")
        if bf16:
            lines.append("yn = ops.convert(yn, ov.Type.f32)")
        lines += [
            "model = ov.Model([yn], [xp])",
            f"compiled = core.compile_model(model, 'CPU', {config})",
            f"xin = {to_f32(source)}",
            "yo = compiled(xin)[0]",
            f"y = {nchw_to_nhwc('yo')}" + (f".astype({source}.dtype)  # exact: the model's result is bf16"
                                           if bf16 else ""),
        ]
        return Program(setup, "\n".join(lines) + "\n")


def _operand_shape(case: Case, operand: str) -> tuple[int, ...]:
    """The shape of one of `case`'s operands, by name."""
    return dict(zip(case.operands, case.operand_shapes))[operand]


#: OpenVINO is an inference runtime: its operation sets have the input gradient
#: (ConvolutionBackpropData, the transposed convolution) and no filter gradient. The
#: program asks every opset the installed OpenVINO ships and names what they have.
_NO_FILTER_GRADIENT = """\
import importlib, pkgutil
opsets = sorted((m.name for m in pkgutil.iter_modules(ov.__path__) if m.name[:5] == "opset" and m.name[5:].isdigit()),
                key=lambda name: int(name[5:]))
backprop = sorted({name for m in opsets for name in dir(importlib.import_module("openvino." + m)) if "backprop" in name})
raise NotImplementedError(f"OpenVINO has no convolution filter-gradient operation in "
                          f"{opsets[0]}..{opsets[-1]}; its backprop operations: {', '.join(backprop)}")
"""
