"""TensorFlow: tf.nn.conv2d and tf.nn.depthwise_conv2d, the canonical semantics' origin,
and TensorFlow's explicit gradient ops.

Ops (all seven): conv2d_backprop_input: tf.nn.conv2d_transpose (output_shape = the
forward input's, which fixes the output_padding); conv2d_backprop_filter:
tf.compat.v1.nn.conv2d_backprop_filter (TF 2 keeps it there only);
depthwise_conv2d_backprop_input / _filter: tf.nn.depthwise_conv2d_backprop_input /
_filter; separable_conv2d: tf.nn.separable_conv2d, then tf.nn.bias_add. tf.GradientTape
calls these same ops (Conv2DBackpropInput, Conv2DBackpropFilter, ...), grouped filters
included, so an explicit call is what training runs; TF's CPU kernels refuse grouped
gradients and NCHW on some paths: supports() quotes them. TF's depthwise gradient ops
take `dilations`, and are passed them as given (its forward depthwise_conv2d instead
expresses a dilation with space_to_batch).

Translation: canonical layouts are TensorFlow's (NHWC, HWIO, HWCM), so only
data_format NCHW transposes x (TensorFlow's CPU kernels support NCHW for some dtypes
only: supports() quotes the refusal). Grouped conv2d is expressed the TensorFlow way,
by a filter of shape (kh, kw, C/groups, O): TF infers the groups.
strides/dilations are 4-tuples in the data_format's order for conv2d; depthwise takes
`strides` as a 4-tuple and `dilations` as a 2-tuple, passed as given. TensorFlow's
depthwise_conv2d with strides > 1 *and* dilations > 1 only warns and returns a wrongly
shaped result: that is a finding for the suite to report, not something to fix here.
Padding: "SAME"/"VALID" as TensorFlow strings (TF's own semantics); explicit pads as
TF's explicit list.
Variant `native_pad`: every padding spelled as TF's explicit list, SAME/VALID resolved
by `conv_geometry`: compares TF's SAME rule with its explicit-padding path.
Variant `xla` (jit_compile=true): the same calls inside `tf.function(jit_compile=True)`,
compiled by XLA. Variants `onednn` / `eigen` (onednn=on / off): TF_ENABLE_ONEDNN_OPTS=1 / 0
set before TensorFlow is imported (the program's setup does it, so repro scripts take the
same path); plain `tensorflow` leaves the variable as the environment has it, this
machine's default (oneDNN on x86 CPUs with AVX-512, Eigen without, in TF 2.21).
Defaults are TensorFlow's: oneDNN kernels on x86 CPUs (which flush float32 subnormals
to zero), TF32 for float32 on recent GPUs; the suite reports them, the adapter does
not switch them off.
Kernel path (`facts`): oneDNN on or off as TensorFlow decided it at import (its
IsMklEnabled(): TF_ENABLE_ONEDNN_OPTS, which `onednn` / `eigen` set, or the CPU's
default), and whether the convolution is compiled by XLA (`xla`'s jit_compile, or
TensorFlow's global auto-jit).
"""

from __future__ import annotations

from conformance.spec import OP_INFO, OPS, Case

from typing import Any

from ._base import BuiltinAdapter, Device, Fact, Variant, env_preamble, tiny_case
from ._layout import nchw_to_nhwc, nhwc_to_nchw
from ._program import Program


def tensorflow_path(tf: Any, *, jit_compile: bool = False) -> dict[str, Any]:
    """TensorFlow's build and kernel path in this process; `jit_compile`: the caller's ops
    run inside tf.function(jit_compile=True) (also used by keras, which runs them eagerly)."""
    out: dict[str, Any] = {"version": getattr(tf, "__version__", None)}
    try:
        # TensorFlow has no public API for it; IsMklEnabled() is what its own tests ask.
        from tensorflow.python.util import _pywrap_util_port as port  # noqa: PLC0415

        out["onednn"] = bool(port.IsMklEnabled())
        out["built_with_xla"] = bool(port.IsBuiltWithXLA())
    except Exception as exc:  # a private module: it may move
        out["onednn"] = None
        out["onednn_error"] = f"{type(exc).__name__}: {exc}"
    jit = tf.config.optimizer.get_jit()
    out["xla"] = bool(jit_compile) or (bool(jit) and jit not in ("", "off"))
    out["jit_compile"] = bool(jit_compile)
    out["xla_jit"] = str(jit)
    out["build"] = {k: v for k, v in dict(tf.sysconfig.get_build_info()).items() if isinstance(v, (str, bool, int))}
    out["intra_op_threads"] = tf.config.threading.get_intra_op_parallelism_threads()
    out["inter_op_threads"] = tf.config.threading.get_inter_op_parallelism_threads()
    return out


class TensorflowAdapter(BuiltinAdapter):
    """TensorFlow: tf.nn.conv2d, tf.nn.depthwise_conv2d, their gradient ops and tf.nn.separable_conv2d."""

    framework = "tensorflow"
    base_name = "tensorflow"
    extra = "tensorflow"
    distributions = ("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tensorflow-intel")
    parameters = {"native_pad": (False, True), "jit_compile": (False, True), "onednn": ("default", "on", "off")}
    variants = {
        "native_pad": Variant({"native_pad": True}, "every padding as TF's explicit pad list"),
        "xla": Variant({"jit_compile": True}, "tf.function(jit_compile=True): compiled by XLA",
                       excluded="over the default run's 5-minute budget: XLA compiles every new shape, and a "
                                "one-backend default run did not finish in 900 s on 2 shared cores; run it by name"),
        "onednn": Variant({"onednn": "on"}, "TF_ENABLE_ONEDNN_OPTS=1: oneDNN kernels forced on",
                          excluded="the same kernels as the plain `tensorflow` under TensorFlow's default on x86 "
                                   "Linux (oneDNN on since 2.9), computed twice over the default run's 5-minute "
                                   "budget; run it by name where TF_ENABLE_ONEDNN_OPTS=0 turns the default off"),
        "eigen": Variant({"onednn": "off"}, "TF_ENABLE_ONEDNN_OPTS=0: Eigen kernels, oneDNN off"),
    }
    ops = OPS
    devices = {"gpu": Device("gpu:0", "import tensorflow as tf, sys; "
                                      "sys.exit(0 if tf.config.list_physical_devices('GPU') else 3)")}
    facts = {
        "tensorflow.onednn": Fact(bool, "oneDNN kernels on (TensorFlow's IsMklEnabled(): TF_ENABLE_ONEDNN_OPTS "
                                        "as read at import, which tensorflow[onednn] / [eigen] force, or the "
                                        "CPU's default)"),
        "tensorflow.xla": Fact(bool, "the convolution is compiled by XLA (tensorflow[xla]'s jit_compile=True, "
                                     "or global auto-jit)"),
    }

    @property
    def native_pad(self) -> bool:
        return self.params["native_pad"]

    def _env(self) -> dict[str, str]:
        return {"on": {"TF_ENABLE_ONEDNN_OPTS": "1"}, "off": {"TF_ENABLE_ONEDNN_OPTS": "0"}}.get(
            self.params["onednn"], {})

    def version(self) -> str:
        exec(env_preamble("tensorflow", self._env()), {})  # before TensorFlow's import reads it
        return super().version()

    def _kernel_path(self, ns: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {"tensorflow": tensorflow_path(ns["tf"], jit_compile=self.params["jit_compile"])}

    def _probe(self, case: Case) -> Case:
        # Which kernel TF picks depends on dtype and layout, and some kernels refuse some
        # strides (float64 depthwise: "only supports equal length strides"); dilations
        # take another path (space_to_batch): the probe keeps all of these.
        return tiny_case(case, dtype=case.dtype, data_format=case.data_format, bias=case.bias,
                         strides=case.strides, dilations=case.dilations,
                         padding=case.padding if isinstance(case.padding, str) else ((1, 0), (0, 1)))

    def _padding(self, case: Case):
        if isinstance(case.padding, str) and not self.native_pad:
            return case.padding
        (t, b), (l, r) = case.geometry.pads
        if case.data_format == "NCHW":
            return [[0, 0], [0, 0], [t, b], [l, r]]
        return [[0, 0], [t, b], [l, r], [0, 0]]

    def _body(self, case: Case) -> list[str]:
        """The TensorFlow call(s) turning the operand tensors (xt, dyt, ft, pt, bt) into yt."""
        nchw = case.data_format == "NCHW"
        (sh, sw), (dh, dw) = case.strides, case.dilations
        strides = [1, 1, sh, sw] if nchw else [1, sh, sw, 1]
        dil = [1, 1, dh, dw] if nchw else [1, dh, dw, 1]
        common = f"strides={strides}, padding={self._padding(case)!r}, data_format={case.data_format!r}"
        n, h, w, c = case.input_shape
        input_sizes = [n, c, h, w] if nchw else [n, h, w, c]
        calls = {
            "conv2d": f"tf.nn.conv2d(xt, ft, {common}, dilations={dil})",
            "depthwise_conv2d": f"tf.nn.depthwise_conv2d(xt, ft, {common}, dilations={[dh, dw]})",
            # TF infers the groups from the filter's depth: on CPU its gradient kernels refuse
            # grouped filters (tf.GradientTape runs these same ops: supports() quotes them).
            "conv2d_backprop_input": f"tf.nn.conv2d_transpose(dyt, ft, {input_sizes}, {common}, dilations={dil})",
            "depthwise_conv2d_backprop_input":
                f"tf.nn.depthwise_conv2d_backprop_input({input_sizes}, ft, dyt, {common}, dilations={dil})",
            "conv2d_backprop_filter":  # TF 2 has it in compat.v1 only (tf.GradientTape calls the same op)
                f"tf.compat.v1.nn.conv2d_backprop_filter(xt, {list(case.filter_shape)}, dyt, {common}, "
                f"dilations={dil})",
            "depthwise_conv2d_backprop_filter":
                f"tf.nn.depthwise_conv2d_backprop_filter(xt, {list(case.filter_shape)}, dyt, {common}, "
                f"dilations={dil})",
            "separable_conv2d": f"tf.nn.separable_conv2d(xt, ft, pt, {common}, dilations={[dh, dw]})",
        }
        body = [f"yt = {calls[case.op]}"]
        if case.bias:
            body.append(f"yt = tf.nn.bias_add(yt, bt, data_format={case.data_format!r})")
        return body

    def _program(self, case: Case) -> Program:
        setup = env_preamble("tensorflow", self._env()) + "import numpy as np\nimport tensorflow as tf\n"
        nchw = case.data_format == "NCHW"
        tf_device = "/CPU:0" if self._device == "cpu" else "/" + self._device.upper()
        lines = []
        if self._device != "cpu":
            # Eager TF silently falls back to the CPU when the GPU is missing: refuse instead.
            lines += ["if not tf.config.list_physical_devices('GPU'):",
                      "    raise RuntimeError(\"no GPU visible to TensorFlow: tf.config.list_physical_devices('GPU') is empty\")"]
        lines.append(f"with tf.device({tf_device!r}):")
        tensors = []
        for name in case.operands:
            var = {"x": "xt", "dy": "dyt", "filters": "ft", "pointwise": "pt", "bias": "bt"}[name]
            tensors.append(var)
            if name == "bias" and not case.bias:
                lines.append("    bt = None")
            elif name in ("x", "dy") and nchw:
                lines.append(f"    {var} = tf.constant({nhwc_to_nchw(name)})  # NHWC -> NCHW")
            else:
                lines.append(f"    {var} = tf.constant({name})")
        body = self._body(case)
        if self.params["jit_compile"]:
            args = ", ".join(tensors)
            setup += (f"\n\n@tf.function(jit_compile=True)  # compiled by XLA\ndef conv({args}):\n"
                      + "".join(f"    {ln}\n" for ln in body) + "    return yt\n")
            lines.append(f"    yt = conv({args})")
        else:
            lines += [f"    {ln}" for ln in body]
        image = OP_INFO[case.op].result != "filter"
        lines.append(f"y = {nchw_to_nhwc('yt.numpy()') if nchw and image else 'yt.numpy()'}")
        return Program(setup, "\n".join(lines) + "\n")
