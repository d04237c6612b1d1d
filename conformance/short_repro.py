"""The short repro of a finding: the ten-line script a maintainer pastes into an issue.

`make_short_script(case, adapter)` writes a script that needs only NumPy and the framework:
1. the case's own inputs (`make_inputs(case)`, the arrays the suite judged) as literals:
   with the `small_integers` profile they are small integers, so the expected numbers are
   obvious;
2. the framework call, exactly `adapter.repro_code(case)` (what the built-ins run), or for
   an adapter without it, the full repro's loader (`repro._framework_code`);
3. the expected output by a few-line NumPy loop over the output elements (the formula of
   DESIGN.md, in float64), with the magnitude sum |x| |w| of each element;
4. one print of expected vs observed (the worst element, or the shapes, or "an error"),
   and exit status 1 while the bug is present, 0 otherwise.

The check is the suite's element rule written out: |y - ref| <= T (U mag + FLOOR) with
the case's threshold T (0 for exact profiles such as small integers), NaN and Inf
exactly, the dtype exactly; where a padded zero meets an infinite tap (special profile)
either answer is accepted; a result beyond the dtype's range may be the infinity of its
sign (overflow profile). The full repro script (`conformance.repro.make_script`) stays
the complete account; this one trades its figures for brevity.

`finding_report(finding, adapter)` is the bug report of one finding (`conformance repro
--finding ID --backend B --report issue.md`): title, predicate and confirmation, the short
repro, observed vs expected here, the cases it covers, and the full per-case report
collapsed below.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np

from . import tolerance
from .dtypes import fmt
from .spec import Case

#: Inputs with more elements than this (x, filters and bias together) get no short script.
MAX_ELEMENTS = 4096

_DTYPES = {"float32": "np.float32", "float16": "np.float16", "float64": "np.float64", "bfloat16": "ml_dtypes.bfloat16"}


#: The lines around the framework call of a valid case's script (see `exit_code_for`).
CALL_BEGIN = "# ---- the framework call ----\n"
CALL_END = "# ---- end of the framework call ----\n"


_EXEC_LOCK = threading.Lock()


def exit_code_for(script: str, y: Any) -> int | None:
    """The exit status `script` gives when the framework returns `y`: the script run here
    with its framework call replaced by `y` (no framework is imported). None for a script
    without the markers (an invalid case's, which exits 1 whenever the call returns)."""
    if CALL_BEGIN not in script or CALL_END not in script:
        return None
    head, rest = script.split(CALL_BEGIN, 1)
    tail = rest.split(CALL_END, 1)[1]
    ns: dict[str, Any] = {"__name__": "__short_repro__", "_y_given": y}
    import contextlib
    import io

    try:
        with _EXEC_LOCK, contextlib.redirect_stdout(io.StringIO()):  # sys.stdout is global: one at a time
            exec(compile(head + "y = _y_given\n" + tail, "<short repro>", "exec"), ns)  # noqa: S102 (our script)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


class ShortReproError(ValueError):
    """No short script for this case (inputs too large to write out)."""


def _number(v: float) -> str:
    if math.isnan(v):
        return "np.nan"
    if math.isinf(v):
        return "np.inf" if v > 0 else "-np.inf"
    if v == 0 and math.copysign(1.0, v) < 0:
        return "-0.0"
    return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)


def _literal(name: str, arr: np.ndarray | None, dtype: str, comment: str) -> str:
    if arr is None:
        return f"{name} = None\n"
    flat = np.asarray(arr, dtype=np.float64).ravel()
    values = ", ".join(_number(float(v)) for v in flat)
    return f"{name} = np.array([{values}], dtype={_DTYPES[dtype]}).reshape{tuple(arr.shape)}  # {comment}\n"


def make_short_script(case: Case, adapter: Any, *, spec: str | None = None, header: str = "") -> str:
    """The short script for `case` on `adapter` (module docstring); `header` goes first as comments."""
    from .inputs import make_inputs
    from .repro import _framework_code

    x, filters, bias = make_inputs(case)
    size = x.size + filters.size + (0 if bias is None else bias.size)
    if size > MAX_ELEMENTS:
        raise ShortReproError(f"case {case.id}: {size} input elements, expected at most {MAX_ELEMENTS} "
                              f"for a short repro")
    out = [f"# {line}\n" for line in header.splitlines()]
    out.append("import sys\n\nimport numpy as np\n")
    if case.dtype == "bfloat16":
        out.append("import ml_dtypes\n")
    out.append("\n")
    fshape = "(kh, kw, C/groups, O)" if case.op == "conv2d" else "(kh, kw, C, M)"
    out += [_literal("x", x, case.dtype, "(N, H, W, C)"), _literal("filters", filters, case.dtype, fshape),
            _literal("bias", bias, case.dtype, "(O,)")]
    code = _framework_code(case, adapter, spec).rstrip("\n") + "\n"
    if not case.is_valid:
        body = "".join("    " + line + "\n" if line.strip() else "\n" for line in code.splitlines())
        out.append(f"try:\n{body}except Exception as exc:\n"
                   f"    print(f'expected an error, observed an error: {{type(exc).__name__}}: {{exc}}')\n"
                   f"    sys.exit(0)\n")
        out.append(f"print(f'expected an error ({case.invalid_reason}), observed an output of shape "
                   f"{{np.shape(y)}}')\nsys.exit(1)\n")
        return "".join(out)
    out += [CALL_BEGIN, code, CALL_END]
    g = case.geometry
    (kh, kw), (sh, sw), (dh, dw) = case.kernel, case.strides, case.dilations
    rows, cols = f"i * {sh}:i * {sh} + {(kh - 1) * dh + 1}:{dh}", f"j * {sw}:j * {sw} + {(kw - 1) * dw + 1}:{dw}"
    if case.op == "conv2d":
        cg, og = case.filter_in_channels, case.out_channels // case.groups
        chan = f"o // {og} * {cg}:(o // {og} + 1) * {cg}" if case.groups > 1 else ":"
        tap = f"xp[n, {rows}, {cols}, {chan}] * w[..., o]"
    else:
        m = case.channel_multiplier
        tap = f"xp[n, {rows}, {cols}, o // {m}] * w[:, :, o // {m}, o % {m}]"
    b = " + b[o]" if case.bias else ""
    ab = " + abs(b[o])" if case.bias else ""
    special = case.profile == "special"
    out.append(f"\n# expected: the convolution formula, element by element, in float64\n"
               f"xp = np.pad(x.astype(np.float64), ((0, 0), {g.pads[0]}, {g.pads[1]}, (0, 0)))\n"
               f"w = filters.astype(np.float64)\n" + ("b = bias.astype(np.float64)\n" if case.bias else "")
               + f"ref, mag = np.zeros({tuple(case.output_shape)}), np.zeros({tuple(case.output_shape)})\n")
    if special:  # a padded zero times an infinite tap: 0 (taps outside skipped) or NaN are both right
        out.append(f"inside = np.pad(np.ones(x.shape[1:3]), ({g.pads[0]}, {g.pads[1]}))\nalt = np.zeros_like(ref)\n")
    out.append("with np.errstate(invalid='ignore', over='ignore'):\n"
               "    for n, i, j, o in np.ndindex(*ref.shape):\n"
               f"        t = {tap}\n"
               f"        ref[n, i, j, o], mag[n, i, j, o] = t.sum(){b}, np.abs(t).sum(){ab}\n")
    if special:
        keep = f"inside[{rows}, {cols}]"
        out.append(f"        k = {keep}.reshape({keep}.shape + (1,) * (t.ndim - 2))\n"
                   f"        alt[n, i, j, o] = np.where(k > 0, t, 0).sum(){b}\n")
    f = fmt(case.dtype)
    out.append(f"T, U, FLOOR = {tolerance.threshold(case)!r}, {f.unit_roundoff!r}, "
               f"{tolerance.underflow_floor(case)!r}  # allowed error: T * (U * mag + FLOOR)\n"
               "y = np.asarray(y)\n"
               "if y.shape != ref.shape or y.dtype != x.dtype:\n"
               "    print(f'expected shape {ref.shape} dtype {x.dtype}, observed shape {y.shape} dtype {y.dtype}')\n"
               "    sys.exit(1)\n"
               "y64 = y.astype(np.float64)\n"
               "with np.errstate(invalid='ignore'):\n"
               "    close = lambda r: (y64 == r) | (np.isnan(y64) & np.isnan(r)) | (np.abs(y64 - r) <= T * (U * mag + FLOOR))\n"
               "    ok = close(ref)" + (" | close(alt)" if special else "") + "\n")
    if case.profile == "overflow":
        out.append(f"    ok |= np.isinf(y64) & (np.sign(y64) == np.sign(ref)) & "
                   f"(np.abs(ref) + T * U * mag >= {f.max_finite!r})\n")
    out.append("i = np.unravel_index(np.argmin(ok), ok.shape)\n"
               "print(f'expected {float(ref[i])!r}, observed {float(y64[i])!r} at (n, h, w, c) = {tuple(map(int, i))}; '\n"
               "      f'{ok.size - int(ok.sum())} of {ok.size} elements wrong')\n"
               "sys.exit(0 if ok.all() else 1)\n")
    return "".join(out)


# ---- one bug report per finding ---------------------------------------------------------

def _confirmation_text(conf: dict[str, Any]) -> str:
    inside = [r for r in conf.get("inside") or [] if r.get("as_expected") is not None]
    near = [r for r in conf.get("near_misses") or [] if r.get("as_expected") is not None]
    status = conf.get("status", "not_run")
    if status in ("not_run", "skipped"):
        return f"Not confirmed actively ({conf.get('reason') or 'not run'})."
    ok_in = sum(1 for r in inside if r.get("as_expected"))
    ok_near = sum(1 for r in near if r.get("as_expected"))
    return (f"**{status}**: {ok_in} of {len(inside)} new cases inside the predicate diverge the same way, "
            f"{ok_near} of {len(near)} near misses just outside it (one condition flipped) do not.")


def finding_report(finding: dict[str, Any], adapter: Any, *, spec: str | None = None) -> str:
    """A Markdown issue body for one finding (see the module docstring)."""
    from .inprocess import run_case
    from .repro import bug_report, environment

    sr = finding.get("short_repro") or {}
    case = Case.from_dict(sr.get("case") or finding["minimal_case"])
    name = str(getattr(adapter, "name", finding["backend"]))
    out = [f"## {name}: {finding['title']}", ""]
    hyp = finding.get("hypothesis")
    out += [f"{finding['count']} case(s) of a conv-conformance run diverge this way (kind `{finding['kind']}`"
            + (f", diagnosis `{hyp}`" if hyp else "") + "). What they have in common, and no passing case has:", "",
            f"    {finding['predicate']}", "", _confirmation_text(finding.get("confirmation") or {}), "",
            "### Environment", "", "| | |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in environment(adapter).items()]
    header = f"{finding['title']}\nconv-conformance finding {finding['id']}, case {case.id}"
    try:
        script = make_short_script(case, adapter, spec=spec, header=header)
    except (ShortReproError, ValueError) as exc:
        script = None
        out += ["", f"No short script: {exc}."]
    outcome = run_case(case, adapter)
    if script:
        out += ["", "### Reproduce", "", "NumPy and the framework only; `python repro.py` prints expected vs "
                "observed and exits 1 while the bug is present:", "", "```python", script.rstrip(), "```"]
    out += ["", "### Observed here", "", f"Case `{case.id}`: {outcome.status}"
            + (f" ({outcome.kind})" if outcome.kind else "") + f": {outcome.message}"]
    if outcome.status != "diverge":
        out.append("(The finding's case does not diverge here: the bug may be fixed in this version.)")
    shown = finding["cases"][:20]
    out += ["", f"### Cases covered ({finding['count']})", ""] + [f"- `{c}`" for c in shown]
    if finding["count"] > len(shown):
        out.append(f"- ... and {finding['count'] - len(shown)} more (results.json)")
    full = bug_report(case, adapter, outcome.comparison, outcome.diagnosis, outcome=outcome, spec=spec)
    out += ["", "<details><summary>Full report of the case, with the complete repro script</summary>", "",
            full.rstrip(), "", "</details>"]
    return "\n".join(out) + "\n"


def run_finding(args: Any) -> int:
    """`conformance repro --finding ID --backend B [--report FILE] [--out FILE] [--results RESULTS_JSON]`."""
    import sys
    from pathlib import Path

    from .findings import items
    from .repro import load_backend
    from .results import ResultsError, load as load_results

    try:
        run = load_results(args.results)
    except ResultsError as exc:
        print(f"conformance repro: --results: {exc}", file=sys.stderr)
        return 2
    adapter = load_backend(args.backend)
    if adapter is None:
        return 2
    found = [f for f in items(run) if f["id"] == args.finding]
    if not found:
        ids = ", ".join(f"{f['id']} ({f['backend']})" for f in items(run)[:8]) or "none"
        print(f"conformance repro: --finding: expected a finding id of {args.results}, received "
              f"{args.finding!r} (findings: {ids})", file=sys.stderr)
        return 2
    finding = found[0]
    if args.report:
        Path(args.report).write_text(finding_report(finding, adapter, spec=args.backend), encoding="utf-8")
        print(f"wrote {args.report}", file=sys.stderr)
    case = Case.from_dict((finding.get("short_repro") or {}).get("case") or finding["minimal_case"])
    try:
        script = make_short_script(case, adapter, spec=args.backend,
                                   header=f"{finding['title']}\nconv-conformance finding {finding['id']}, case {case.id}")
    except ShortReproError as exc:
        print(f"conformance repro: {exc}", file=sys.stderr)
        return 2
    if args.out:
        Path(args.out).write_text(script, encoding="utf-8")
        print(f"wrote {args.out}: python {args.out} exits 1 while finding {finding['id']} is present", file=sys.stderr)
    elif not args.report:
        sys.stdout.write(script)
    return 0
