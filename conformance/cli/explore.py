"""`conformance explore`: search a backend for divergences (`explore.search`) and keep each
as a regression case file (`explore.write_regression`).

Exit status: 0 nothing found, 1 divergences found, 2 bad usage (a UsageError naming the
option at fault).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TextIO

from ..explore import search, write_regression
from ..spec import DTYPES, OPS
from ..text import clip
from ..tolerance import DEFAULT_PRECISION, PRECISIONS
from .backend_specs import load_adapter
from .values import integer, one_of, positive_integer


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


def run(args: argparse.Namespace, stream: TextIO | None = None) -> int:
    adapter = load_adapter(args.backend)
    print(f"exploring {adapter.name} {adapter.version()} on {adapter.device()} in this process "
          f"(seed {args.seed}, up to {args.max_examples} examples per round)", flush=True)
    results = search(adapter, max_examples=args.max_examples, seed=args.seed, ops=args.op or OPS,
                     dtypes=args.dtype or DTYPES, max_found=args.max_found, max_spatial=args.max_spatial,
                     minimise_s=30.0 if args.minimise else 0.0, precision=args.precision)
    if not results:
        print(f"no divergence found in {args.max_examples} examples")
        return 0
    for case, outcome in results:
        path, note = write_regression(case, adapter, outcome, args.out_dir, spec=args.backend, seed=args.seed)
        diag = (outcome.diagnosis or {}).get("hypothesis")
        print(f"FOUND {case.id}: {outcome.kind or outcome.status}" + (f" ({diag})" if diag else "")
              + f": {clip(outcome.message, 160)}")
        print(f"  -> {path if path else note}")
    print(f"{len(results)} divergence(s) found")
    return 1
