"""`conformance repro`: a case's repro script (and bug report), or a finding's.

    conformance repro CASE --backend B [--out FILE] [--precision P] [--report FILE]
    conformance repro --finding ID --backend B [--results RESULTS_JSON] [--out FILE] [--report FILE]

The scripts come from `conformance.scripts`, the reports from `conformance.bug_reports`;
a case run here for `--out`'s message or `--report` is judged in this process
(`inprocess.run_case`). Exit status: 0 written; 2 an unknown case, finding or backend,
or a case too large for a script (a UsageError naming the argument or option at fault).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from .. import tolerance
from ..bug_reports import bug_report, finding_report, finding_script
from ..inprocess import run_case
from ..scripts import ReproError, ShortReproError, make_script
from ..spec import Case
from ..usage import UsageError
from .backend_specs import load_adapter
from .values import one_of


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("case", metavar="CASE", nargs="?",
                        help="a case id (of the default/full set or the catalogue) or a YAML case file with one case")
    parser.add_argument("--finding", metavar="ID",
                        help="instead of CASE: a finding of a run (its id); --report writes its bug report, "
                             "--out its short repro script")
    parser.add_argument("--results", metavar="RESULTS_JSON", default="reports/results.json",
                        help="the run whose finding --finding names (default reports/results.json)")
    parser.add_argument("--backend", required=True, metavar="SPEC",
                        help="built-in name, entry-point name, module:Class or path/to/file.py:Class")
    parser.add_argument("--out", metavar="FILE", help="write the script here (default: stdout)")
    parser.add_argument("--precision", type=one_of(tolerance.PRECISIONS), choices=tolerance.PRECISIONS,
                        default=tolerance.DEFAULT_PRECISION,
                        help=f"precision contract the script judges under (default {tolerance.DEFAULT_PRECISION})")
    parser.add_argument("--report", metavar="FILE",
                        help="also run the case here (in this process) and write a Markdown bug report")


def resolve_case(selector: str) -> Case:
    """The one case `selector` names (an id or a one-case file). UsageError naming CASE otherwise."""
    from ..run.selection import select_cases

    cases = select_cases(selector, option="CASE")
    if len(cases) > 1:
        ids = ", ".join(c.id for c in cases[:5]) + (", ..." if len(cases) > 5 else "")
        raise UsageError(f"CASE: expected one case, received {selector!r}, which matches {len(cases)} ({ids})")
    return cases[0]


def written_message(path: str, case_id: str, backend: str, outcome) -> str:
    """What `python PATH` will do, from this process's verdict on the case (inprocess.CaseOutcome)."""
    if outcome.status == "diverge":
        return f"python {path} exits 1 while {case_id} diverges on {backend} ({outcome.kind}, as here)"
    if outcome.status == "pass":
        return (f"{case_id} passes on {backend} here, so python {path} exits 0; it exits 1 where the case "
                f"diverges (another version, device or machine)")
    if outcome.status == "unsupported":
        return f"{case_id} is unsupported on {backend} here ({outcome.message}); the script may not run"
    return f"{case_id} raises on {backend} here, so python {path} fails with that exception ({outcome.message})"


def run(args: argparse.Namespace, stream: TextIO | None = None) -> int:
    """0: script (and report) written; 2: unknown case or backend, or a case too large to inline."""
    if args.finding:
        return run_finding(args)
    if not args.case:
        raise UsageError("CASE: expected a case id or a case file (or --finding ID), received neither")
    case = resolve_case(args.case)
    adapter = load_adapter(args.backend)
    try:
        script = make_script(case, adapter, spec=args.backend, precision=args.precision)
    except ReproError as exc:  # its message names the case or the adapter at fault
        raise UsageError(str(exc)) from None
    outcome = None
    if args.out or args.report:
        outcome = run_case(case, adapter, precision=args.precision)
    if args.out:
        Path(args.out).write_text(script, encoding="utf-8")
        print(f"wrote {args.out}: {written_message(args.out, case.id, adapter.name, outcome)}", file=sys.stderr)
    else:
        sys.stdout.write(script)
    if args.report:
        if outcome.status in ("pass", "unsupported"):
            print(f"note: {case.id} gives {outcome.status} on {adapter.name} here ({outcome.message})",
                  file=sys.stderr)
        Path(args.report).write_text(bug_report(case, adapter, outcome.comparison, outcome.diagnosis,
                                                outcome=outcome, spec=args.backend), encoding="utf-8")
        print(f"wrote {args.report}", file=sys.stderr)
    return 0


def run_finding(args: Any) -> int:
    """`conformance repro --finding ID --backend B [--report FILE] [--out FILE] [--results RESULTS_JSON]`."""
    from ..findings import items
    from ..results import ResultsError, load as load_results

    try:
        run = load_results(args.results)
    except ResultsError as exc:
        raise UsageError(f"--results: {exc}") from None
    adapter = load_adapter(args.backend)
    found = [f for f in items(run) if f["id"] == args.finding]
    if not found:
        ids = ", ".join(f"{f['id']} ({f['backend']})" for f in items(run)[:8]) or "none"
        raise UsageError(f"--finding: expected a finding id of {args.results}, received {args.finding!r} "
                         f"(findings: {ids})")
    finding = found[0]
    if args.report:
        Path(args.report).write_text(finding_report(finding, adapter, spec=args.backend, precision=args.precision),
                                     encoding="utf-8")
        print(f"wrote {args.report}", file=sys.stderr)
    try:
        script = finding_script(finding, adapter, spec=args.backend, precision=args.precision)
    except ShortReproError as exc:  # its message names the case
        raise UsageError(str(exc)) from None
    if args.out:
        Path(args.out).write_text(script, encoding="utf-8")
        print(f"wrote {args.out}: python {args.out} exits 1 while finding {finding['id']} is present", file=sys.stderr)
    elif not args.report:
        sys.stdout.write(script)
    return 0
