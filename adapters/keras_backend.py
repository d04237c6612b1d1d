"""Keras 3 ops: keras.ops.conv / keras.ops.depthwise_conv on one Keras backend.

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

from conformance.spec import Case

from typing import Any

from ._base import BuiltinAdapter, Fact, Variant, env_preamble, tiny_case
from ._program import Program
from .jax_backend import jax_path
from .tensorflow_backend import tensorflow_path
from .torch_backend import torch_path


class KerasAdapter(BuiltinAdapter):
    """Keras 3: keras.ops.conv / keras.ops.depthwise_conv on a Keras backend."""

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

    def _program(self, case: Case) -> Program:
        setup = "import numpy as np\n" + self._preamble() + "from keras import ops\n"
        nchw = case.data_format == "NCHW"
        bf16 = case.dtype == "bfloat16"

        def tensor(expr: str) -> str:
            if bf16:
                return f"ops.cast(ops.convert_to_tensor(np.asarray({expr}, dtype=np.float32)), 'bfloat16')"
            return f"ops.convert_to_tensor({expr})"

        lines = [f"xk = {tensor('np.ascontiguousarray(x.transpose(0, 3, 1, 2))' if nchw else 'x')}"
                 + ("  # NHWC -> NCHW" if nchw else ""),
                 f"fk = {tensor('filters')}"]
        if isinstance(case.padding, str):
            pad = case.padding.lower()
        else:
            (t, b), (l, r) = case.geometry.pads
            widths = [[0, 0], [0, 0], [t, b], [l, r]] if nchw else [[0, 0], [t, b], [l, r], [0, 0]]
            lines.append(f"xk = ops.pad(xk, {widths!r})  # explicit pads first (zeros), then 'valid'")
            pad = "valid"
        fmt = "channels_first" if nchw else "channels_last"
        fn = "ops.conv" if case.op == "conv2d" else "ops.depthwise_conv"
        lines.append(f"yk = {fn}(xk, fk, strides={tuple(case.strides)!r}, padding={pad!r}, data_format={fmt!r}, "
                     f"dilation_rate={tuple(case.dilations)!r})")
        if case.bias:
            shape = "(1, -1, 1, 1)" if nchw else "(1, 1, 1, -1)"
            lines.append(f"yk = ops.add(yk, ops.reshape({tensor('bias')}, {shape}))")
        out = "ops.convert_to_numpy(ops.cast(yk, 'float32'))" if bf16 else "ops.convert_to_numpy(yk)"
        out = f"np.ascontiguousarray({out}.transpose(0, 2, 3, 1))" if nchw else f"np.asarray({out})"
        lines.append(f"y = {out}" + (".astype(x.dtype)  # exact: bf16 values" if bf16 else ""))
        return Program(setup, "\n".join(lines) + "\n")
