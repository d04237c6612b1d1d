"""Reply -> record: the oracle of a case, and a backend's reply made a results.json record.

`oracle_for(case)` builds the inputs and the exact reference once; `record_reply(...)`
turns one reply (`protocol`) into a record (`results.new_record`) with the verdict's
fields (`verdict.judge`); `diagnose_into` adds a diagnosis to a divergence's record.
`record_here(case, adapter)` is all three for an adapter object called in this process:
the minimiser's predicate on an adapter (`minimise.same_divergence`) and the suite's own
tests use it; no command does (the run, the pytest plugin, explore and repro call
backends in worker processes: `process.isolated`), since a backend that crashes or hangs
here takes this process with it.

Invariants
- Every record of a backend's reply is made here, whoever holds the reply: the referee
  process (`process.referee`) of a run and of the tools, the findings step that reruns a
  case on a live worker, and `record_here`. So a (case, backend) pair gets the same record
  on every path.
- The verdict decides the status and the kind; only `crash` and `timeout`, which exist
  only across a process, are decided here. A diagnosis only adds to a record, and a
  diagnosis that fails adds a note instead, never losing the verdict.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import results, tolerance, verdict
from .diagnose import diagnose
from .inputs import make_inputs
from .oracle import reference
from .protocol import WorkerDied, WorkerTimeout, answer, headline
from .spec import Case
from .text import json_safe


@dataclass
class Oracle:
    inputs: Any  # conformance.inputs.Inputs
    ref: Any  # Reference or None for an invalid case
    seconds: float


def oracle_for(case: Case) -> Oracle:
    t0 = time.perf_counter()
    inputs = make_inputs(case)
    ref = reference(case, *inputs) if case.is_valid else None
    return Oracle(inputs, ref, time.perf_counter() - t0)


def record_reply(case: Case, backend: str, info: dict[str, Any], reply: Any, oracle: Oracle | None,
          timeout: float, precision: str = tolerance.DEFAULT_PRECISION,
          memo: dict | None = None) -> tuple[dict[str, Any], Any]:
    """(record, output or None) for one reply (or the WorkerDied / WorkerTimeout raised).
    `memo`: the case's verdicts so far (`verdict.judge`), kept by the caller for one case.

    A thin caller of `verdict.judge`, which decides the status and kind; only a crash and a
    timeout, which exist only in worker processes, are decided here.
    """
    rec = results.new_record(case.to_dict(), case.id, backend, backend_version=info.get("version"),
                             device=info.get("device"))
    rec["time"]["oracle_s"] = oracle.seconds if oracle else None
    rec["precision"] = precision
    if isinstance(reply, WorkerDied):
        last = headline(reply.log_tail)
        where = ("inside the adapter's supports(), before the case ran" if getattr(reply, "phase", None) == "supports"
                 else "while running the case")
        rec.update(status="crash", exit=reply.exit, message=f"{reply} {where}" + (f"; log: {last}" if last else ""))
        if reply.log_tail:
            rec["error"] = {"type": reply.exit.get("signal") or f"exit code {reply.exit.get('exitcode')}",
                            "message": str(reply), "traceback": reply.log_tail}
        return rec, None
    if isinstance(reply, WorkerTimeout):
        inside = " (inside the adapter's supports())" if getattr(reply, "phase", None) == "supports" else ""
        rec.update(status="timeout",
                   message=f"no result within {timeout:g} s{inside}; the worker was killed and restarted")
        return rec, None
    v = verdict.judge(case, reply, oracle.ref if oracle else None, oracle.inputs if oracle else None, precision,
                      memo)
    rec.update(v.fields())
    rec["time"]["backend_s"] = v.backend_s
    rec["time"]["compare_s"] = v.compare_s
    return rec, (reply[1] if reply[0] == "output" else None)


def diagnose_into(rec: dict[str, Any], case: Case, y: Any, oracle: Oracle, memo: dict | None = None) -> None:
    """Add a diagnosis to a divergence's record (it never changes the status or the kind).
    `memo` (as for `record_reply`): a bitwise-identical output of the case gets the same diagnosis."""
    if y is None or not case.is_valid:
        return
    precision = rec.get("precision") or tolerance.DEFAULT_PRECISION
    key = verdict.output_key(y, precision) if memo is not None else None
    if key is not None and ("diagnosis", key) in memo:
        rec["diagnosis"] = copy.deepcopy(memo["diagnosis", key])
        return
    try:
        d = diagnose(case, np.asarray(y), oracle.inputs, precision)
    except Exception as exc:  # a diagnosis failure must not lose the verdict
        rec["notes"].append(f"diagnosis failed: {type(exc).__name__}: {exc}")
        return
    rec["diagnosis"] = json_safe(d.to_dict())
    if key is not None:
        memo["diagnosis", key] = copy.deepcopy(rec["diagnosis"])


def record_here(case: Case, adapter: Any, *, precision: str = tolerance.DEFAULT_PRECISION,
                diagnose: bool = True) -> dict[str, Any]:
    """The record of `case` on `adapter`, called in this process (see the module docstring):
    the adapter call of a worker (`protocol.answer`), then `record_reply` and, for a
    divergence, `diagnose_into` unless `diagnose` is False."""
    oracle = oracle_for(case)
    info = {"version": str(adapter.version()), "device": str(adapter.device())}
    rec, y = record_reply(case, str(adapter.name), info, answer(adapter, case, oracle.inputs), oracle, 0.0, precision)
    if diagnose and rec["status"] == "diverge":
        diagnose_into(rec, case, y, oracle)
    return rec
