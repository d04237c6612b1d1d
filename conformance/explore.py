"""`conformance explore`: search for divergences with hypothesis, keep each as a regression.

    conformance explore --backend torch [--max-examples 200] [--seed 0] [--dtype float16]
                        [--op conv2d] [--max-found 5] [--out-dir DIR] [--no-minimise]

Hypothesis draws cases (`conformance.cases.strategies.cases`: valid ones and about one in
four invalid), runs the backend on each *in this process* (a backend that crashes takes
explore with it; `conformance run` isolates backends in workers), and shrinks the first
divergence to a minimal case; `conformance.minimise` then tries the suite's own
simplifications for the same divergence. The search repeats, ignoring divergences
already found, until `--max-found` distinct ones (distinct status, kind and diagnosis) or
no more are found within `--max-examples`.

Each minimal case is written to `<out-dir>/<backend>-<case id>.yaml` in the catalogue's
case-file format with `found_by: {backend, backend_version, device, date, kind, message,
...}`; the default out-dir is ./explore-regressions in the working directory (never the
installed package). `conformance run --cases FILE` runs a written case; moved into a
checkout's cases/regressions/, it is part of every later run. A case whose id is already
in the catalogue, the regressions or the out-dir is not written again (the catalogue
refuses duplicate ids).

Invariants
- Deterministic: the same backend, options and `--seed` explore the same cases in the
  same order (hypothesis runs from `random.Random(seed + round)`, no example database).
- Exit status: 0 nothing found, 1 divergences found, 2 bad usage.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import random
import re
import sys
from pathlib import Path
from typing import Any

from .inprocess import Outcome, judge
from .tolerance import DEFAULT_PRECISION, PRECISIONS
from .spec import DTYPES, OPS, Case

FAILING = ("diverge", "error")


def _strategy(ops, dtypes, max_spatial: int):
    from .cases.strategies import cases

    return cases(ops=tuple(ops), dtypes=tuple(dtypes), max_spatial=max_spatial)


def search(adapter: Any, *, max_examples: int = 200, seed: int = 0, ops=OPS, dtypes=DTYPES,
           max_found: int = 5, max_spatial: int = 8, minimise_s: float = 30.0,
           precision: str = "strict") -> list[tuple[Case, Outcome]]:
    """Up to `max_found` minimal divergent cases with distinct signatures, in the order found."""
    from hypothesis import HealthCheck, Phase, find, settings
    from hypothesis.errors import NoSuchExample

    strategy = _strategy(ops, dtypes, max_spatial)
    conf = settings(max_examples=max_examples, deadline=None, database=None, phases=(Phase.generate, Phase.shrink),
                    suppress_health_check=list(HealthCheck))
    seen: set[tuple] = set()
    results: list[tuple[Case, Outcome]] = []
    for round_ in range(max_found):
        def new_divergence(case: Case) -> bool:
            outcome = judge(case, adapter, precision=precision)
            return outcome.status in FAILING and outcome.signature not in seen

        try:
            case = find(strategy, new_divergence, settings=conf, random=random.Random(seed + round_))
        except NoSuchExample:
            break
        outcome = judge(case, adapter, precision=precision)
        if minimise_s > 0:
            from .minimise import minimise

            signature = outcome.signature
            case = minimise(case, lambda c: judge(c, adapter, precision=precision).signature == signature, time_limit=minimise_s)
            outcome = judge(case, adapter, precision=precision)
        seen.add(outcome.signature)
        results.append((case, outcome))
    return results


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]+", "_", text).strip("_") or "backend"


def found_by(adapter: Any, outcome: Outcome, *, spec: str, seed: int) -> dict[str, Any]:
    from . import __version__

    diag = outcome.diagnosis or {}
    return {"backend": str(adapter.name), "spec": spec, "backend_version": str(adapter.version()),
            "device": str(adapter.device()), "date": datetime.date.today().isoformat(),
            "kind": outcome.kind or outcome.status, "message": _one_line(outcome.message),
            "diagnosis": diag.get("hypothesis"), "tool": f"conv-conformance {__version__} explore --seed {seed}"}


def write_regression(case: Case, adapter: Any, outcome: Outcome, out_dir: Path, *, spec: str,
                     seed: int) -> tuple[Path | None, str]:
    """Write the case file; (path, note). Not written when the case id is already catalogued."""
    from .cases.catalogue import dump_cases, load_catalogue_entries, load_entries

    known = {e.case.id: f"{e.path}: every run includes it" for e in load_catalogue_entries()}
    for path in sorted(out_dir.glob("*.yaml")) if out_dir.is_dir() else []:
        known.update({e.case.id: str(e.path) for e in load_entries(path)})
    if case.id in known:
        return None, f"already in {known[case.id]}"
    meta = found_by(adapter, outcome, spec=spec, seed=seed)
    reason = _one_line(f"{meta['backend']} {meta['backend_version']}: {meta['kind']}"
                       + (f" ({meta['diagnosis']})" if meta["diagnosis"] else "") + f": {outcome.message}")
    entry = dataclasses.replace(case, name=case.id, reason=reason)
    text = dump_cases([entry], description=f"found by conformance explore on {meta['backend']}", found_by=meta)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{_safe(meta['backend'])}-{case.id}.yaml"
    path.write_text(text, encoding="utf-8")
    return path, "written"


#: Where explore writes its case files unless told: the working directory, never the package.
DEFAULT_OUT_DIR = Path("explore-regressions")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", required=True, metavar="SPEC",
                        help="built-in name, entry-point name, module:Class or path/to/file.py:Class")
    parser.add_argument("--max-examples", type=int, default=200, metavar="N",
                        help="cases hypothesis may try per search round (default 200)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="the same seed explores the same cases")
    parser.add_argument("--precision", choices=PRECISIONS, default=DEFAULT_PRECISION,
                        help=f"precision contract of the verdict (default {DEFAULT_PRECISION}; README: tolerance)")
    parser.add_argument("--dtype", action="append", choices=DTYPES, default=None, help="restrict dtypes (repeatable)")
    parser.add_argument("--op", action="append", choices=OPS, default=None, help="restrict ops (repeatable)")
    parser.add_argument("--max-found", type=int, default=5, metavar="K",
                        help="stop after K distinct divergences (default 5)")
    parser.add_argument("--max-spatial", type=int, default=8, metavar="N", help="largest output height/width drawn")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR, metavar="DIR",
                        help=f"where case files go (default: ./{DEFAULT_OUT_DIR} in the working directory; "
                             f"`conformance run --cases FILE` runs one, and in a checkout cases/regressions/ "
                             f"makes every run load them)")
    parser.add_argument("--no-minimise", dest="minimise", action="store_false",
                        help="keep hypothesis's shrunk case as is")


def run(args: argparse.Namespace) -> int:
    from .adapters.registry import load

    if args.max_examples < 1 or args.max_found < 1 or args.max_spatial < 1:
        print("conformance explore: expected --max-examples, --max-found and --max-spatial >= 1, received "
              f"{args.max_examples}, {args.max_found}, {args.max_spatial}", file=sys.stderr)
        return 2
    try:
        adapter = load(args.backend)
    except ValueError as exc:
        print(f"conformance explore: --backend: {exc}", file=sys.stderr)
        return 2
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
              + f": {_one_line(outcome.message, 160)}")
        print(f"  -> {path if path else note}")
    print(f"{len(results)} divergence(s) found")
    return 1
