"""Bad usage and the exit codes of the `conformance` command.

Exit codes (every subcommand): 0 nothing unexpected; 1 an unexpected divergence, error,
crash or timeout (or, with --strict-expected, a known divergence that is now fixed);
2 bad usage or bad input, including a --backend/--adapter that cannot be loaded and a
named backend on which no case ran; 130 interrupted (what was done is written).

Invariants
- A UsageError is raised for anything the user can fix by changing the command or its
  input files; the CLI prints its message on one line (no traceback) and exits 2. Its
  message says "expected ..., received ..." and names the option or field at fault.
"""

from __future__ import annotations

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """Bad usage or bad input: the CLI prints the message on one line and exits 2."""


class LoadError(UsageError):
    """A backend the user named cannot be loaded; `spec` and `reason` let the CLI name the option."""

    def __init__(self, spec: str, reason: str):
        self.spec = spec
        self.reason = reason
        super().__init__(f"{spec}: {reason}")
