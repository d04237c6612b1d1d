"""`conformance report RESULTS.json [--out DIR]`: the HTML reports of a saved run (`report.write_reports`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from ..report import write_reports
from ..results import ResultsError, load


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`conformance report RESULTS.json [--out DIR]`."""
    parser.add_argument("results", metavar="RESULTS.json", help="a results.json written by `conformance run`")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="where to write the HTML (default: the directory of RESULTS.json)")


def run(args: argparse.Namespace, stream: TextIO | None = None) -> int:
    """Render the reports of a saved run; 0 on success, 2 when the results file is unusable."""

    src = Path(args.results)
    try:
        data = load(src)
    except ResultsError as exc:
        print(f"conformance report: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else src.parent
    try:
        paths = write_reports(data, out, repro_dir=src.parent)
    except OSError as exc:
        print(f"conformance report: cannot write to {out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    for p in paths:
        print(p)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="conformance report", description="HTML reports of a results.json")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
