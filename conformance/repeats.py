"""Run-to-run repeats: which cases a backend computes again with the same inputs, and how
two outputs of the same inputs differ.

A backend whose result changes from call to call (atomics, thread-count dependent
splits, uninitialised accumulators, a race on a shared scratch buffer) passes each
call's verdict as long as each answer is within tolerance. So the adapter call
(`protocol.answer`) calls `run()` again on fresh copies of the same inputs for the
cases `Policy` chooses, compares the outputs bit for bit, and sends back the first
output that differs (`Repeated`); the verdict (`verdict.judge`) measures the difference
(`difference`) and decides the kind `nondeterministic`.

The policy (`Policy`, decided in the worker once the first call has returned):
- `calls` more calls of each repeated case (default 1; 0: no repeats at all);
- with `every`, every case; otherwise every case of at most `SMALL_MACS` multiply-adds,
  and one case in `SAMPLE` of the larger ones of at most `SAMPLED_OUTPUTS` output
  elements, chosen by a hash of the case id. So the same cases are repeated on every run
  and machine, whatever the load: never by time. Above `SAMPLED_OUTPUTS` (the size
  witnesses of 2^22 and 2^24 outputs: one element per multiply-add, tens of MB per call)
  a repeat costs the most and tests the least (a 1x1 kernel has no sum to reorder), so
  only `every` repeats them;
- except that a repeat never takes the case past half its timeout (`budget_s`), the one
  bound by time, there so that repeats cannot turn a case into a `timeout`;
- only a valid case whose first call returned a numpy.ndarray: an error, an invalid
  case and an output of another type are judged on the first call alone.

What counts as a difference (`difference`, `differs`):
- another shape, dtype or type, or a later call that raises where the first returned;
- elements whose values differ, NaN against a number included. Two NaNs of different
  payloads and +0 against -0 differ in bits but not in value: they are counted apart
  (`nan_payload`, `zero_sign`) and noted, but are no divergence, as the verdict judges
  neither a NaN's payload nor the sign of a zero anywhere else.

Invariants
- Each call of a case that may be repeated gets its own copy of the inputs (the first
  too, so the caller's arrays stay as they were): an adapter that writes into its inputs
  cannot make the calls differ for that reason.
- Plain data and NumPy arrays only: `Repeated` crosses from the worker to the referee.
- Nothing here decides a verdict: `difference` measures, `verdict.judge` decides.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from . import _rule
from .dtypes import dtype_name, fmt
from .spec import Case
from .text import json_safe, number
from .tolerance import rule_params

#: A case of at most this many multiply-adds is repeated (unless repeats are off): 502 of
#: the default set's 566 valid cases (and the sample, 14 of the other 64), as of 2026-12-07.
SMALL_MACS = 1 << 20
#: One in this many of the larger cases is repeated too (by a hash of the case id).
SAMPLE = 4
#: ... among those of at most this many output elements (above it, only with `every`).
SAMPLED_OUTPUTS = 1 << 22
#: More calls of a repeated case, by default.
DEFAULT_CALLS = 1
#: A repeat may take the case's time to at most this fraction of its timeout.
BUDGET_FRACTION = 0.5
#: Differing elements listed in a record (the largest differences first).
POSITIONS = 5


@dataclass(frozen=True)
class Policy:
    """Which cases are repeated, and how often (see the module docstring)."""

    calls: int = DEFAULT_CALLS
    every: bool = False
    small_macs: int = SMALL_MACS
    sample: int = SAMPLE
    #: The case's time limit (seconds): a repeat never takes it past BUDGET_FRACTION of it.
    budget_s: float | None = None

    def __post_init__(self):
        if not isinstance(self.calls, int) or isinstance(self.calls, bool) or self.calls < 0:
            raise ValueError(f"repeats: expected a whole number of calls >= 0, received {self.calls!r}")

    def reason(self, case: Case, first_s: float) -> str | None:
        """Why `case` is repeated after a first call of `first_s` seconds ("all", "small",
        "sampled"), or None when it is not."""
        if self.calls == 0 or not case.is_valid:
            return None
        if self.budget_s is not None and first_s * (1 + self.calls) > BUDGET_FRACTION * self.budget_s:
            return None
        if self.every:
            return "all"
        if case.macs <= self.small_macs:
            return "small"
        if self.sample > 0 and math.prod(case.output_shape) <= SAMPLED_OUTPUTS and sampled(case, self.sample):
            return "sampled"
        return None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "Policy":
        return cls(**d) if d else OFF

    def stated(self) -> dict[str, Any]:
        """The policy as a run's results state it: {calls, every, small_macs, sample,
        sampled_outputs, policy (in words)}."""
        return {"calls": self.calls, "every": self.every, "small_macs": self.small_macs, "sample": self.sample,
                "sampled_outputs": SAMPLED_OUTPUTS, "policy": self.describe()}

    def describe(self) -> str:
        """The policy in words, for results.json and the console."""
        if self.calls == 0:
            return "off"
        more = "1 more call" if self.calls == 1 else f"{self.calls} more calls"
        if self.every:
            return f"every valid case: {more} with the same inputs"
        return (f"{more} with the same inputs of every valid case of at most {self.small_macs:,} "
                f"multiply-adds, and of 1 in {self.sample} of the others of at most {SAMPLED_OUTPUTS:,} "
                f"output elements (by case id)")


OFF = Policy(calls=0)
DEFAULT = Policy()


def script_calls(kind: str | None, fields: dict[str, Any] | None) -> int:
    """How many times a repro script of a divergence of `kind` calls the framework: up to
    the call that differed for a `nondeterministic` one (`fields`: the record's `repeat`), else once."""
    if kind != "nondeterministic":
        return 1
    return max(2, int((fields or {}).get("call") or 2))


def sampled(case: Case, sample: int) -> bool:
    """Is `case` in the 1-in-`sample` share of the larger cases that are repeated?"""
    digest = hashlib.sha256(f"{case.id}|repeat".encode()).digest()
    return int.from_bytes(digest[:8], "little") % sample == 0


# ---- in the worker: the calls and the bits ---------------------------------------------

@dataclass(frozen=True)
class Repeated:
    """What the repeats of one case gave, as the worker sends it (the 5th item of an
    "output" reply). `other` is the first output that differs in bits from the first
    call's (None when all agreed), from call number `call`; `error` the {type, message,
    traceback} of a later call that raised (then `call` is that call)."""

    calls: int  # calls made, the first included
    reason: str  # Policy.reason
    seconds: float  # inside run() in the calls after the first
    differing_calls: int = 0  # later calls whose output differs in bits from the first
    call: int | None = None
    other: Any = None  # numpy.ndarray, or protocol.NotAnArray
    error: dict[str, str] | None = None


def copies(inputs) -> tuple:
    """Fresh copies of (x, filters, bias) (None stays None)."""
    return tuple(None if a is None else np.array(a, copy=True) for a in inputs)


def same_bits(a: Any, b: Any) -> bool:
    """Two numpy.ndarrays of the same dtype and shape, with the same bytes (False for anything else)."""
    if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
        return False
    if a.dtype != b.dtype or a.shape != b.shape or a.dtype.hasobject:
        return False
    return np.array_equal(np.ascontiguousarray(a).view(np.uint8), np.ascontiguousarray(b).view(np.uint8))


# ---- in the verdict: how much two outputs differ ----------------------------------------

def _bits_differ(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per element of two arrays of one dtype and shape: do their bytes differ?"""
    size = a.dtype.itemsize
    rows = [np.ascontiguousarray(v).reshape(-1).view(np.uint8).reshape(-1, size) for v in (a, b)]
    return (rows[0] != rows[1]).any(axis=1).reshape(a.shape)


def difference(case: Case, first: np.ndarray, rep: Repeated, ref: Any = None) -> dict[str, Any]:
    """The record's `repeat` field: the calls made and, when they differ, how.

    {"calls", "reason", "seconds", "identical"} always; when a later call
    differs: "call" (its number), "differing_calls", and either "raised" ({type, message})
    or "differs_in" ("type", "dtype", "shape" or "values") with, for values, "elements",
    "differing" (elements whose values differ), "zero_sign" and "nan_payload" (elements
    that differ in bits only), "max_ulp" (in units in the last place of the larger of the
    two, in the case dtype), "max_normalised_error" (|first - other| / (u Σ|x||w| + floor),
    the verdict's normalisation; null without the oracle) and "positions" (the largest
    differences: index, first, other).
    """
    out: dict[str, Any] = {"calls": rep.calls, "reason": rep.reason, "seconds": round(rep.seconds, 6),
                           "identical": rep.call is None}
    if rep.call is None:
        return out
    out.update(call=rep.call, differing_calls=rep.differing_calls)
    if rep.error is not None:
        out["raised"] = {"type": rep.error.get("type"), "message": rep.error.get("message")}
        return out
    other = rep.other
    if not isinstance(other, np.ndarray):  # a protocol.NotAnArray names what came back
        out.update(differs_in="type", other=str(getattr(other, "returned", None) or type(other).__name__))
        return out
    if other.dtype != first.dtype:
        out.update(differs_in="dtype", first_dtype=dtype_name(first), other_dtype=dtype_name(other))
        return out
    if other.shape != first.shape:
        out.update(differs_in="shape", first_shape=list(first.shape), other_shape=list(other.shape))
        return out
    out["differs_in"] = "values"
    a, b = first.astype(np.float64), other.astype(np.float64)
    bits_differ = _bits_differ(first, other)
    both_nan = np.isnan(a) & np.isnan(b)
    same_value = (a == b) | both_nan
    values_differ = ~same_value
    out.update(elements=int(a.size), differing=int(values_differ.sum()),
               zero_sign=int((bits_differ & (a == b) & (a == 0)).sum()),
               nan_payload=int((bits_differ & both_nan).sum()))
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        gap = np.where(values_differ, np.abs(a - b), 0.0)
        gap = np.where(values_differ & np.isnan(gap), np.inf, gap)  # NaN against a number, Inf against Inf
        f = fmt(case.dtype)
        top = np.maximum(np.abs(np.where(np.isfinite(a), a, 0.0)), np.abs(np.where(np.isfinite(b), b, 0.0)))
        expo = np.frexp(np.where(top > 0, top, 1.0))[1] - 1
        ulp = np.ldexp(1.0, np.maximum(expo, f.min_exponent) - f.precision + 1)
        ulps = gap / ulp
        norm = None
        if ref is not None and getattr(ref, "magnitude", None) is not None:
            norm = gap / _rule.scale(rule_params(case), ref.magnitude)
            norm = np.where(values_differ, norm, 0.0)
    out["max_ulp"] = json_safe(float(ulps.max())) if ulps.size else 0.0
    out["max_normalised_error"] = None if norm is None else json_safe(float(np.nan_to_num(norm, nan=np.inf).max()))
    order = np.argsort(-np.where(values_differ, gap, -1.0), axis=None, kind="stable")[:POSITIONS]
    out["positions"] = [{"index": [int(i) for i in np.unravel_index(int(k), a.shape)],
                         "first": json_safe(float(a.flat[k])), "other": json_safe(float(b.flat[k]))}
                        for k in order if values_differ.flat[k]]
    return out


def differs(fields: dict[str, Any] | None) -> bool:
    """Does a `repeat` field (from `difference`) show a difference the verdict judges: a
    later call that raised, another type, dtype or shape, or an element of another value?"""
    if not fields or fields.get("identical", True):
        return False
    if fields.get("raised") or fields.get("differs_in") in ("type", "dtype", "shape"):
        return True
    return bool(fields.get("differing"))


def message(fields: dict[str, Any]) -> str:
    """One line: how the calls differ ("call 2 of 2 with the same inputs differs from the
    first in 3 of 1024 elements (up to 2 ulp, normalised error 0.31)")."""
    call = f"call {fields.get('call')} of {fields.get('calls')} with the same inputs"
    if fields.get("raised"):
        r = fields["raised"]
        return f"{call} raised {r.get('type')}: {r.get('message')} where the first call returned an output"
    what = fields.get("differs_in")
    if what == "type":
        return f"{call} returned {fields.get('other')} where the first returned a numpy.ndarray"
    if what == "dtype":
        return f"{call} returned dtype {fields.get('other_dtype')} where the first returned {fields.get('first_dtype')}"
    if what == "shape":
        return (f"{call} returned shape {tuple(fields.get('other_shape') or ())} where the first returned "
                f"{tuple(fields.get('first_shape') or ())}")
    if not fields.get("differing"):
        return (f"{call} differs from the first in bits only: the sign of {fields.get('zero_sign', 0)} zero(s) and "
                f"the payload of {fields.get('nan_payload', 0)} NaN(s), which the verdict does not judge")
    norm = fields.get("max_normalised_error")
    size = f"up to {number(fields.get('max_ulp'), 3)} ulp" + ("" if norm is None else
                                                              f", normalised error {number(norm, 3)}")
    return f"{call} differs from the first in {fields['differing']} of {fields['elements']} elements ({size})"


def repeat_lines(fields: dict[str, Any] | None) -> list[str]:
    """Text lines for a failure message: how the calls differed, with the positions of the
    largest differences (nothing when the case was not repeated or the calls agree)."""
    if not fields or fields.get("identical", True):
        return []
    lines = [f"repeats: {message(fields)}"]
    for p in fields.get("positions") or []:
        lines.append(f"  at {tuple(p['index'])}: call 1 gave {exact_text(p['first'])}, call {fields.get('call')} "
                     f"gave {exact_text(p['other'])}")
    return lines


def exact_text(v: Any) -> str:
    """A recorded value as text that tells neighbouring floats apart (repr; "nan"/"inf" as they are)."""
    return repr(float(v)) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def summary(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per backend: {"repeated": cases repeated, "differed": of them, the judged difference
    (`differs`), "cases": their ids, "bits_only": cases that differ in zero signs or NaN
    payloads only}, for the backends with at least one record; from the records alone."""
    out: dict[str, dict[str, Any]] = {}
    for rec in records:
        row = out.setdefault(rec["backend"], {"repeated": 0, "differed": 0, "cases": [], "bits_only": 0})
        fields = rec.get("repeat")
        if not isinstance(fields, dict):
            continue
        row["repeated"] += 1
        if differs(fields):
            row["differed"] += 1
            row["cases"].append(rec["case_id"])
        elif not fields.get("identical", True):
            row["bits_only"] += 1
    return out
