"""A backend's findings: its divergences grouped by mechanism, each found by experiment.

    records (one backend) + probe(case) -> [finding, ...]   (plain JSON data)

1. The smallest divergence no finding covers yet is shrunk to a minimal case (bisection
   per parameter, then `minimise.minimise`), never into a known finding's predicate.
2. `characterise` finds its necessary conditions by experiment; `confirm` tries the
   predicate on fresh cases. A predicate that covers a case the run saw pass, or that a
   fresh case refutes, is refined by more experiments (`characterise.refine`: the
   parameter that made that case pass is necessary too) and tried again, twice at most;
   if it still fails it is not published.
3. Every diverging record whose case the predicate covers is a member, whatever its
   kind: one bug that returns a wrong shape on some cases and wrong values on others is
   one finding. Repeat until every divergence is covered or the budget is spent.
4. What is left is one `uncharacterised` finding that says so, with its minimal case.

Invariants
- A published predicate is `confirmed`; no refuted predicate appears anywhere in the
  output (the experiments rows list moves and cases, never a rejected hypothesis).
- The findings are `findings` dicts (ids, members, titles: see there): the id depends on
  the backend and the predicate, never on which records were in the run or their order.
- Findings only add to a run: records and verdicts are never changed.
"""

from __future__ import annotations

from typing import Any, Callable

from . import characterise as experiments
from . import findings as data
from .axes import cost
from .confirm import confirm
from .minimise import minimise
from .predicate import Predicate
from .probe import Budget, BudgetSpent, Observation, Prober, seen_from_records
from .spec import Case

#: Attempts per backend that may end without a confirmed predicate before the rest of its
#: divergences go to its uncharacterised finding.
MAX_FAILED = 4
#: Predicate calls the final `minimise.minimise` pass may make (bisection did the bulk).
MINIMISE_STEPS = 15


class _Attempt:
    """One minimise + characterise + confirm (+ refine) from one diverging case."""

    def __init__(self, start: Case, prober: Prober, known: list[Predicate], framework: str,
                 passing: list[Case], shrink: bool = True):
        self.start, self.prober, self.known, self.framework = start, prober, known, framework
        self.passing = passing  # the backend's passing records: a predicate covering one is refuted
        self.shrink = shrink
        self.minimal: Case | None = None
        self.result: experiments.Result | None = None
        self.confirmation: dict[str, Any] | None = None
        self.reason = ""

    def diverges(self, c: Case) -> bool:
        if any(p.holds(c) for p in self.known):
            return False  # shrink towards this divergence, never into a known finding
        return self.prober(c, "shrink").diverges is True

    def run(self) -> Predicate | None:
        try:
            if self.shrink:
                small = experiments.shrink(self.start, self.diverges)
                self.minimal = minimise(small, self.diverges, max_steps=MINIMISE_STEPS,
                                        time_limit=max(self.prober.budget.seconds_per_finding, 1.0))
            else:
                self.minimal = self.start
        except BudgetSpent as exc:
            self.reason = str(exc)
            return None
        res = experiments.characterise(self.minimal, self.prober)
        for _ in range(3):
            self.result = res
            if res.predicate is None:
                self.reason = res.reason
                return None
            if not res.predicate.holds(self.start):
                self.reason = "the predicate the experiments gave does not cover the divergence they started from"
                return None
            counter = next((c for c in self.passing if res.predicate.holds(c)), None)
            if counter is None:
                self.confirmation = confirm(res.predicate, self.framework, self.prober, self.known, res.base)
                if self.confirmation["status"] == "confirmed":
                    return res.predicate
                against = [r for r in self.confirmation["rows"]
                           if r.get("counts") == "against" and r["side"] == "inside"]
                counter = Case.from_dict(against[0]["case"]) if against else None
            refined = experiments.refine(res, counter, self.prober) if counter is not None else None
            if refined is None:
                break
            res = refined
        self.reason = (f"the confirmation was {self.confirmation['status']}" if self.confirmation
                       else "a passing case of the run contradicted every predicate the experiments gave")
        return None


def _next_start(left: list[tuple[dict[str, Any], Case]]) -> tuple[dict[str, Any], Case]:
    """Where the next attempt starts: the smallest divergence of the commonest (kind,
    diagnosis) among those left, so that the budget goes to the bug with most cases first."""
    groups: dict[tuple, list[tuple[dict[str, Any], Case]]] = {}
    for r, c in left:
        d = r.get("diagnosis") if isinstance(r.get("diagnosis"), dict) else {}
        groups.setdefault((r.get("kind"), d.get("hypothesis")), []).append((r, c))
    biggest = max(groups.values(), key=lambda g: (len(g), -min(cost(c) for _, c in g)))
    return min(biggest, key=lambda t: (cost(t[1]), t[1].id))


def _try_sibling(pred: Predicate, covered: list[tuple[dict[str, Any], Case]], prober: Prober, known: list[Predicate],
                 framework: str, passing: list[Case]) -> dict[str, Any] | None:
    """A predicate another variant of this framework confirmed, confirmed here too (fresh
    cases inside and just outside it, on this backend), or None. Far cheaper than
    characterising the same bug again."""
    if any(pred.holds(c) for c in passing):
        return None
    base = min((c for _, c in covered), key=lambda c: (cost(c), c.id))
    try:
        conf = confirm(pred, framework, prober, known, base)
    except BudgetSpent:
        return None
    return {"base": base, "confirmation": conf} if conf["status"] == "confirmed" else None


def discover(records: list[dict[str, Any]], probe: Callable[[Case], Observation] | None, backend: str, *,
             budget: Budget | None = None, prober: Prober | None = None, shrink: bool = True,
             siblings: Callable[[], list[Predicate]] | None = None,
             confirmed: Callable[[Predicate], None] | None = None) -> list[dict[str, Any]]:
    """The findings of `backend` from its records (others are ignored), by experiment with
    `probe` (see the module docstring). `prober`: one made by the caller (a run shares one
    run budget across its backends); by default a new one with `budget`. `shrink`: False
    starts the experiments from the divergence itself (`--no-minimise`). `siblings()`: the
    predicates the framework's other variants confirmed so far, tried here first (each
    confirmed on this backend before it counts); `confirmed(p)` is told each one found."""
    recs = [r for r in records if r.get("backend") == backend]
    if prober is None:
        prober = Prober(probe, budget or Budget(), seen_from_records(recs))
    else:
        prober.cache.update(seen_from_records(recs))
    framework = data.framework_of(backend)
    version = next((r.get("backend_version") for r in recs if r.get("backend_version")), None)
    divergences = data.diverging(recs)
    passing = [c for c in (data.case_of(r) for r in recs if r.get("status") == "pass") if c is not None]
    known: list[Predicate] = []
    found: list[dict[str, Any]] = []
    failed: list[_Attempt] = []
    tried: set[str] = set()
    budget_note = ""
    for pred in (siblings() if siblings else []):
        covered = [(r, c) for r, c in divergences if pred.holds(c) and not any(p.holds(c) for p in known)]
        if not covered or not prober.run_left():
            continue
        prober.start_finding()
        hit = _try_sibling(pred, covered, prober, known, framework, passing)
        if hit is not None:
            known.append(pred)
            found.append(data.confirmed(
                backend, pred, minimal=hit["base"], base=hit["base"], started_from=covered[0][1].id,
                necessary=[], experiments=list(prober.rows), confirmation=hit["confirmation"],
                cost={"probes": prober.finding.probes, "seconds": round(prober.finding.seconds, 3)}, version=version))
            found[-1]["notes"].append("the condition another variant of this framework was found to have, "
                                      "confirmed on this backend's fresh cases")
    while len(failed) < MAX_FAILED:
        left = [(r, c) for r, c in divergences if c.id not in tried and not any(p.holds(c) for p in known)]
        if not left:
            break
        prober.start_finding()
        if not prober.run_left():
            budget_note = "the run's experiment budget was spent before these were characterised"
            break
        r, start = _next_start(left)
        tried.add(start.id)
        attempt = _Attempt(start, prober, known, framework, passing, shrink)
        pred = attempt.run()
        if pred is None:
            failed.append(attempt)
            continue
        known.append(pred)
        if confirmed is not None:
            confirmed(pred)
        res = attempt.result
        # The published minimal case is the one the experiments moved from: the shrunk case
        # grown back to a few output pixels (on a one-pixel input most taps read padding).
        found.append(data.confirmed(
            backend, pred, minimal=res.base or attempt.minimal, base=res.base or attempt.minimal,
            started_from=start.id,
            necessary=res.necessary, experiments=list(prober.rows), confirmation=attempt.confirmation,
            cost={"probes": prober.finding.probes, "seconds": round(prober.finding.seconds, 3)}, version=version))
    prober.start_finding()  # closes the last finding's wall-clock tally
    rest = [(r, c) for r, c in divergences if not any(p.holds(c) for p in known)]
    if rest:
        notes = [f"from {a.start.id}: {a.reason}" for a in failed if a.reason] + ([budget_note] if budget_note else [])
        minimal = next((a.minimal for a in failed if a.minimal is not None), None)
        found.append(data.uncharacterised(backend, rest, minimal=minimal, notes=notes, version=version))
    return data.with_members(found, recs)
