"""Findings as data: one bug of one backend per finding, as a run publishes it.

A finding is found by experiment in the run's findings step (`discover`, with the live
backend; docs/findings-engine.md). This module builds its plain-JSON dict and reads
findings back for everything that has no backend at hand: a merge of shards, a
baseline, a manifest pin, the console, junit and the pages.

Invariants
- A finding's `status` is `confirmed` (its predicate was confirmed on fresh cases) or
  `uncharacterised` (said plainly, with its minimal case); no other predicate is
  published anywhere.
- Its id is a hash of (backend, predicate text), or of (backend, "uncharacterised"): it
  depends on the mechanism, not on which records a run held or in which order, so a
  run, a merge of shards, a baseline and a manifest pin agree. `key` is the same for a
  framework's variants sharing the predicate (`tensorflow`, `tensorflow[onednn]`).
- Members are recomputed from the predicate over whatever records are at hand
  (`with_members`): every diverging record it covers, whatever its kind; divergences
  no confirmed finding covers belong to their backend's one uncharacterised finding.
- Pure data: no backend, worker or file is touched.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Iterable

from .predicate import Predicate
from .spec import Case, CaseError
from .vocabulary import KIND_PHRASES

#: Version of the results.json `findings` section (docs/results-schema.md).
FINDINGS_VERSION = 2
UNCHARACTERISED = "uncharacterised"
#: Kinds as a few words ("wrong shape on 18 cases, wrong values on 11").
KIND_WORDS = {
    "shape": "wrong shape", "dtype": "wrong dtype", "nonfinite": "wrong NaN/Inf", "value": "wrong values",
    "subnormal_flush": "subnormals flushed", "inexact": "inexact results", "precision": "reduced precision",
    "rounding_bias": "biased rounding", "invalid_accepted": "invalid case accepted",
}


def framework_of(backend: str) -> str:
    """`tensorflow` for `tensorflow[onednn]`: what a finding's fresh cases are seeded by."""
    return backend.split("[", 1)[0]


def finding_id(backend: str, predicate: Predicate | None) -> str:
    text = "\x1f".join([backend, predicate.text() if predicate is not None else UNCHARACTERISED])
    return "F" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]


def shared_key(backend: str, predicate: Predicate | None) -> str:
    """The same bug on a framework's variants: a hash of (framework, predicate text)."""
    text = "\x1f".join([framework_of(backend), predicate.text() if predicate is not None else backend])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]


def predicate_of(finding: dict[str, Any]) -> Predicate | None:
    p = finding.get("predicate")
    return Predicate.from_list(p["atoms"]) if isinstance(p, dict) else None


def case_of(rec: dict[str, Any]) -> Case | None:
    try:
        return Case.from_dict(rec["case"])
    except (CaseError, TypeError, KeyError):
        return None


def diverging(records: Iterable[dict[str, Any]]) -> list[tuple[dict[str, Any], Case]]:
    """(record, case) of every divergence whose case parses."""
    out = []
    for r in records:
        if r.get("status") == "diverge":
            c = case_of(r)
            if c is not None:
                out.append((r, c))
    return out


def _hypothesis(rec: dict[str, Any]) -> str | None:
    d = rec.get("diagnosis")
    return d.get("hypothesis") if isinstance(d, dict) else None


def _member(rec: dict[str, Any]) -> dict[str, Any]:
    return {"case_id": rec["case_id"], "kind": rec.get("kind"), "hypothesis": _hypothesis(rec)}


def members(predicate: Predicate, records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every diverging record whose case `predicate` covers, as {case_id, kind, hypothesis}, by case id."""
    return sorted((_member(r) for r, c in diverging(records) if predicate.holds(c)), key=lambda m: m["case_id"])


def kinds_summary(rows: list[dict[str, Any]]) -> tuple[dict[str, int], str]:
    """({kind: count}, "wrong shape on 18 cases, wrong values on 11"), commonest first."""
    tally: dict[str, int] = {}
    for m in rows:
        tally[m["kind"] or "diverge"] = tally.get(m["kind"] or "diverge", 0) + 1
    order = sorted(tally, key=lambda k: (-tally[k], k))
    parts = [f"{KIND_WORDS.get(k, k)} on {tally[k]}" + (f" case{'s' if tally[k] != 1 else ''}" if i == 0 else "")
             for i, k in enumerate(order)]
    return {k: tally[k] for k in order}, ", ".join(parts)


def title(predicate: Predicate, kinds: dict[str, int]) -> str:
    """"depthwise_conv2d with stride > 1 and dilation > 1 on one axis returns wrong results (wrong shape, wrong values)"."""
    if len(kinds) == 1:
        return f"{predicate.words()} {KIND_PHRASES.get(next(iter(kinds)), 'diverges')}"
    if not kinds:
        return f"{predicate.words()} diverges"
    return f"{predicate.words()} returns wrong results ({', '.join(KIND_WORDS.get(k, k) for k in kinds)})"


def confirmed(backend: str, predicate: Predicate, *, minimal: Case, base: Case, started_from: str,
              necessary: list[str], experiments: list[dict[str, Any]], confirmation: dict[str, Any],
              cost: dict[str, Any], version: str | None) -> dict[str, Any]:
    """A confirmed finding's dict, members still to set (`with_members`)."""
    return {
        "id": finding_id(backend, predicate), "key": shared_key(backend, predicate), "backend": backend,
        "framework": framework_of(backend), "backend_version": version, "status": "confirmed",
        "predicate": {"text": predicate.text(), "words": predicate.words(), "atoms": predicate.to_list()},
        "title": predicate.words(), "necessary": list(necessary),
        "minimal_case": minimal.to_dict(), "minimal_case_id": minimal.id, "experiment_case_id": base.id,
        "started_from": started_from, "members": [], "count": 0, "kinds": {}, "summary": "", "known": 0,
        "unexpected": 0, "experiments": experiments, "confirmation": confirmation, "cost": cost,
        "repro": None, "short_repro": None, "notes": [],
    }


def uncharacterised(backend: str, rows: list[tuple[dict[str, Any], Case]], *, minimal: Case | None = None,
                    notes: Iterable[str] = (), version: str | None = None) -> dict[str, Any]:
    """The backend's one finding for the divergences no experiment could characterise."""
    smallest = minimal or min((c for _, c in rows), key=lambda c: (math_size(c), c.id))
    f = {
        "id": finding_id(backend, None), "key": shared_key(backend, None), "backend": backend,
        "framework": framework_of(backend), "backend_version": version, "status": UNCHARACTERISED,
        "predicate": None, "title": "", "necessary": [],
        "minimal_case": smallest.to_dict(), "minimal_case_id": smallest.id, "experiment_case_id": smallest.id,
        "started_from": None, "members": [], "count": 0, "kinds": {}, "summary": "", "known": 0, "unexpected": 0,
        "experiments": [], "confirmation": None, "cost": {}, "repro": None, "short_repro": None,
        "notes": list(notes),
    }
    _set_rows(f, sorted((_member(r) for r, _ in rows), key=lambda m: m["case_id"]), [r for r, _ in rows])
    return f


def math_size(c: Case) -> int:
    """Elements of input and output: what orders cases from small to large."""
    n, h, w, ch = c.input_shape
    on, oh, ow, oc = c.output_shape
    return n * h * w * ch + on * oh * ow * oc


def _set_rows(f: dict[str, Any], rows: list[dict[str, Any]], recs: list[dict[str, Any]]) -> None:
    kinds, summary = kinds_summary(rows)
    known = sum(1 for r in recs if r.get("known"))
    f.update(members=rows, count=len(rows), kinds=kinds, summary=summary, known=known, unexpected=len(rows) - known)
    pred = predicate_of(f)
    if pred is not None:
        f["title"] = title(pred, kinds)
    else:
        f["title"] = f"{len(rows)} divergence{'s' if len(rows) != 1 else ''} no experiment could characterise"


def with_members(found: list[dict[str, Any]], records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`found`'s confirmed findings with members recomputed over `records` (those of their
    backend), and per backend one uncharacterised finding for the divergences none covers
    (keeping the notes and minimal case of an earlier one). Ordered by backend (first
    appearance in `records`), confirmed first, then by count."""
    by_backend: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_backend.setdefault(r["backend"], []).append(r)
    confirmed_ = [f for f in found if f.get("status") == "confirmed"]
    old = {f["backend"]: f for f in found if f.get("status") == UNCHARACTERISED}
    out = []
    order = list(by_backend) + [b for b in dict.fromkeys(f["backend"] for f in found) if b not in by_backend]
    for backend in order:
        recs = by_backend.get(backend, [])
        mine = [f for f in confirmed_ if f["backend"] == backend]
        preds = [predicate_of(f) for f in mine]
        for f, pred in zip(mine, preds):
            rows = members(pred, recs)
            by_id = {r["case_id"]: r for r in recs}
            _set_rows(f, rows, [by_id[m["case_id"]] for m in rows])
        rest = [(r, c) for r, c in diverging(recs) if not any(p.holds(c) for p in preds)]
        mine.sort(key=lambda f: (-f["count"], f["id"]))
        out += mine
        if rest:
            prev = old.get(backend)
            minimal = case_of({"case": prev["minimal_case"]}) if prev else None
            version = next((r.get("backend_version") for r, _ in rest if r.get("backend_version")), None)
            u = uncharacterised(backend, rest, minimal=minimal, notes=(prev or {}).get("notes") or (), version=version)
            if prev:
                u.update(repro=prev.get("repro"), short_repro=prev.get("short_repro"))
            out.append(u)
    return out


# ---- the results.json section, merges, baselines ---------------------------------------------

def section(found: list[dict[str, Any]], *, budget: dict[str, Any] | None, experiments: dict[str, Any] | None = None
            ) -> dict[str, Any]:
    """The results.json `findings` section: the findings, the experiments' budget (None: no
    experiments ran, e.g. a merge of runs without findings) and what they cost."""
    return {"version": FINDINGS_VERSION, "budget": budget, "experiments": experiments or {}, "items": found}


def items(run: dict[str, Any]) -> list[dict[str, Any]]:
    """The findings of a run document: its section's, or (a document without one, or of an
    older version) its divergences as one uncharacterised finding per backend."""
    sec = run.get("findings")
    if isinstance(sec, dict) and sec.get("version") == FINDINGS_VERSION and isinstance(sec.get("items"), list):
        return sec["items"]
    return with_members([], run.get("records") or [])


def merged(runs: list[dict[str, Any]], records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The findings of a merge: every shard's confirmed findings, one per id (the same bug
    found in two shards has one id), with members recomputed over all `records`."""
    by_id: dict[str, dict[str, Any]] = {}
    unchar: dict[str, dict[str, Any]] = {}
    for run in runs:
        for f in items(run):
            if f.get("status") == "confirmed":
                by_id.setdefault(f["id"], dict(f))
            elif f.get("status") == UNCHARACTERISED and f["backend"] not in unchar:
                unchar[f["backend"]] = dict(f)
    return with_members(list(by_id.values()) + list(unchar.values()), records)


def baseline_diff(baseline: dict[str, Any], now: list[dict[str, Any]],
                  backends: Iterable[str] | None = None) -> dict[str, Any]:
    """{"new": [...], "fixed": [...]} findings, matched by id; a baseline finding is fixed
    only on a backend of this run (`backends`)."""
    before = {f["id"]: f for f in items(baseline)}
    current = {f["id"]: f for f in now}
    row = lambda f: {"id": f["id"], "backend": f["backend"], "status": f.get("status"),  # noqa: E731
                     "title": f.get("title", ""), "count": f.get("count", 0)}
    backends = set(backends) if backends is not None else None
    return {"new": [row(f) for i, f in current.items() if i not in before],
            "fixed": [row(f) for i, f in before.items() if i not in current
                      and (backends is None or f["backend"] in backends)]}


# ---- what the console, junit and the pages show ------------------------------------------------

def grouped(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per bug and framework: a framework's variants that share a finding (same
    key) are one row naming each variant; by framework, then by count."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for f in found:
        row = rows.setdefault((f.get("framework") or framework_of(f["backend"]), f.get("key") or f["id"]),
                              {"framework": f.get("framework") or framework_of(f["backend"]), "title": f.get("title", ""),
                               "status": f.get("status"), "summary": f.get("summary", ""),
                               "predicate": (f.get("predicate") or {}).get("text", ""), "findings": []})
        row["findings"].append(f)
    order = {fw: i for i, fw in enumerate(dict.fromkeys(f.get("framework") or framework_of(f["backend"]) for f in found))}
    return sorted(rows.values(), key=lambda r: (order[r["framework"]], r["status"] != "confirmed",
                                                -max(f.get("count", 0) for f in r["findings"])))


def console_lines(found: list[dict[str, Any]], limit: int = 30) -> list[str]:
    """The findings for the end-of-run summary: one line per bug (variants sharing it on one
    line), at most `limit`; results.json and the reports list them all."""
    if not found:
        return []
    rows = grouped(found)
    n_conf = sum(1 for f in found if f.get("status") == "confirmed")
    lines = [f"{len(rows)} bug{'s' if len(rows) != 1 else ''} ({n_conf} confirmed finding"
             f"{'s' if n_conf != 1 else ''}, {len(found) - n_conf} uncharacterised; variants sharing one on one line):"]
    for row in rows[:limit]:
        names = ", ".join(f["backend"] for f in row["findings"])
        ids = " ".join(f["id"] for f in row["findings"][:1])
        count = max(f.get("count", 0) for f in row["findings"])
        known = " known" if all(f.get("count") and f.get("known") == f.get("count") for f in row["findings"]) else ""
        lines.append(f"  {ids}  {names}: {row['title']}  [{count} case{'s' if count != 1 else ''}{known}]")
    if len(rows) > limit:
        lines.append(f"  ... and {len(rows) - limit} more (results.json and index.html list them all)")
    return lines


def _display(f: dict[str, Any], case_href: Callable[[str], str | None]) -> dict[str, Any]:
    conf = f.get("confirmation") if isinstance(f.get("confirmation"), dict) else {}
    rows = conf.get("rows") or []
    sr = f.get("short_repro") if isinstance(f.get("short_repro"), dict) else {}
    return {
        "id": str(f.get("id", "")), "title": str(f.get("title", "")), "status": str(f.get("status", "")),
        "predicate": str((f.get("predicate") or {}).get("text", "")), "summary": str(f.get("summary", "")),
        "count": int(f.get("count") or 0), "known": int(f.get("known") or 0), "backend": str(f.get("backend", "")),
        "necessary": ", ".join(str(n) for n in f.get("necessary") or []),
        "inside": sum(1 for r in rows if r.get("side") == "inside" and r.get("counts") == "for"),
        "outside": sum(1 for r in rows if r.get("side") == "outside" and r.get("counts") == "for"),
        "neither": sum(1 for r in rows if r.get("counts") == "neither"),
        "experiments": len(f.get("experiments") or []),
        "minimal_case_id": str(f.get("minimal_case_id") or ""),
        "repro": str(f.get("repro") or ""),
        "short_repro": str(sr.get("script") or ""), "short_repro_path": str(sr.get("path") or ""),
        "cases": [{"id": str(m.get("case_id")), "href": case_href(str(m.get("case_id")))}
                  for m in f.get("members") or []],
        "notes": [str(n) for n in f.get("notes") or []],
    }


def page_items(run: dict[str, Any], backend: str, case_href: Callable[[str], str | None]) -> list[dict[str, Any]]:
    """The findings of a backend page (templates/backend_findings.html): plain display dicts."""
    return [_display(f, case_href) for f in items(run) if f.get("backend") == backend]


def index_rows(run: dict[str, Any], page_of: dict[str, str]) -> list[dict[str, Any]]:
    """The bugs of index.html (templates/index_findings.html), per framework: one row per
    bug, its variants named once each with a link to their finding."""
    out = []
    for row in grouped(items(run)):
        out.append({"framework": str(row["framework"]), "title": str(row["title"]), "status": str(row["status"]),
                    "summary": str(row["summary"]), "predicate": str(row["predicate"]),
                    "backends": [{"name": str(f["backend"]), "id": str(f["id"]), "count": int(f.get("count") or 0),
                                  "known": int(f.get("known") or 0),
                                  "href": f"{page_of[f['backend']]}#finding-{f['id']}" if f["backend"] in page_of
                                  else ""} for f in row["findings"]]})
    return out
