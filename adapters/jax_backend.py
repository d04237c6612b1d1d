"""JAX: jax.lax.conv_general_dilated, and its gradients by jax.vjp.

Ops (all seven): conv2d / depthwise_conv2d: lax.conv_general_dilated; *_backprop_input
and *_backprop_filter: the pullback of `jax.vjp` of that same call with respect to x or
the filters (JAX has no separate gradient op: its transpose rules are what training
runs; the primal point is zeros, the conv being linear in each operand); separable_conv2d:
the depthwise call, then a 1x1 lax.conv_general_dilated, then the bias.

Translation: dimension_numbers ("NHWC", "HWIO", "NHWC") for data_format NHWC (canonical
arrays as they are), ("NCHW", "OIHW", "NCHW") for NCHW (x and filters transposed).
Depthwise is feature_group_count = C with the filter reshaped (kh, kw, C, M) ->
(kh, kw, 1, C*M), which keeps the canonical k*M + q channel order. Padding: "SAME" and
"VALID" are passed as JAX's strings (JAX's SAME is TensorFlow's); explicit pads as
((top, bottom), (left, right)) pairs.
Precision: float64 needs `jax_enable_x64` (set in the setup; it changes no float32
computation: arrays keep their dtype). `precision` is left at JAX's default, as a user
would call it: on CPU that is full float32; on GPUs the default may use TF32 for float32,
which the suite is meant to see, not to hide.
Kernel path (`facts`): read after the program's setup ran (it enables x64), on the
device the program computes on.
"""

from __future__ import annotations

from conformance.spec import OP_INFO, OPS, Case

import os
import sys
from typing import Any

from ._base import BuiltinAdapter, Device, Fact, tiny_case
from ._layout import hwcm_to_hw1o, hwio_to_oihw, nchw_to_nhwc, nhwc_to_nchw
from ._program import Program


def jax_path(jax: Any, platform: str) -> dict[str, Any]:
    """JAX's build and configuration in this process, computing on `platform` (also used by
    keras[backend=jax])."""
    jaxlib = sys.modules.get("jaxlib")
    return {"version": jax.__version__, "jaxlib": getattr(jaxlib, "__version__", None), "backend": platform,
            "x64": bool(jax.config.jax_enable_x64),
            "matmul_precision": str(jax.config.jax_default_matmul_precision or "default"),
            "xla_flags": os.environ.get("XLA_FLAGS", "")}


class JaxAdapter(BuiltinAdapter):
    """JAX: jax.lax.conv_general_dilated and jax.vjp of it."""

    framework = "jax"
    base_name = "jax"
    requires = ("jax", "jaxlib")
    extra = "jax"
    distributions = ("jax",)
    ops = OPS
    devices = {"gpu": Device("gpu:0", "import jax; jax.devices('gpu')")}
    facts = {
        "jax.backend": Fact(str, "the platform the convolution runs on (cpu, gpu, tpu)"),
        "jax.x64": Fact(bool, "jax_enable_x64 (the adapter enables it: float64 cases compute in float64)"),
        "jax.matmul_precision": Fact(str, "jax_default_matmul_precision (default when unset; tensorfloat32 or "
                                          "bfloat16 would narrow float32 convolutions)"),
    }

    def _kernel_path(self, ns: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {"jax": jax_path(ns["jax"], ns["dev"].platform)}

    def _probe(self, case: Case) -> Case:
        return tiny_case(case, dtype=case.dtype, data_format=case.data_format)

    def _program(self, case: Case) -> Program:
        platform = self._device.split(":")[0]
        index = int(self._device.split(":")[1]) if ":" in self._device else 0
        setup = ("import numpy as np\nimport jax\nfrom jax import lax\n\n"
                 "jax.config.update('jax_enable_x64', True)  # float64 cases compute in float64\n"
                 f"dev = jax.devices({platform!r})[{index}]\n")
        nchw = case.data_format == "NCHW"
        conv2d = case.forward_op == "conv2d"
        groups = case.groups if conv2d else case.in_channels
        pad = case.padding if isinstance(case.padding, str) else tuple(tuple(p) for p in case.padding)
        dims = ("NCHW", "OIHW", "NCHW") if nchw else ("NHWC", "HWIO", "NHWC")

        def put(name: str, expr: str, layout) -> str:  # a canonical array on the device, in JAX's layout
            return f"{name} = jax.device_put({layout(expr) if nchw else expr}, dev)"

        lines = []
        for name, var in (("x", "xj"), ("dy", "dyj")):
            if name in case.operands:
                lines.append(put(var, name, nhwc_to_nchw))
        w_hwio = "filters" if conv2d else hwcm_to_hw1o("filters")
        if "filters" in case.operands:
            lines.append(put("fj", w_hwio, hwio_to_oihw))
        lines.append(f"conv = lambda a, w: lax.conv_general_dilated(a, w, window_strides={tuple(case.strides)!r}, "
                     f"padding={pad!r}, rhs_dilation={tuple(case.dilations)!r}, dimension_numbers={dims!r}, "
                     f"feature_group_count={groups})")
        result = OP_INFO[case.op].result
        if result == "input":
            n, h, w, c = case.input_shape
            shape = (n, c, h, w) if nchw else (n, h, w, c)
            lines += ["# the gradient with respect to x: jax.vjp's pullback (conv is linear in x: x = 0 will do)",
                      f"_, pullback = jax.vjp(lambda a: conv(a, fj), jax.device_put(np.zeros({shape!r}, dy.dtype), dev))",
                      "(gj,) = pullback(dyj)",
                      f"y = {nchw_to_nhwc('np.asarray(gj)') if nchw else 'np.asarray(gj)'}"]
        elif result == "filter":
            kh, kw, ci, co = (*case.kernel, case.filter_in_channels, case.conv_channels)
            shape = (co, ci, kh, kw) if nchw else (kh, kw, ci, co)
            lines += ["# the gradient with respect to the filters: jax.vjp's pullback (linear in them: 0 will do)",
                      f"_, pullback = jax.vjp(lambda w: conv(xj, w), jax.device_put(np.zeros({shape!r}, dy.dtype), dev))",
                      "(gj,) = pullback(dyj)"]
            out = "np.asarray(gj)" + (".transpose(2, 3, 1, 0)" if nchw else "")  # -> (kh, kw, C/groups, O)
            lines.append(f"y = np.ascontiguousarray({out})" + ("" if conv2d else
                         f".reshape({case.filter_shape!r})  # (kh, kw, 1, C*M) -> (kh, kw, C, M)"))
        else:
            lines.append("yj = conv(xj, fj)")
            if case.op == "separable_conv2d":  # depthwise, then the 1x1 pointwise conv
                lines += [put("pj", "pointwise", hwio_to_oihw),
                          f"yj = lax.conv_general_dilated(yj, pj, (1, 1), 'VALID', dimension_numbers={dims!r})"]
            if case.bias:
                shape = "(1, -1, 1, 1)" if nchw else "(1, 1, 1, -1)"
                lines.append(f"yj = yj + jax.device_put(bias, dev).reshape{shape}")
            lines.append(f"y = {nchw_to_nhwc('np.asarray(yj)') if nchw else 'np.asarray(yj)'}")
        return Program(setup, "\n".join(lines) + "\n")
