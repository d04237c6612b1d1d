"""What a run writes when it ends: results.json, junit.xml and the HTML reports, and its exit code.

Invariants
- Written from the records alone (with the findings, the manifest's audit and the
  baseline's differences added), the same for a run, a resumed run and a merge.
- The verdicts are safe whatever fails here: a findings section that cannot be built or
  reports that cannot be rendered become warnings, never a lost results.json.
- Exit code (`exit_code`): 1 for any unexpected diverge/error/crash/timeout (or, with
  --strict-expected, a fixed manifest entry), else 0; 130 when interrupted; 2 when a
  backend the user named ran no case.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import expected as expected_mod
from .. import findings as findings_mod
from .. import fingerprint as fingerprint_mod
from .. import junit, results, verdict
from ..process.backend import Backend
from ..report import write_reports
from ..spec import Case
from ..usage import EXIT_FAIL, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from .config import RunConfig
from .findings_step import budget_for, build_findings


@dataclass
class RunOutcome:
    run: dict[str, Any]
    exit_code: int
    out: Path
    reports: str | None = None
    warnings: list[str] = field(default_factory=list)
    #: Why the run exits 2 after writing its results (a named backend on which no case ran).
    errors: list[str] = field(default_factory=list)


def utc_now() -> str:
    """Now, as results.json writes times (UTC, ISO 8601, seconds)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def none_ran(records: list[dict[str, Any]]) -> dict[str, str]:
    """backend -> "0 of N cases supported: <the commonest reason>" for every backend with
    records of which none ran (all unsupported)."""
    by: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by.setdefault(r["backend"], []).append(r)
    out = {}
    for name, recs in by.items():
        if recs and all(r["status"] == "unsupported" for r in recs):
            reasons: dict[str, int] = {}
            for r in recs:
                first = (r["message"] or "").splitlines()[0] if r["message"] else "no reason given"
                reasons[first] = reasons.get(first, 0) + 1
            top = max(reasons, key=reasons.get)
            more = f" (and {len(reasons) - 1} other reasons)" if len(reasons) > 1 else ""
            out[name] = f"0 of {len(recs)} cases supported: {top}{more}"
    return out


def finish(cfg: RunConfig, cases: list[Case], backends: list[Backend], records: list[dict[str, Any]],
           entries: list, baseline: dict[str, Any] | None, started: str, interrupted: bool,
           timing: dict[str, Any] | None = None,
           found: tuple[list[dict[str, Any]], dict[str, Any]] | None = None,
           fingerprints: dict[str, dict[str, Any]] | None = None) -> RunOutcome:
    """Assemble results.json, junit.xml and the reports from the records; decide the exit code.
    `found`: the findings step's (findings, cost of its experiments), None when it did not run."""
    order = {c.id: i for i, c in enumerate(cases)}
    border = {b.name: i for i, b in enumerate(backends)}
    records = sorted(records, key=lambda r: (order.get(r["case_id"], len(order)), border.get(r["backend"], len(border))))
    fingerprints = dict(fingerprints or {})
    for b in backends:
        if b.fingerprint and b.info.get("fingerprint"):
            fingerprints.setdefault(b.info["fingerprint"], b.fingerprint)
    used = {r.get("fingerprint") for r in records} | {b.info.get("fingerprint") for b in backends}
    run = {
        "schema_version": results.SCHEMA_VERSION, "tool": results.tool(), "environment": results.environment(),
        "run": {"started": started, "finished": utc_now(), "selector": cfg.selector, "seed": cfg.seed,
                "budget": cfg.budget, "dtypes": cfg.dtypes,
                "shard": f"{cfg.shard[0]}/{cfg.shard[1]}" if cfg.shard else None, "argv": cfg.argv,
                "timeout_s": cfg.timeout, "max_memory": cfg.max_memory, "cases": len(cases),
                "interrupted": interrupted, "precision": cfg.precision, "repeats": cfg.repeats.stated(),
                "params": cfg.params(),
                **(timing or {})},
        "backends": {b.name: dict(b.info) for b in backends},
        "fingerprints": {k: v for k, v in fingerprints.items() if k in used},
        "records": records,
        "precision_profile": verdict.precision_profile(records),
    }
    if found is not None:
        budget = budget_for(cfg.confirm_budget_s) if cfg.confirm_budget_s is not None else None
        run["findings"] = findings_mod.section(found[0], budget=dataclasses.asdict(budget) if budget else None,
                                               experiments=found[1])
    for rec in records:  # resumed records of a backend that failed to start this time
        run["backends"].setdefault(rec["backend"], {"name": rec["backend"], "version": rec["backend_version"],
                                                    "device": rec["device"], "spec": None, "error": None,
                                                    "fingerprint": rec.get("fingerprint")})
    for name, why in none_ran(records).items():
        run["backends"][name]["none_ran"] = why
    outcome = write_outputs(cfg.out, run, entries, baseline, report=cfg.report,
                            strict_expected=cfg.strict_expected, interrupted=interrupted, expected_path=cfg.expected,
                            baseline_path=cfg.baseline)
    if cfg.named and not interrupted:
        # A backend the user asked for on which nothing ran tested nothing: not a green run.
        outcome.errors = [f"{name}: {info['none_ran']}" for name, info in run["backends"].items()
                          if info.get("none_ran")]
        if outcome.errors:
            outcome.exit_code = EXIT_USAGE
    return outcome


def write_outputs(out: Path, run: dict[str, Any], entries: list, baseline: dict[str, Any] | None, *,
                  report: bool, strict_expected: bool = False, interrupted: bool = False,
                  expected_path: str | None = None, baseline_path: str | None = None) -> RunOutcome:
    """results.json, junit.xml and (optionally) the HTML reports for `run`; the RunOutcome with its exit code."""
    records = run["records"]
    warnings: list[str] = []
    if "findings" not in run:  # re-judged runs: no backend, so each divergence is uncharacterised
        try:
            found = build_findings(records, entries, run.get("fingerprints"))
        except Exception as exc:  # the verdicts are safe whatever happens here; say what broke
            found = []
            warnings.append(f"findings could not be built: {type(exc).__name__}: {exc}")
        run["findings"] = findings_mod.section(found, budget=None)
    else:  # a merge: members recomputed over the merged records, pins applied again
        items = run["findings"]["items"]
        expected_mod.pin_findings(entries, records, items, run.get("fingerprints"))
    if entries:
        run["expected"] = {"path": str(expected_path),
                           **expected_mod.audit(entries, records, run.get("fingerprints"))}
    if baseline is not None:
        run["baseline"] = {"path": str(baseline_path), **expected_mod.baseline_diff(baseline, records),
                           "fingerprints_differ": fingerprint_differences(baseline, run)}
        run["baseline"]["findings"] = findings_mod.baseline_diff(baseline, run["findings"]["items"],
                                                                 {r["backend"] for r in records})
    out.mkdir(parents=True, exist_ok=True)
    reports = None
    if report:
        try:
            write_reports(run, out)
            reports = str(out / "index.html")
        except Exception as exc:  # the verdicts are already safe on disk; say what broke
            warnings.append(f"HTML reports failed: {type(exc).__name__}: {exc}")
    results.write(out / "results.json", run)
    junit.write(out / "junit.xml", run)
    code = exit_code(run, strict_expected)
    return RunOutcome(run, EXIT_INTERRUPTED if interrupted else code, out, reports, warnings)


def exit_code(run: dict[str, Any], strict_expected: bool = False) -> int:
    """1 for any unexpected diverge/error/crash/timeout (or, strict, a fixed manifest entry), else 0."""
    if any(results.is_unexpected(r) for r in run["records"]):
        return EXIT_FAIL
    if strict_expected and (run.get("expected") or {}).get("fixed"):
        return EXIT_FAIL
    return EXIT_OK


def _backend_fingerprint(run: dict[str, Any], name: str) -> dict[str, Any] | None:
    fid = (run.get("backends", {}).get(name) or {}).get("fingerprint")
    return (run.get("fingerprints") or {}).get(fid) if fid else None


def fingerprint_differences(a: dict[str, Any], b: dict[str, Any]) -> dict[str, list[str]]:
    """backend -> the fingerprint facts that differ between runs `a` and `b` (backends in
    both with a recorded fingerprint; conformance.fingerprint.differences)."""
    out = {}
    for name in a.get("backends", {}):
        if name not in b.get("backends", {}):
            continue
        fa, fb = _backend_fingerprint(a, name), _backend_fingerprint(b, name)
        if fa is None or fb is None:
            if (fa is None) != (fb is None):
                out[name] = ["the environment is recorded in one run only"]
            continue
        diff = fingerprint_mod.differences(fa, fb)
        if diff:
            out[name] = diff
    return out
