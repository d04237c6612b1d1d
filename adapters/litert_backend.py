"""LiteRT (TensorFlow Lite): the TF converter's flatbuffer run by ai_edge_litert's Interpreter.

Translation: a `tf.function` with the TensorFlow adapter's calls (tf.nn.conv2d /
tf.nn.depthwise_conv2d, NHWC, SAME/VALID strings, explicit pads as TF's list; grouped
conv2d by the filter's shape), the filters and bias as constants, an input of the case's
static shape, converted with `tf.lite.TFLiteConverter.from_concrete_functions` (builtin
ops only: a dtype that needs Flex ops is refused with the converter's reason). The model
is converted per call (weights are constants, as in a model a user ships).
LiteRT is NHWC only: data_format NCHW takes the same path (a single-layout backend).
Variants select the Interpreter's op resolver: the plain backend uses OpResolverType.AUTO
(builtin kernels with the default XNNPACK delegate, what `Interpreter(model)` gives a
user); `reference` uses BUILTIN_REF (the reference kernels); `builtin` uses
BUILTIN_WITHOUT_DEFAULT_DELEGATES (the optimised builtin kernels, no XNNPACK).
Kernel path (`facts`): the op resolver, and whether the XNNPACK delegate took the
convolution (the interpreter that just ran lists a DELEGATE node in place of the op).
"""

from __future__ import annotations

from conformance.spec import Case

from typing import Any

from ._base import BuiltinAdapter, Fact, Variant, tiny_case
from ._program import Program

_COSTLY = ("over the default run's 5-minute budget: each LiteRT variant converts a model per case, as much as "
           "`litert` itself; run it by name")
_RESOLVERS = {"xnnpack": "AUTO", "reference": "BUILTIN_REF", "builtin": "BUILTIN_WITHOUT_DEFAULT_DELEGATES"}


class LitertAdapter(BuiltinAdapter):
    """LiteRT: TF converter + ai_edge_litert Interpreter (XNNPACK delegate by default)."""

    framework = "ai_edge_litert"
    base_name = "litert"
    requires = ("ai_edge_litert", "tensorflow")
    extra = "litert"
    distributions = ("ai-edge-litert",)
    parameters = {"kernels": ("xnnpack", "reference", "builtin")}
    variants = {
        "reference": Variant({"kernels": "reference"}, "OpResolverType.BUILTIN_REF: the reference kernels",
                             excluded=_COSTLY),
        "builtin": Variant({"kernels": "builtin"}, "BUILTIN_WITHOUT_DEFAULT_DELEGATES: builtin kernels, no XNNPACK",
                           excluded=_COSTLY),
    }
    facts = {
        "litert.op_resolver": Fact(str, "the Interpreter's OpResolverType: AUTO (builtin kernels + default "
                                        "delegates), BUILTIN_REF (litert[reference]), "
                                        "BUILTIN_WITHOUT_DEFAULT_DELEGATES (litert[builtin])"),
        "litert.xnnpack": Fact(bool, "the XNNPACK delegate computed the convolution (a DELEGATE node replaced it)"),
    }

    def _kernel_path(self, ns: dict[str, Any]) -> dict[str, dict[str, Any]]:
        ops = [op["op_name"] for op in ns["interpreter"]._get_ops_details()]  # no public listing of the plan
        return {"litert": {"version": self.version(),
                           "op_resolver": _RESOLVERS[self.params["kernels"]], "xnnpack": "DELEGATE" in ops,
                           "ops": ops, "converter": ns["tf"].__version__}}

    def _probe(self, case: Case) -> Case:
        return tiny_case(case, dtype=case.dtype, bias=case.bias)

    def _program(self, case: Case) -> Program:
        setup = ("import numpy as np\nimport tensorflow as tf\n"
                 "from ai_edge_litert.interpreter import Interpreter, OpResolverType\n")
        (sh, sw), (dh, dw) = case.strides, case.dilations
        if isinstance(case.padding, str):
            pad = case.padding
        else:
            (t, b), (l, r) = case.geometry.pads
            pad = [[0, 0], [t, b], [l, r], [0, 0]]
        if case.op == "conv2d":
            call = (f"tf.nn.conv2d(xt, ft, strides=[1, {sh}, {sw}, 1], padding={pad!r}, "
                    f"dilations=[1, {dh}, {dw}, 1])")
        else:
            call = (f"tf.nn.depthwise_conv2d(xt, ft, strides=[1, {sh}, {sw}, 1], padding={pad!r}, "
                    f"dilations=[{dh}, {dw}])")
        lines = [
            "ft = tf.constant(filters)",
            "bt = tf.constant(bias)" if case.bias else "bt = None",
            "",
            f"@tf.function(input_signature=[tf.TensorSpec({list(case.input_shape)!r}, tf.as_dtype(x.dtype))])",
            "def conv(xt):",
            f"    yt = {call}",
        ]
        if case.bias:
            lines.append("    yt = tf.nn.bias_add(yt, bt)")
        lines += [
            "    return yt",
            "",
            "converter = tf.lite.TFLiteConverter.from_concrete_functions([conv.get_concrete_function()], conv)",
            "converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]",
            "flatbuffer = converter.convert()",
            f"interpreter = Interpreter(model_content=flatbuffer, "
            f"experimental_op_resolver_type=OpResolverType.{_RESOLVERS[self.params['kernels']]})",
            "interpreter.allocate_tensors()",
            "interpreter.set_tensor(interpreter.get_input_details()[0]['index'], x)",
            "interpreter.invoke()",
            "y = interpreter.get_tensor(interpreter.get_output_details()[0]['index']).copy()",
        ]
        return Program(setup, "\n".join(lines) + "\n")
