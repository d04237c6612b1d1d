"""`conformance backends`: every backend, with version and device, and why one is unavailable."""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from ..usage import EXIT_OK


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--deep", action="store_true", help="import each framework (in a child process) to check it")


def _why_not(info) -> str:
    """Why a backend is unavailable, or why an available one is not in the default run."""
    if info.reason:
        return info.reason
    excluded = getattr(info, "excluded", None)
    return f"not in the default run: {excluded}" if excluded else ""


def run(args: argparse.Namespace, stream: TextIO) -> int:
    """The backend table on stdout."""
    from conformance.adapters import registry

    infos = registry.discover(deep=args.deep)
    width = max(len(i.name) for i in infos) if infos else 7
    out = sys.stdout
    out.write(f"{'backend':<{width}}  {'available':<9}  {'version':<14}  {'device':<8}  default  reason\n")
    for i in infos:
        out.write(f"{i.name:<{width}}  {'yes' if i.available else 'no':<9}  {str(i.version or '-'):<14}  "
                  f"{str(i.device or '-'):<8}  {'yes' if i.default else 'no':<7}  {_why_not(i)}\n")
    return EXIT_OK
