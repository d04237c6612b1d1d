"""Judge one case on one adapter inside this process (pytest plugin, explore, repro reports).

`conformance run` judges in worker processes, where a backend that crashes or hangs is
contained and reported. The tools built on this module trade that isolation for
simplicity and speed: a backend that segfaults takes the calling process with it, and
one that hangs hangs it. Use `conformance run` when that matters.

Invariants
- The verdict is the suite's one verdict: inputs from `make_inputs`, the oracle's
  `reference`, `compare` for the kind and figures. Nothing here loosens or re-derives it.
- An invalid case passes when the backend raises (any exception) and diverges as
  `invalid_accepted` when it returns. A valid case on which the backend raises has
  status `error`. `supports(case)` returning a reason gives `unsupported`, never a pass.
- `diagnose` is consulted only for a divergence of a valid case that produced an output.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .compare import Comparison, compare
from .inputs import Inputs, make_inputs
from .oracle import reference
from .spec import Case

STATUSES = ("pass", "diverge", "unsupported", "error")


@dataclass
class Outcome:
    case: Case
    status: str  # one of STATUSES
    kind: str | None  # the divergence kind (compare.KINDS) for status "diverge"
    message: str
    comparison: Comparison | None = None
    diagnosis: dict[str, Any] | None = None  # {"hypothesis", "explanation"}
    error: str | None = None  # the traceback, for status "error"
    output: np.ndarray | None = field(default=None, repr=False)
    inputs: Inputs | None = field(default=None, repr=False)

    @property
    def signature(self) -> tuple[str, str | None, str | None]:
        """(status, kind, diagnosis hypothesis): what tells two divergences apart."""
        hyp = (self.diagnosis or {}).get("hypothesis")
        return (self.status, self.kind, hyp)


def diagnosis_of(case: Case, actual: np.ndarray, inputs: Inputs) -> dict[str, Any] | None:
    """`conformance.diagnose.diagnose(...).to_dict()`, or None where that module is absent."""
    try:
        from .diagnose import diagnose
    except ModuleNotFoundError as exc:
        if exc.name != "conformance.diagnose":
            raise
        return None
    return diagnose(case, actual, inputs).to_dict()


def judge(case: Case, adapter: Any, *, want_diagnosis: bool = True) -> Outcome:
    """Run `adapter` on `case` here and judge the output. See the module invariants."""
    from .adapters.registry import SupportsError, checked_supports

    try:
        reason = checked_supports(adapter, case)
    except SupportsError as exc:  # the adapter's error, whatever the case
        return Outcome(case, "error", None, str(exc), error=traceback.format_exc())
    if reason is not None:
        return Outcome(case, "unsupported", None, str(reason))
    inputs = make_inputs(case)
    try:
        y = adapter.run(case, inputs.x, inputs.filters, inputs.bias)
    except Exception as exc:
        text = f"{type(exc).__name__}: {exc}"
        if not case.is_valid:
            return Outcome(case, "pass", None, f"raised as expected ({case.invalid_reason}): {text}", inputs=inputs)
        return Outcome(case, "error", None, f"raised on a valid case: {text}", error=traceback.format_exc(),
                       inputs=inputs)
    if not case.is_valid:
        comp = compare(case, y, None)
        return Outcome(case, "diverge", comp.kind, comp.message, comp, output=y, inputs=inputs)
    comp = compare(case, y, reference(case, *inputs), inputs)
    if comp.passed:
        return Outcome(case, "pass", None, comp.message, comp, output=y, inputs=inputs)
    diag = diagnosis_of(case, np.asarray(y), inputs) if want_diagnosis else None
    return Outcome(case, "diverge", comp.kind, comp.message, comp, diag, output=y, inputs=inputs)
