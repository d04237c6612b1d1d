"""`conformance merge`: one run from the results.json files of its shards.

Invariants
- Shards must agree: a schema `results.load` reads (2 and 3 hold the same records, so they
  mix), one version per backend, one verdict (status and kind)
  per (case, backend) pair; anything else is a UsageError naming both files.
- Environments that differ between shards are said (`fingerprints_differ`), not refused.
- Findings: every shard's, one per id (an id names the backend and the mechanism, so the
  same bug found in two shards is one finding), members recomputed over all records;
  divergences none covers are their backend's uncharacterised finding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import findings, results, verdict
from ..usage import UsageError
from .outputs import fingerprint_differences


def merge(paths: list[str]) -> tuple[dict[str, Any], list[tuple[Path, str]]]:
    """One run from shard results, and the repro scripts to copy ((shard dir, relative path));
    UsageError on an unreadable file or conflicting verdicts."""
    runs = []
    for p in paths:
        try:
            runs.append((p, results.load(p)))
        except results.ResultsError as exc:
            raise UsageError(f"merge: {exc}") from None
    first = runs[0][1]
    path_of = {id(run): p for p, run in runs}
    merged = {k: v for k, v in first.items() if k not in ("records", "expected", "baseline", "findings")}
    merged["run"] = dict(first["run"], shard=None, params=None, merged_from=[str(p) for p, _ in runs],
                         started=min(r["run"]["started"] for _, r in runs),
                         finished=max(r["run"]["finished"] for _, r in runs),
                         interrupted=any(r["run"].get("interrupted") for _, r in runs))
    merged["backends"] = {}
    merged["fingerprints"] = {}
    differ: dict[str, list[str]] = {}
    for path, run in runs[1:]:  # shards of one environment should agree; say where they do not
        for name, lines in fingerprint_differences(first, run).items():
            differ.setdefault(name, []).extend(f"{path}: {line}" for line in lines)
    merged["run"]["fingerprints_differ"] = differ
    seen: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
    records: list[dict[str, Any]] = []
    copies: list[tuple[Path, str]] = []
    for path, run in runs:
        merged["fingerprints"].update(run.get("fingerprints") or {})
        for name, info in run["backends"].items():
            other = merged["backends"].setdefault(name, info)
            if other.get("version") != info.get("version") and info.get("version") is not None:
                if other.get("version") is None:
                    merged["backends"][name] = info
                else:
                    raise UsageError(f"merge: backend {name!r} has version {other.get('version')} in one file and "
                                     f"{info.get('version')} in {path}; expected shards of one environment")
        for rec in run["records"]:
            pair = (rec["case_id"], rec["backend"])
            if pair in seen:
                p0, r0 = seen[pair]
                if (r0["status"], r0["kind"]) != (rec["status"], rec["kind"]):
                    raise UsageError(f"merge: case {pair[0]} on {pair[1]} is {r0['status']}"
                                     f"{'/' + r0['kind'] if r0['kind'] else ''} in {p0} but {rec['status']}"
                                     f"{'/' + rec['kind'] if rec['kind'] else ''} in {path}; expected one verdict per pair")
                continue
            seen[pair] = (path, rec)
            records.append(rec)
            if rec.get("repro"):
                copies.append((Path(path).parent, rec["repro"]))
    merged["records"] = records
    merged["precision_profile"] = verdict.precision_profile(records)
    # One finding per id whichever shard found it (ids name the mechanism), members over all records.
    merged["findings"] = findings.section(findings.merged([run for _, run in runs], records), budget=None,
                                          experiments={"merged_from": len(runs)})
    for _, run in runs:  # each finding's scripts, where a shard wrote them
        for f in findings.items(run):
            for rel in (f.get("repro"), (f.get("short_repro") or {}).get("path")):
                if rel:
                    copies.append((Path(path_of[id(run)]).parent, rel))
    return merged, copies
