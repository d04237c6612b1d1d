"""The worker protocol: the one call of an adapter, the replies it gives, and the ways a
worker process fails to give one.

`answer(adapter, case)` calls an adapter for a verdict, in a worker process or in the
calling one, and returns its reply, one of these tuples:

    ("unsupported", reason)              supports() gave the framework's own reason
    ("adapter_error", error)             supports() raised or returned neither None nor a str
    ("raised", error, backend_s)         run() raised
    ("output", y, backend_s, notes, repeated)
                                         run() returned (a NumPy array, or a NotAnArray);
                                         `repeated` is a `repeats.Repeated` when the case was
                                         run again with the same inputs, else None

`error` is `error_dict(exc)`: {type, message, traceback}. Across a process, a reply can
also not come: the caller then holds a `WorkerDied` (exit code or signal, log tail) or a
`WorkerTimeout`, each with the `phase` the request was in; `LoadFailed` says the adapter
could not even be built.

Invariants
- This is the one place an adapter's supports() and run() are called for a verdict
  (worker processes, the in-process tools, the minimiser alike); a reply is judged by
  `verdict.judge` and recorded by `record.record_reply`, both above this module.
- Only plain data and NumPy arrays travel in a reply: a framework tensor never does, so
  the receiving process never imports a framework.
- A repeat (`repeats.Policy`) calls run() again here. Where a case may be repeated,
  every call (the first too) gets its own copy of the inputs, and the caller's arrays
  are left as they were; only an output that differs in bits from the first travels
  back. A reply of four items (no `repeated`) reads as not repeated.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from typing import Any

import numpy as np

from .dtypes import dtype_name
from .repeats import Policy, Repeated, copies, same_bits
from .text import memory_size

TRACEBACK_LINES = 12


# ---- what travels in an "output" reply --------------------------------------------------

@dataclass(frozen=True)
class NotAnArray:
    """What a worker sends in place of an adapter output that is not a numpy.ndarray.

    `returned` names it ("a list", "None", "an object of type torch.Tensor"); `values` is
    numpy.asarray of it when that gives a numeric array (so the values can still be
    judged), else None. Pickled to the parent, which imports no framework.
    """
    returned: str
    values: np.ndarray | None = None


def returned_object(actual: Any) -> str | None:
    """None for a numpy.ndarray; otherwise what the adapter returned, for a message:
    "None", "a list", "a tuple", "an object of type torch.Tensor"."""
    if isinstance(actual, NotAnArray):
        return actual.returned
    if isinstance(actual, np.ndarray):
        return None
    if actual is None:
        return "None"
    if isinstance(actual, (list, tuple)):
        return f"a {type(actual).__name__}"
    t = type(actual)
    module = "" if t.__module__ == "builtins" else f"{t.__module__.split('.')[0]}."
    return f"an object of type {module}{t.__qualname__}"


def not_an_array(actual: Any) -> NotAnArray | None:
    """A NotAnArray for whatever is not a numpy.ndarray (None for an ndarray): the check
    made where an adapter's return value is first examined (worker, compare)."""
    if isinstance(actual, NotAnArray):
        return actual
    returned = returned_object(actual)
    if returned is None:
        return None
    values = None
    if actual is not None:
        try:
            values = np.asarray(actual)
        except Exception:  # noqa: BLE001 (anything that does not convert has no values to judge)
            values = None
        if values is not None and values.dtype.kind not in "fiu" and dtype_name(values) != "bfloat16":
            values = None
    return NotAnArray(returned, values)


# ---- the adapter call --------------------------------------------------------------------

def error_dict(exc: BaseException) -> dict[str, str]:
    """{type, message, traceback}: the traceback's last lines, enough to place the failure."""
    tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
    lines = "".join(tb).rstrip().splitlines()
    return {"type": type(exc).__name__, "message": str(exc), "traceback": "\n".join(lines[-TRACEBACK_LINES:])}


def answer(adapter: Any, case: Any, inputs: Any = None, on_run: Any = None, repeats: Policy | None = None,
           on_repeat: Any = None) -> tuple:
    """One case on `adapter`, as the worker's reply: ("unsupported", reason) |
    ("adapter_error", error) | ("raised", error, backend_s) |
    ("output", array, backend_s, notes, repeated).

    A `supports()` that raises, or returns
    neither None nor a str, is ("adapter_error", ...): an `error` naming the adapter,
    whatever the case, everywhere. `on_run()` is called once supports() has said yes,
    before run() starts (the worker tells its parent, so a crash is placed correctly), and
    `on_repeat()` before the calls that `repeats` (None: no repeats) asks for, after the first.
    """
    from conformance.adapters import registry
    from conformance.inputs import make_inputs

    try:
        reason = registry.checked_supports(adapter, case)
    except registry.SupportsError as exc:
        err = error_dict(exc.__cause__ or exc)
        err.update(type="SupportsError", message=str(exc))
        return ("adapter_error", err)
    if reason is not None:
        return ("unsupported", reason)
    if on_run is not None:
        on_run()
    operands = tuple(make_inputs(case) if inputs is None else inputs)
    # Where the case may be repeated, each call gets its own copy of the inputs, and the
    # caller's stay as they were (the in-process tools compute the reference from them).
    pristine = operands if repeats is not None and repeats.calls > 0 and case.is_valid else None
    given = copies(pristine) if pristine is not None else operands
    t0 = time.perf_counter()
    try:
        y = adapter.run(case, *given)
    except Exception as exc:
        return ("raised", error_dict(exc), time.perf_counter() - t0)
    elapsed = time.perf_counter() - t0
    # Anything but a numpy.ndarray (a list, None, a framework tensor) travels as a
    # NotAnArray naming its type, with its values if it has some: the verdict judges it a
    # `dtype` divergence, and pickling a framework tensor would import the framework in the parent.
    wrapped = not_an_array(y)
    why = None
    if pristine is not None and wrapped is None and not y.dtype.hasobject:
        why = repeats.reason(case, elapsed)
    if why is None:
        return ("output", y if wrapped is None else wrapped, elapsed, [], None)
    if on_repeat is not None:
        on_repeat()
    return ("output", y, elapsed, [], _repeat(adapter, case, y, why, repeats.calls, pristine))


def _repeat(adapter: Any, case: Any, first: Any, why: str, calls: int, pristine: tuple) -> Repeated:
    """`calls` more calls of run() on fresh copies of `pristine`, compared bit for bit with
    `first`; a call that raises ends them."""
    seconds, differing, call, other, error = 0.0, 0, None, None, None
    made = 1
    for _ in range(calls):
        made += 1
        fresh = copies(pristine)
        t0 = time.perf_counter()
        try:
            y = adapter.run(case, *fresh)
        except Exception as exc:
            seconds += time.perf_counter() - t0
            differing, call, error = differing + 1, made, error_dict(exc)
            break
        seconds += time.perf_counter() - t0
        if not same_bits(first, y):
            differing += 1
            if call is None:
                call, other = made, (y if isinstance(y, np.ndarray) else not_an_array(y))
    return Repeated(made, why, seconds, differing, call, other, error)


def headline(log_tail: str) -> str:
    """The line of a crashed worker's log that says what happened (faulthandler's, else the last)."""
    lines = log_tail.splitlines()
    for line in lines:
        if line.startswith("Fatal Python error"):
            return line.strip()
    return lines[-1].strip() if lines else ""


class WorkerDied(Exception):
    """The worker process ended without answering; `exit` is {exitcode, signal, rss_bytes,
    peak_rss_bytes} (the memory as last sampled by the parent, None when unknown); `phase` is
    "supports" when it died inside the adapter's supports(), "run" inside run(), "repeat"
    in a repeat of run() after the first call returned (`repeats`), else None.

    SIGKILL that nobody in this run sent is what the kernel's out-of-memory killer sends:
    the message says so, with the memory the worker had reached.
    """

    def __init__(self, exit_info: dict[str, Any], log_tail: str, phase: str | None = None):
        self.exit = exit_info
        self.log_tail = log_tail
        self.phase = phase
        sig = exit_info.get("signal")
        how = f"signal {sig}" if sig else f"exit code {exit_info.get('exitcode')}"
        if sig == "SIGKILL":
            rss, peak = exit_info.get("rss_bytes"), exit_info.get("peak_rss_bytes")
            memory = (f"; last sampled resident memory {memory_size(rss)}" if rss else "") + \
                     (f", peak {memory_size(peak)}" if peak else "")
            how += f": killed, most likely by the out-of-memory killer{memory}"
        super().__init__(f"worker process died with {how}")


class WorkerTimeout(Exception):
    """No answer in time; `phase` as for WorkerDied."""

    def __init__(self, phase: str | None = None):
        super().__init__()
        self.phase = phase


class LoadFailed(RuntimeError):
    """The worker could not build its adapter: `registry.load(spec)`, `version()` or
    `device()` raised (a BackendError, an ImportError, a SyntaxError ...) before any case.
    `error` is the worker's {type, message, traceback}."""

    def __init__(self, spec: str, error: dict[str, str]):
        self.spec = spec
        self.error = error
        super().__init__(f"backend {spec!r} could not be loaded: {error['type']}: {error['message']}")
