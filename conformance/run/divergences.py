"""What a divergence's record gains during a run: its repro script and a minimised case.

Invariants
- Both only add to the record (`repro`, `minimised`, notes); the status and the kind are
  the verdict's. The repro script is written by the backend's own worker (its adapter's
  repro code), under OUT/repro/<backend>/<case id>.py.
- Minimising is bounded: `RunConfig.minimise_case_s` per divergence and
  `minimise_backend_s` per backend, one per backend, kind and diagnosis (the same bug
  seen on 25 cases is minimised once); a divergence a manifest explains is not
  minimised. The minimiser's candidates are run on the same worker and recorded by the
  referee, like the run's cases.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .. import expected as expected_mod
from ..minimise import minimise
from ..process.backend import Backend
from ..spec import Case
from ..text import safe_filename
from .context import RunContext
from .memory import memory_estimate


def enrich_divergence(ctx: RunContext, case: Case, b: Backend, rec: dict[str, Any]) -> None:
    """Repro script and (for unexplained divergences) a minimised case; the diagnosis came with the verdict."""
    text, err = b.repro(case, ctx.cfg.precision)
    if err:
        rec["notes"].append(err)
    if text:
        rel = Path("repro") / safe_filename(b.name) / f"{case.id}.py"
        path = ctx.cfg.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        rec["repro"] = rel.as_posix()
    known = ctx.entries and expected_mod.match(ctx.entries, rec, ctx.facts(rec))
    if not ctx.cfg.minimise or known:
        return
    # One minimisation per backend, kind and diagnosis: the same bug seen on 25 cases
    # shrinks to the same small case 25 times, and the budget is better spent elsewhere.
    key = (rec["kind"], (rec["diagnosis"] or {}).get("hypothesis"))
    state = ctx.states[b]
    if key in state.minimised:
        rec["notes"].append(f"not minimised: {state.minimised[key]} has the same kind and diagnosis on this backend")
    elif state.minimise_left > 0:
        seconds = _minimise_into(ctx, rec, case, b, min(ctx.cfg.minimise_case_s, state.minimise_left))
        state.minimised[key] = case.id
        ctx.writer.state("minimised", backend=b.name, key=list(key), case_id=case.id, seconds=seconds)
    else:
        rec["notes"].append("not minimised: this backend's minimising budget is spent")


def _minimise_into(ctx: RunContext, rec: dict[str, Any], case: Case, b: Backend, limit: float) -> float:
    """Minimise `rec`'s divergence into rec["minimised"]; the seconds it took."""
    kind = rec["kind"]
    t0 = time.monotonic()

    def diverges(c: Case) -> bool:
        # A candidate that hangs must not cost the whole per-case timeout past the budget.
        left = max(limit - (time.monotonic() - t0), 1.0)
        if ctx.cfg.max_memory and memory_estimate(c) > ctx.cfg.max_memory:
            return False
        reply = b.ask(c, min(b.timeout, left))
        if isinstance(reply, tuple) and reply and reply[0] == "output":
            ctx.referee.begin(c)  # only outputs need the oracle
        rec2 = ctx.referee.record(c, b.name, b.info, reply, diagnose=False)
        return rec2["status"] == "diverge" and rec2["kind"] == kind

    try:
        smaller = minimise(case, diverges, time_limit=limit)
    except Exception as exc:
        rec["notes"].append(f"minimising failed: {type(exc).__name__}: {exc}")
        smaller = None
    seconds = time.monotonic() - t0
    ctx.states[b].minimise_left -= seconds
    if smaller is not None and smaller.id != case.id:
        rec["minimised"] = smaller.to_dict()
    return seconds
