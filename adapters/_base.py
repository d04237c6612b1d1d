"""What the built-in adapters share: run = execute the repro, supports = ask the framework.

Third-party adapters need none of this (the contract is duck-typed); it only keeps
the built-ins small and uniform.

Invariants
- `run(case, x, filters, bias)` executes `repro_code(case)` (see `_program`): the repro
  a report carries is the code that produced the result.
- `supports(case)` is deterministic and cheap: whether the framework can compute a
  *kind* of case (op, dtype, layout, grouping ... whatever the adapter's `_probe`
  keeps) is asked once per process by running a tiny case of that kind, and the
  framework's own error message, if any, is the reason. Nothing is declared
  unsupported from a hand-written table.
- An invalid case is never declared unsupported (the framework must raise on it and
  the suite judges that), except when the adapter's device is missing altogether.
"""

from __future__ import annotations

import re
import warnings

import numpy as np

from conformance.inputs import make_inputs
from conformance.spec import Case

from ._program import Program, execute

_TF_NODE = re.compile(r"^\{\{function_node [^}]*\}\}\s*")

#: A tiny valid float32 case: if even this fails, the device (or the install) is unusable.
_SMOKE = Case(op="conv2d", batch=1, height=3, width=3, in_channels=1, kernel=(1, 1), out_channels=1)


def framework_reason(exc: BaseException) -> str:
    """The framework's own message, first line, as `Type: message`."""
    text = str(exc).strip() or repr(exc)
    first = _TF_NODE.sub("", text.splitlines()[0]).strip()
    return f"{type(exc).__name__}: {first}"


class BuiltinAdapter:
    """Base of the built-in adapters. Subclasses define `framework`, `_program`, `_probe`."""

    framework = ""  # importable module name of the framework ("torch", ...)
    base_name = ""  # registry name without variant or device

    def __init__(self, device: str = "cpu", variant: str | None = None):
        self._device = device
        self.variant = variant
        name = self.base_name + (f"[{variant}]" if variant else "")
        self.name = name if device == "cpu" else f"{name}:{device.split(':')[0]}"
        self._reasons: dict[Case, str | None] = {}

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

    def run(self, case: Case, x: np.ndarray, filters: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
        return execute(self._program(case), self.name, x, filters, bias)

    def repro_code(self, case: Case) -> str:
        return self._program(case).source

    # ---- for subclasses ---------------------------------------------------------

    def _program(self, case: Case) -> Program:
        raise NotImplementedError

    def _probe(self, case: Case) -> Case | None:
        """A tiny valid case of the same kind (the traits this framework's support depends on)."""
        return None

    def _reason(self, probe: Case) -> str | None:
        if probe not in self._reasons:
            x, f, b = make_inputs(probe)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    self.run(probe, x, f, b)
            except Exception as exc:  # the framework's refusal is the answer sought
                self._reasons[probe] = framework_reason(exc)
            else:
                self._reasons[probe] = None
        return self._reasons[probe]


def tiny_case(case: Case, **keep) -> Case:
    """A small valid case with the op of `case` and the fields in `keep`.

    Two groups (conv2d) or multiplier 2 (depthwise) when `case` has them; the spatial
    size is the smallest that gives a non-empty output for the kept geometry.
    """
    fields = dict(op=case.op, batch=1, kernel=(3, 3), dtype="float32")
    if case.op == "conv2d":
        g = 2 if case.groups > 1 else 1
        fields.update(in_channels=2 * g, out_channels=2 * g, groups=g)
    else:
        fields.update(in_channels=2, channel_multiplier=2 if case.channel_multiplier > 1 else 1)
    fields.update(keep)
    (kh, kw), (sh, sw) = fields["kernel"], fields.get("strides", (1, 1))
    dh, dw = fields.get("dilations", (1, 1))
    fields.setdefault("height", (kh - 1) * dh + 1 + sh)
    fields.setdefault("width", (kw - 1) * dw + 1 + sw)
    return Case(**fields)
