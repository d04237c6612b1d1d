"""`conformance explore`: search a backend for divergences (`explore.search`) and keep each
as a regression case file (`explore.write_regression`).

The backend runs in its worker process with `run`'s --timeout and --max-memory
(`process.isolated`): a case on which it crashes or hangs is found as a `crash` /
`timeout`, its worker is restarted, and the search goes on.

Exit status: 0 nothing found, 1 divergences found, 2 bad usage (a UsageError naming the
option at fault).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TextIO

from ..explore import SHRINK_S, search, write_regression
from ..spec import DTYPES, OPS
from ..text import clip
from ..tolerance import DEFAULT_PRECISION, PRECISIONS
from . import limits
from .values import integer, one_of, positive_integer, positive_seconds


#: Where explore writes its case files unless told: the working directory, never the package.
DEFAULT_OUT_DIR = Path("explore-regressions")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", required=True, metavar="SPEC",
                        help="built-in name, entry-point name, module:Class or path/to/file.py:Class")
    parser.add_argument("--max-examples", type=positive_integer, default=200, metavar="N",
                        help="cases hypothesis may try per search round (default 200)")
    parser.add_argument("--seed", type=integer, default=0, metavar="S", help="the same seed explores the same cases")
    parser.add_argument("--precision", type=one_of(PRECISIONS), choices=PRECISIONS, default=DEFAULT_PRECISION,
                        help=f"precision contract of the verdict (default {DEFAULT_PRECISION}; docs/tolerance.md)")
    parser.add_argument("--dtype", action="append", type=one_of(DTYPES), choices=DTYPES, default=None,
                        help="restrict dtypes (repeatable)")
    parser.add_argument("--op", action="append", type=one_of(OPS), choices=OPS, default=None,
                        help="restrict ops (repeatable)")
    parser.add_argument("--max-found", type=positive_integer, default=5, metavar="K",
                        help="stop after K distinct divergences (default 5)")
    parser.add_argument("--max-spatial", type=positive_integer, default=8, metavar="N",
                        help="largest output height/width drawn")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR, metavar="DIR",
                        help=f"where case files go (default: ./{DEFAULT_OUT_DIR} in the working directory; "
                             f"`conformance run --cases FILE` runs one, and in a checkout cases/regressions/ "
                             f"makes every run load them)")
    parser.add_argument("--no-minimise", dest="minimise", action="store_false",
                        help="keep hypothesis's shrunk case as is")
    parser.add_argument("--shrink-budget", type=positive_seconds, default=SHRINK_S, metavar="SECONDS",
                        help="how long hypothesis may shrink each divergence found, from its first example (each "
                             f"smaller crash costs a restart of the worker, each hang a --timeout; default {SHRINK_S:g})")
    limits.add_arguments(parser)


def run(args: argparse.Namespace, stream: TextIO | None = None) -> int:
    with limits.started_backend("explore", args) as backend:
        print(f"exploring {backend.name} {backend.version} on {backend.device} in a worker process "
              f"(seed {args.seed}, up to {args.max_examples} examples per round, --timeout {args.timeout:g} s)",
              flush=True)
        results = search(backend, max_examples=args.max_examples, seed=args.seed, ops=args.op or OPS,
                         dtypes=args.dtype or DTYPES, max_found=args.max_found, max_spatial=args.max_spatial,
                         minimise_s=30.0 if args.minimise else 0.0, shrink_s=args.shrink_budget)
    if not results:
        print(f"no divergence found in {args.max_examples} examples")
        return 0
    for case, rec in results:
        path, note = write_regression(case, rec, args.out_dir, spec=args.backend, seed=args.seed)
        diag = (rec.get("diagnosis") or {}).get("hypothesis")
        print(f"FOUND {case.id}: {rec['kind'] or rec['status']}" + (f" ({diag})" if diag else "")
              + f": {clip(rec['message'], 160)}")
        print(f"  -> {path if path else note}")
    print(f"{len(results)} divergence(s) found")
    return 1
