"""The `conformance` command: run, backends, cases, merge, repro, explore, report.

Exit codes (every subcommand, `conformance.usage`): 0 nothing unexpected; 1 an unexpected
divergence, error, crash or timeout (a backend that crashes or hangs is not conformant),
or with --strict-expected a known divergence that is now fixed; 2 bad usage or bad input
(one line on stderr, no traceback), including a --backend/--adapter that cannot be
loaded; 130 interrupted (what was done is written).

Each subcommand is a module of this package exposing `add_arguments(parser)` and
`run(args, stream) -> int`; only the one in use is imported (`explore` needs hypothesis,
`report` Jinja2, and none of them a framework).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from typing import Sequence, TextIO

from ..usage import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UsageError

#: name -> (help, description or None), in the order `conformance --help` lists them.
SUBCOMMANDS = {
    "run": ("run the case set on the backends and write results and reports",
            "Run every selected case on every backend, each backend in its own worker process."),
    "backends": ("list every backend, with version and device, and why one is unavailable", None),
    "cases": ("list the case ids of a selector", None),
    "merge": ("combine shard results.json files into one run", None),
    "repro": ("reproduce one case on one backend in this process, with a bug-report script", None),
    "explore": ("search for divergences with hypothesis-generated cases", None),
    "report": ("render the HTML reports of a saved results.json", None),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line and exit 2, like every other bad input
        raise UsageError(f"{self.prog}: {message}")


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    parser = _Parser(prog="conformance", description="Conformance suite for 2-D convolution backends.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, (help_text, description) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, **({"description": description} if description else {}))
        if argv and argv[0] == name:  # only the subcommand in use imports its module
            _module(name).add_arguments(p)
    return parser


def _module(name: str):
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ImportError as exc:
        raise UsageError(f"conformance {name}: not available ({exc})") from None


def main(argv: Sequence[str] | None = None, stream: TextIO | None = None) -> int:
    """Entry point; returns (and, as a script, exits with) the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    stream = stream or sys.stderr
    with warnings.catch_warnings():
        # A warning (e.g. a --budget too small for the covering array) is one plain line,
        # not Python's file:line and source line.
        warnings.showwarning = lambda message, *_a, **_k: stream.write(f"warning: {message}\n")
        return _main(argv, stream)


def _main(argv: list[str], stream: TextIO) -> int:
    try:
        args = build_parser(argv).parse_args(argv)
        args.argv = list(argv)
        return int(_module(args.command).run(args, stream))
    except UsageError as exc:
        stream.write(f"error: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        stream.write("interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `conformance cases | head`
        return EXIT_OK
