"""Bug reports: the Markdown issue body of a case, and of a finding, for a framework's tracker.

`bug_report(case, adapter, comparison, diagnosis)` (`conformance repro CASE --report`, the
pytest plugin's failure artifacts): the environment (with the kernel path), the minimal
case, the framework call, observed vs expected with the error figures against the
bound, the diagnosis, and the full repro script embedded (`scripts.make_script`, up to
`MAX_EMBED_CHARS`; attached otherwise).

`finding_report(finding, adapter)` (`conformance repro --finding ID --report`), at most
about 80 lines: the title, what the run saw, the condition found by experiment (or that
none was), the environment with the kernel path, the minimal case, the short repro
(`scripts.make_short_script`, at most about 40 lines) and what the case gives here.

Invariants
- A report shows what the suite judged: the figures are the verdict's, and a case run
  here for the report is judged by `inprocess.run_case`, the suite's one verdict.
- Everything is text for a tracker that renders Markdown; nothing links outside it.
"""

from __future__ import annotations

import platform
import sys
from typing import Any

import numpy as np

from . import tolerance
from .inprocess import run_case
from .scripts import (WORST_SHOWN, ReproError, ShortReproError, framework_code, make_script,
                      make_short_script)
from .spec import Case
from .text import number

#: A bug report embeds the script when it is at most this long (else: attach it).
MAX_EMBED_CHARS = 64 << 10


# ---- the report of a case ---------------------------------------------------------------

def environment(adapter: Any) -> dict[str, str]:
    """OS, CPU (with the kernel-selecting flags), Python, NumPy, the framework's version, the
    device and its kernel path (FTZ/DAZ, oneDNN, ...: conformance.fingerprint), as display strings."""
    from .fingerprint import fingerprint, machine_line, path_line

    name = str(getattr(adapter, "name", "backend"))
    version = str(adapter.version())  # imports the framework: the fingerprint then sees it
    fp = fingerprint(adapter)
    return {"OS": platform.platform(), "CPU": machine_line(fp),
            "Python": sys.version.split()[0], "NumPy": np.__version__,
            name: version, "Device": str(adapter.device()), "Kernel path": path_line(fp)}


def _padding_text(case: Case) -> str:
    (t, b), (l, r) = case.geometry.pads
    return f"{case.padding} (pads top {t}, bottom {b}, left {l}, right {r})"


def _parameters(case: Case) -> list[tuple[str, str]]:
    rows = [("op", case.op), ("input x (N, H, W, C)", str(case.input_shape)),
            ("filters " + ("(kh, kw, C/groups, O)" if case.op == "conv2d" else "(kh, kw, C, M)"),
             str(case.filter_shape))]
    if case.op == "conv2d":
        rows.append(("groups", str(case.groups)))
    else:
        rows.append(("channel multiplier", str(case.channel_multiplier)))
    rows += [("strides", str(tuple(case.strides))), ("dilations", str(tuple(case.dilations))),
             ("padding", _padding_text(case)), ("dtype", case.dtype), ("data format (internal)", case.data_format),
             ("value profile", case.profile), ("bias", "yes" if case.bias else "no"),
             ("expected output (N, OH, OW, O)", str(case.output_shape))]
    return rows


def bug_report(case: Case, adapter: Any, comparison: Any, diagnosis: Any = None, *, outcome: Any = None,
               spec: str | None = None) -> str:
    """A Markdown issue body: environment, the minimal case, the call, observed vs expected, why.

    `comparison` is a `compare.Comparison` (None when the backend raised: pass the
    `inprocess.CaseOutcome` as `outcome` for its message); `diagnosis` a Diagnosis or its dict.
    """
    if diagnosis is not None and not isinstance(diagnosis, dict):
        diagnosis = diagnosis.to_dict()
    name = str(getattr(adapter, "name", "backend"))
    kind = getattr(comparison, "kind", None) or getattr(outcome, "status", None) or "divergence"
    out = [f"## {name}: `{case.op}` gives a wrong result ({kind}) on a small case", ""]
    summary = getattr(comparison, "message", None) or getattr(outcome, "message", "")
    out += [f"`{case.op}` with the parameters below does not match the mathematically exact result: {summary}.",
            "Found by conv-conformance, against an exact NumPy reference.", ""]
    out += ["### Environment", "", "| | |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in environment(adapter).items()]
    out += ["", "### Minimal case", "", f"Case id: `{case.id}`", "", "| parameter | value |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in _parameters(case)]
    if not case.is_valid:
        out += ["", f"This case is **invalid** ({case.invalid_reason}): no correct output exists, so the expected "
                    "behaviour is an error."]
    try:
        code = framework_code(case, adapter, spec)
    except ReproError as exc:
        code = f"# (no framework call available: {exc})\n"
    out += ["", "### The framework call", "", "Given NumPy arrays `x` (N, H, W, C), `filters` and `bias` "
            "(canonical TensorFlow layouts, in the case dtype), this computes `y`:", "", "```python", code.rstrip(),
            "```", "", "### Observed vs expected", ""]
    figures = getattr(comparison, "figures", None) or {}
    if "expected_shape" in figures:
        out.append(f"- expected output shape {tuple(figures['expected_shape'])}, observed "
                   f"{tuple(figures['actual_shape'])}")
    if summary:
        out.append(f"- {summary}")
    if outcome is not None and getattr(outcome, "error", None):
        out += ["", "```", outcome.error.rstrip(), "```"]
    shown = [k for k in ("elements", "mismatched", "max_abs_error", "max_rel_error", "max_ulp",
                         "max_normalised_error", "threshold", "hard_bound", "effective_bits", "dtype_bits")
             if k in figures]
    if shown:
        out += ["", "| figure | value |", "|---|---|"] + [
            f"| {k} | {'n/a' if k == 'effective_bits' and figures[k] is None else number(figures[k], 6)} |" for k in shown]
        precision = getattr(comparison, "precision", None) or tolerance.DEFAULT_PRECISION
        out += ["", "The normalised error of an element is |y - exact| / (u · Σ|x||w| + underflow floor), u the "
                    "unit roundoff of the dtype. A correct implementation, whatever its summation order, stays "
                    f"below the threshold {tolerance.threshold_text()} (K products per output; zero for exactly "
                    "representable results), within "
                    f"{tolerance.SIGMA_LIMIT:g} standard deviations of a correct sum's rounding error, and can "
                    "never exceed the hard bound ≈ K + 1 (the rigorous worst case). "
                    f"Judged under the precision contract `{precision}`"
                    + (" (16-bit types accumulated in at least float32 and rounded once to the dtype, once more "
                       "for a separately added bias)" if precision == "strict" else "") + "."]
    worst = getattr(comparison, "worst", None) or []
    if worst:
        out += ["", "Worst elements (index is (n, row, column, channel) of the NHWC output):", "",
                "| index | expected | observed | normalised error |", "|---|---|---|---|"]
        out += [f"| {tuple(w['index'])} | {number(w['expected'], 6)} | {number(w['actual'], 6)} | "
                f"{number(w['normalised_error'], 6)} |" for w in worst[:WORST_SHOWN]]
    if diagnosis:
        out += ["", "### Diagnosis", "", f"Most likely: **{diagnosis.get('hypothesis') or 'unexplained'}**. "
                f"{diagnosis.get('explanation') or ''}".rstrip()]
    out += ["", "### Reproduce", ""]
    try:
        script = make_script(case, adapter, spec=spec,
                             precision=getattr(comparison, "precision", None) or tolerance.DEFAULT_PRECISION)
    except ReproError as exc:
        out.append(f"No standalone script: {exc}.")
    else:
        if len(script) <= MAX_EMBED_CHARS:
            out += ["Save as `repro.py` and run `python repro.py` (NumPy and the framework only; it embeds the "
                    "exact inputs and exits 1 while the bug is present).", "",
                    "<details><summary>repro.py</summary>", "", "```python", script.rstrip(), "```", "", "</details>"]
        else:
            out.append(f"The repro script is {len(script)} characters: attach it (`conformance repro {case.id} "
                       f"--backend {spec or name} --out repro.py`).")
    return "\n".join(out) + "\n"


# ---- the report of a finding ------------------------------------------------------------

def finding_script(finding: dict[str, Any], adapter: Any, *, spec: str | None = None,
                   precision: str = tolerance.DEFAULT_PRECISION, kernel_path: str | None = None) -> str:
    """The short repro of a finding's minimal case (`scripts.make_short_script`), headed by its
    title and id; `kernel_path` defaults to this machine's (the bug report's environment)."""
    case = Case.from_dict(finding["minimal_case"])
    if kernel_path is None:
        kernel_path = environment(adapter).get("Kernel path", "")
    return make_short_script(case, adapter, spec=spec, precision=precision, kernel_path=kernel_path,
                             header=f"{finding['title']}\nconv-conformance finding {finding['id']}, case {case.id}")


def finding_report(finding: dict[str, Any], adapter: Any, *, spec: str | None = None,
                   precision: str = tolerance.DEFAULT_PRECISION) -> str:
    """A Markdown issue body for one finding, at most about 80 lines (module docstring)."""
    case = Case.from_dict(finding["minimal_case"])
    name = str(getattr(adapter, "name", finding["backend"]))
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
    env = environment(adapter)
    out += ["", "### Environment", "", "| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in env.items()]
    out += ["", f"### Minimal case `{case.id}`", ""]
    out += ["- " + "; ".join(f"{k} {v}" for k, v in _parameters(case))]
    try:
        script = finding_script(finding, adapter, spec=spec, precision=precision,
                                kernel_path=env.get("Kernel path", ""))
    except (ShortReproError, ValueError) as exc:
        script = None
        out += ["", f"No short script: {exc} (`conformance repro {case.id} --backend {name}` writes the full one)."]
    if script:
        out += ["", "### Reproduce", "", "NumPy and the framework only; `python repro.py` prints the versions, the "
                "framework's warnings, expected vs received, and exits 1 while the bug is present "
                "(the suite's own judging rule, embedded):", "", "```python", script.rstrip(), "```"]
    outcome = run_case(case, adapter, precision=precision)
    out += ["", "### Observed here", "", f"`{outcome.status}`" + (f" ({outcome.kind})" if outcome.kind else "")
            + f": {outcome.message.splitlines()[0] if outcome.message else ''}"]
    if outcome.status != "diverge":
        out.append("(The minimal case does not diverge here: the bug may be fixed in this version.)")
    return "\n".join(out) + "\n"
