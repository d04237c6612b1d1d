"""Bad usage and the exit codes of the `conformance` command.

Exit codes (every subcommand): 0 nothing unexpected; 1 an unexpected divergence, error,
crash or timeout (or, with --strict-expected, a known divergence that is now fixed);
2 bad usage or bad input, including a --backend/--adapter that cannot be loaded and a
named backend on which no case ran; 130 interrupted (what was done is written).

Invariants
- A UsageError is raised for anything the user can fix by changing the command or its
  input files; the CLI prints its message on one line (no traceback) and exits 2. Its
  message says "expected ..., received ..." and names the option or field at fault.
- A misspelled name (a subcommand, backend, variant, parameter, case set, dtype, choice)
  gets the closest known one as a hint, by `did_you_mean` alone (difflib's ratio).
"""

from __future__ import annotations

import difflib
from typing import Iterable

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


#: How alike (difflib's ratio, 0..1) a known name must be to a misspelled one to be offered.
SUGGESTION_CUTOFF = 0.6


def closest(received: str, known: Iterable[str]) -> str | None:
    """The `known` name most like `received` if any is alike enough, else None."""
    close = difflib.get_close_matches(received, [k for k in known if k != received], n=1, cutoff=SUGGESTION_CUTOFF)
    return close[0] if close else None


def did_you_mean(received: str, known: Iterable[str]) -> str:
    """" (did you mean 'smoke'?)" when a `known` name is close to `received`, else ""."""
    name = closest(received, known)
    return f" (did you mean {name!r}?)" if name else ""


class UsageError(Exception):
    """Bad usage or bad input: the CLI prints the message on one line and exits 2."""


class LoadError(UsageError):
    """A backend the user named cannot be loaded; `spec` and `reason` let the CLI name the option."""

    def __init__(self, spec: str, reason: str):
        self.spec = spec
        self.reason = reason
        super().__init__(f"{spec}: {reason}")
