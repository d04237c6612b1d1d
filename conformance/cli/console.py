"""What a run or a merge prints at its end: the bugs found, the status table, what else
failed, and where everything is.

Invariants
- Findings, not rows: each bug is one line (a framework's variants sharing it on one line),
  divergences are counted in the table, and only results that no finding can hold
  (errors, crashes, timeouts) are listed, at most SUMMARY_ROWS lines. Unsupported cases
  are one line, the precision profile one line per backend below the contract (backends
  with the same profile share it). results.json, junit.xml and the reports
  list everything; a default run's whole console stays under about 80 lines.
"""

from __future__ import annotations

from .. import repeats
from ..findings import console_lines
from ..results import counts, is_unexpected
from ..run.outputs import RunOutcome
from ..text import clip, number
from ..usage import EXIT_FAIL, EXIT_INTERRUPTED, EXIT_OK
from ..vocabulary import STATUSES

#: Lines of unexpected errors, crashes and timeouts in the summary (one per distinct backend,
#: status and message); the rest are counted.
SUMMARY_ROWS = 8
#: Bugs listed (one line each); the rest are counted.
FINDING_ROWS = 30
#: Lines of a baseline's new and fixed findings.
BASELINE_ROWS = 10
#: Unsupported reasons listed per backend by `unsupported_lines` (most frequent first).
UNSUPPORTED_ROWS = 8
#: Case ids listed per backend in the repeats summary; the rest are counted.
REPEAT_IDS = 5
#: Characters of a message on one summary line: one result's, and one standing for many.
MESSAGE_CHARS, GROUP_MESSAGE_CHARS = 160, 400


def summary(outcome: RunOutcome) -> str:
    """The end-of-run summary: the bugs, the backend x status table, what else failed, paths."""
    run = outcome.run
    table = counts(run["records"])
    cols = list(STATUSES) + ["known"]
    width = max([len(b) for b in table] + [7])
    lines = [""] + console_lines((run.get("findings") or {}).get("items") or [], FINDING_ROWS)
    lines += ["", f"{'backend':<{width}}  " + "  ".join(f"{c:>11}" for c in cols)]
    for backend, row in table.items():
        lines.append(f"{backend:<{width}}  " + "  ".join(f"{row[c]:>11}" for c in cols))
    for name, info in run["backends"].items():
        if info.get("error"):
            lines.append(f"! {name}: {info['error']}")
        elif info.get("none_ran"):
            lines.append(f"! {name}: {info['none_ran']}")
    unsupported = [(b, row["unsupported"]) for b, row in table.items() if row.get("unsupported")]
    if unsupported:
        lines.append(f"unsupported (each backend's own reasons are on its page): "
                     + ", ".join(f"{b} {n}" for b, n in unsupported))
    bad = [r for r in run["records"] if is_unexpected(r) and r["status"] != "diverge"]
    if bad:
        lines.append(f"\n{len(bad)} unexpected error{'s' if len(bad) != 1 else ''}, crashes or timeouts:")
        lines += unexpected_lines(run["records"], bad)
    profile = run.get("precision_profile") or {}
    weaker = [b for b, per in profile.items() if any(p.get("meets") != "strict" for p in per.values())]
    if profile:
        lines.append(f"\nprecision profile (contract in force: {run['run'].get('precision', 'strict')}): "
                     + ("below it on some dtype:" if weaker else "every backend meets it on every dtype"))
        sharing: dict[str, list[str]] = {}  # backends with the same profile share its line
        for backend in weaker:  # the dtypes that meet the contract are on the pages
            sharing.setdefault("; ".join(profile_cell(d, p) for d, p in profile[backend].items()
                                         if p.get("meets") != "strict"), []).append(backend)
        for text, names in sharing.items():
            lines.append(f"  {', '.join(names):<{width}}  {text}")
    lines += repeat_summary_lines(run, width)
    fixed = (run.get("expected") or {}).get("fixed") or []
    if fixed:
        lines.append(f"\n!!! {len(fixed)} KNOWN DIVERGENCE(S) NOW PASS: update the --expected manifest !!!")
        for f in fixed[:SUMMARY_ROWS]:
            lines.append(f"  {f['backend']}  {f['case_id']}  (entry {f['manifest_entry']}: {f['reason']})")
        if len(fixed) > SUMMARY_ROWS:
            lines.append(f"  ... and {len(fixed) - SUMMARY_ROWS} more (results.json lists them all)")
    unmatched = (run.get("expected") or {}).get("unmatched") or []
    gated = (run.get("expected") or {}).get("not_applicable") or []
    unmatched = [i for i in unmatched if i not in gated]
    notes = ([f"entries {gated} do not apply here (their `when` conditions do not hold on this environment)"]
             if gated else []) + ([f"entries {unmatched} match no case of this run"] if unmatched else [])
    if notes:
        lines.append("note: manifest " + "; ".join(notes))
    untested = (run.get("expected") or {}).get("untested") or []
    if untested:
        lines.append(f"note: manifest entries {untested} cover no case of this run that could show their kind "
                     f"(e.g. subnormal_flush without subnormal inputs, invalid_accepted without invalid cases)")
    if "baseline" in run:
        lines += _baseline_lines(run["baseline"])
    for name, diff in (run["run"].get("fingerprints_differ") or {}).items():
        lines.append(f"note: the merged files ran {name} in different environments: {'; '.join(diff)}")
    if run["run"].get("interrupted"):
        lines.append("\ninterrupted: the results cover the cases finished before the interruption (--resume continues)")
    where = f"  report: {outcome.reports}" if outcome.reports else ""
    lines.append(f"\nresults: {outcome.out / 'results.json'}  junit: {outcome.out / 'junit.xml'}{where}")
    verdict = {EXIT_OK: "OK", EXIT_FAIL: "FAILED", EXIT_INTERRUPTED: "INTERRUPTED"}.get(outcome.exit_code, "")
    lines.append(f"conformance: {verdict}")
    return "\n".join(lines) + "\n"


def repeat_summary_lines(run: dict, width: int) -> list[str]:
    """The repeats: the policy, one line for every backend whose repeats all matched, then
    per backend with a difference how many cases were run again with the same inputs and
    which of them differed (the first few ids). A clean run of 15 backends is two lines."""
    per = repeats.summary(run["records"])
    if not any(row["repeated"] for row in per.values()):
        return []
    policy = (run["run"].get("repeats") or {}).get("policy")
    lines = [f"\nrepeats{f' ({policy})' if policy else ''}:"]
    same = {b: row for b, row in per.items() if row["repeated"] and not row["differed"] and not row["bits_only"]}
    if same:
        counts = sorted({row["repeated"] for row in same.values()})
        span = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
        lines.append(f"  {len(same)} backend{'s' if len(same) != 1 else ''}: {span} cases repeated each, "
                     f"none differed ({', '.join(same)})")
    for backend, row in per.items():
        if not row["repeated"] or backend in same:  # (not repeated: could not start, or raised on every case)
            continue
        text = f"{row['repeated']} cases repeated, {row['differed']} differed"
        if row["cases"]:
            more = len(row["cases"]) - REPEAT_IDS
            text += ": " + ", ".join(row["cases"][:REPEAT_IDS]) + (f" and {more} more" if more > 0 else "")
        if row["bits_only"]:
            text += f"; {row['bits_only']} in zero signs or NaN payloads only (not judged)"
        lines.append(f"  {backend:<{width}}  {text}")
    return lines


def _baseline_lines(base: dict) -> list[str]:
    lines = [f"\nagainst baseline {base['path']}: {len(base['new'])} new, {len(base['fixed'])} fixed"]
    rows = [f"  new    {r['backend']}  {r['case_id']}  {r['kind'] or r['status']} (was {r['was']})" for r in base["new"]]
    rows += [f"  fixed  {r['backend']}  {r['case_id']}  (was {r['was']})" for r in base["fixed"]]
    lines += rows[:BASELINE_ROWS] + ([f"  ... and {len(rows) - BASELINE_ROWS} more (results.json lists them all)"]
                                     if len(rows) > BASELINE_ROWS else [])
    fb = base.get("findings")
    if fb:
        lines.append(f"findings against the baseline: {len(fb['new'])} new, {len(fb['fixed'])} fixed")
        rows = [f"  new finding    {f['id']}  {f['backend']}  {f['title']}" for f in fb["new"]]
        rows += [f"  fixed finding  {f['id']}  {f['backend']}  {f['title']}" for f in fb["fixed"]]
        lines += rows[:BASELINE_ROWS] + ([f"  ... and {len(rows) - BASELINE_ROWS} more"]
                                         if len(rows) > BASELINE_ROWS else [])
    for name, diff in (base.get("fingerprints_differ") or {}).items():
        lines.append(f"  environment differs from the baseline for {name}: {'; '.join(diff)}")
    return lines


def profile_cell(dtype: str, row: dict) -> str:
    """One dtype of a backend's precision profile (verdict.precision_profile): the contract met,
    or "none met", with the worst normalised error and every divergence counted by kind:
    "float64: none met (max e 7.1e+13; 74 of 74 diverge: value 74)"."""
    worst = number(row.get("max_normalised_error"), 3, none="n/a")
    kinds = sorted((row.get("kinds") or {}).items(), key=lambda kv: (-kv[1], kv[0]))
    diverged = (f"; {row['diverged']} of {row['cases']} diverge: " + ", ".join(f"{k} {n}" for k, n in kinds)
                if row.get("diverged") else "")
    return f"{dtype}: {row['meets'] or 'none met'} (max e {worst}{diverged})"


def unexpected_lines(records: list[dict], bad: list[dict]) -> list[str]:
    """One line per distinct (backend, kind or status, message) among the unexpected `bad`
    records, in order of first appearance: a single record names its case; a repeated
    message gives its count and first case, or "all N cases" when it covers every record of
    that backend (a backend that could not start, or fails the same way on everything).
    At most SUMMARY_ROWS lines; the rest are counted."""
    per_backend: dict[str, int] = {}
    for r in records:
        per_backend[r["backend"]] = per_backend.get(r["backend"], 0) + 1
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in bad:
        msg = r["message"].splitlines()[0] if r["message"] else ""
        groups.setdefault((r["backend"], _label(r), msg), []).append(r)
    lines = []
    for (backend, label, msg), recs in list(groups.items())[:SUMMARY_ROWS]:
        if len(recs) == 1:
            lines.append(f"  {backend}  {recs[0]['case_id']}  {label}: {clip(msg, MESSAGE_CHARS)}")
        elif len(recs) == per_backend[backend]:  # one line stands for many: room for the whole reason
            lines.append(f"  {backend}  all {len(recs)} cases: {label}: {clip(msg, GROUP_MESSAGE_CHARS)}")
        else:
            lines.append(f"  {backend}  {len(recs)} cases (first {recs[0]['case_id']}): {label}: "
                         f"{clip(msg, GROUP_MESSAGE_CHARS)}")
    left = sum(len(recs) for recs in list(groups.values())[SUMMARY_ROWS:])
    if left:
        lines.append(f"  ... and {left} more (results.json, junit.xml and the reports list them all)")
    return lines


def _label(rec: dict) -> str:
    """The kind (or status), with the diagnosis hypothesis where it says more: "value (flipped_kernel)"."""
    label = rec.get("kind") or rec["status"]
    diag = rec.get("diagnosis") if isinstance(rec.get("diagnosis"), dict) else {}
    hyp = diag.get("hypothesis")
    return f"{label} ({hyp})" if hyp and hyp != label else label


def unsupported_lines(records: list[dict]) -> list[str]:
    """One line per backend and reason it gave for not running cases, with a count, most
    frequent first; at most UNSUPPORTED_ROWS reasons per backend, the rest counted."""
    per: dict[str, dict[str, int]] = {}
    for r in records:
        if r["status"] == "unsupported":
            reason = (r["message"] or "").strip().splitlines()[0] if (r["message"] or "").strip() else "(no reason given)"
            per.setdefault(r["backend"], {}).setdefault(reason, 0)
            per[r["backend"]][reason] += 1
    lines = []
    for backend, reasons in per.items():
        ranked = sorted(reasons.items(), key=lambda kv: -kv[1])
        for reason, n in ranked[:UNSUPPORTED_ROWS]:
            lines.append(f"  {backend}  {n} case{'s' if n != 1 else ''}: {clip(reason, GROUP_MESSAGE_CHARS)}")
        rest = ranked[UNSUPPORTED_ROWS:]
        if rest:
            lines.append(f"  {backend}  {sum(n for _, n in rest)} more cases for {len(rest)} other reasons "
                         f"(results.json and the reports list them)")
    return lines
