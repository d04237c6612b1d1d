"""HTML reports of a run: one page per backend and an index, from results.json alone.

`write_reports(run, out_dir)` renders `<out_dir>/<backend>.html` for every backend and
`<out_dir>/index.html`; `conformance report RESULTS.json --out DIR` (`conformance.cli.report`)
does the same for a saved run.

Invariants
- Self-contained pages: inline CSS, JS and SVG only; no network, no CDN, no fonts.
- Everything a backend or a results file supplies (names, versions, messages,
  tracebacks, case names, repro scripts) is text: Jinja2 autoescaping is on and no
  template marks such data safe. SVG is drawn by the templates from numbers prepared
  in conformance.report_svg; links from data are only rendered when they are http(s) URLs.
- Bounded size: a row of the case table is about 130 bytes. A detail section (heatmap,
  bars, worst elements, repro) is written for each finding's minimal case and its
  `MEMBER_DETAILS` most severe members, and for the `WORST_DETAILS` most severe
  divergences, at most `DETAIL_LIMIT` in all; every other divergence is its table row
  (the same anchor), and the page says how many those are. The index's cross-backend
  view has one row per distinct pattern of verdicts, at most `CROSS_LIMIT`. Short
  repros over `SHORT_REPRO_INLINE` characters are linked, not inlined. Errors are
  grouped by message. A default run (15 backends, 568 cases) writes about 2.4 MB
  of pages; a 5,000-case run stays well under 10 MB; a divergence-free one is small.
- Repro scripts are read from `record["repro"]` relative to the run directory, only
  from inside it, and truncated at `REPRO_MAX_CHARS`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import re
import urllib.parse
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any, Iterable

from .report_svg import BINS, channel_bars_svg, heatmap_svg
from .text import cell_number, safe_filename
from .vocabulary import STATUSES

#: Detail sections per page at most: each finding's minimal case and its MEMBER_DETAILS
#: most severe other members, then the WORST_DETAILS most severe divergences; every
#: other divergence is its row of the case table (docs/reports.md, "Size").
DETAIL_LIMIT = 40
MEMBER_DETAILS = 2
WORST_DETAILS = 10
#: Worst elements shown per detail section (results.json keeps up to 8).
WORST_ROWS = 5
#: Finding case links shown per finding; the rest are rows of the case table.
FINDING_CASES = 30
#: A short repro longer than this is linked (its file), not inlined.
SHORT_REPRO_INLINE = 4_000
REPRO_MAX_CHARS = 20_000
TRACEBACK_MAX_CHARS = 4_000
#: Error groups and cross-backend verdict patterns shown at most (the page says when more exist).
ERROR_GROUP_LIMIT = 200
CROSS_LIMIT = 200
#: Case ids named on hover of a cross-backend pattern besides its example.
CROSS_IDS = 5
CASE_IDS_PER_GROUP = 20


def page_names(backends: Iterable[str]) -> dict[str, str]:
    """backend name -> a safe, unique file name (`torch[native_pad]` -> `torch_native_pad.html`)."""
    out: dict[str, str] = {}
    used = {"index"}
    for name in backends:
        base = safe_filename(name)
        stem, n = base, 2
        while stem.lower() in used:
            stem, n = f"{base}-{n}", n + 1
        used.add(stem.lower())
        out[name] = stem + ".html"
    return out


# ---- numbers and small formatting helpers -----------------------------------------

def _fig(figures: dict, key: str) -> float | None:
    """A figure as a float; None when absent, inf when recorded as null/'inf' (non-finite)."""
    if not figures or key not in figures:
        return None
    v = figures[key]
    if v is None or v in ("inf", "nan"):
        return math.inf
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _padding_kind(case: dict) -> str:
    p = case.get("padding")
    return p if isinstance(p, str) else "explicit"


def _case_dict(rec: dict) -> dict:
    c = rec.get("case")
    return c if isinstance(c, dict) else {}


def _severity(rec: dict) -> float:
    """Normalised error over threshold; shape and non-finite divergences first."""
    f = rec.get("figures") or {}
    if rec.get("kind") in ("shape", "invalid_accepted"):
        return math.inf
    e, t = _fig(f, "max_normalised_error"), _fig(f, "threshold")
    if e is None:
        return 0.0
    if not t:
        return math.inf if e > 0 else 0.0
    return e / t


# ---- page data ------------------------------------------------------------------------

def _read_repro(base: Path, rel: Any) -> tuple[str | None, str | None]:
    """(script text, problem) for a repro path relative to the run directory."""
    if not rel or not isinstance(rel, str):
        return None, None
    try:
        root = base.resolve()
        path = (root / rel).resolve()
        if not path.is_relative_to(root):
            return None, f"repro path {rel!r} is outside the run directory: not read"
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return None, f"repro script {rel!r} not readable: {exc.strerror or exc}"
    if len(text) > REPRO_MAX_CHARS:
        text = text[:REPRO_MAX_CHARS] + f"\n# ... truncated at {REPRO_MAX_CHARS} characters; see {rel}\n"
    return text, None


def _case_text(case: Any) -> str:
    """A case dict as YAML (one `key: value` line each; JSON values are valid YAML)."""
    if not isinstance(case, dict):
        return ""
    return "".join(f"{k}: {json.dumps(v, default=str, ensure_ascii=False)}\n" for k, v in case.items())


def _shapes(rec: dict) -> tuple[str, str]:
    f = rec.get("figures") or {}
    if "expected_shape" in f:
        return str(tuple(f["expected_shape"])), str(tuple(f.get("actual_shape") or ()))
    try:
        from .spec import Case

        shape = str(Case.from_dict(_case_dict(rec)).output_shape)
    except Exception:  # noqa: BLE001 (a malformed case in a results file: show nothing)
        return "", ""
    return shape, shape


def _invalid_reason(rec: dict) -> str:
    try:
        from .spec import Case

        return Case.from_dict(_case_dict(rec)).invalid_reason or ""
    except Exception:  # noqa: BLE001 (a malformed case in a results file: say nothing more)
        return ""


def _received(rec: dict) -> str:
    """What an invalid case got instead of an error: "an array of shape (1, 0, 1, 1)", "None", ..."""
    f = rec.get("figures") or {}
    if isinstance(f.get("actual_shape"), list):
        return f"an array of shape {tuple(f['actual_shape'])}"
    m = re.search(r"returned (an output of shape (\(.*?\))|.+?) instead of an error", rec.get("message") or "")
    if m:
        return f"an array of shape {m.group(2)}" if m.group(2) else m.group(1)
    return "an output"


def _known(rec: dict) -> dict | None:
    k = rec.get("known")
    if not isinstance(k, dict):
        return None
    link = k.get("link")
    safe_link = link if isinstance(link, str) and re.match(r"^https?://", link) else None
    return {"reason": k.get("reason") or "", "link": link if isinstance(link, str) else "", "href": safe_link,
            "entry": k.get("manifest_entry")}


def _bits(f: dict) -> str:
    """Effective bits for the table: "n/a" where no element was finite, marked where some were not."""
    if "effective_bits" not in (f or {}):
        return ""
    if f.get("effective_bits") is None:
        return "n/a"
    text = cell_number(f.get("effective_bits"))
    return f"{text}*" if f.get("nonfinite_mismatches") else text


def _row(rec: dict, anchor: str | None) -> dict:
    f = rec.get("figures") or {}
    c = _case_dict(rec)
    status = rec.get("status") or "?"
    kind = rec.get("kind") or ""
    if status in ("error", "crash", "timeout") and isinstance(rec.get("error"), dict):
        kind = kind or rec["error"].get("type") or ""
    if rec.get("known"):
        kind = f"{kind} (known)" if kind else "known"
    t = (rec.get("time") or {}).get("backend_s")
    return {"id": str(rec.get("case_id", "")), "op": c.get("op", ""), "dtype": c.get("dtype", ""),
            "status": status, "kind": kind, "err": cell_number(_fig(f, "max_normalised_error")),
            "thr": cell_number(_fig(f, "threshold")), "bits": _bits(f),
            "time": "" if t is None else cell_number(t), "anchor": anchor}


def _criteria_defaults() -> tuple[float, float]:
    """(sigma limit, sign-test |z| limit) of this version of the suite, for records that do not carry them."""
    from .tolerance import BIAS_Z, SIGMA_LIMIT

    return SIGMA_LIMIT, BIAS_Z


def criteria(f: dict) -> dict:
    """The criteria a record was judged by, from its own figures, and which of them it fails.

    {"threshold", "hard_bound", "sigma_limit", "bias_limit", "failed": [names], "z"}; the
    sigma and sign-test limits fall back to this version's constants.
    """
    sigma_default, bias_default = _criteria_defaults()
    thr, err = _fig(f, "threshold"), _fig(f, "max_normalised_error")
    sig_lim = _fig(f, "sigma_limit") or sigma_default
    bias_lim = _fig(f, "rounding_bias_z_limit") or bias_default
    sig, z = _fig(f, "max_sigma_error"), _fig(f, "rounding_bias_z")
    failed = []
    if thr is not None and err is not None and err > thr:
        failed.append("threshold")
    if sig is not None and sig > sig_lim and (f.get("mismatched") or 0) > 0:
        failed.append("sigma")
    if z is not None and abs(z) > bias_lim:
        failed.append("sign test")
    return {"threshold": cell_number(thr), "hard_bound": cell_number(_fig(f, "hard_bound")) or "none", "sigma_limit": cell_number(sig_lim),
            "bias_limit": cell_number(bias_lim), "z": cell_number(z), "sigma": cell_number(sig), "failed": failed,
            "has_threshold": thr is not None}


def _worst_rows(rec: dict) -> list[dict]:
    """Worst elements, most severe first: normalised error over that element's own limit."""
    rows = []
    for w in rec.get("worst") or []:
        if not isinstance(w, dict):
            continue
        e, lim = _fig(w, "normalised_error"), _fig(w, "limit")
        if e is None:
            sev = 0.0
        elif lim is None:
            sev = e
        else:
            sev = e / lim if lim > 0 else (math.inf if e > 0 else 0.0)
        rows.append({"index": str(tuple(w.get("index", ()))), "expected": cell_number(w.get("expected")),
                     "actual": cell_number(w.get("actual")), "magnitude": cell_number(w.get("magnitude")),
                     "error": cell_number(e), "limit": cell_number(lim), "sigma": cell_number(_fig(w, "sigma_error")),
                     "severity": cell_number(sev) if lim is not None else "", "_sev": sev})
    rows.sort(key=lambda r: -r["_sev"])
    return rows


def _repro_href(base: Path, out: Path, rel: str) -> str | None:
    """A relative URL from the pages in `out` to the script `base/rel` (None outside `base`)."""
    try:
        root = base.resolve()
        target = (root / rel).resolve()
        if not target.is_relative_to(root):
            return None
        return urllib.parse.quote(Path(os.path.relpath(target, out.resolve())).as_posix())
    except (OSError, ValueError):
        return None


def _detail(rec: dict, anchor: str, base: Path, out: Path | None = None) -> dict:
    f = rec.get("figures") or {}
    thr = _fig(f, "threshold")
    expected, actual = _shapes(rec)
    kind = rec.get("kind") or ""
    d = {"anchor": anchor, "id": str(rec.get("case_id", "")), "kind": kind,
         "message": rec.get("message") or "", "case": _case_dict(rec), "expected_shape": expected,
         "actual_shape": actual, "figures": [(k, cell_number(v) if not isinstance(v, list) else str(v)) for k, v in f.items()],
         "diagnosis": rec.get("diagnosis") if isinstance(rec.get("diagnosis"), dict) else None,
         "known": _known(rec), "notes": [str(n) for n in rec.get("notes") or []],
         "invalid": None, "criteria": criteria(f) if f and kind != "shape" else None,
         "bits": None}
    if kind == "invalid_accepted":
        d["invalid"] = {"reason": _invalid_reason(rec), "received": _received(rec)}
        d["criteria"] = None
    d["repeat"] = _repeat_view(rec.get("repeat"))
    if kind == "nondeterministic":  # the first output met every criterion: the repeat is the divergence
        d["criteria"] = None
    if "effective_bits" in f:
        from .compare import effective_bits_text

        text = effective_bits_text(f)
        d["bits"] = None if text in d["message"] else text  # said once
    d["case_text"] = _case_text(_case_dict(rec))
    d["heatmap"] = heatmap_svg(rec.get("heatmap"), thr)
    d["bars"] = channel_bars_svg(rec.get("channel_errors"), thr)
    worst = _worst_rows(rec)
    d["worst"], d["worst_left"] = worst[:WORST_ROWS], max(0, len(worst) - WORST_ROWS)
    d["minimised"] = _case_text(rec.get("minimised")) if rec.get("minimised") else ""
    d["repro"], d["repro_problem"] = _read_repro(base, rec.get("repro"))
    d["repro_path"] = rec.get("repro") if isinstance(rec.get("repro"), str) else ""
    d["repro_href"] = _repro_href(base, out or base, d["repro_path"]) if d["repro"] else None
    d["repro_lines"] = d["repro"].count("\n") if d["repro"] else 0
    return d


def _repeat_view(fields: Any) -> dict | None:
    """How two calls with the same inputs differed (`repeats.difference`), for display; None when they agree."""
    from .repeats import differs, exact_text, message

    if not isinstance(fields, dict) or fields.get("identical", True):
        return None
    rows = [{"index": str(tuple(p.get("index") or ())), "first": exact_text(p.get("first")),
             "other": exact_text(p.get("other"))} for p in fields.get("positions") or [] if isinstance(p, dict)]
    return {"message": message(fields), "judged": differs(fields), "call": str(fields.get("call")), "rows": rows}


def _error_groups(records: list[dict]) -> tuple[list[dict], int]:
    groups: OrderedDict[tuple, dict] = OrderedDict()
    for rec in records:
        err = rec.get("error") if isinstance(rec.get("error"), dict) else {}
        ex = rec.get("exit") if isinstance(rec.get("exit"), dict) else {}
        key = (rec.get("status"), err.get("type") or "", err.get("message") or rec.get("message") or "",
               str(ex.get("exitcode")), str(ex.get("signal")))
        g = groups.get(key)
        if g is None:
            tb = err.get("traceback") or ""
            if len(tb) > TRACEBACK_MAX_CHARS:
                tb = "... (truncated)\n" + tb[-TRACEBACK_MAX_CHARS:]
            g = groups[key] = {"status": key[0], "type": key[1], "message": key[2], "traceback": tb,
                               "exitcode": ex.get("exitcode"), "signal": ex.get("signal"), "cases": [], "count": 0,
                               "known": 0}
        g["count"] += 1
        g["known"] += 1 if rec.get("known") else 0
        if len(g["cases"]) < CASE_IDS_PER_GROUP:
            g["cases"].append(str(rec.get("case_id", "")))
    ordered = sorted(groups.values(), key=lambda g: (STATUSES.index(g["status"]) if g["status"] in STATUSES else 9,
                                                      -g["count"]))
    return ordered[:ERROR_GROUP_LIMIT], max(0, len(ordered) - ERROR_GROUP_LIMIT)


def _unsupported_groups(records: list[dict]) -> list[dict]:
    """The reasons a backend gave for not running cases, most frequent first, with a count each."""
    c = Counter((r.get("message") or "").strip() or "(no reason given)" for r in records
                if r.get("status") == "unsupported")
    return [{"reason": reason, "count": n} for reason, n in c.most_common(ERROR_GROUP_LIMIT)]


def _counts(records: Iterable[dict]) -> dict[str, int]:
    """status -> count of records not explained by the manifest, and "known" -> those that are."""
    c = Counter("known" if rec.get("known") else rec.get("status") for rec in records)
    return {s: c.get(s, 0) for s in STATUSES + ("known",)}


def _table_criteria(records: list[dict]) -> dict:
    """The criteria in force over a page's records, read from their figures: distinct values joined."""
    sigma_default, bias_default = _criteria_defaults()
    sig = sorted({v for v in (_fig(r.get("figures") or {}, "sigma_limit") for r in records) if v is not None})
    bias = sorted({v for v in (_fig(r.get("figures") or {}, "rounding_bias_z_limit") for r in records) if v is not None})
    return {"sigma_limit": ", ".join(cell_number(v) for v in sig or [sigma_default]),
            "bias_limit": ", ".join(cell_number(v) for v in bias or [bias_default])}


def divergences(records: list[dict]) -> tuple[list[dict], dict[int, str]]:
    """A backend's divergences, most severe first, and id(record) -> its anchor on the page.

    Every divergence has an anchor: its detail section where it has one, else its row of
    the case table, so links from the findings and from the index always land."""
    divergent = sorted((r for r in records if r.get("status") == "diverge"), key=_severity, reverse=True)
    return divergent, {id(r): f"d{i}" for i, r in enumerate(divergent)}


def _detailed(divergent: list[dict], findings: list[dict]) -> set[int]:
    """ids of the divergences that get a detail section: each finding's minimal case and its
    MEMBER_DETAILS most severe other members, then the WORST_DETAILS most severe, at most
    DETAIL_LIMIT in all. `divergent` is most severe first; `findings` are display dicts."""
    rank = {id(r): i for i, r in enumerate(divergent)}
    by_case: dict[str, dict] = {}
    for r in divergent:
        by_case.setdefault(str(r.get("case_id", "")), r)
    chosen: list[dict] = []
    for f in findings:
        members = sorted((by_case[c["id"]] for c in f.get("cases") or [] if c.get("id") in by_case),
                         key=lambda r: rank[id(r)])
        minimal = by_case.get(str(f.get("minimal_case_id") or ""))
        chosen += ([minimal] if minimal else []) + [m for m in members if m is not minimal][:MEMBER_DETAILS]
    chosen += divergent[:WORST_DETAILS]
    picked = list(dict.fromkeys(id(r) for r in chosen))  # first choice wins: findings before the worst
    return set(picked[:DETAIL_LIMIT])


def backend_page(name: str, info: dict, records: list[dict], base: Path, out: Path | None = None,
                 findings: list[dict] = ()) -> dict:
    """Everything the backend template shows, as plain data; `findings` (display dicts of
    conformance.findings.page_items) choose which divergences get a detail section."""
    divergent, anchors = divergences(records)
    detailed = _detailed(divergent, list(findings))
    details = [_detail(r, anchors[id(r)], base, out) for r in divergent if id(r) in detailed]
    by_op_dtype: OrderedDict[tuple[str, str], Counter] = OrderedDict()
    for r in sorted(records, key=lambda r: (_case_dict(r).get("op", ""), _case_dict(r).get("dtype", ""))):
        c = _case_dict(r)
        key = "known" if r.get("known") else r.get("status")
        by_op_dtype.setdefault((c.get("op", "?"), c.get("dtype", "?")), Counter())[key] += 1
    errors, errors_left = _error_groups([r for r in records if r.get("status") in ("error", "crash", "timeout")])
    version = info.get("version") or next((r.get("backend_version") for r in records if r.get("backend_version")), "")
    device = info.get("device") or next((r.get("device") for r in records if r.get("device")), "")
    rows = [dict(_row(r, anchors.get(id(r))), detail=id(r) in detailed) for r in records]
    return {
        "name": name, "version": version or "", "device": device or "", "spec": info.get("spec") or "",
        "counts": _counts(records), "total": len(records),
        "by_op_dtype": [{"op": op, "dtype": dt, "counts": [cnt.get(s, 0) for s in STATUSES + ("known",)]}
                        for (op, dt), cnt in by_op_dtype.items()],
        "rows": rows, "not_passing": sum(1 for r in rows if r["status"] != "pass"),
        "details": details, "divergences": len(divergent), "member_details": MEMBER_DETAILS,
        "worst_details": WORST_DETAILS, "errors": errors, "errors_left": errors_left,
        "unsupported": sum(1 for r in records if r.get("status") == "unsupported"),
        "unsupported_groups": _unsupported_groups(records), "criteria": _table_criteria(records),
        "repeats": _repeats_line(records),
    }


def _repeats_line(records: list[dict]) -> str:
    """"N cases repeated with the same inputs, M differed", or "" when none was repeated."""
    from .repeats import summary

    row = next(iter(summary(records).values()), None)
    if not row or not row["repeated"]:
        return ""
    return f"{row['repeated']} cases run again with the same inputs; {row['differed']} gave another result"


def _group_tables(by_backend: dict[str, list[dict]]) -> list[dict]:
    dims = (("op", lambda c: c.get("op", "?")), ("dtype", lambda c: c.get("dtype", "?")),
            ("padding", _padding_kind), ("profile", lambda c: c.get("profile", "normal")))
    tables = []
    for label, key in dims:
        values: OrderedDict[str, dict[str, Counter]] = OrderedDict()
        for backend, recs in by_backend.items():
            for r in recs:
                v = str(key(_case_dict(r)))
                status = "known" if r.get("known") else r.get("status")
                values.setdefault(v, {}).setdefault(backend, Counter())[status] += 1
        rows = []
        for v in sorted(values):
            cells = []
            for backend in by_backend:
                cnt = values[v].get(backend, Counter())
                cells.append([(s, cnt.get(s, 0)) for s in STATUSES + ("known",) if cnt.get(s, 0)])
            rows.append({"value": v, "cells": cells})
        tables.append({"label": label, "rows": rows})
    return tables


def _verdict(rec: dict | None) -> tuple[str, str, str]:
    """(status, short text, full text) of one backend on one case, for the cross-backend view.

    The short text is the divergence kind (or the status); the full text adds the diagnosis
    where it says more than the kind ("subnormal_flush", never "subnormal_flush: subnormal_flush").
    """
    if rec is None:
        return "none", "not run", "not run"
    status = rec.get("status") or "?"
    if status == "diverge":
        diag = rec.get("diagnosis") if isinstance(rec.get("diagnosis"), dict) else {}
        hyp = diag.get("hypothesis") or ""
        kind = rec.get("kind") or "diverge"
        full = f"{kind}: {hyp}" if hyp and hyp != kind else kind
        return status, kind, full
    return status, status, status


#: Case-id segments that are the defaults; the cross-backend view leaves them out of its labels.
_DEFAULT_SEGMENTS = {"n1", "s1x1", "d1x1"}


def short_label(case_id: str) -> str:
    """A case id without its default segments (batch 1, stride 1, dilation 1), for narrow columns."""
    parts = case_id.split("-")
    kept = [p for i, p in enumerate(parts) if i == 0 or p not in _DEFAULT_SEGMENTS]
    return "-".join(kept)


def _agreement(groups: "OrderedDict[str, list[str]]", total: int) -> list[dict]:
    """Backends grouped by full verdict, compactly: a count per verdict ("all" when every
    backend agrees); the names are in the columns and on hover."""
    return [{"verdict": verdict, "label": "all" if len(names) == total else str(len(names)), "backends": names}
            for verdict, names in groups.items()]


def _cross(by_backend: dict[str, list[dict]], pages: dict[str, str],
           anchors: dict[int, str]) -> tuple[list[dict], int, int]:
    """One row per distinct pattern of verdicts over the cases where some backend diverges.

    A row shows its first case (the example, its cells linking to that case's divergences)
    and how many cases share the pattern; the most divergent patterns come first, then the
    most frequent. Returns (rows up to CROSS_LIMIT, patterns left out, cases they hold)."""
    index: OrderedDict[str, dict[str, dict]] = OrderedDict()
    for backend, recs in by_backend.items():
        for r in recs:
            index.setdefault(str(r.get("case_id", "")), {})[backend] = r
    patterns: OrderedDict[tuple, dict] = OrderedDict()
    for case_id, recs in index.items():
        if not any(r.get("status") == "diverge" for r in recs.values()):
            continue
        verdicts = [(_verdict(recs.get(b)), bool(recs.get(b) is not None and recs[b].get("known"))) for b in by_backend]
        key = tuple((status, full, known) for (status, _, full), known in verdicts)
        row = patterns.get(key)
        if row is None:
            cells, groups = [], OrderedDict()
            for backend, ((status, text, full), known) in zip(by_backend, verdicts):
                r = recs.get(backend)
                title = (full if full != text else "") + (" (known)" if known else "")
                href = pages[backend] + f"#{anchors[id(r)]}" if r is not None and id(r) in anchors else None
                cells.append({"status": status, "text": text, "title": title.strip(), "href": href, "known": known})
                if status in ("pass", "diverge"):
                    groups.setdefault(full, []).append(backend)
            row = patterns[key] = {"id": case_id, "label": short_label(case_id), "cells": cells, "count": 0,
                                   "others": [], "agree": _agreement(groups, len(by_backend))}
        elif len(row["others"]) < CROSS_IDS:
            row["others"].append(case_id)
        row["count"] += 1
    rows = sorted(patterns.values(), key=lambda r: (-sum(c["status"] == "diverge" for c in r["cells"]), -r["count"]))
    for row in rows:
        more = row["count"] - 1 - len(row["others"])
        row["more"] = (f"{row['count']} cases with these verdicts; also " + ", ".join(row["others"])
                       + (f", ... ({more} more)" if more else "")) if row["others"] else ""
    shown = rows[:CROSS_LIMIT]
    return shown, len(rows) - len(shown), sum(r["count"] for r in rows[CROSS_LIMIT:])


def _manifest(run: dict) -> dict | None:
    """The manifest's audit for the index: its path, FIXED entries and entries matching nothing."""
    exp = run.get("expected")
    if not isinstance(exp, dict):
        return None
    fixed = [f for f in exp.get("fixed") or [] if isinstance(f, dict)]
    return {"path": str(exp.get("path") or ""), "unmatched": [str(u) for u in exp.get("unmatched") or []],
            "fixed": [{"backend": str(f.get("backend", "")), "case_id": str(f.get("case_id", "")),
                       "entry": str(f.get("manifest_entry", "")), "reason": str(f.get("reason") or "")} for f in fixed]}


# ---- rendering ------------------------------------------------------------------------

def _environment():
    from jinja2 import Environment, PackageLoader, StrictUndefined
    from markupsafe import Markup

    env = Environment(loader=PackageLoader("conformance", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    # The one script is our own static file; the page's CSP allows exactly it (by hash),
    # so even markup that slipped past escaping could not run a script.
    script = env.loader.get_source(env, "report.js")[0]
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    env.globals.update(STATUSES=STATUSES, BINS=BINS, script=Markup(script), script_hash=f"sha256-{digest}")
    return env


def _records_by_backend(run: dict) -> OrderedDict[str, list[dict]]:
    by_backend: OrderedDict[str, list[dict]] = OrderedDict((str(b), []) for b in (run.get("backends") or {}))
    for rec in run.get("records") or []:
        if isinstance(rec, dict):
            by_backend.setdefault(str(rec.get("backend", "?")), []).append(rec)
    return by_backend


def _findings_view(name: str, *args) -> list[dict]:
    """conformance.findings' display dicts for the findings partials (empty without that module)."""
    try:
        from . import findings
    except ImportError:
        return []
    return getattr(findings, name)(*args)


def _finding_links(finding: dict, base: Path, out: Path) -> dict:
    """A finding's display dict for the page: its scripts as links, a long short repro
    linked instead of inlined (its inputs are embedded), at most FINDING_CASES case links,
    most severe first."""
    f = dict(finding)
    f["repro_href"] = _repro_href(base, out, f["repro"]) if f.get("repro") else None
    f["short_repro_href"] = _repro_href(base, out, f["short_repro_path"]) if f.get("short_repro_path") else None
    script = f.get("short_repro") or ""
    f["short_repro_lines"], f["short_repro_kb"] = script.count("\n"), -(-len(script.encode("utf-8")) // 1024)
    if len(script) > SHORT_REPRO_INLINE and f["short_repro_href"]:
        f["short_repro"] = ""
    # Most severe first: a case's anchor is its rank among the backend's divergences (d0, d1, ...).
    cases = sorted(f.get("cases") or [], key=lambda c: int(c["href"][2:]) if c.get("href") else math.inf)
    f["cases"], f["cases_left"] = cases[:FINDING_CASES], max(0, len(cases) - FINDING_CASES)
    return f


def _fingerprint_items(run: dict, info: dict) -> dict[str, str]:
    """The environment fingerprint of a backend's worker as page items (plain strings, escaped by the template)."""
    from .fingerprint import machine_line, path_line

    fid = info.get("fingerprint") if isinstance(info, dict) else None
    fps = run.get("fingerprints") if isinstance(run.get("fingerprints"), dict) else {}
    fp = fps.get(fid) if isinstance(fid, str) else None
    if not isinstance(fp, dict):
        return {}
    return {"machine": machine_line(fp), "kernel path": path_line(fp), "fingerprint": str(fid)}


def write_reports(run: dict, out_dir, *, repro_dir=None) -> list[Path]:
    """Write `<out_dir>/<backend>.html` per backend and `<out_dir>/index.html`; return the paths.

    `run` is a results.json document (conformance.results). Repro scripts are read from
    `record["repro"]` relative to `repro_dir` (default: `out_dir`, where the runner writes them).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = Path(repro_dir) if repro_dir is not None else out
    env = _environment()
    by_backend = _records_by_backend(run)
    pages = page_names(by_backend)
    infos = run.get("backends") or {}
    manifest = _manifest(run)
    common = {"tool": run.get("tool") or {}, "environment": run.get("environment") or {}, "run": run.get("run") or {},
              "precision_profile": run.get("precision_profile") or {}, "with_known": manifest is not None}
    written, summaries, anchors = [], [], {}
    template = env.get_template("backend.html")
    for backend, recs in by_backend.items():
        info = infos.get(backend) if isinstance(infos.get(backend), dict) else {}
        divergent, page_anchors = divergences(recs)
        anchors.update(page_anchors)
        case_anchor: dict[str, str] = {}
        for r in divergent:
            case_anchor.setdefault(str(r.get("case_id", "")), page_anchors[id(r)])
        found = [_finding_links(f, base, out) for f in _findings_view(
            "page_items", run, backend, lambda cid: f"#{case_anchor[cid]}" if cid in case_anchor else None)]
        page = backend_page(backend, info, recs, base, out, found)
        path = out / pages[backend]
        page_common = dict(common, environment={**common["environment"], **_fingerprint_items(run, info)})
        path.write_text(template.render(page=page, index="index.html", findings=found, **page_common), encoding="utf-8")
        written.append(path)
        summaries.append({"name": backend, "href": pages[backend], "version": page["version"],
                          "device": page["device"], "counts": page["counts"], "total": page["total"]})
    cross, cross_left, cross_left_cases = _cross(by_backend, pages, anchors)
    index_env = dict(common["environment"])
    for backend in by_backend:  # the machine once, then each backend's kernel path
        info = infos.get(backend) if isinstance(infos.get(backend), dict) else {}
        items = _fingerprint_items(run, info)
        if items:
            index_env.setdefault("machine", items["machine"])
            index_env[f"kernel path: {backend}"] = items["kernel path"]
    index = env.get_template("index.html").render(
        backends=summaries, groups=_group_tables(by_backend), cross=cross, cross_left=cross_left,
        cross_left_cases=cross_left_cases, cross_limit=CROSS_LIMIT, manifest=manifest, findings=_findings_view("index_rows", run, pages),
        **dict(common, environment=index_env))
    path = out / "index.html"
    path.write_text(index, encoding="utf-8")
    written.append(path)
    return written
