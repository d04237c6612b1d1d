"""`conformance explore`: search for divergences with hypothesis, keep each as a regression.

    conformance explore --backend torch [--max-examples 200] [--seed 0] [--dtype float16]
                        [--op conv2d] [--max-found 5] [--out-dir DIR] [--no-minimise]
                        [--timeout 60] [--max-memory SIZE] [--shrink-budget 60]

(its options and exit status are `conformance.cli.explore`'s; this module is the search.)
Hypothesis draws cases (`conformance.cases.strategies.cases`: valid ones and about one in
four invalid), runs the backend on each in its worker process
(`process.isolated.IsolatedBackend`, as `conformance run` does: a backend that crashes or
hangs gives that case a `crash` / `timeout` record, which the search keeps like a
divergence, and its worker is restarted), and shrinks the first divergence to a minimal
case; `conformance.minimise` then tries the suite's own simplifications for the same
divergence. The search repeats, ignoring divergences already found, until `--max-found`
distinct ones (distinct status, kind and diagnosis) or no more are found within
`--max-examples`.

Each minimal case is written to `<out-dir>/<backend>-<case id>.yaml` in the catalogue's
case-file format with `found_by: {backend, backend_version, device, date, kind, message,
...}`; the default out-dir is ./explore-regressions in the working directory (never the
installed package). `conformance run --cases FILE` runs a written case; moved into a
checkout's cases/regressions/, it is part of every later run. A case whose id is already
in the catalogue, the regressions or the out-dir is not written again (the catalogue
refuses duplicate ids).

Invariants
- Deterministic: the same backend, options and `--seed` explore the same cases in the
  same order (hypothesis runs from `random.Random(seed + round)`, no example database),
  unless a budget ends a shrink: hypothesis's shrinking of each divergence is bounded by
  `shrink_s` seconds from its first example (each smaller crash costs a restart of the
  worker, each smaller hang a whole --timeout), the minimiser by `minimise_s`.
- Each case is run once per round: its record is kept by case id, so hypothesis's
  replays and the minimiser ask the backend nothing twice.
- Exit status: 0 nothing found, 1 divergences found, 2 bad usage.
"""

from __future__ import annotations

import dataclasses
import datetime
import random
import time
from pathlib import Path
from typing import Any

from .spec import DTYPES, OPS, Case
from .text import clip, safe_filename
from .vocabulary import FAILING_STATUSES

#: The statuses a search is after: a divergence, an error where the case is valid, and the
#: backend's worker crashing or hanging (every status that fails a run).
SOUGHT_STATUSES = FAILING_STATUSES
#: Seconds hypothesis may shrink one divergence, from its first example (`search`'s shrink_s).
SHRINK_S = 60.0


def signature(rec: dict[str, Any]) -> tuple[str, str | None, str | None]:
    """(status, kind, diagnosis hypothesis) of a record: what tells two divergences apart."""
    return (rec["status"], rec["kind"], (rec.get("diagnosis") or {}).get("hypothesis"))


def _strategy(ops, dtypes, max_spatial: int):
    from .cases.strategies import cases

    return cases(ops=tuple(ops), dtypes=tuple(dtypes), max_spatial=max_spatial)


def search(backend: Any, *, max_examples: int = 200, seed: int = 0, ops=OPS, dtypes=DTYPES,
           max_found: int = 5, max_spatial: int = 8, minimise_s: float = 30.0,
           shrink_s: float = SHRINK_S) -> list[tuple[Case, dict[str, Any]]]:
    """Up to `max_found` minimal divergent cases with distinct signatures, in the order found,
    each with its record. `backend` is a started `process.isolated.IsolatedBackend` (anything
    with its `record(case)`)."""
    from hypothesis import HealthCheck, Phase, find, settings
    from hypothesis.errors import NoSuchExample

    strategy = _strategy(ops, dtypes, max_spatial)
    conf = settings(max_examples=max_examples, deadline=None, database=None, phases=(Phase.generate, Phase.shrink),
                    suppress_health_check=list(HealthCheck))
    seen: set[tuple] = set()
    results: list[tuple[Case, dict[str, Any]]] = []
    for round_ in range(max_found):
        records: dict[str, dict[str, Any]] = {}  # case id -> its record, this round
        first_found: list[float] = []

        def judged(case: Case) -> dict[str, Any]:
            if case.id not in records:
                records[case.id] = backend.record(case)
            return records[case.id]

        def new_divergence(case: Case) -> bool:
            if case.id not in records and first_found and time.monotonic() - first_found[0] > shrink_s:
                return False  # the shrinking budget is spent: nothing new is run
            rec = judged(case)
            found = rec["status"] in SOUGHT_STATUSES and signature(rec) not in seen
            if found and not first_found:
                first_found.append(time.monotonic())
            return found

        try:
            case = find(strategy, new_divergence, settings=conf, random=random.Random(seed + round_))
        except NoSuchExample:
            break
        rec = judged(case)
        if minimise_s > 0:
            from .minimise import minimise

            wanted = signature(rec)
            case = minimise(case, lambda c: signature(judged(c)) == wanted, time_limit=minimise_s)
            rec = judged(case)
        seen.add(signature(rec))
        results.append((case, rec))
    return results


def found_by(rec: dict[str, Any], *, spec: str, seed: int) -> dict[str, Any]:
    """The `found_by` of a case file: who found the record `rec`, when, and what it was."""
    from . import __version__

    diag = rec.get("diagnosis") or {}
    return {"backend": rec["backend"], "spec": spec, "backend_version": rec["backend_version"],
            "device": rec["device"], "date": datetime.date.today().isoformat(),
            "kind": rec["kind"] or rec["status"], "message": clip(rec["message"], 200),
            "diagnosis": diag.get("hypothesis"), "tool": f"conv-conformance {__version__} explore --seed {seed}"}


def write_regression(case: Case, rec: dict[str, Any], out_dir: Path, *, spec: str,
                     seed: int) -> tuple[Path | None, str]:
    """Write the case file of `case` and its record `rec`; (path, note). Not written when the
    case id is already catalogued."""
    from .cases.catalogue import dump_cases, load_catalogue_entries, load_entries

    known = {e.case.id: f"{e.path}: every run includes it" for e in load_catalogue_entries()}
    for path in sorted(out_dir.glob("*.yaml")) if out_dir.is_dir() else []:
        known.update({e.case.id: str(e.path) for e in load_entries(path)})
    if case.id in known:
        return None, f"already in {known[case.id]}"
    meta = found_by(rec, spec=spec, seed=seed)
    reason = clip(f"{meta['backend']} {meta['backend_version']}: {meta['kind']}"
                  + (f" ({meta['diagnosis']})" if meta["diagnosis"] else "") + f": {rec['message']}", 200)
    entry = dataclasses.replace(case, name=case.id, reason=reason)
    text = dump_cases([entry], description=f"found by conformance explore on {meta['backend']}", found_by=meta)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{safe_filename(meta['backend'])}-{case.id}.yaml"
    path.write_text(text, encoding="utf-8")
    return path, "written"
