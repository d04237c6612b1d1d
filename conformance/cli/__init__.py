"""The `conformance` command: run, backends, cases, merge, repro, explore, report.

Exit codes (every subcommand, `conformance.usage`): 0 nothing unexpected; 1 an unexpected
divergence, error, crash or timeout (a backend that crashes or hangs is not conformant),
or with --strict-expected a known divergence that is now fixed; 2 bad usage or bad input
(one line on stderr, no traceback), including a --backend/--adapter that cannot be
loaded; 130 interrupted (what was done is written).

Each subcommand is a module of this package exposing `add_arguments(parser)` and
`run(args, stream) -> int`; only the one in use is imported (`explore` needs hypothesis,
`report` Jinja2, and none of them a framework).

Invariants
- Every usage error, argparse's own included, is one line "error: OPTION: expected ...,
  received ..." naming the option, argument or COMMAND at fault (argparse's wording is
  replaced here, the values' in `values`), with a did-you-mean hint for a misspelled
  subcommand, option or choice; a subcommand reports its own by raising UsageError.
- Every option and argument has a help text (a test walks the parsers).
"""

from __future__ import annotations

import argparse
import importlib
import platform
import re
import sys
import warnings
from typing import Sequence, TextIO

from .. import __version__
from ..usage import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UsageError, did_you_mean

#: name -> (help, description or None), in the order `conformance --help` lists them.
SUBCOMMANDS = {
    "run": ("run the case set on the backends and write results and reports",
            "Run every selected case on every backend, each backend in its own worker process."),
    "backends": ("list every backend, with version and device, and why one is unavailable", None),
    "cases": ("list the case ids of a selector", None),
    "merge": ("combine shard results.json files into one run", None),
    "repro": ("write a case's standalone repro script (and bug report), then judge the case on the backend", None),
    "explore": ("search for divergences with hypothesis-generated cases", None),
    "report": ("render the HTML reports of a saved results.json", None),
}


def version_text() -> str:
    """What `conformance --version` prints: this package's version, and Python's and NumPy's."""
    import numpy

    return f"conformance {__version__} (Python {platform.python_version()}, NumPy {numpy.__version__})"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line and exit 2, like every other bad input
        raise UsageError(_usage_message(message))


def _usage_message(message: str) -> str:
    """argparse's error `message` in this command's words: "OPTION: expected ..., received ..."."""
    m = re.fullmatch(r"argument (\S+?)(?:/\S+)?: (.*)", message, re.S)
    if m:
        option, said = m.groups()
        if said in ("expected one argument", "expected at least one argument"):
            return f"{option}: expected a value, received none"
        ignored = re.fullmatch(r"ignored explicit argument (.*)", said)
        if ignored:
            return f"{option}: expected no value, received {ignored.group(1)}"
        return f"{option}: {said}"
    m = re.fullmatch(r"the following arguments are required: (.*)", message)
    if m and m.group(1) == "COMMAND":
        return _no_such_command(None)
    if m:
        return f"{m.group(1)}: expected {'a value' if ',' not in m.group(1) else 'values'}, received none"
    m = re.fullmatch(r"ambiguous option: (\S+?)(?:=\S*)? could match (.*)", message)
    if m:
        return f"{m.group(1)}: expected one option, received an abbreviation of several ({m.group(2)})"
    return message


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The `conformance` parser; only the subcommand `argv[0]` gets its options (and imports its module)."""
    parser = _Parser(prog="conformance", description="Conformance suite for 2-D convolution backends.")
    parser.add_argument("--version", action="version", version=version_text(),
                        help="print the version of conformance, Python and NumPy, and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, (help_text, description) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, **({"description": description} if description else {}))
        if argv and argv[0] == name:
            _module(name).add_arguments(p)
    return parser


def subcommand_parser(name: str, parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The parser of `conformance NAME` (within `parser`, built for it), with its options."""
    parser = parser or build_parser([name])
    return next(a for a in parser._actions if a.dest == "command").choices[name]


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


def _no_such_command(word: str | None) -> str:
    return (f"COMMAND: expected one of {', '.join(SUBCOMMANDS)}, received "
            + (f"{word!r}{did_you_mean(word, SUBCOMMANDS)}" if word is not None else "none"))


def _parse(argv: list[str]) -> argparse.Namespace:
    if not argv or (not argv[0].startswith("-") and argv[0] not in SUBCOMMANDS):
        raise UsageError(_no_such_command(argv[0] if argv else None))
    parser = build_parser(argv)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        prog = f"conformance {args.command}"
        options = [o for a in subcommand_parser(args.command, parser)._actions for o in a.option_strings]
        first = next((u for u in unknown if u.startswith("-")), unknown[0])
        hint = did_you_mean(first.split("=")[0], options) if first.startswith("-") else ""
        raise UsageError(f"{prog}: expected its options (see {prog} --help), received unknown "
                         f"{' '.join(unknown)!r}{hint}")
    args.argv = list(argv)
    return args


def _main(argv: list[str], stream: TextIO) -> int:
    try:
        try:
            args = _parse(argv)
        except SystemExit as exc:  # --help and --version print, then exit 0
            return int(exc.code or 0)
        return int(_module(args.command).run(args, stream))
    except UsageError as exc:
        stream.write(f"error: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        stream.write("interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `conformance cases | head`
        return EXIT_OK
