"""The one list of built-in backends, and how any backend spec becomes an adapter.

A *spec* is the string a worker process receives to rebuild its adapter (`load(spec)`):
- a built-in name: a key of `BUILTINS` ("torch", "torch[native_pad]", "torch:cuda" ...);
- an entry-point name in the group `conformance.adapters` (installed third-party
  packages; the entry point names a class or a factory);
- `package.module:Class` or `path/to/file.py:Class` (a class, a factory, or an instance).

Invariants
- `BUILTINS` is the only list of built-in backends; the CLI, the runner, the pytest
  plugin and the reports read it (through `discover`/`default_specs`) and never
  repeat it.
- Importing this module, `load`-ing an adapter and `discover()` import no framework:
  availability comes from `importlib.util.find_spec`, versions from the installed
  distribution's metadata, device presence from device nodes and, only where a GPU
  device node exists, from a child process. `discover(deep=True)` also imports each
  framework, in a child process, to report import failures and exact versions.
- Every failure is a `BackendError` (a ValueError) whose message names the spec and
  says what was expected and what was found.
"""

from __future__ import annotations

import glob
import importlib
import importlib.metadata
import importlib.util
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

ENTRY_POINT_GROUP = "conformance.adapters"
CONTRACT = ("name", "version", "device", "supports", "run")
_METHODS = ("version", "device", "supports", "run")


class BackendError(ValueError):
    """A backend spec that cannot become a working adapter."""


@dataclass(frozen=True)
class Builtin:
    target: str  # "module:Class" of the adapter
    kwargs: dict[str, Any] = field(default_factory=dict)
    requires: tuple[str, ...] = ()  # modules that must be importable
    extra: str = ""  # the pip extra that installs them
    device_check: str | None = None  # Python that exits 0 when the device is usable (GPU variants)

    @property
    def framework(self) -> str:
        return self.requires[0] if self.requires else "numpy"

    @property
    def device(self) -> str:
        return self.kwargs.get("device", "cpu")


_A = "conformance.adapters."
_TORCH_GPU = "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 3)"
_TF_GPU = "import tensorflow as tf, sys; sys.exit(0 if tf.config.list_physical_devices('GPU') else 3)"
_ORT_GPU = ("import onnxruntime as ort, sys; "
            "sys.exit(0 if 'CUDAExecutionProvider' in ort.get_available_providers() else 3)")
_JAX_GPU = "import jax; jax.devices('gpu')"

BUILTINS: dict[str, Builtin] = {
    "numpy": Builtin(_A + "numpy_backend:NumpyAdapter"),
    "torch": Builtin(_A + "torch_backend:TorchAdapter", {}, ("torch",), "torch"),
    "torch[native_pad]": Builtin(_A + "torch_backend:TorchAdapter", {"native_pad": True}, ("torch",), "torch"),
    "torch:cuda": Builtin(_A + "torch_backend:TorchAdapter", {"device": "cuda:0"}, ("torch",), "torch", _TORCH_GPU),
    "tensorflow": Builtin(_A + "tensorflow_backend:TensorflowAdapter", {}, ("tensorflow",), "tensorflow"),
    "tensorflow[native_pad]": Builtin(_A + "tensorflow_backend:TensorflowAdapter", {"native_pad": True},
                                      ("tensorflow",), "tensorflow"),
    "tensorflow:gpu": Builtin(_A + "tensorflow_backend:TensorflowAdapter", {"device": "gpu:0"}, ("tensorflow",),
                              "tensorflow", _TF_GPU),
    "onnxruntime": Builtin(_A + "onnxruntime_backend:OnnxruntimeAdapter", {}, ("onnxruntime", "onnx"), "onnxruntime"),
    "onnxruntime[auto_pad]": Builtin(_A + "onnxruntime_backend:OnnxruntimeAdapter", {"auto_pad": True},
                                     ("onnxruntime", "onnx"), "onnxruntime"),
    "onnxruntime:cuda": Builtin(_A + "onnxruntime_backend:OnnxruntimeAdapter", {"device": "cuda:0"},
                                ("onnxruntime", "onnx"), "onnxruntime", _ORT_GPU),
    "jax": Builtin(_A + "jax_backend:JaxAdapter", {}, ("jax", "jaxlib"), "jax"),
    "jax:gpu": Builtin(_A + "jax_backend:JaxAdapter", {"device": "gpu:0"}, ("jax", "jaxlib"), "jax", _JAX_GPU),
}


@dataclass(frozen=True)
class BackendInfo:
    name: str
    spec: str
    available: bool
    version: str | None
    device: str | None
    reason: str | None  # why it is unavailable; None when available
    default: bool  # part of `conformance run` without --backend

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---- contract ---------------------------------------------------------------------


def check_contract(obj: Any, spec: str | None = None) -> None:
    """Raise BackendError naming every missing or ill-typed member of the adapter contract."""
    label = f"adapter {spec!r}" if spec else f"adapter {type(obj).__name__}"
    missing = [m for m in CONTRACT if not hasattr(obj, m)]
    wrong = []
    if "name" not in missing and (not isinstance(obj.name, str) or not obj.name):
        wrong.append(f"name is {obj.name!r} (expected a non-empty str)")
    for m in _METHODS + ("repro_code",):
        if hasattr(obj, m) and not callable(getattr(obj, m)):
            wrong.append(f"{m} is a {type(getattr(obj, m)).__name__} (expected a method)")
    if missing or wrong:
        found = "; ".join((["missing: " + ", ".join(missing)] if missing else []) + wrong)
        raise BackendError(
            f"{label}: expected members name (str), version(), device(), supports(case), "
            f"run(case, x, filters, bias); received an object of type {type(obj).__name__} with {found}")


# ---- load -------------------------------------------------------------------------


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def known_names() -> list[str]:
    return list(BUILTINS) + sorted(set(_entry_points()) - set(BUILTINS))


def _missing_module(modules: tuple[str, ...]) -> str | None:
    """'No module named ...' for the first module that cannot be found, else None."""
    for m in modules:
        try:
            found = importlib.util.find_spec(m) is not None
        except (ImportError, ValueError) as exc:
            return f"import failed: {exc}"
        if not found:
            return f"not installed: No module named {m!r}"
    return None


def _instantiate(obj: Any, spec: str) -> Any:
    """A class is constructed, a factory called; an object with the contract is used as is."""
    if isinstance(obj, type) or (callable(obj) and not all(hasattr(obj, m) for m in CONTRACT)):
        try:
            obj = obj()
        except Exception as exc:
            raise BackendError(f"adapter {spec!r}: expected a class or factory callable with no arguments, "
                               f"calling it raised {type(exc).__name__}: {exc}") from exc
    check_contract(obj, spec)
    return obj


def _load_builtin(name: str) -> Any:
    b = BUILTINS[name]
    why = _missing_module(b.requires)
    if why is not None:
        hint = f" (pip install 'conv-conformance[{b.extra}]')" if why.startswith("not installed") else ""
        raise BackendError(f"backend {name!r} is {why}{hint}" if why.startswith("not") else f"backend {name!r}: {why}")
    module, _, cls = b.target.partition(":")
    return _instantiate(getattr(importlib.import_module(module), cls)(**b.kwargs), name)


def _load_target(spec: str) -> Any:
    target, _, attr = spec.rpartition(":")
    if not target or not attr:
        raise BackendError(f"backend spec {spec!r}: expected 'module:Class' or 'path/to/file.py:Class'")
    if target.endswith(".py"):
        path = os.path.abspath(target)
        if not os.path.isfile(path):
            raise BackendError(f"backend spec {spec!r}: adapter file {target!r} not found")
        mod_name = "conformance_user_adapter_" + "".join(c if c.isalnum() else "_" for c in path)
        module = sys.modules.get(mod_name)
        if module is None:
            loader_spec = importlib.util.spec_from_file_location(mod_name, path)
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[mod_name] = module  # dataclasses and pickling look modules up by name
            try:
                loader_spec.loader.exec_module(module)
            except Exception as exc:
                del sys.modules[mod_name]
                raise BackendError(f"backend spec {spec!r}: import failed: {type(exc).__name__}: {exc}") from exc
    else:
        try:
            module = importlib.import_module(target)
        except Exception as exc:
            raise BackendError(f"backend spec {spec!r}: import failed: {type(exc).__name__}: {exc}") from exc
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise BackendError(f"backend spec {spec!r}: expected {attr!r} in {target!r}, received a module "
                           f"without it") from None
    return _instantiate(obj, spec)


def load(spec: str) -> Any:
    """The adapter for a spec (built-in name, entry-point name, module:Class, file.py:Class)."""
    if not isinstance(spec, str) or not spec.strip():
        raise BackendError(f"backend spec: expected a non-empty string, received {spec!r}")
    spec = spec.strip()
    if spec in BUILTINS:
        return _load_builtin(spec)
    eps = _entry_points()
    if spec in eps:
        try:
            obj = eps[spec].load()
        except Exception as exc:
            raise BackendError(f"backend {spec!r} (entry point {eps[spec].value!r}): import failed: "
                               f"{type(exc).__name__}: {exc}") from exc
        return _instantiate(obj, spec)
    base = spec.partition("[")[0].partition(":")[0]
    if ":" in spec and base not in {n.partition("[")[0].partition(":")[0] for n in BUILTINS}:
        return _load_target(spec)
    raise BackendError(f"unknown backend {spec!r}: expected one of {', '.join(known_names())}, "
                       f"'module:Class' or 'path/to/file.py:Class'")


# ---- discovery --------------------------------------------------------------------


#: Distributions that provide a framework module, tried first (scanning every installed
#: distribution with packages_distributions() costs a second or two).
_DISTS = {"torch": ("torch",), "tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tensorflow-intel"),
          "onnxruntime": ("onnxruntime", "onnxruntime-gpu"), "jax": ("jax",), "numpy": ("numpy",)}


def _dist_version(module: str) -> str | None:
    """The installed version of the distribution providing `module`, without importing it."""
    if module in sys.modules:
        return str(getattr(sys.modules[module], "__version__", None))
    for dist in _DISTS.get(module, ()):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    for dist in importlib.metadata.packages_distributions().get(module, []):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _gpu_nodes() -> bool:
    return bool(glob.glob("/dev/nvidia[0-9]*")) or bool(glob.glob("/dev/dxg"))


@lru_cache(maxsize=None)
def _child(code: str) -> tuple[int, str]:
    """Run `code` in a fresh interpreter (frameworks stay out of this process)."""
    try:
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return -1, "timed out after 120 s"
    lines = [ln for ln in (p.stderr.strip() + "\n" + p.stdout.strip()).splitlines() if ln.strip()]
    return p.returncode, (p.stdout.strip() if p.returncode == 0 else (lines[-1] if lines else ""))


def _device_reason(b: Builtin) -> str | None:
    if b.device_check is None:
        return None
    if not _gpu_nodes():
        return "no CUDA device: no /dev/nvidia* device node on this machine"
    rc, out = _child(b.device_check)
    if rc == 0:
        return None
    return f"no CUDA device visible to {b.framework}" if rc == 3 else f"no CUDA device: {out}"


def _builtin_info(name: str, deep: bool) -> BackendInfo:
    b = BUILTINS[name]
    reason = _missing_module(b.requires)
    version = None
    if reason is None:
        version = _dist_version(b.framework)
        if deep and b.framework != "numpy":
            rc, out = _child(f"import {b.framework} as m; print(m.__version__)")
            if rc == 0:
                version = out
            else:
                reason = f"import failed: {out}"
    if reason is None:
        reason = _device_reason(b)
    return BackendInfo(name, name, reason is None, version, b.device, reason, reason is None)


def _entry_info(name: str) -> BackendInfo:
    try:
        adapter = load(name)
        return BackendInfo(name, name, True, str(adapter.version()), str(adapter.device()), None, True)
    except Exception as exc:
        reason = str(exc) if isinstance(exc, BackendError) else f"import failed: {type(exc).__name__}: {exc}"
        return BackendInfo(name, name, False, None, None, reason, False)


def discover(*, deep: bool = False) -> list[BackendInfo]:
    """Every built-in, then every installed entry point, with availability and why not.

    `deep=True` imports each framework in a child process (exact version, import errors).
    """
    with ThreadPoolExecutor(max_workers=4) as pool:
        infos = list(pool.map(lambda n: _builtin_info(n, deep), BUILTINS))
    infos += [_entry_info(n) for n in sorted(set(_entry_points()) - set(BUILTINS))]
    return infos


def default_specs() -> list[str]:
    """What `conformance run` uses without --backend: every available backend on an available device."""
    return [info.spec for info in discover() if info.default]
