"""Judge one case on one adapter inside this process (pytest plugin, explore, repro reports).

`conformance run` judges in worker processes, where a backend that crashes or hangs is
contained and reported. The tools built on this module trade that isolation for
simplicity and speed: a backend that segfaults takes the calling process with it, and
one that hangs hangs it. Use `conformance run` when that matters.

Invariants
- The verdict is the suite's one verdict: the adapter is called by `protocol.answer`, as
  in a worker process, and the reply judged by `verdict.judge`, as the runner does.
  Nothing here loosens, re-derives or relabels it: `run` and the in-process tools give
  every (case, backend) pair the same status and kind.
- An invalid case passes when the backend raises (any exception) and diverges as
  `invalid_accepted` when it returns. A valid case on which the backend (or its
  supports()) raises has status `error`. `supports(case)` returning a reason gives
  `unsupported`, never a pass.
- `diagnose` is consulted only for a divergence of a valid case that produced an output;
  it adds to the outcome and never changes the kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import tolerance
from .compare import Comparison
from .diagnose import diagnose
from .inputs import Inputs, make_inputs
from .oracle import reference
from .protocol import answer
from .spec import Case
from .verdict import judge

@dataclass
class CaseOutcome:
    case: Case
    status: str  # pass | diverge | unsupported | error (vocabulary.STATUSES)
    kind: str | None  # the divergence kind (vocabulary.KINDS) for status "diverge"
    message: str
    comparison: Comparison | None = None
    diagnosis: dict[str, Any] | None = None  # {"hypothesis", "explanation"}
    error: str | None = None  # the traceback, for status "error"
    output: np.ndarray | None = field(default=None, repr=False)
    inputs: Inputs | None = field(default=None, repr=False)
    precision: str = tolerance.DEFAULT_PRECISION

    @property
    def signature(self) -> tuple[str, str | None, str | None]:
        """(status, kind, diagnosis hypothesis): what tells two divergences apart."""
        hyp = (self.diagnosis or {}).get("hypothesis")
        return (self.status, self.kind, hyp)


def run_case(case: Case, adapter: Any, *, want_diagnosis: bool = True,
             precision: str = tolerance.DEFAULT_PRECISION) -> CaseOutcome:
    """Run `adapter` on `case` here and judge the output. See the module invariants."""
    inputs = make_inputs(case)
    reply = answer(adapter, case, inputs)
    ref = reference(case, *inputs) if case.is_valid and reply[0] == "output" else None
    y = reply[1] if reply[0] == "output" else None
    v = judge(case, reply, ref, inputs, precision)
    error = None
    if v.error is not None:
        error = v.error.get("traceback") or f"{v.error['type']}: {v.error['message']}"
    diag = None
    if v.status == "diverge" and case.is_valid and want_diagnosis and y is not None:
        diag = diagnose(case, np.asarray(y), inputs, precision).to_dict()
    return CaseOutcome(case, v.status, v.kind, v.message, v.comparison, diag, error if v.status == "error" else None,
                   output=y, inputs=inputs, precision=precision)
