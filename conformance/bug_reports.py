"""Bug reports: the Markdown issue body of a case, and of a finding, for a framework's tracker.

`bug_report(case, record, backend)` (`conformance repro CASE --report`, the pytest
plugin's failure artifacts): the environment (with the kernel path), the minimal case,
the framework call, observed vs expected with the error figures against the bound (or
the error, the crash's signal and log, the timeout), the diagnosis, and the full repro
script embedded (up to `MAX_EMBED_CHARS`; attached otherwise).

`finding_report(finding, backend)` (`conformance repro --finding ID --report`), at most
about 80 lines: the title, what the run saw, the condition found by experiment (or that
none was), the environment with the kernel path, the minimal case, the short repro
(`finding_script`: `scripts.make_short_script` in the worker, at most about 40 lines)
and what the case gives here.

`backend` is the backend as its worker describes it (`process.isolated.IsolatedBackend`):
`name`, `version`, `device`, `fingerprint`, and `framework_code(case, spec=)`,
`script(case, spec=, precision=)`, `short_script(case, header, spec=, precision=)` giving
(text, problem), written by the adapter in its worker (`scripts`), and `record(case)`.

Invariants
- A report shows what the suite judged: the figures are the record's (`record`), the
  verdict of a run, the pytest plugin or `repro`; a case run for `finding_report` is
  run on the backend's worker and judged by its referee, like every other.
- This module calls no adapter and imports no framework: a backend that crashes or hangs
  costs a report its line, never the process writing it.
- Everything is text for a tracker that renders Markdown; nothing links outside it.
"""

from __future__ import annotations

import platform
import sys
from typing import Any

import numpy as np

from . import scripts, tolerance
from .scripts import WORST_SHOWN
from .repeats import repeat_lines, script_calls
from .spec import OP_INFO, Case
from .text import number

#: A bug report embeds the script when it is at most this long (else: attach it).
MAX_EMBED_CHARS = 64 << 10


# ---- the report of a case ---------------------------------------------------------------

def environment(backend: Any) -> dict[str, str]:
    """OS, CPU (with the kernel-selecting flags), Python, NumPy, the framework's version, the
    device and its kernel path (FTZ/DAZ, oneDNN, ...), as display strings: the machine, the
    interpreter and the fingerprint the backend's worker reported (`conformance.fingerprint`)."""
    from .fingerprint import machine_line, path_line

    fp = backend.fingerprint
    return {"OS": platform.platform(), "CPU": machine_line(fp),
            "Python": sys.version.split()[0], "NumPy": np.__version__,
            str(backend.name): str(backend.version), "Device": str(backend.device), "Kernel path": path_line(fp)}


def _padding_text(case: Case) -> str:
    (t, b), (l, r) = case.geometry.pads
    return f"{case.padding} (pads top {t}, bottom {b}, left {l}, right {r})"


def _parameters(case: Case) -> list[tuple[str, str]]:
    rows = [("op", case.op)]
    if "x" not in case.operands:  # grad-input: x's shape is the result's, described by the forward case
        rows.append(("input x (N, H, W, C)", str(case.input_shape)))
    rows += [(f"{'input x' if name == 'x' else name} {layout}", str(shape)) for (name, layout), shape in
             zip(scripts.operand_layouts(case), case.operand_shapes) if shape is not None]
    if case.forward_op == "conv2d":
        rows.append(("groups", str(case.groups)))
    else:
        rows.append(("channel multiplier", str(case.channel_multiplier)))
    rows += [("strides", str(tuple(case.strides))), ("dilations", str(tuple(case.dilations))),
             ("padding", _padding_text(case)), ("dtype", case.dtype), ("data format (internal)", case.data_format),
             ("value profile", case.profile), ("bias", "yes" if case.bias else "no"),
             (_RESULT[OP_INFO[case.op].result], str(case.output_shape))]
    return rows


#: How the parameters table names an op's result.
_RESULT = {"output": "expected output (N, OH, OW, O)", "input": "expected dx (N, H, W, C)",
           "filter": "expected dfilters (the filters' shape)"}

#: What a report's title says a backend did, by the record's status (a divergence names its kind).
_WHAT = {"error": "raises an error", "crash": "crashes the process", "timeout": "does not return",
         "pass": "passes here", "unsupported": "is unsupported here"}


def bug_report(case: Case, record: dict[str, Any], backend: Any, *, spec: str | None = None) -> str:
    """A Markdown issue body: environment, the minimal case, the call, observed vs expected, why.

    `record` is the results.json record of `case` on `backend` (see the module docstring for
    what `backend` offers); `spec` is how a script loads an adapter without `repro_code`.
    """
    name = str(backend.name)
    status = record.get("status")
    what = f"gives a wrong result ({record.get('kind') or 'divergence'})" if status == "diverge" \
        else _WHAT.get(status, f"gives `{status}`")
    out = [f"## {name}: `{case.op}` {what} on a small case", ""]
    summary = record.get("message") or ""
    out += [(f"`{case.op}` with the parameters below does not match the mathematically exact result: {summary}."
             if status == "diverge" else f"`{case.op}` with the parameters below {what}: {summary}."),
            "Found by conv-conformance, against an exact NumPy reference.", ""]
    out += ["### Environment", "", "| | |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in environment(backend).items()]
    out += ["", "### Minimal case", "", f"Case id: `{case.id}`", "", "| parameter | value |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in _parameters(case)]
    if not case.is_valid:
        out += ["", f"This case is **invalid** ({case.invalid_reason}): no correct output exists, so the expected "
                    "behaviour is an error."]
    code, problem = backend.framework_code(case, spec=spec)
    if code is None:
        code = f"# (no framework call available: {problem})\n"
    out += ["", "### The framework call", "", "Given NumPy arrays `x` (N, H, W, C), `filters` and `bias` "
            "(canonical TensorFlow layouts, in the case dtype), this computes `y`:", "", "```python", code.rstrip(),
            "```", "", "### Observed vs expected", ""]
    figures = record.get("figures") or {}
    if "expected_shape" in figures:
        out.append(f"- expected output shape {tuple(figures['expected_shape'])}, observed "
                   f"{tuple(figures['actual_shape'])}")
    if summary:
        out.append(f"- {summary}")
    error = record.get("error") or {}
    if status in ("error", "crash") and (error.get("traceback") or error.get("message")):
        out += ["", "```", (error.get("traceback") or f"{error.get('type')}: {error.get('message')}").rstrip(), "```"]
    repeated = repeat_lines(record.get("repeat"))
    if repeated:
        out += ["", "```", *repeated, "```"]
    shown = [k for k in ("elements", "mismatched", "max_abs_error", "max_rel_error", "max_ulp",
                         "max_normalised_error", "threshold", "hard_bound", "effective_bits", "dtype_bits")
             if k in figures]
    precision = record.get("precision") or tolerance.DEFAULT_PRECISION
    if shown:
        out += ["", "| figure | value |", "|---|---|"] + [
            f"| {k} | {'n/a' if k == 'effective_bits' and figures[k] is None else number(figures[k], 6)} |" for k in shown]
        out += ["", "The normalised error of an element is |y - exact| / (u · Σ|x||w| + underflow floor), u the "
                    "unit roundoff of the dtype. A correct implementation, whatever its summation order, stays "
                    f"below the threshold {tolerance.threshold_text()} (K products per output; zero for exactly "
                    "representable results), within "
                    f"{tolerance.SIGMA_LIMIT:g} standard deviations of a correct sum's rounding error, and can "
                    "never exceed the hard bound ≈ K + 1 (the rigorous worst case). "
                    f"Judged under the precision contract `{precision}`"
                    + (" (16-bit types accumulated in at least float32 and rounded once to the dtype, once more "
                       "for a separately added bias)" if precision == "strict" else "") + "."]
    worst = record.get("worst") or []
    if worst:
        out += ["", "Worst elements (index is (n, row, column, channel) of the NHWC output):", "",
                "| index | expected | observed | normalised error |", "|---|---|---|---|"]
        out += [f"| {tuple(w['index'])} | {number(w['expected'], 6)} | {number(w['actual'], 6)} | "
                f"{number(w['normalised_error'], 6)} |" for w in worst[:WORST_SHOWN]]
    diagnosis = record.get("diagnosis")
    if diagnosis:
        out += ["", "### Diagnosis", "", f"Most likely: **{diagnosis.get('hypothesis') or 'unexplained'}**. "
                f"{diagnosis.get('explanation') or ''}".rstrip()]
    out += ["", "### Reproduce", ""]
    script, problem = backend.script(case, spec=spec, precision=precision,
                                     calls=script_calls(record.get("kind"), record.get("repeat")))
    if script is None:
        out.append(f"No standalone script: {problem}.")
    elif len(script) <= MAX_EMBED_CHARS:
        out += ["Save as `repro.py` and run `python repro.py` (NumPy and the framework only; it embeds the "
                "exact inputs and exits 1 while the bug is present).", "",
                "<details><summary>repro.py</summary>", "", "```python", script.rstrip(), "```", "", "</details>"]
    else:
        out.append(f"The repro script is {len(script)} characters: attach it (`conformance repro {case.id} "
                   f"--backend {spec or name} --out repro.py`).")
    return "\n".join(out) + "\n"


# ---- the report of a finding ------------------------------------------------------------

def finding_script(finding: dict[str, Any], backend: Any, *, spec: str | None = None,
                   precision: str | None = None) -> tuple[str | None, str | None]:
    """(script, problem): the short repro of a finding's minimal case, headed by its title and
    id, written by the backend's worker (it prints that worker's kernel path)."""
    case = Case.from_dict(finding["minimal_case"])
    return backend.short_script(case, f"{finding['title']}\nconv-conformance finding {finding['id']}, case {case.id}",
                                spec=spec, precision=precision)


def finding_report(finding: dict[str, Any], backend: Any, *, spec: str | None = None,
                   precision: str | None = None) -> str:
    """A Markdown issue body for one finding, at most about 80 lines (module docstring)."""
    case = Case.from_dict(finding["minimal_case"])
    name = str(backend.name)
    pred = finding.get("predicate") or {}
    out = [f"## {name}: {finding['title']}", "",
           f"{finding.get('summary') or str(finding.get('count', 0)) + ' cases'} in a conv-conformance run "
           f"(finding `{finding['id']}`, {finding['status']})."]
    if pred:
        necessary = ", ".join(finding.get("necessary") or []) or "no parameter"
        out += ["", f"Condition, found by experiment (the divergence vanished when {necessary} moved to a neutral "
                f"value) and confirmed on fresh cases inside and just outside it:", "", f"    {pred['text']}"]
    else:
        out += ["", "No condition over the case's parameters could be found by experiment; the minimal case "
                "below shows the divergence."]
    out += ["", "### Environment", "", "| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in environment(backend).items()]
    out += ["", f"### Minimal case `{case.id}`", ""]
    out += ["- " + "; ".join(f"{k} {v}" for k, v in _parameters(case))]
    script, problem = finding_script(finding, backend, spec=spec, precision=precision)
    if script:
        out += ["", "### Reproduce", "", "NumPy and the framework only; `python repro.py` prints the versions, the "
                "framework's warnings, expected vs received, and exits 1 while the bug is present "
                "(the suite's own judging rule, embedded):", "", "```python", script.rstrip(), "```"]
    else:
        out += ["", f"No short script: {problem} (`conformance repro {case.id} --backend {spec or name}` writes "
                "the full one)."]
    rec = backend.record(case, diagnose=False)
    out += ["", "### Observed here", "", f"`{rec['status']}`" + (f" ({rec['kind']})" if rec["kind"] else "")
            + f": {rec['message'].splitlines()[0] if rec['message'] else ''}"]
    if rec["status"] != "diverge":
        out.append("(The minimal case does not diverge here: the bug may be fixed in this version.)")
    return "\n".join(out) + "\n"
