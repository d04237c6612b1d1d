"""ONNX Runtime: a small ONNX model (Conv, ConvTranspose), run by an InferenceSession.

Translation: ONNX is NCHW / OIHW whatever the case's data_format (both formats take
the same path); depthwise is group = C with weights (C*M, 1, kh, kw) in k*M + q order.
The canonical adapter passes explicit `pads` [top, left, bottom, right], SAME/VALID
resolved by `conv_geometry`.
Variant `auto_pad`: SAME -> auto_pad="SAME_UPPER" (TensorFlow's SAME: odd pixel at the
end), VALID -> auto_pad="VALID", so ONNX Runtime's own padding rule is tested; explicit
pads stay explicit (ONNX has no other spelling of them), as in the canonical adapter.
Variants `no_opt` / `opt_all` (optimization=disable / all): the session's
graph_optimization_level set to ORT_DISABLE_ALL / ORT_ENABLE_ALL; plain `onnxruntime`
leaves ORT's default (ORT_ENABLE_ALL in ORT 1.32), so `opt_all` is left out of the
default run and pins the level by name.
The model and its session live in the program's setup: one session per signature (op
attributes, dtype, bias, provider); batch and spatial sizes are left dynamic.
Providers: CPUExecutionProvider on "cpu"; CUDAExecutionProvider on "cuda:N", refused
when ONNX Runtime lacks it (ORT would otherwise silently fall back to the CPU).
Threads: the session's intra-op threads sleep between runs instead of spinning
(`session.intra_op.allow_spinning` = 0, in the program and so in every repro script). It
is a wait policy, not a kernel choice; spinning threads took four times the CPU of ONNX
Runtime's own convolutions in a default run, from the other backends sharing the cores.
Training ops: both input gradients are one `ConvTranspose` node (its W is the forward
OIHW weights; the forward pads and `output_padding`, or under `auto_pad` SAME_UPPER with
`output_shape` = the forward input size and VALID with `output_padding`); separable is
two `Conv` nodes in one graph. ONNX has no filter-gradient operator: the program asks
ORT's training op com.microsoft ConvGrad, which an inference build refuses ("is not a
registered function/op"), so supports() gives ORT's own reason.
Kernel path (`facts`): read from the session the program built, so the variant's level
is what is reported and `onnxruntime` reports ORT's own default by its name.
"""

from __future__ import annotations

from conformance.spec import FORWARD_OPS, OPS, OP_INFO, Case

from typing import Any

from ._base import BuiltinAdapter, Device, Fact, Variant, tiny_case
from ._layout import hwcm_to_oihw, hwio_to_oihw, nchw_to_nhwc, nhwc_to_nchw, oihw_to_hwcm, oihw_to_hwio
from ._program import Program

#: Conv has not changed since opset 11; 17 / IR 8 is understood by every ORT >= 1.12.
OPSET = 17
IR_VERSION = 8
_ONNX_TYPES = {"float32": "FLOAT", "float16": "FLOAT16", "bfloat16": "BFLOAT16", "float64": "DOUBLE"}


class OnnxruntimeAdapter(BuiltinAdapter):
    """ONNX Runtime: a one-node ONNX Conv model in an InferenceSession."""

    framework = "onnxruntime"
    ops = OPS
    base_name = "onnxruntime"
    requires = ("onnxruntime", "onnx")
    extra = "onnxruntime"
    distributions = ("onnxruntime", "onnxruntime-gpu")
    parameters = {"auto_pad": (False, True), "optimization": ("default", "disable", "basic", "extended", "all")}
    variants = {
        "auto_pad": Variant({"auto_pad": True}, "auto_pad=SAME_UPPER/VALID: ORT's own padding rule",
                            excluded="over the default run's 5-minute budget: ONNX Runtime's kernels with only the "
                                     "padding attribute changed, and no finding of its own on the default set "
                                     "(measured: it refuses dilated SAME, and otherwise agrees with onnxruntime); "
                                     "run it by name"),
        "no_opt": Variant({"optimization": "disable"}, "graph optimisations off (ORT_DISABLE_ALL)"),
        "opt_all": Variant({"optimization": "all"}, "graph optimisations all (ORT_ENABLE_ALL)",
                           excluded="ORT_ENABLE_ALL is ONNX Runtime's default level: the same session as "
                                    "`onnxruntime`; run it by name to pin the level"),
    }
    devices = {"cuda": Device("cuda:0", "import onnxruntime as ort, sys; "
                                        "sys.exit(0 if 'CUDAExecutionProvider' in ort.get_available_providers() else 3)")}
    facts = {
        "onnxruntime.providers": Fact(list, "execution providers this ONNX Runtime offers "
                                            "(ort.get_available_providers())"),
        "onnxruntime.provider": Fact(str, "the execution provider the session computes on "
                                          "(CPUExecutionProvider, CUDAExecutionProvider)"),
        "onnxruntime.optimization": Fact(str, "the session's graph optimisation level (ORT_DISABLE_ALL, "
                                              "ORT_ENABLE_BASIC, ORT_ENABLE_EXTENDED, ORT_ENABLE_ALL, ...): "
                                              "onnxruntime[no_opt] says ORT_DISABLE_ALL"),
    }

    @property
    def auto_pad(self) -> bool:
        return self.params["auto_pad"]

    def _kernel_path(self, ns: dict[str, Any]) -> dict[str, dict[str, Any]]:
        ort, session = ns["ort"], ns["session"]
        return {"onnxruntime": {
            "version": ort.__version__, "providers": list(ort.get_available_providers()),
            "provider": session.get_providers()[0],
            "optimization": session.get_session_options().graph_optimization_level.name,
            "device": ort.get_device(), "build": ort.get_build_info() if hasattr(ort, "get_build_info") else None}}

    def _probe(self, case: Case) -> Case:
        # With auto_pad, ORT's padding rule is part of what may be refused (e.g. with dilations).
        strings = self.auto_pad and isinstance(case.padding, str)
        return tiny_case(case, dtype=case.dtype, bias=case.bias, padding=case.padding if strings else "VALID",
                         dilations=(2, 2) if strings and case.dilations != (1, 1) else (1, 1),
                         height=8, width=8)

    def _pad_attrs(self, case: Case, auto: bool = True) -> str:
        if auto and self.auto_pad and isinstance(case.padding, str):
            return f"auto_pad={('SAME_UPPER' if case.padding == 'SAME' else 'VALID')!r}"
        (t, b), (l, r) = case.geometry.pads
        return f"pads={[t, l, b, r]!r}"

    def _transpose_pad_attrs(self, case: Case) -> str:
        """ConvTranspose's padding: the forward pads (cropped from the full transposed output)
        and output_padding (rows/columns added at the bottom/right) from `conv_geometry`;
        with `auto_pad`, SAME is auto_pad=SAME_UPPER with output_shape = the forward input's
        size (ORT derives the pads), VALID is auto_pad=VALID with output_padding."""
        padding = list(case.geometry.output_padding)
        if self.auto_pad and case.padding == "SAME":
            return f"auto_pad='SAME_UPPER', output_shape={[case.height, case.width]!r}"
        if self.auto_pad and case.padding == "VALID":
            return f"auto_pad='VALID', output_padding={padding!r}"
        return f"{self._pad_attrs(case, auto=False)}, output_padding={padding!r}"

    def _session_options(self) -> str:
        level = self.params["optimization"]
        lines = ["so = ort.SessionOptions()",
                 "so.add_session_config_entry('session.intra_op.allow_spinning', '0')  # see the module docstring"]
        if level != "default":
            name = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
                    "all": "ORT_ENABLE_ALL"}[level]
            lines.append(f"so.graph_optimization_level = ort.GraphOptimizationLevel.{name}")
        return "\n".join(lines) + "\n"

    def _program(self, case: Case) -> Program:
        ty = _ONNX_TYPES[case.dtype]
        nodes, inputs, feeds = self._graph(case)
        if self._device == "cpu":
            providers = ["CPUExecutionProvider"]
            check = ""
        else:
            providers = ["CUDAExecutionProvider"]
            check = ("if 'CUDAExecutionProvider' not in ort.get_available_providers():\n"
                     "    raise RuntimeError('no CUDA for ONNX Runtime: CUDAExecutionProvider not in '\n"
                     "                       + repr(ort.get_available_providers()))\n")
        options = "" if ":" not in self._device else f", provider_options=[{{'device_id': {int(self._device.split(':')[1])}}}]"
        domains = '[helper.make_opsetid("", %d)' % OPSET + (
            ', helper.make_opsetid("com.microsoft", 1)]' if OP_INFO[case.op].result == "filter" else "]")
        setup = f"""\
import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

{check}nodes = [
{nodes}]
graph = helper.make_graph(
    nodes, {case.op!r},
    [helper.make_tensor_value_info(n, TensorProto.{ty}, None) for n in {inputs!r}],
    [helper.make_tensor_value_info("Y", TensorProto.{ty}, None)])
model = helper.make_model(graph, opset_imports={domains})
model.ir_version = {IR_VERSION}
{self._session_options()}session = ort.InferenceSession(model.SerializeToString(), so, providers={providers!r}{options})
"""
        out = "session.run(None, feeds)[0]"
        if case.op == "conv2d_backprop_filter":
            result = oihw_to_hwio("dw")
        elif case.op == "depthwise_conv2d_backprop_filter":
            result = oihw_to_hwcm("dw", case.in_channels)
        else:
            result = nchw_to_nhwc(out)
        fetch = f"dw = {out}\n" if OP_INFO[case.op].result == "filter" else ""
        compute = f"feeds = {feeds}  # NHWC -> NCHW, HWIO/HWCM -> OIHW\n{fetch}y = {result}\n"
        return Program(setup, compute)

    def _graph(self, case: Case) -> tuple[str, list[str], str]:
        """The graph's node lines, its input names and the feeds expression, per op."""
        weights = hwio_to_oihw("filters") if case.forward_op == "conv2d" else hwcm_to_oihw("filters")
        groups = case.groups if case.forward_op == "conv2d" else case.in_channels
        spatial = (f"kernel_shape={list(case.kernel)!r}, strides={list(case.strides)!r}, "
                   f"dilations={list(case.dilations)!r}")
        node = '    helper.make_node("{op}", {ins!r}, {outs!r}{extra}, group={g}, {attrs}),\n'
        if case.op in FORWARD_OPS:
            inputs = ["X", "W"] + (["B"] if case.bias else [])
            nodes = node.format(op="Conv", ins=inputs, outs=["Y"], extra="", g=groups,
                                attrs=f"{spatial}, {self._pad_attrs(case)}")
            feeds = f'"X": {nhwc_to_nchw("x")}, "W": {weights}' + (', "B": bias' if case.bias else "")
        elif OP_INFO[case.op].result == "input":
            # ConvTranspose's W is (C_in, C_out / group, kh, kw) with C_in the channels of dy:
            # the forward conv's OIHW weights as they are.
            inputs = ["DY", "W"]
            nodes = node.format(op="ConvTranspose", ins=inputs, outs=["Y"], extra="", g=groups,
                                attrs=f"{spatial}, {self._transpose_pad_attrs(case)}")
            feeds = f'"DY": {nhwc_to_nchw("dy")}, "W": {weights}'
        elif OP_INFO[case.op].result == "filter":
            # ONNX's operator set has no filter gradient; ONNX Runtime's training builds add
            # com.microsoft ConvGrad (dY, X, W) -> (dX, dW, dB). W only feeds dX, which is not
            # asked for: zeros of the filter's shape stand in for it.
            inputs = ["DY", "X", "W"]
            nodes = node.format(op="ConvGrad", ins=inputs, outs=["", "Y"], extra=', domain="com.microsoft"',
                                g=groups, attrs=f"{spatial}, {self._pad_attrs(case, auto=False)}")
            feeds = (f'"DY": {nhwc_to_nchw("dy")}, "X": {nhwc_to_nchw("x")}, '
                     f'"W": np.zeros({_oihw(case)!r}, dtype=x.dtype)')
        else:  # separable: the depthwise Conv, then a 1x1 Conv with the bias
            inputs = ["X", "W", "P"] + (["B"] if case.bias else [])
            nodes = (node.format(op="Conv", ins=["X", "W"], outs=["M"], extra="", g=groups,
                                 attrs=f"{spatial}, {self._pad_attrs(case)}")
                     + node.format(op="Conv", ins=["M", "P"] + inputs[3:], outs=["Y"], extra="", g=1,
                                   attrs="kernel_shape=[1, 1]"))
            feeds = (f'"X": {nhwc_to_nchw("x")}, "W": {weights}, "P": {hwio_to_oihw("pointwise")}'
                     + (', "B": bias' if case.bias else ""))
        return nodes, inputs, "{" + feeds + "}"


def _oihw(case: Case) -> tuple[int, int, int, int]:
    """The forward conv's weights' shape in ONNX's OIHW (depthwise: (C*M, 1, kh, kw))."""
    kh, kw = case.kernel
    return (case.conv_channels, case.filter_in_channels, kh, kw)
