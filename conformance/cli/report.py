"""`conformance report RESULTS.json [--out DIR]`: the HTML reports of a saved run (`report.write_reports`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TextIO

from ..report import write_reports
from ..results import ResultsError, load
from ..usage import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`conformance report RESULTS.json [--out DIR]`."""
    parser.add_argument("results", metavar="RESULTS.json", help="a results.json written by `conformance run`")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="where to write the HTML (default: the directory of RESULTS.json)")


def run(args: argparse.Namespace, stream: TextIO | None = None) -> int:
    """Render the reports of a saved run; 0 on success, a UsageError (exit 2) naming the
    argument at fault when the results file is unusable or --out cannot be written."""
    src = Path(args.results)
    try:
        data = load(src)
    except ResultsError as exc:
        raise UsageError(f"RESULTS.json: {exc}") from None
    out = Path(args.out) if args.out else src.parent
    try:
        paths = write_reports(data, out, repro_dir=src.parent)
    except OSError as exc:
        raise UsageError(f"--out: expected a directory the reports can be written to, received {str(out)!r} "
                         f"({exc.strerror or exc})") from None
    for p in paths:
        print(p)
    return 0
