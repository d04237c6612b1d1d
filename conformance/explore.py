"""`conformance explore`: search for divergences with hypothesis, keep each as a regression.

    conformance explore --backend torch [--max-examples 200] [--seed 0] [--dtype float16]
                        [--op conv2d] [--max-found 5] [--out-dir DIR] [--no-minimise]

(its options and exit status are `conformance.cli.explore`'s; this module is the search.)
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

import dataclasses
import datetime
import random
from pathlib import Path
from typing import Any

from .inprocess import CaseOutcome, run_case
from .spec import DTYPES, OPS, Case
from .text import clip, safe_filename

#: The statuses a search is after: a divergence, or an error where the case is valid.
SOUGHT_STATUSES = ("diverge", "error")


def _strategy(ops, dtypes, max_spatial: int):
    from .cases.strategies import cases

    return cases(ops=tuple(ops), dtypes=tuple(dtypes), max_spatial=max_spatial)


def search(adapter: Any, *, max_examples: int = 200, seed: int = 0, ops=OPS, dtypes=DTYPES,
           max_found: int = 5, max_spatial: int = 8, minimise_s: float = 30.0,
           precision: str = "strict") -> list[tuple[Case, CaseOutcome]]:
    """Up to `max_found` minimal divergent cases with distinct signatures, in the order found."""
    from hypothesis import HealthCheck, Phase, find, settings
    from hypothesis.errors import NoSuchExample

    strategy = _strategy(ops, dtypes, max_spatial)
    conf = settings(max_examples=max_examples, deadline=None, database=None, phases=(Phase.generate, Phase.shrink),
                    suppress_health_check=list(HealthCheck))
    seen: set[tuple] = set()
    results: list[tuple[Case, CaseOutcome]] = []
    for round_ in range(max_found):
        def new_divergence(case: Case) -> bool:
            outcome = run_case(case, adapter, precision=precision)
            return outcome.status in SOUGHT_STATUSES and outcome.signature not in seen

        try:
            case = find(strategy, new_divergence, settings=conf, random=random.Random(seed + round_))
        except NoSuchExample:
            break
        outcome = run_case(case, adapter, precision=precision)
        if minimise_s > 0:
            from .minimise import minimise

            signature = outcome.signature
            case = minimise(case, lambda c: run_case(c, adapter, precision=precision).signature == signature, time_limit=minimise_s)
            outcome = run_case(case, adapter, precision=precision)
        seen.add(outcome.signature)
        results.append((case, outcome))
    return results


def found_by(adapter: Any, outcome: CaseOutcome, *, spec: str, seed: int) -> dict[str, Any]:
    from . import __version__

    diag = outcome.diagnosis or {}
    return {"backend": str(adapter.name), "spec": spec, "backend_version": str(adapter.version()),
            "device": str(adapter.device()), "date": datetime.date.today().isoformat(),
            "kind": outcome.kind or outcome.status, "message": clip(outcome.message, 200),
            "diagnosis": diag.get("hypothesis"), "tool": f"conv-conformance {__version__} explore --seed {seed}"}


def write_regression(case: Case, adapter: Any, outcome: CaseOutcome, out_dir: Path, *, spec: str,
                     seed: int) -> tuple[Path | None, str]:
    """Write the case file; (path, note). Not written when the case id is already catalogued."""
    from .cases.catalogue import dump_cases, load_catalogue_entries, load_entries

    known = {e.case.id: f"{e.path}: every run includes it" for e in load_catalogue_entries()}
    for path in sorted(out_dir.glob("*.yaml")) if out_dir.is_dir() else []:
        known.update({e.case.id: str(e.path) for e in load_entries(path)})
    if case.id in known:
        return None, f"already in {known[case.id]}"
    meta = found_by(adapter, outcome, spec=spec, seed=seed)
    reason = clip(f"{meta['backend']} {meta['backend_version']}: {meta['kind']}"
                  + (f" ({meta['diagnosis']})" if meta["diagnosis"] else "") + f": {outcome.message}", 200)
    entry = dataclasses.replace(case, name=case.id, reason=reason)
    text = dump_cases([entry], description=f"found by conformance explore on {meta['backend']}", found_by=meta)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{safe_filename(meta['backend'])}-{case.id}.yaml"
    path.write_text(text, encoding="utf-8")
    return path, "written"
