"""Keras 3 ops: keras.ops.conv / keras.ops.depthwise_conv on one Keras backend.

Ops (all seven): conv2d_backprop_input with groups = 1: keras.ops.conv_transpose (its
kernel (kh, kw, C, O) is the forward filter); 'same' with the output_padding that makes
Keras's documented length ((Ho - 1) * s + eff % 2 + output_padding) the forward input
size; VALID and explicit pads: 'valid' with the case's output_padding, the explicit pads
cropped after. Keras has no op for the other gradients (grouped transposed conv, the
depthwise one, the filter gradients): they are the backend's own autodiff through
keras.ops.conv / depthwise_conv (tf.GradientTape, jax.vjp, torch.autograd.grad), what a
Keras training step runs. separable_conv2d: keras.ops.separable_conv, then the bias.

Parameter `backend` (tensorflow | jax | torch; `keras[backend=jax]`): KERAS_BACKEND is set
by the program's setup before Keras is imported (Keras reads it once, at import), so a
worker, a repro script and the tests all get the named backend; a process that imported
Keras with another backend is refused with that reason. The plain `keras` is
backend=tensorflow, Keras's own default.
Translation: Keras's kernels are (kh, kw, C_in/groups, O) for conv (the groups follow from
the kernel's shape) and (kh, kw, C, M) for depthwise: the canonical layouts. data_format
NCHW transposes x and passes data_format="channels_first". Padding: "same" / "valid" are
Keras's strings (Keras's SAME rule on each backend); explicit pads are applied first with
keras.ops.pad (zeros), then "valid", as ported TensorFlow models do. The bias is added
after the op (keras.ops.add, broadcast over the channel axis).
bfloat16 enters as float32 and is cast with keras.ops.cast (exact), and leaves as
float32 (exact) cast back to bfloat16 in NumPy; other dtypes are converted as they are.
Keras refuses strides > 1 together with dilations > 1 itself: supports() quotes it.
Kernel path (`facts`): the Keras backend, and that backend's own facts under its name
(`tensorflow.onednn` ...: Keras computes with that framework's kernels, eagerly).
"""

from __future__ import annotations

from conformance.spec import OP_INFO, OPS, Case

from typing import Any

from ._base import BuiltinAdapter, Fact, Variant, env_preamble, tiny_case
from ._program import Program
from .jax_backend import jax_path
from .tensorflow_backend import tensorflow_path
from .torch_backend import torch_path


class KerasAdapter(BuiltinAdapter):
    """Keras 3: keras.ops.conv / depthwise_conv / conv_transpose / separable_conv on a Keras backend."""

    framework = "keras"
    base_name = "keras"
    requires = ("keras", "tensorflow")
    extra = "keras"
    distributions = ("keras",)
    parameters = {"backend": ("tensorflow", "jax", "torch")}
    variants = {
        "backend=jax": Variant({"backend": "jax"}, "Keras on JAX", requires=("jax",),
                               excluded="over the default run's 5-minute budget: JAX compiles every new shape (jax alone "
                                        "is half of the default run's time); run it by name"),
        "backend=torch": Variant({"backend": "torch"}, "Keras on PyTorch", requires=("torch",),
                                 excluded="over the default run's 5-minute budget: it computes with torch's kernels, "
                                          "which `torch` already runs; run it by name"),
    }
    ops = OPS
    facts = {"keras.backend": Fact(str, "the Keras backend computing keras.ops (tensorflow, jax, torch); that "
                                        "framework's facts (tensorflow.*, jax.*, torch.*) are reported too")}

    def __init__(self, device: str = "cpu", **params):
        super().__init__(device, **params)
        if self.params["backend"] != "tensorflow":
            self.requires = ("keras", self.params["backend"])

    def _preamble(self) -> str:
        want = self.params["backend"]
        return (env_preamble("keras", {"KERAS_BACKEND": want})
                + "import keras\n"
                + f"if keras.backend.backend() != {want!r}:\n"
                + f"    raise RuntimeError(f'expected Keras on {want}, received Keras on {{keras.backend.backend()}} "
                  f"(Keras was imported before KERAS_BACKEND={want} was set)')\n")

    def version(self) -> str:
        ns: dict = {}
        exec(self._preamble(), ns)  # noqa: S102 (KERAS_BACKEND before Keras's import reads it)
        return str(ns["keras"].__version__)  # the Keras backend is in the name: keras[backend=jax]

    def _kernel_path(self, ns: dict[str, Any]) -> dict[str, dict[str, Any]]:
        import importlib

        keras = ns["keras"]
        backend = keras.backend.backend()
        framework = importlib.import_module(backend)  # imported by Keras already
        if backend == "jax":
            path = jax_path(framework, framework.default_backend())
        else:  # Keras runs the ops eagerly: no jit_compile on TensorFlow, oneDNN as torch has it
            path = tensorflow_path(framework) if backend == "tensorflow" else torch_path(framework)
        return {"keras": {"version": keras.__version__, "backend": backend}, backend: path}

    def _probe(self, case: Case) -> Case:
        # Keras refuses strides > 1 with dilations > 1; its TensorFlow backend's depthwise
        # kernels refuse unequal strides: the probe keeps the strides and dilations as they are.
        return tiny_case(case, dtype=case.dtype, bias=case.bias, data_format=case.data_format,
                         strides=case.strides, dilations=case.dilations,
                         padding=case.padding if isinstance(case.padding, str) else ((1, 0), (0, 1)))

    def _autodiff(self, wrt: str, call: list[str]) -> list[str]:
        """Lines giving gk = the gradient of `call`'s yk with respect to `wrt`, contracted with
        dyk, by the Keras backend's own autodiff (what a Keras model's training step runs)."""
        backend = self.params["backend"]
        if backend == "tensorflow":
            return (["with tf.GradientTape() as tape:", f"    tape.watch({wrt})"] + [f"    {ln}" for ln in call]
                    + [f"gk = tape.gradient(yk, {wrt}, output_gradients=dyk)"])
        if backend == "jax":
            return ([f"def forward({wrt}):"] + [f"    {ln}" for ln in call] + ["    return yk",
                    f"_, pullback = jax.vjp(forward, {wrt})", "(gk,) = pullback(dyk)"])
        return [f"{wrt}.requires_grad_(True)"] + call + [f"(gk,) = torch.autograd.grad(yk, {wrt}, dyk)"]

    def _program(self, case: Case) -> Program:
        backend = self.params["backend"]
        setup = "import numpy as np\n" + self._preamble() + "from keras import ops\n"
        nchw = case.data_format == "NCHW"
        bf16 = case.dtype == "bfloat16"
        op = case.op
        result = OP_INFO[op].result

        def tensor(expr: str) -> str:
            if bf16:
                return f"ops.cast(ops.convert_to_tensor(np.asarray({expr}, dtype=np.float32)), 'bfloat16')"
            return f"ops.convert_to_tensor({expr})"

        def image(expr: str) -> str:
            return tensor(f"np.ascontiguousarray({expr}.transpose(0, 3, 1, 2))" if nchw else expr) + \
                ("  # NHWC -> NCHW" if nchw else "")

        lines = []
        for name, var in (("x", "xk"), ("dy", "dyk"), ("filters", "fk"), ("pointwise", "pk")):
            if name in case.operands:
                lines.append(f"{var} = {image(name) if name in ('x', 'dy') else tensor(name)}")
        fmt = "channels_first" if nchw else "channels_last"
        strings = isinstance(case.padding, str)
        (t, b), (l, r) = case.geometry.pads
        geo = f"strides={tuple(case.strides)!r}, data_format={fmt!r}, dilation_rate={tuple(case.dilations)!r}"
        dtype = "'bfloat16'" if bf16 else f"{case.operands[0]}.dtype.name"
        if result == "input":
            n, h, w, c = case.input_shape
            lines.append(f"xk = ops.zeros({(n, c, h, w) if nchw else (n, h, w, c)!r}, dtype={dtype})"
                         "  # the gradient does not depend on x")
        elif result == "filter":
            lines.append(f"fk = ops.zeros({case.filter_shape!r}, dtype={dtype})  # the gradient does not depend on them")

        def padded(var: str) -> tuple[list[str], str, str]:  # explicit pads first (zeros), then 'valid'
            if strings:
                return [], var, case.padding.lower()
            widths = [[0, 0], [0, 0], [t, b], [l, r]] if nchw else [[0, 0], [t, b], [l, r], [0, 0]]
            return [f"xp = ops.pad({var}, {widths!r})  # explicit pads first (zeros), then 'valid'"], "xp", "valid"

        pre, xin, pad = padded("xk")
        transposable = op == "conv2d_backprop_input" and case.groups == 1
        if transposable:
            if strings and pad == "same":  # Keras's 'same' length: (Ho - 1) * s + eff % 2 + output_padding
                out_pad = tuple(size - (o - 1) * s - e % 2 for size, o, s, e in zip(
                    (case.height, case.width), case.conv_output_shape[1:3], case.strides,
                    case.geometry.effective_kernel))
            else:  # 'valid': the full transposed conv, then the explicit pads cropped
                out_pad, pad = case.geometry.output_padding, "valid"
            lines.append(f"gk = ops.conv_transpose(dyk, fk, padding={pad!r}, output_padding={out_pad!r}, {geo})")
            if not strings and (t, b, l, r) != (0, 0, 0, 0):
                crop = f"[:, :, {t}:{t + h}, {l}:{l + w}]" if nchw else f"[:, {t}:{t + h}, {l}:{l + w}, :]"
                lines.append(f"gk = gk{crop}  # the explicit pads cropped")
        else:
            fn = "ops.conv" if case.forward_op == "conv2d" else "ops.depthwise_conv"
            if op == "separable_conv2d":
                call = pre + [f"yk = ops.separable_conv({xin}, fk, pk, padding={pad!r}, {geo})"]
            else:
                call = pre + [f"yk = {fn}({xin}, fk, padding={pad!r}, {geo})"]
            if result == "output":
                lines += call
            else:
                lines.append(f"# Keras has no op for this gradient: the {backend} backend's autodiff through {fn}")
                lines += self._autodiff("xk" if result == "input" else "fk", call)
        if result == "output":
            if case.bias:
                shape = "(1, -1, 1, 1)" if nchw else "(1, 1, 1, -1)"
                lines.append(f"yk = ops.add(yk, ops.reshape({tensor('bias')}, {shape}))")
        else:
            lines.append("yk = gk")
        out = "ops.convert_to_numpy(ops.cast(yk, 'float32'))" if bf16 else "ops.convert_to_numpy(yk)"
        image_result = result != "filter"
        out = f"np.ascontiguousarray({out}.transpose(0, 2, 3, 1))" if nchw and image_result else f"np.asarray({out})"
        first = case.operands[0]
        lines.append(f"y = {out}" + (f".astype({first}.dtype)  # exact: bf16 values" if bf16 else ""))
        imports = {"tensorflow": "import tensorflow as tf\n", "jax": "import jax\n", "torch": "import torch\n"}
        if result != "output" and not transposable:
            setup += imports[backend]
        return Program(setup, "\n".join(lines) + "\n")
