"""The built-in backends, derived from the adapter classes, and how any spec becomes an adapter.

A *spec* is the string a worker process receives to rebuild its adapter (`load(spec)`):
- a built-in name: a key of `BUILTINS` ("torch", "torch[native_pad]", "torch:cuda" ...),
  or a built-in with parameters (`keras[backend=jax]`, `torch[memory=channels_last]`,
  variants and parameters combined: `torch[native_pad,mkldnn=false]`);
- an entry-point name in the group `conformance.adapters` (installed third-party
  packages; the entry point names a class or a factory);
- `package.module:Class` or `path/to/file.py:Class` (a class, a factory, or an instance);
- an entry point or a class spec followed by `[k=v,...]`: options passed to the class or
  factory as keyword arguments with string values (the CLI's `--adapter-option k=v`).

Invariants
- `ADAPTER_CLASSES` is the only list of built-in backends. `BUILTINS` (name -> Builtin)
  is derived from each class's declarations (requires, extra, distributions, variants,
  devices, excluded: adapters/_base.py); the CLI, the runner, the pytest plugin, the
  tests and the reports read it (through `discover`/`default_specs`) and never repeat it.
  `FACTS` (`when:` key -> Fact) is the union of the classes' declared kernel-path facts;
  two classes declaring one key with different types is an error at import.
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
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

from conformance.spec import FORWARD_OPS, OPS

ENTRY_POINT_GROUP = "conformance.adapters"
CONTRACT = ("name", "version", "device", "supports", "run")
_METHODS = ("version", "device", "supports", "run")


class BackendError(ValueError):
    """A backend spec that cannot become a working adapter."""


#: The built-in adapter classes, in the order `conformance backends` lists them. This is
#: the one list: every name, variant, device, requirement and extra below is derived from
#: the classes' own declarations (adapters/_base.py). Adding a backend = its module here
#: + one pyproject extra.
ADAPTER_CLASSES = (
    "numpy_backend:NumpyAdapter",
    "torch_backend:TorchAdapter",
    "tensorflow_backend:TensorflowAdapter",
    "onnxruntime_backend:OnnxruntimeAdapter",
    "jax_backend:JaxAdapter",
    "openvino_backend:OpenvinoAdapter",
    "litert_backend:LitertAdapter",
    "keras_backend:KerasAdapter",
    "paddle_backend:PaddleAdapter",
    "tinygrad_backend:TinygradAdapter",
)


@dataclass(frozen=True)
class Builtin:
    target: str  # "module:Class" of the adapter
    kwargs: dict[str, Any] = field(default_factory=dict)
    requires: tuple[str, ...] = ()  # modules that must be importable
    extra: str = ""  # the pip extra that installs them
    device_check: str | None = None  # Python that exits 0 when the device is usable (GPU variants)
    excluded: str | None = None  # why it is not part of the default run (still runnable by name)
    distributions: tuple[str, ...] = ()  # distributions that provide the framework
    doc: str = ""  # one line: what this backend is
    executables: tuple[str, ...] = ()  # programs that must be on PATH (a compiler the framework calls)

    @property
    def framework(self) -> str:
        return self.requires[0] if self.requires else "numpy"

    @property
    def device(self) -> str:
        return self.kwargs.get("device", "cpu")


def adapter_classes() -> list[type]:
    """The built-in adapter classes (importing their modules imports no framework)."""
    out = []
    for entry in ADAPTER_CLASSES:
        module, _, cls = entry.partition(":")
        out.append(getattr(importlib.import_module(f"{__package__}.{module}"), cls))
    return out


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def _derive() -> dict[str, Builtin]:
    builtins: dict[str, Builtin] = {}
    for cls in adapter_classes():
        target = f"{cls.__module__}:{cls.__name__}"
        requires = tuple(cls.requires) or ((cls.framework,) if cls.framework != "numpy" else ())
        dists = tuple(cls.distributions)
        exes = tuple(cls.executables)
        builtins[cls.base_name] = Builtin(target, {}, requires, cls.extra, None, cls.excluded, dists,
                                          _first_line(cls.__doc__), exes)
        for vname, v in cls.variants.items():
            builtins[f"{cls.base_name}[{vname}]"] = Builtin(target, dict(v.params), requires + tuple(v.requires),
                                                            cls.extra, None, v.excluded, dists, v.doc, exes)
        for suffix, d in cls.devices.items():
            builtins[f"{cls.base_name}:{suffix}"] = Builtin(target, {"device": d.device}, requires, cls.extra,
                                                            d.check, None, dists, f"{cls.base_name} on {d.device}",
                                                            exes)
    return builtins


def _facts() -> dict[str, Any]:
    facts: dict[str, Any] = {}
    owners: dict[str, str] = {}
    for cls in adapter_classes():
        for key, fact in cls.facts.items():
            if key in facts and facts[key].type is not fact.type:
                raise TypeError(f"{cls.__name__}.facts[{key!r}]: expected {facts[key].type.__name__} as "
                                f"{owners[key]} declares it, received {fact.type.__name__}")
            facts.setdefault(key, fact)
            owners.setdefault(key, cls.__name__)
    return facts


BUILTINS: dict[str, Builtin] = _derive()
#: Every kernel-path fact a built-in's probe reports: `when:` key -> Fact(type, doc).
FACTS = _facts()
_BASES = {b.partition("[")[0].partition(":")[0]: BUILTINS[b].target for b in BUILTINS}


def parse_spec(spec: str) -> tuple[str, dict[str, str | None], str | None]:
    """(base, options, device suffix) of `base[k=v,variant,...]:suffix`.

    Options are strings as written; a bare item (`torch[channels_last]`) is a variant
    name, given as {name: None}. Without brackets: (spec, {}, None).
    """
    m = re.fullmatch(r"(.+?)\[([^\[\]]*)\](?::([A-Za-z0-9_]+))?", spec)
    if not m:
        return spec, {}, None
    options: dict[str, str | None] = {}
    for item in filter(None, (p.strip() for p in m.group(2).split(","))):
        k, eq, v = item.partition("=")
        options[k.strip()] = v.strip() if eq else None
    return m.group(1), options, m.group(3)


@dataclass(frozen=True)
class BackendInfo:
    name: str
    spec: str
    available: bool
    version: str | None
    device: str | None
    reason: str | None  # why it is unavailable; None when available
    default: bool  # part of `conformance run` without --backend
    excluded: str | None = None  # why an available backend is left out of the default run

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


class SupportsError(Exception):
    """An adapter's supports() raised, or returned neither None nor a str: the adapter's
    error, never the case's verdict. The message names the adapter."""


def declared_ops(adapter: Any) -> tuple[str, ...]:
    """The ops `adapter` declares (its optional `ops` attribute; absent: the two forward
    ops, so an adapter written for the forward contract is never asked for another).
    Anything but a list of known op names raises SupportsError naming the adapter."""
    ops = getattr(adapter, "ops", None)
    if ops is None:
        return FORWARD_OPS
    if isinstance(ops, str) or not isinstance(ops, (tuple, list, set, frozenset)) or \
            any(op not in OPS for op in ops):
        label = f"adapter {getattr(adapter, 'name', type(adapter).__name__)!r}"
        raise SupportsError(f"{label}: ops: expected a tuple of op names from {', '.join(OPS)}, received {ops!r}")
    return tuple(ops)


def checked_supports(adapter: Any, case: Any) -> str | None:
    """`adapter.supports(case)`, type-checked: None (supported) or a non-empty str (the
    reason it is not); anything else, or an exception, raises SupportsError naming the
    adapter (a `supports()` returning 42 must not make every case "unsupported: 42").

    An op the adapter does not declare (`declared_ops`) is unsupported without asking it."""
    label = f"adapter {getattr(adapter, 'name', type(adapter).__name__)!r}"
    ops = declared_ops(adapter)
    if case.op not in ops:
        return f"the adapter does not declare op {case.op!r} (its ops: {', '.join(ops)})"
    try:
        reason = adapter.supports(case)
    except Exception as exc:
        raise SupportsError(f"{label}: supports() raised {type(exc).__name__}: {exc}") from exc
    if reason is None:
        return None
    if not isinstance(reason, str):
        raise SupportsError(f"{label}: supports() returned {type(reason).__name__} {reason!r}; expected None "
                            f"(supported) or a str (the framework's reason it is not)")
    if not reason.strip():
        raise SupportsError(f"{label}: supports() returned an empty str; expected None (supported) or the reason "
                            f"it is not")
    return reason


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


def _missing(requires: tuple[str, ...], executables: tuple[str, ...] = ()) -> str | None:
    """Why a backend cannot run here: a module not found, or a program not on PATH; else None."""
    why = _missing_module(requires)
    if why is None:
        for exe in executables:
            if shutil.which(exe) is None:
                return f"not installed: no {exe!r} on PATH"
    return why


def unavailable(name: str) -> str | None:
    """Why the built-in `name` cannot run on this machine (a required module or program is
    missing), or None; whether its device is present is `discover`'s question."""
    b = BUILTINS[name]
    return _missing(b.requires, b.executables)


def _instantiate(obj: Any, spec: str, options: dict[str, str] | None = None) -> Any:
    """A class is constructed, a factory called (with `options` as keyword arguments, their
    values strings); an object with the contract is used as is."""
    options = options or {}
    if isinstance(obj, type) or (callable(obj) and not all(hasattr(obj, m) for m in CONTRACT)):
        try:
            obj = obj(**options)
        except Exception as exc:
            wanted = (f"accepting the options {', '.join(f'{k}=' for k in options)}" if options
                      else "with no arguments")
            raise BackendError(f"adapter {spec!r}: expected a class or factory callable {wanted}, "
                               f"calling it raised {type(exc).__name__}: {exc}") from exc
    elif options:
        raise BackendError(f"adapter {spec!r}: options {sorted(options)} need a class or factory, "
                           f"received an instance of {type(obj).__name__}")
    check_contract(obj, spec)
    return obj


def _not_installed(name: str, requires: tuple[str, ...], extra: str, executables: tuple[str, ...] = ()) -> None:
    why = _missing(requires, executables)
    if why is not None:
        hint = f" (pip install 'conv-conformance[{extra}]')" if why.startswith("not installed: No module") else ""
        raise BackendError(f"backend {name!r} is {why}{hint}" if why.startswith("not") else f"backend {name!r}: {why}")


def _builtin_class(target: str) -> type:
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)


def _construct(cls: type, name: str, kwargs: dict[str, Any]) -> Any:
    try:
        adapter = cls(**kwargs)
    except ValueError as exc:  # a parameter the class refuses: its message names it
        raise BackendError(f"backend {name!r}: {exc}") from None
    return _instantiate(adapter, name)


def _load_builtin(name: str) -> Any:
    b = BUILTINS[name]
    _not_installed(name, b.requires, b.extra, b.executables)
    return _construct(_builtin_class(b.target), name, dict(b.kwargs))


def _load_parameterised(spec: str, base: str, options: dict[str, str | None], suffix: str | None) -> Any:
    """`base[variant,k=v,...]:suffix` of a built-in: variants expanded, parameters checked by the class."""
    cls = _builtin_class(_BASES[base])
    kwargs: dict[str, Any] = {}
    requires = tuple(BUILTINS[base].requires)
    for key, value in options.items():
        if value is None:
            if key not in cls.variants:
                known = ", ".join(list(cls.variants) + [f"{k}=" for k in cls.parameters]) or "none"
                raise BackendError(f"backend {spec!r}: unknown variant {key!r} of {base}: expected one of {known}")
            kwargs.update(cls.variants[key].params)
            requires += tuple(cls.variants[key].requires)
        else:
            kwargs[key] = value
    if suffix is not None:
        if suffix not in cls.devices:
            raise BackendError(f"backend {spec!r}: unknown device {suffix!r} of {base}: expected one of "
                               f"{', '.join(cls.devices) or 'none (CPU only)'}")
        kwargs["device"] = cls.devices[suffix].device
    _not_installed(spec, requires, cls.extra, tuple(cls.executables))
    return _construct(cls, spec, kwargs)


def _load_target(spec: str, options: dict[str, str] | None = None) -> Any:
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
            # The file's own folder is importable, as it is for `python path/to/file.py`: an
            # adapter may import helper modules that sit beside it.
            folder = os.path.dirname(path)
            if folder not in sys.path:
                sys.path.append(folder)
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
    return _instantiate(obj, spec, options)


def is_parameterised_builtin(spec: str) -> bool:
    """Whether `spec` is a built-in name with parameters or variants (`keras[backend=jax]`):
    the class checks the parameters themselves when it is loaded."""
    base, options, suffix = parse_spec(spec)
    return base in _BASES and bool(options or suffix)


def with_options(spec: str, options: dict[str, str]) -> str:
    """`spec` with adapter options appended: `file.py:Class` + {k: v} -> `file.py:Class[k=v]`."""
    if not options:
        return spec
    for k, v in options.items():
        if not re.fullmatch(r"[A-Za-z_]\w*", k) or any(c in str(v) for c in ",[]"):
            raise BackendError(f"adapter option {k}={v}: expected NAME=VALUE with a Python identifier as NAME "
                               f"and no ',', '[' or ']' in VALUE")
    return f"{spec}[{','.join(f'{k}={v}' for k, v in options.items())}]"


def load(spec: str) -> Any:
    """The adapter for a spec: built-in name (`torch`, `torch[channels_last]`,
    `keras[backend=jax]`, `torch:cuda`), entry-point name, module:Class or file.py:Class,
    each optionally followed by `[k=v,...]` options (given to the class or factory)."""
    if not isinstance(spec, str) or not spec.strip():
        raise BackendError(f"backend spec: expected a non-empty string, received {spec!r}")
    spec = spec.strip()
    if spec in BUILTINS:
        return _load_builtin(spec)
    base, options, suffix = parse_spec(spec)
    if base in _BASES and (options or suffix):
        return _load_parameterised(spec, base, options, suffix)
    eps = _entry_points()
    if base in eps and suffix is None:
        if any(v is None for v in options.values()):
            raise BackendError(f"backend {spec!r}: options of an entry point are NAME=VALUE, received "
                               f"{[k for k, v in options.items() if v is None]}")
        try:
            obj = eps[base].load()
        except Exception as exc:
            raise BackendError(f"backend {base!r} (entry point {eps[base].value!r}): import failed: "
                               f"{type(exc).__name__}: {exc}") from exc
        return _instantiate(obj, spec, options)
    if ":" in base and suffix is None and base.partition(":")[0] not in _BASES:
        if any(v is None for v in options.values()):
            raise BackendError(f"backend {spec!r}: adapter options are NAME=VALUE, received "
                               f"{[k for k, v in options.items() if v is None]}")
        return _load_target(base, options)
    raise BackendError(f"unknown backend {spec!r}: expected one of {', '.join(known_names())}, "
                       f"a built-in with parameters (e.g. 'keras[backend=jax]'), "
                       f"'module:Class' or 'path/to/file.py:Class'")


# ---- discovery --------------------------------------------------------------------


def _dist_version(module: str, dists: tuple[str, ...] = ()) -> str | None:
    """The installed version of the distribution providing `module`, without importing it
    (`dists`, the adapter's declared distributions, are tried first: scanning every
    installed distribution with packages_distributions() costs a second or two)."""
    if module in sys.modules:
        return str(getattr(sys.modules[module], "__version__", None))
    for dist in dists or ((module,) if module == "numpy" else ()):
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
    reason = _missing(b.requires, b.executables)
    version = None
    if reason is None:
        version = _dist_version(b.framework, b.distributions)
        if deep and b.framework != "numpy":
            rc, out = _child(f"import {b.framework} as m; print(m.__version__)")
            if rc == 0:
                version = out
            else:
                reason = f"import failed: {out}"
    if reason is None:
        reason = _device_reason(b)
    available = reason is None
    return BackendInfo(name, name, available, version, b.device, reason, available and b.excluded is None,
                       b.excluded if available else None)


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
    """What `conformance run` uses without --backend: every available backend on an available
    device, except those a class declares `excluded` (with the reason `discover` shows)."""
    return [info.spec for info in discover() if info.default]
