"""The options that bound one case on one backend, the same for `run`, `repro` and `explore`:
`--timeout` (per case and backend: past it the worker is killed and the case is a
`timeout`) and `--max-memory` (the oracle's and comparison's budget: a case estimated over
it is `unsupported`). The pytest plugin spells them `--conformance-timeout` and
`--conformance-max-memory`, with the same defaults. `started_backend` is the one backend
`repro` and `explore` run under them."""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from pathlib import Path
from typing import Iterator

from ..process.backend import DEFAULT_TIMEOUT_S
from ..process.isolated import IsolatedBackend
from ..process.memory import MAX_MEMORY_FRACTION, default_max_memory, parse_memory
from ..usage import LoadError
from .backend_specs import check_name, refused
from .values import positive_seconds


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


@contextlib.contextmanager
def started_backend(command: str, args: argparse.Namespace) -> Iterator[IsolatedBackend]:
    """The backend `--backend` names, started in its worker under --timeout, --max-memory and
    --precision, and stopped on leaving; a UsageError naming --backend when it cannot start
    (`backend_specs`: did-you-mean included). Its logs go to a temporary folder: a crash's
    log tail is in the crash's record."""
    check_name(args.backend, targets=True)
    with tempfile.TemporaryDirectory(prefix=f"conformance-{command}-") as logs:
        backend = IsolatedBackend(args.backend, Path(logs), timeout=args.timeout, max_memory=max_memory(args),
                                  precision=args.precision)
        try:
            backend.start()
            backend.ready()
        except LoadError as exc:
            backend.stop()
            raise refused("--backend", args.backend, exc.reason) from None
        try:
            yield backend
        finally:
            backend.stop()
