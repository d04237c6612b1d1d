"""The options that bound one case on one backend, the same for `run`, `repro` and `explore`:
`--timeout` (per case and backend: past it the worker is killed and the case is a
`timeout`) and `--max-memory` (the oracle's and comparison's budget: a case estimated over
it is `unsupported`). The pytest plugin spells them `--conformance-timeout` and
`--conformance-max-memory`, with the same defaults."""

from __future__ import annotations

import argparse

from ..process.backend import DEFAULT_TIMEOUT_S
from ..process.memory import MAX_MEMORY_FRACTION, default_max_memory, parse_memory


def positive_seconds(text: str) -> float:
    """argparse type: a positive number of seconds."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, received {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, received {text!r}")
    return v


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-memory", metavar="SIZE", default=None,
                   help="cases whose oracle and comparison are estimated to need more (e.g. 8G) are unsupported "
                        f"(default: {MAX_MEMORY_FRACTION * 100:.0f}%% of the memory available at the start)")
    p.add_argument("--timeout", type=positive_seconds, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                   help="per case and backend; past it the worker is killed and the case is a timeout "
                        f"(default {DEFAULT_TIMEOUT_S:g})")


def max_memory(args: argparse.Namespace) -> int | None:
    """--max-memory in bytes (UsageError naming it when malformed), or the default budget."""
    return parse_memory(args.max_memory) if args.max_memory else default_max_memory()
