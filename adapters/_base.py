"""What the built-in adapters share: declarations, run = execute the repro, supports = ask the framework.

Third-party adapters need none of this (the contract is duck-typed); it keeps the
built-ins small and uniform, and it is where a built-in *declares* everything the
registry, the tests, tox and the docs need to know about it (one place per backend):

    framework      module whose version is the adapter's version ("torch")
    requires       modules that must be importable (default: the framework)
    executables    programs that must be on PATH (a compiler the framework calls)
    extra          the pip extra that installs them (pyproject [project.optional-dependencies])
    distributions  distributions that provide the framework (its version without importing it)
    parameters     name -> allowed values, the first one the default (`torch[memory=channels_last]`)
    variants       name -> Variant: a named parameter setting listed as its own backend
    devices        suffix -> Device: accelerator backends (`torch:cuda`) and their probe
    excluded       why the plain backend is left out of the default run (None: it is in)
    facts          `when:` key -> Fact: the kernel-path facts `kernel_path()` reports
                   ("torch.mkldnn" is {"torch": {"mkldnn": ...}}); the manifest's
                   conditions are derived from them (registry.FACTS)

Invariants
- `run(case, *operands)` executes `repro_code(case)` (see `_program`): the repro a report
  carries is the code that produced the result. `ops` lists the ops a built-in computes
  (`_program` handles each); the engine never asks for another.
- `supports(case)` is deterministic and cheap: whether the framework can compute a
  *kind* of case (op, dtype, layout, grouping ... whatever the adapter's `_probe`
  keeps) is asked once per process by running a tiny case of that kind
  (`probe_reason`), and the framework's own error message, if any, is the reason.
  Nothing is declared unsupported from a hand-written table.
- An invalid case is never declared unsupported (the framework must raise on it and
  the suite judges that), except when the adapter's device is missing altogether.
- Environment switches a framework reads once at import (TF_ENABLE_ONEDNN_OPTS,
  KERAS_BACKEND) are set by the program's own setup before its import, so the worker,
  a repro script and the tests all get the same path; a process that imported the
  framework with another setting is refused with that reason rather than run silently.
- `kernel_path()` reports the path of *this adapter's* calls, variant included
  (`torch[mkldnn_off]` says mkldnn off although the process default is on): it runs the
  program of a tiny case first, so the framework is imported and configured exactly as
  for a case, and reads the facts from that program's objects and the framework.
  Every declared fact is present, of its declared type (None only where the framework
  does not say; it then never satisfies a `when:`).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from conformance.inputs import make_inputs
from conformance.spec import FORWARD_OPS, Case

from ._program import Program, execute, namespace

#: A tiny valid float32 case: if even this fails, the device (or the install) is unusable.
_SMOKE = Case(op="conv2d", batch=1, height=3, width=3, in_channels=1, kernel=(1, 1), out_channels=1)
#: The case whose program a kernel-path probe runs: float32 3x3 over 4 channels, the
#: convolution kernels a framework picks for ordinary layers (1x1 may take a GEMM path).
_PATH_CASE = Case(op="conv2d", batch=1, height=5, width=5, in_channels=4, kernel=(3, 3), out_channels=4)


@dataclass(frozen=True)
class Fact:
    """A fact of a backend's kernel path: `kernel_path()` reports it, a manifest `when:` names it.

    type: bool, int, str (a `when:` glob matches it) or list (of names: a `when:` lists
    names that must be present, `!name` absent); doc: what it is, in one line.
    """

    type: type
    doc: str


@dataclass(frozen=True)
class Variant:
    """A named parameter setting of a built-in, listed as `base[name]`."""

    params: Mapping[str, Any]
    doc: str = ""
    requires: tuple[str, ...] = ()  # modules needed beyond the adapter's own `requires`
    excluded: str | None = None  # why it is left out of the default run (still runnable by name)


@dataclass(frozen=True)
class Device:
    """An accelerator backend `base:suffix`; `check` is Python that exits 0 when it is usable
    (3: the framework sees no such device)."""

    device: str
    check: str


# ---- the framework's own reason ---------------------------------------------------------

_TF_NODE = re.compile(r"^\{\{function_node [^}]*\}\}\s*")
#: Lines that wrap a message rather than say it: TensorFlow's "in user code:" and its
#: stack, OpenVINO's "Exception from src/...:", Paddle's C++ banners, Python stacks.
_WRAPPER = re.compile(
    r"^(in user code:|File \".*|Traceback \(most recent call last\):|-{3,}.*|=+|C\+\+ Traceback.*|"
    r"Error Message Summary:?|Exception from src/\S*|Check '.*' failed at \S*:?|\[.*\]\s*$|"
    r"During handling of the above exception.*|Call arguments received by .*|Arguments received by .*)$")
_SOURCE_POS = re.compile(r"(?:/[^\s:]+)+\.py:\d+:\d+:\s*")
_EXC_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?([A-Z]\w*(?:Error|Exception|Fault)): (.+)$")


def framework_reason(exc: BaseException) -> str:
    """The framework's first meaningful message line, as `Type: message`.

    Wrappers are unwrapped: TensorFlow's "in user code:" stack (whose real error is an
    indented `ValueError: ...` line further down), `{{function_node ...}}` prefixes,
    OpenVINO's "Exception from src/...:" chain, and Paddle's C++ traceback banners.
    """
    text = str(exc).strip() or repr(exc)
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [_TF_NODE.sub("", ln).strip() for ln in lines if ln]
    if lines and lines[0] == "in user code:":
        # The wrapped error is the last `Type: message` line of the quoted stack.
        for ln in reversed(lines):
            m = _EXC_LINE.match(ln)
            if m:
                return f"{m.group(1)}: {m.group(2)}"
    for i, ln in enumerate(lines):  # Paddle: the message follows its "Error Message Summary" banner
        if ln.startswith("Error Message Summary"):
            lines = lines[i + 1:]
            break
    meaningful = [ln for ln in lines if not _WRAPPER.match(ln)]
    first = meaningful[0] if meaningful else (lines[0] if lines else type(exc).__name__)
    first = re.sub(r"^\((?:[A-Z][A-Za-z]+)\)\s*", "", first) or first  # Paddle's "(NotFound) " etc.
    first = _SOURCE_POS.sub("", first)  # converter messages quote the Python file that traced the op
    return f"{type(exc).__name__}: {first}"


def tiny_case(case: Case, **keep) -> Case:
    """A small valid case with the op of `case` and the fields in `keep`.

    Two groups (conv2d) or multiplier 2 (depthwise) when `case` has them; the spatial
    size is the smallest that gives a non-empty output for the kept geometry.
    """
    fields = dict(op=case.op, batch=1, kernel=(3, 3), dtype="float32")
    if case.forward_op == "conv2d":
        g = 2 if case.groups > 1 else 1
        fields.update(in_channels=2 * g, out_channels=2 * g, groups=g)
    else:
        fields.update(in_channels=2, channel_multiplier=2 if case.channel_multiplier > 1 else 1)
        if case.out_channels is not None:  # separable
            fields.update(out_channels=3)
    fields.update(keep)
    (kh, kw), (sh, sw) = fields["kernel"], fields.get("strides", (1, 1))
    dh, dw = fields.get("dilations", (1, 1))
    fields.setdefault("height", (kh - 1) * dh + 1 + sh)
    fields.setdefault("width", (kw - 1) * dw + 1 + sw)
    return Case(**fields)


def probe_reason(run: Callable[[Case, np.ndarray, np.ndarray, Any], Any], case: Case, *,
                 keep: tuple[str, ...] = ("dtype", "data_format", "bias"),
                 cache: dict | None = None, **fields: Any) -> str | None:
    """A `supports()` answer: the framework's own reason it cannot compute this kind of case.

    Runs `run` (an adapter's run method, or any callable with its signature) on a tiny
    valid case with the op of `case`, the fields named in `keep` copied from `case` and
    `fields` set as given, and returns None when that works or the framework's first
    meaningful error line (`framework_reason`) when it raises. An invalid `case` gives
    None: the suite runs it and judges that the framework refuses it. Pass a dict as
    `cache` to ask once per kind of case (probes are keyed by their case). Needs no
    framework itself; the call is inside `run`.

        def supports(self, case):
            return probe_reason(self.run, case, keep=("dtype", "data_format"), cache=self._cache)
    """
    if not case.is_valid:
        return None
    return _ask(run, tiny_case(case, **{k: getattr(case, k) for k in keep}, **fields), cache)


def _ask(run: Callable, probe: Case, cache: dict | None) -> str | None:
    if cache is not None and probe in cache:
        return cache[probe]
    operands = make_inputs(probe)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run(probe, *operands)
    except Exception as exc:  # the framework's refusal is the answer sought
        reason = framework_reason(exc)
    else:
        reason = None
    if cache is not None:
        cache[probe] = reason
    return reason


# ---- parameters -------------------------------------------------------------------------

_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def _coerce(adapter: str, key: str, value: Any, allowed: tuple) -> Any:
    """`value` (a str from a spec, or a Python value) as one of `allowed`, or ValueError."""
    for choice in allowed:
        if value == choice and type(value) is type(choice):
            return choice
        if isinstance(value, str):
            text = value.strip().lower()
            if isinstance(choice, bool):
                if (text in _TRUE and choice) or (text in _FALSE and not choice):
                    return choice
            elif str(choice).lower() == text:
                return choice
    raise ValueError(f"{adapter}: parameter {key}: expected one of {', '.join(map(str, allowed))}, "
                     f"received {value!r}")


class BuiltinAdapter:
    """Base of the built-in adapters. Subclasses declare the attributes in the module
    docstring and define `_program` and `_probe`."""

    framework = ""
    base_name = ""
    requires: tuple[str, ...] = ()
    executables: tuple[str, ...] = ()
    extra = ""
    distributions: tuple[str, ...] = ()
    parameters: dict[str, tuple] = {}
    variants: dict[str, Variant] = {}
    devices: dict[str, Device] = {}
    excluded: str | None = None
    facts: dict[str, Fact] = {}
    ops: tuple[str, ...] = FORWARD_OPS

    def __init__(self, device: str = "cpu", **params: Any):
        unknown = set(params) - set(self.parameters)
        if unknown:
            expected = ", ".join(self.parameters) or "none"
            raise ValueError(f"{self.base_name}: expected parameters {expected}, received {', '.join(sorted(unknown))}")
        self.params = {k: (_coerce(self.base_name, k, params[k], allowed) if k in params else allowed[0])
                       for k, allowed in self.parameters.items()}
        self._device = device
        self.variant = self.label(self.params)
        name = self.base_name + (f"[{self.variant}]" if self.variant else "")
        self.name = name if device == "cpu" else f"{name}:{device.split(':')[0]}"
        self._reasons: dict[Case, str | None] = {}

    @classmethod
    def label(cls, params: Mapping[str, Any]) -> str | None:
        """The variant part of the name: a declared variant's name, else `k=v,...` of the
        parameters that differ from their defaults, in declaration order; None for the defaults."""
        changed = {k: v for k, v in params.items() if v != cls.parameters[k][0]}
        if not changed:
            return None
        for name, variant in cls.variants.items():
            if dict(variant.params) == changed:
                return name
        return ",".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in changed.items())

    # ---- contract -------------------------------------------------------------

    def version(self) -> str:
        import importlib

        return str(importlib.import_module(self.framework).__version__)

    def device(self) -> str:
        return self._device

    def supports(self, case: Case) -> str | None:
        reason = self._reason(_SMOKE)
        if reason is not None:
            return f"device {self._device} unusable: {reason}"
        if not case.is_valid:
            return None
        probe = self._probe(case)
        return None if probe is None else self._reason(probe)

    def run(self, case: Case, *operands: np.ndarray | None) -> np.ndarray:
        return execute(self._program(case), self.name, dict(zip(case.operands, operands)))

    def repro_code(self, case: Case) -> str:
        return self._program(case).source

    def kernel_path(self) -> dict[str, dict[str, Any]]:
        """The framework's build and kernel path as this adapter computes, per framework:
        {"torch": {"version": ..., "mkldnn": False, ...}}. The declared `facts` are among
        them (`torch.mkldnn`); the rest is recorded, not matched. Imports the framework."""
        arrays = dict(zip(_PATH_CASE.operands, make_inputs(_PATH_CASE)))
        return self._kernel_path(namespace(self._program(_PATH_CASE), self.name, arrays))

    # ---- for subclasses ---------------------------------------------------------

    def _program(self, case: Case) -> Program:
        raise NotImplementedError

    def _kernel_path(self, ns: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """`kernel_path()` from the namespace of the program that just computed `_PATH_CASE`."""
        return {}

    def _probe(self, case: Case) -> Case | None:
        """A tiny valid case of the same kind (the traits this framework's support depends on)."""
        return None

    def _reason(self, probe: Case) -> str | None:
        return _ask(self.run, probe, self._reasons)


def env_preamble(framework: str, env: Mapping[str, str], check: str | None = None) -> str:
    """Setup lines that set `env` before `framework` is first imported, and refuse a process
    that imported it already under other settings (`check`: an expression, evaluated after
    the import, that is true when the framework runs as `env` asks; default: the variables
    had these values at import time, which the lines below remember)."""
    if not env:
        return ""
    items = ", ".join(f"{k!r}: {v!r}" for k, v in env.items())
    lines = ["import os", "import sys", f"_want = {{{items}}}",
             f"if {framework!r} in sys.modules and any(os.environ.get(k) != v for k, v in _want.items()):",
             f"    raise RuntimeError(f'{framework} was imported in this process before {{_want}} could be set "
             f"(it reads them at import); run in a fresh process')",
             "os.environ.update(_want)"]
    return "\n".join(lines) + "\n"
