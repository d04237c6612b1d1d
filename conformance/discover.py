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
- A finding's id is a hash of (backend, predicate text): it depends on the mechanism,
  not on which records were in the run or in which order. A backend has at most one
  uncharacterised finding, whose id is a hash of (backend, "uncharacterised").
- `members(finding, records)` recomputes membership from the predicate, so a merge of
  shards, a baseline or a manifest pin finds the same members from any records.
- Findings only add to a run: records and verdicts are never changed.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Iterable

from . import characterise as experiments
from .confirm import confirm
from .minimise import cost, minimise
from .predicate import Predicate
from .probe import Budget, BudgetSpent, Observation, Prober, seen_from_records
from .spec import Case, CaseError

#: Version of the finding dicts (results.json `findings` section, docs/findings-engine.md).
FINDINGS_VERSION = 2
#: Attempts per backend that may end without a confirmed predicate before the rest of its
#: divergences go to its uncharacterised finding.
MAX_FAILED = 4
#: Predicate calls the final `minimise.minimise` pass may make (bisection did the bulk).
MINIMISE_STEPS = 40
UNCHARACTERISED = "uncharacterised"

KIND_WORDS = {
    "shape": "wrong shape", "dtype": "wrong dtype", "nonfinite": "wrong NaN/Inf", "value": "wrong values",
    "subnormal_flush": "subnormals flushed", "inexact": "inexact results", "precision": "reduced precision",
    "rounding_bias": "biased rounding", "invalid_accepted": "accepted though invalid",
}
KIND_PHRASES = {
    "shape": "returns an output of the wrong shape", "dtype": "returns an output of the wrong dtype",
    "nonfinite": "returns wrong NaN/Inf values", "subnormal_flush": "flushes subnormals to zero",
    "inexact": "is inexact where the exact result is representable", "precision": "computes in a reduced precision",
    "value": "returns wrong values", "rounding_bias": "rounds with a systematic bias",
    "invalid_accepted": "accepts an invalid case instead of raising an error",
}


def framework_of(backend: str) -> str:
    """`tensorflow` for `tensorflow[onednn]`: what fresh confirmation cases are seeded by."""
    return backend.split("[", 1)[0]


def finding_id(backend: str, predicate: Predicate | None) -> str:
    text = "\x1f".join([backend, predicate.text() if predicate is not None else UNCHARACTERISED])
    return "F" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]


def _case(rec: dict[str, Any]) -> Case | None:
    try:
        return Case.from_dict(rec["case"])
    except (CaseError, TypeError, KeyError):
        return None


def _diverging(records: Iterable[dict[str, Any]]) -> list[tuple[dict[str, Any], Case]]:
    out = []
    for r in records:
        if r.get("status") == "diverge":
            c = _case(r)
            if c is not None:
                out.append((r, c))
    return out


def members(predicate: Predicate, records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every diverging record whose case `predicate` covers, as {case_id, kind, hypothesis}, by case id."""
    out = []
    for r, c in _diverging(records):
        if predicate.holds(c):
            out.append({"case_id": r["case_id"], "kind": r.get("kind"), "hypothesis": _hypothesis(r)})
    return sorted(out, key=lambda m: m["case_id"])


def _hypothesis(rec: dict[str, Any]) -> str | None:
    d = rec.get("diagnosis")
    return d.get("hypothesis") if isinstance(d, dict) else None


def kinds_summary(member_rows: list[dict[str, Any]]) -> tuple[dict[str, int], str]:
    """({kind: count}, "wrong shape on 18 cases, wrong values on 11"), commonest first."""
    tally: dict[str, int] = {}
    for m in member_rows:
        tally[m["kind"] or "diverge"] = tally.get(m["kind"] or "diverge", 0) + 1
    order = sorted(tally, key=lambda k: (-tally[k], k))
    parts = [f"{KIND_WORDS.get(k, k)} on {tally[k]} case{'s' if tally[k] != 1 else ''}" if i == 0
             else f"{KIND_WORDS.get(k, k)} on {tally[k]}" for i, k in enumerate(order)]
    return {k: tally[k] for k in order}, ", ".join(parts)


def title(predicate: Predicate, kinds: dict[str, int]) -> str:
    """"depthwise_conv2d with strides > 1 and dilations > 1 returns wrong results (wrong shape, wrong values)"."""
    if len(kinds) == 1:
        return f"{predicate.words()} {KIND_PHRASES.get(next(iter(kinds)), 'diverges')}"
    return f"{predicate.words()} returns wrong results ({', '.join(KIND_WORDS.get(k, k) for k in kinds)})"


class _Attempt:
    """One minimise + characterise + confirm (+ refine) from one diverging case."""

    def __init__(self, start: Case, prober: Prober, known: list[Predicate], framework: str,
                 passing: list[Case]):
        self.start, self.prober, self.known, self.framework = start, prober, known, framework
        self.passing = passing  # the backend's passing records: a predicate covering one is refuted
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
            small = experiments.shrink(self.start, self.diverges)
            self.minimal = minimise(small, self.diverges, max_steps=MINIMISE_STEPS,
                                    time_limit=max(self.prober.budget.seconds_per_finding, 1.0))
        except BudgetSpent as exc:
            self.reason = str(exc)
            return None
        res = experiments.characterise(self.minimal, self.prober)
        for _ in range(3):
            self.result = res
            if res.predicate is None:
                self.reason = res.reason
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


def discover(records: list[dict[str, Any]], probe: Callable[[Case], Observation], backend: str, *,
             budget: Budget | None = None, prober: Prober | None = None) -> list[dict[str, Any]]:
    """The findings of `backend` from its records (others are ignored), by experiment with
    `probe` (see the module docstring). `prober`: share one across backends' calls to keep
    one run budget; by default a new one with `budget`."""
    recs = [r for r in records if r.get("backend") == backend]
    if prober is None:
        prober = Prober(probe, budget or Budget(), seen_from_records(recs))
    else:
        prober.cache.update(seen_from_records(recs))
    framework = framework_of(backend)
    diverging = _diverging(recs)
    passing = [c for c in (_case(r) for r in recs if r.get("status") == "pass") if c is not None]
    known: list[Predicate] = []
    found: list[dict[str, Any]] = []
    failed: list[_Attempt] = []
    tried: set[str] = set()
    budget_note = ""
    while len(failed) < MAX_FAILED:
        left = [(r, c) for r, c in diverging if c.id not in tried and not any(p.holds(c) for p in known)]
        if not left:
            break
        if not prober.left():
            budget_note = "the run's experiment budget was spent"
            break
        r, start = min(left, key=lambda t: (cost(t[1]), t[1].id))
        tried.add(start.id)
        prober.start_finding()
        attempt = _Attempt(start, prober, known, framework, passing)
        pred = attempt.run()
        spent = {"probes": prober.finding.probes, "seconds": round(prober.finding.seconds, 3)}
        if pred is None:
            failed.append(attempt)
            continue
        known.append(pred)
        found.append(_confirmed(backend, pred, attempt, recs, list(prober.rows), spent))
    for f in found:  # membership from the final list of predicates (overlaps allowed)
        _set_members(f, recs)
    rest = [(r, c) for r, c in diverging if not any(p.holds(c) for p in known)]
    if rest:
        found.append(_uncharacterised(backend, rest, failed, budget_note))
    found.sort(key=lambda f: (f["status"] != "confirmed", -f["count"], f["id"]))
    return found


def _confirmed(backend: str, pred: Predicate, attempt: _Attempt, recs: list[dict[str, Any]],
               rows: list[dict[str, Any]], spent: dict[str, Any]) -> dict[str, Any]:
    res = attempt.result
    return {
        "id": finding_id(backend, pred), "backend": backend, "framework": framework_of(backend),
        "backend_version": next((r.get("backend_version") for r in recs if r.get("backend_version")), None),
        "status": "confirmed",
        "predicate": {"text": pred.text(), "words": pred.words(), "atoms": pred.to_list()},
        "necessary": list(res.necessary),
        "minimal_case": attempt.minimal.to_dict(), "minimal_case_id": attempt.minimal.id,
        "experiment_case_id": res.base.id if res.base is not None else attempt.minimal.id,
        "started_from": attempt.start.id,
        "experiments": rows, "confirmation": attempt.confirmation, "cost": spent, "notes": [],
    }


def _set_members(f: dict[str, Any], recs: list[dict[str, Any]]) -> None:
    pred = Predicate.from_list(f["predicate"]["atoms"])
    rows = members(pred, recs)
    kinds, summary = kinds_summary(rows)
    f.update(members=rows, count=len(rows), kinds=kinds, summary=summary, title=title(pred, kinds),
             known=sum(1 for r in recs if r.get("known") and r["case_id"] in {m["case_id"] for m in rows}))


def _uncharacterised(backend: str, rest: list[tuple[dict[str, Any], Case]], failed: list[_Attempt],
                     note: str) -> dict[str, Any]:
    rows = sorted(({"case_id": r["case_id"], "kind": r.get("kind"), "hypothesis": _hypothesis(r)} for r, _ in rest),
                  key=lambda m: m["case_id"])
    kinds, summary = kinds_summary(rows)
    minimal = next((a.minimal for a in failed if a.minimal is not None), None) or min((c for _, c in rest), key=cost)
    reasons = [f"from {a.start.id}: {a.reason}" for a in failed if a.reason] + ([note] if note else [])
    return {
        "id": finding_id(backend, None), "backend": backend, "framework": framework_of(backend),
        "backend_version": next((r.get("backend_version") for r, _ in rest if r.get("backend_version")), None),
        "status": UNCHARACTERISED, "predicate": None, "necessary": [],
        "title": f"{len(rows)} divergence{'s' if len(rows) != 1 else ''} no experiment could characterise "
                 f"({summary})",
        "members": rows, "count": len(rows), "kinds": kinds, "summary": summary,
        "known": sum(1 for r, _ in rest if r.get("known")),
        "minimal_case": minimal.to_dict(), "minimal_case_id": minimal.id, "experiment_case_id": minimal.id,
        "started_from": failed[0].start.id if failed else None,
        "experiments": [], "confirmation": None,
        "cost": {}, "notes": reasons,
    }
