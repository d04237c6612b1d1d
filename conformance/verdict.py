"""The verdict: (case, the backend's reply, the reference, the contract) -> a record's fields.

Every path that judges a backend calls `judge` here, through `record.record_reply`: the
run and the tools that call backends in workers (pytest plugin, explore, repro; their
referee process makes the record), and the minimiser's predicate on an adapter object
(`record.record_here`). They all obtain the reply from `protocol.answer(adapter, case)`, so
an adapter is called, and its output judged, in one way only.

Invariants
- The status and the divergence kind are decided here, once (the kind by
  `compare.compare`). Diagnosis, minimisation, repro scripts and manifests only add to
  a record; nothing after this relabels it.
- Replies are the worker protocol's tuples:
    ("unsupported", reason)               -> unsupported
    ("adapter_error", error)              -> error, valid case or not: supports() raised or
                                             returned neither None nor a str
    ("raised", error, backend_s)          -> error for a valid case; pass for an invalid one
    ("output", y, backend_s, notes)       -> pass or diverge, by `compare`
  (a crash or a timeout exists only in worker processes: `record.record_reply` records those).
- Every field is plain JSON-safe data except `comparison`, the `compare.Comparison`
  itself, for in-process callers.
- The verdict is a function of (case, output, reference, contract) alone. A caller that
  judges several backends on one case may pass a `memo` (a dict it keeps for that case
  only): an output bitwise identical to one judged before (same dtype, shape and bytes,
  same contract) gets that verdict again, with its own backend time, its own adapter
  notes and compare_s 0, instead of a second comparison.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from . import tolerance
from .compare import Comparison, compare
from .spec import Case
from .text import json_safe
from .vocabulary import NOT_PRECISION_KINDS


@dataclass
class Verdict:
    status: str  # pass | diverge | unsupported | error
    kind: str | None
    message: str
    precision: str
    comparison: Comparison | None = None
    error: dict[str, str] | None = None  # {type, message, traceback} when the backend raised
    backend_s: float | None = None
    compare_s: float | None = None
    notes: list[str] = field(default_factory=list)

    def fields(self) -> dict[str, Any]:
        """The record fields (results.json) this verdict decides."""
        c = self.comparison
        out = {"status": self.status, "kind": self.kind, "message": self.message, "precision": self.precision,
               "precision_met": c.precision_met if c is not None else None, "notes": list(self.notes)}
        if self.error is not None:
            out["error"] = self.error
        if c is not None:
            out.update(figures=json_safe(c.figures), worst=json_safe(c.worst), heatmap=json_safe(c.heatmap),
                       channel_errors=json_safe(c.channel_errors))
        return out


def output_key(y: Any, precision: str) -> tuple | None:
    """What makes two outputs of one case judge alike: contract, dtype, shape and every byte
    (None for an output that is not a plain NumPy array)."""
    if not isinstance(y, np.ndarray) or y.dtype.hasobject:
        return None
    digest = hashlib.blake2b(np.ascontiguousarray(y).view(np.uint8).reshape(-1), digest_size=20).digest()
    return (precision, y.dtype.str, y.shape, digest)


def judge(case: Case, reply: tuple, ref: Any, inputs: Any,
          precision: str = tolerance.DEFAULT_PRECISION, memo: dict | None = None) -> Verdict:
    """The verdict on one reply. `ref` is the oracle's Reference (None for an invalid case),
    `inputs` the (x, filters, bias) the backend was given; `memo`: see the invariants."""
    tolerance.check_precision(precision)
    tag = reply[0]
    if tag == "unsupported":
        return Verdict("unsupported", None, str(reply[1]), precision)
    if tag == "adapter_error":
        return Verdict("error", None, reply[1]["message"].splitlines()[0], precision, error=reply[1])
    if tag == "raised":
        err, backend_s = reply[1], reply[2]
        text = f"{err['type']}: {err['message']}".strip()
        first = text.splitlines()[0] if text else err["type"]
        if case.is_valid:
            return Verdict("error", None, first, precision, error=err, backend_s=backend_s)
        return Verdict("pass", None, f"rejected the invalid case ({case.invalid_reason}) with {first}", precision,
                       error=err, backend_s=backend_s)
    if tag != "output":
        raise ValueError(f"reply: expected unsupported, adapter_error, raised or output, received {tag!r}")
    y, backend_s, notes = reply[1], reply[2], list(reply[3])
    key = output_key(y, precision) if memo is not None else None
    if key is not None and key in memo:
        seen = memo[key]
        return replace(seen, backend_s=backend_s, compare_s=0.0, notes=notes + list(seen.comparison.notes))
    t0 = time.perf_counter()
    cmp = compare(case, y, ref, inputs, precision) if case.is_valid else compare(case, y, None, precision=precision)
    compare_s = time.perf_counter() - t0
    v = Verdict("pass" if cmp.passed else "diverge", cmp.kind, cmp.message, precision, cmp,
                backend_s=backend_s, compare_s=compare_s, notes=notes + list(cmp.notes))
    if key is not None:
        memo[key] = v
    return v


def precision_profile(records: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per backend and dtype: the strongest contract every judged case meets (`meets`; None:
    none met), the largest normalised error among them, and the counts behind them.

    Judged: every valid case whose output was compared, that is every `pass` and every
    `diverge` except `invalid_accepted` (an invalid case has no exact result to measure).
    Every divergence counts (`diverged`, and per kind in `kinds`). One of a kind that says
    nothing about precision (`value`, `shape`, `nonfinite`, ...: `other`) meets no contract,
    so it makes `meets` None: the output is wrong, not merely imprecise, and the line must
    not look clean. Its normalised error, where it has one, counts in the maximum (None
    when no judged case has one, e.g. only shape divergences; "inf" for an infinite one).
    """
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for rec in records:
        status, kind = rec.get("status"), rec.get("kind")
        figures = rec.get("figures") or {}
        dtype = (rec.get("case") or {}).get("dtype")
        if status not in ("pass", "diverge") or kind == "invalid_accepted" or dtype is None:
            continue
        if status == "pass" and not figures:  # an invalid case rejected as it should be: nothing measured
            continue
        chain = tolerance.chain(dtype)
        row = out.setdefault(rec["backend"], {}).setdefault(dtype, {
            "meets": chain[0], "max_normalised_error": None, "cases": 0, "diverged": 0, "other": 0, "kinds": {}})
        row["cases"] += 1
        if status == "diverge":
            row["diverged"] += 1
            row["kinds"][kind] = row["kinds"].get(kind, 0) + 1
            row["other"] += kind in NOT_PRECISION_KINDS
        met = None if kind in NOT_PRECISION_KINDS else rec.get("precision_met")
        if row["meets"] is not None:
            row["meets"] = None if met is None else chain[max(chain.index(row["meets"]), chain.index(met))]
        if "max_normalised_error" in figures:
            row["max_normalised_error"] = _larger_error(row["max_normalised_error"], figures["max_normalised_error"])
    for per_dtype in out.values():
        for dtype, row in per_dtype.items():
            row["explanation"] = describe(dtype, row["meets"])
    return out


def _larger_error(so_far: float | str | None, e: float | str | None) -> float | str:
    """The larger of two normalised errors as figures record them: a number, or None/"inf"/"nan"
    for an infinite or undefined one (`compare` records an infinite maximum as null)."""
    if so_far == "inf" or e is None or isinstance(e, str):
        return "inf"
    return float(e) if so_far is None else max(float(so_far), float(e))


def describe(dtype: str, meets: str | None) -> str:
    """One line for a profile cell: "meets `any` — consistent with float16 accumulation"."""
    if meets is None:
        return "none met"
    if meets == tolerance.chain(dtype)[0]:
        return f"meets `{meets}`"
    return f"meets `{meets}` — consistent with {tolerance.consistent_with(meets, dtype)}"
