"""`conformance repro`: a case's repro script (and bug report), or a finding's.

    conformance repro CASE --backend B [--out FILE] [--precision P] [--report FILE]
                           [--timeout SECONDS] [--max-memory SIZE]
    conformance repro --finding ID --backend B [--results RESULTS_JSON] [--out FILE] [--report FILE]

The backend runs in its worker process with `run`'s --timeout and --max-memory
(`process.isolated`), never in this one: the scripts are written by its adapter there
(`conformance.scripts`), the case is judged by its referee, the reports come from
`conformance.bug_reports`. A case's script is written (to --out or stdout) before the case
runs, so a backend that crashes or hangs on it still leaves the script behind.

Exit status of a case: its verdict, as `conformance run` would give it: 0 pass (or
unsupported), 1 diverge, error, crash or timeout; of a finding: 0 written. Either: 2 an
unknown case, finding or backend, or no script for the case (too large to inline): a
UsageError naming the argument or option at fault.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from .. import tolerance
from ..bug_reports import bug_report, finding_report, finding_script
from ..process.isolated import IsolatedBackend
from ..repeats import script_calls
from ..spec import Case
from ..usage import EXIT_FAIL, EXIT_OK, UsageError
from ..vocabulary import FAILING_STATUSES
from . import limits
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
                        help="also write a Markdown bug report of the case as the backend computed it")
    limits.add_arguments(parser)


def resolve_case(selector: str) -> Case:
    """The one case `selector` names (an id or a one-case file). UsageError naming CASE otherwise."""
    from ..run.selection import select_cases

    cases = select_cases(selector, option="CASE")
    if len(cases) > 1:
        ids = ", ".join(c.id for c in cases[:5]) + (", ..." if len(cases) > 5 else "")
        raise UsageError(f"CASE: expected one case, received {selector!r}, which matches {len(cases)} ({ids})")
    return cases[0]


def written_message(path: str, case_id: str, backend: str, rec: dict[str, Any]) -> str:
    """What `python PATH` will do, from the backend's record of the case here."""
    status, message = rec["status"], rec["message"]
    if status == "diverge":
        return f"python {path} exits 1 while {case_id} diverges on {backend} ({rec['kind']}, as here)"
    if status == "pass":
        return (f"{case_id} passes on {backend} here, so python {path} exits 0; it exits 1 where the case "
                f"diverges (another version, device or machine)")
    if status == "unsupported":
        return f"{case_id} is unsupported on {backend} here ({message}); the script may not run"
    if status == "crash":
        return f"{case_id} crashes {backend} here ({message}), so python {path} most likely crashes too"
    if status == "timeout":
        return f"{case_id} does not finish on {backend} here ({message}), so python {path} most likely hangs"
    return f"{case_id} raises on {backend} here, so python {path} fails with that exception ({message})"


def run(args: argparse.Namespace, stream: TextIO | None = None) -> int:
    """A case: its verdict's exit code (0 or 1), the script written first; a finding: 0; 2 bad
    usage (a UsageError). The case or finding is checked before the backend's worker starts."""
    if not args.finding and not args.case:
        raise UsageError("CASE: expected a case id or a case file (or --finding ID), received neither")
    target = find_finding(args) if args.finding else resolve_case(args.case)
    with limits.started_backend("repro", args) as backend:
        return run_finding(args, target, backend) if args.finding else run_case(args, target, backend)


def run_case(args: argparse.Namespace, case: Case, backend: IsolatedBackend) -> int:
    """Write the script, then run the case and say what the script will do; the verdict's exit code."""
    script, problem = backend.script(case, spec=args.backend)
    if script is None:
        raise UsageError(f"CASE: no script for {case.id}: {problem}")
    if args.out:
        Path(args.out).write_text(script, encoding="utf-8")
        print(f"wrote {args.out}; running {case.id} on {backend.name} ...", file=sys.stderr, flush=True)
    else:
        sys.stdout.write(script)
        sys.stdout.flush()
    rec = backend.record(case)
    calls = script_calls(rec["kind"], rec.get("repeat"))
    if calls > 1:  # nondeterministic: the script must call the framework as often as the record did
        script, problem = backend.script(case, spec=args.backend, calls=calls)
        if args.out and script is not None:
            Path(args.out).write_text(script, encoding="utf-8")
        elif not args.out:
            print(f"note: the script above calls the framework once; --out FILE writes one that calls it {calls} "
                  f"times, as this nondeterministic divergence needs", file=sys.stderr)
    if args.out:
        print(f"{args.out}: {written_message(args.out, case.id, backend.name, rec)}", file=sys.stderr)
    else:
        print(f"{case.id} on {backend.name}: {rec['status']}" + (f" ({rec['kind']})" if rec["kind"] else "")
              + f": {rec['message']}", file=sys.stderr)
    if args.report:
        Path(args.report).write_text(bug_report(case, rec, backend, spec=args.backend), encoding="utf-8")
        print(f"wrote {args.report}", file=sys.stderr)
    return EXIT_FAIL if rec["status"] in FAILING_STATUSES else EXIT_OK


def find_finding(args: Any) -> dict[str, Any]:
    """The finding `--finding ID` names in `--results`; a UsageError naming the option otherwise."""
    from ..findings import items
    from ..results import ResultsError, load as load_results

    try:
        run = load_results(args.results)
    except ResultsError as exc:
        raise UsageError(f"--results: {exc}") from None
    found = [f for f in items(run) if f["id"] == args.finding]
    if not found:
        ids = ", ".join(f"{f['id']} ({f['backend']})" for f in items(run)[:8]) or "none"
        raise UsageError(f"--finding: expected a finding id of {args.results}, received {args.finding!r} "
                         f"(findings: {ids})")
    return found[0]


def run_finding(args: Any, finding: dict[str, Any], backend: IsolatedBackend) -> int:
    """`conformance repro --finding ID --backend B [--report FILE] [--out FILE] [--results RESULTS_JSON]`."""
    if args.report:
        Path(args.report).write_text(finding_report(finding, backend, spec=args.backend), encoding="utf-8")
        print(f"wrote {args.report}", file=sys.stderr)
    script, problem = finding_script(finding, backend, spec=args.backend)
    if script is None:
        raise UsageError(f"--finding {finding['id']}: {problem}")
    if args.out:
        Path(args.out).write_text(script, encoding="utf-8")
        print(f"wrote {args.out}: python {args.out} exits 1 while finding {finding['id']} is present", file=sys.stderr)
    elif not args.report:
        sys.stdout.write(script)
    return EXIT_OK
