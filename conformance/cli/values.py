"""Option values of the `conformance` command, parsed as argparse `type=` functions.

Invariants
- A value that does not parse raises `argparse.ArgumentTypeError` with "expected ...,
  received '...'" (plus a did-you-mean hint for a choice); the command's parser puts
  the option's name in front (`--seed: expected an integer, received 'x'`), so every
  bad value is reported the same way, on one line, with exit 2.
- Use these instead of `type=int`/`float` or a bare `choices=`, whose messages argparse
  words its own way ("invalid int value"); a test walks the parser to keep it so.
"""

from __future__ import annotations

import argparse
from typing import Callable, Sequence

from ..usage import did_you_mean


def integer(text: str) -> int:
    """Any whole number (a seed, a budget)."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, received {text!r}") from None


def positive_integer(text: str) -> int:
    """A whole number >= 1 (a count of examples, a size)."""
    value = integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, received {text!r}")
    return value


def positive_seconds(text: str) -> float:
    """A duration in seconds, > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, received {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, received {text!r}")
    return value


def one_of(choices: Sequence[str]) -> Callable[[str], str]:
    """A parser of one of `choices` (give `choices=` too, for the help's {a,b,c})."""
    def parse(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(f"expected one of {', '.join(choices)}, received {text!r}"
                                             f"{did_you_mean(text, choices)}")
        return text

    parse.__name__ = "choice"
    return parse
