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
Training ops: the TF calls a user would convert (tf.nn.conv2d_transpose,
tf.nn.depthwise_conv2d_backprop_input / _filter, tf.raw_ops.Conv2DBackpropFilter,
tf.nn.separable_conv2d), dy and x as the model's inputs, fed by argument name. The
converter lowers conv2d_transpose to TRANSPOSE_CONV for SAME/VALID without dilation, and
separable to DEPTHWISE_CONV_2D + CONV_2D; the other gradients stay TF ops that a
builtins-only model refuses ("neither a custom op nor a flex op"), which supports()
quotes (its probe keeps the padding kind, striding and dilation of these ops).
Kernel path (`facts`): the op resolver, and whether the XNNPACK delegate took the
convolution (the interpreter that just ran lists a DELEGATE node in place of the op).
"""

from __future__ import annotations

from conformance.spec import FORWARD_OPS, OPS, OP_INFO, Case

from typing import Any

from ._base import BuiltinAdapter, Fact, Variant, tiny_case
from ._program import Program

_COSTLY = ("over the default run's 5-minute budget: each LiteRT variant converts a model per case, as much as "
           "`litert` itself; run it by name")
_RESOLVERS = {"xnnpack": "AUTO", "reference": "BUILTIN_REF", "builtin": "BUILTIN_WITHOUT_DEFAULT_DELEGATES"}


class LitertAdapter(BuiltinAdapter):
    """LiteRT: TF converter + ai_edge_litert Interpreter (XNNPACK delegate by default)."""

    framework = "ai_edge_litert"
    ops = OPS
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
        if case.op in FORWARD_OPS:
            return tiny_case(case, dtype=case.dtype, bias=case.bias)
        # The converter lowers a training op to a builtin for some geometries only
        # (TRANSPOSE_CONV has no dilation and no explicit pads): padding kind, striding
        # and dilation are part of the kind of case asked about.
        return tiny_case(case, dtype=case.dtype, bias=case.bias,
                         padding=case.padding if isinstance(case.padding, str) else ((1, 0), (0, 1)),
                         strides=(2, 2) if case.strides != (1, 1) else (1, 1),
                         dilations=(2, 2) if case.dilations != (1, 1) else (1, 1))

    def _program(self, case: Case) -> Program:
        setup = ("import numpy as np\nimport tensorflow as tf\n"
                 "from ai_edge_litert.interpreter import Interpreter, OpResolverType\n")
        (sh, sw), (dh, dw) = case.strides, case.dilations
        if isinstance(case.padding, str):
            pad = case.padding
        else:
            (t, b), (l, r) = case.geometry.pads
            pad = [[0, 0], [t, b], [l, r], [0, 0]]
        strides, dilations = f"strides=[1, {sh}, {sw}, 1], padding={pad!r}", f"dilations=[1, {dh}, {dw}, 1]"
        inputs = ["x", "dy"] if OP_INFO[case.op].result == "filter" else ["dy"] if OP_INFO[case.op].result == "input" else ["x"]
        call = {
            "conv2d": f"tf.nn.conv2d(xt, ft, {strides}, {dilations})",
            "depthwise_conv2d": f"tf.nn.depthwise_conv2d(xt, ft, {strides}, dilations=[{dh}, {dw}])",
            "conv2d_backprop_input": f"tf.nn.conv2d_transpose(dyt, ft, {list(case.input_shape)!r}, {strides}, "
                                     f"{dilations})",
            "depthwise_conv2d_backprop_input": f"tf.nn.depthwise_conv2d_backprop_input({list(case.input_shape)!r}, "
                                               f"ft, dyt, {strides}, {dilations})",
            # Conv2DBackpropFilter has no tf.nn spelling in TF 2: the raw op (what tf.GradientTape emits).
            "conv2d_backprop_filter": f"tf.raw_ops.Conv2DBackpropFilter(input=xt, filter_sizes="
                                      f"{list(case.filter_shape)!r}, out_backprop=dyt, {_raw(case)})",
            "depthwise_conv2d_backprop_filter": f"tf.nn.depthwise_conv2d_backprop_filter(xt, "
                                                f"{list(case.filter_shape)!r}, dyt, {strides}, {dilations})",
            "separable_conv2d": f"tf.nn.separable_conv2d(xt, ft, pt, {strides}, dilations=[{dh}, {dw}])",
        }[case.op]
        shapes = dict(zip(case.operands, case.operand_shapes))
        specs = ", ".join(f"tf.TensorSpec({list(shapes[name])!r}, tf.as_dtype({name}.dtype))" for name in inputs)
        constants = [f"{name[0]}t = tf.constant({name})" for name in ("filters", "pointwise", "bias")
                     if name in case.operands and (name != "bias" or case.bias)]
        arguments = [name + "t" for name in inputs]
        lines = constants + [
            "" if constants else None,
            f"@tf.function(input_signature=[{specs}])",
            f"def conv({', '.join(arguments)}):",
            f"    yt = {call}",
            "    yt = tf.nn.bias_add(yt, bt)" if case.bias else None,
            "    return yt",
            "",
            "converter = tf.lite.TFLiteConverter.from_concrete_functions([conv.get_concrete_function()], conv)",
            "converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]",
            "flatbuffer = converter.convert()",
            f"interpreter = Interpreter(model_content=flatbuffer, "
            f"experimental_op_resolver_type=OpResolverType.{_RESOLVERS[self.params['kernels']]})",
            "interpreter.allocate_tensors()",
            # The converted model's inputs are named after the function's arguments.
            "feeds = {" + ", ".join(f"{arg!r}: {name}" for arg, name in zip(arguments, inputs)) + "}",
            "for detail in interpreter.get_input_details():",
            "    interpreter.set_tensor(detail['index'], feeds[detail['name']])",
            "interpreter.invoke()",
            "y = interpreter.get_tensor(interpreter.get_output_details()[0]['index']).copy()",
        ]
        return Program(setup, "\n".join(line for line in lines if line is not None) + "\n")


def _raw(case: Case) -> str:
    """strides, padding (explicit_paddings for explicit pads) and dilations as tf.raw_ops' keywords."""
    (sh, sw), (dh, dw) = case.strides, case.dilations
    if isinstance(case.padding, str):
        pad = f"padding={case.padding!r}"
    else:
        (t, b), (l, r) = case.geometry.pads
        pad = f"padding='EXPLICIT', explicit_paddings={[0, 0, t, b, l, r, 0, 0]!r}"
    return f"strides=[1, {sh}, {sw}, 1], {pad}, dilations=[1, {dh}, {dw}, 1]"
