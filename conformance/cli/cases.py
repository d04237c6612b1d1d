"""`conformance cases`: the case ids a selector gives (the same selection `run --cases` makes)."""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from ..run.selection import parse_dtypes, parse_shard, select_cases
from ..usage import EXIT_OK, UsageError
from .values import integer


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("selector", nargs="?", default="default", metavar="SELECTOR",
                   help="set name (smoke, default, full, models), case file, case id or id glob; comma-separated "
                        "unions (default: default), as `run --cases` takes it")
    p.add_argument("--seed", type=integer, default=0, help="seed of generated case sets (default 0)")
    p.add_argument("--budget", type=integer, default=None,
                   help="size budget of generated case sets (default: the set's own)")
    p.add_argument("--dtype", action="append", default=None, metavar="DTYPE",
                   help="only cases of these dtypes (repeatable, or comma-separated: float16,bfloat16)")
    p.add_argument("--shard", metavar="I/N",
                   help="only shard I of N (1-based; by a hash of the case id, as `run --shard`)")
    p.add_argument("--coverage", action="store_true", help="print the sweep coverage and the size distribution of the selection")


def run(args: argparse.Namespace, stream: TextIO) -> int:
    """The case ids on stdout (and the coverage with --coverage), the count on `stream`."""
    shard = parse_shard(args.shard) if args.shard is not None else None
    args.dtype = parse_dtypes(args.dtype)
    cases = select_cases(args.selector, seed=args.seed, budget=args.budget, dtypes=args.dtype, shard=shard,
                         option="SELECTOR")
    for c in cases:
        sys.stdout.write(c.id + "\n")
    if args.coverage:
        try:
            from conformance.cases.sweep import coverage
        except ImportError as exc:
            raise UsageError(f"cases --coverage: not available ({exc})") from None
        from conformance.cases.sizes import describe_sizes
        from conformance.cases.sweep import TRAINING_OPS

        sys.stdout.write(_coverage_text(coverage(cases), "forward ops"))
        if any(c.op in TRAINING_OPS for c in cases):
            sys.stdout.write(_coverage_text(coverage(cases, TRAINING_OPS), "training ops"))
        sys.stdout.write(describe_sizes(cases))
    stream.write(f"{len(cases)} cases\n")
    return EXIT_OK


def _coverage_text(cov: dict, what: str) -> str:
    """{"cases", "t2": {...}, "t3": {...}} (conformance.cases.sweep.coverage) as a few lines."""
    lines = [f"coverage of {cov.get('cases')} valid cases of the {what}:"]
    for key, label in (("t2", "pairs"), ("t3", "triples")):
        part = cov.get(key)
        if not isinstance(part, dict):
            continue
        lines.append(f"  {label} over {', '.join(part.get('params', []))}: {part.get('covered')} of "
                     f"{part.get('total')} feasible combinations ({part.get('percent', 0):.1f}%)")
        for miss in (part.get("missing") or [])[:5]:
            lines.append(f"    missing: {miss}")
    return "\n".join(lines) + "\n"
