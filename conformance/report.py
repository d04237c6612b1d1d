"""HTML reports of a run: one page per backend and an index, from results.json alone.

`write_reports(run, out_dir)` renders `<out_dir>/<backend>.html` for every backend and
`<out_dir>/index.html`; `conformance report RESULTS.json --out DIR` (`conformance.cli.report`)
does the same for a saved run.

Invariants
- Self-contained pages: inline CSS, JS and SVG only; no network, no CDN, no fonts.
- Everything a backend or a results file supplies (names, versions, messages,
  tracebacks, case names, repro scripts) is text: Jinja2 autoescaping is on and no
  template marks such data safe. SVG is drawn by the templates from numbers prepared
  here; links from data are only rendered when they are http(s) URLs.
- Bounded size: a row of the case table is a few hundred bytes; only divergences get a
  detail section, and only the `DETAIL_LIMIT` most severe ones get heatmaps, bars and
  repro (the page says how many were left out). Errors are grouped by message. A
  5,000-case run stays well under 10 MB; a divergence-free one is small.
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

from .text import cell_number, safe_filename
from .vocabulary import STATUSES

#: Divergences beyond this many (most severe first) are listed in the table only.
DETAIL_LIMIT = 200
#: Heatmaps are max-pooled to at most this many cells per axis for display.
HEATMAP_CELLS = 32
REPRO_MAX_CHARS = 20_000
TRACEBACK_MAX_CHARS = 4_000
#: Error groups and cross-backend rows shown at most (the page says when more exist).
ERROR_GROUP_LIMIT = 200
CROSS_LIMIT = 500
CASE_IDS_PER_GROUP = 20

#: Colour bins for normalised error / threshold (upper bounds), then beyond and non-finite.
BINS = (
    (0.5, "#f4f9f4", "≤ ½ threshold"),
    (1.0, "#c7e9c0", "≤ threshold"),
    (2.0, "#fee391", "≤ 2×"),
    (10.0, "#fdae61", "≤ 10×"),
    (100.0, "#f46d43", "≤ 100×"),
    (1e3, "#d73027", "≤ 10³×"),
    (1e6, "#a50026", "≤ 10⁶×"),
    (math.inf, "#40004b", "> 10⁶× or non-finite"),
)
_HUGE = 1e299  # compare writes non-finite errors as 1e300 in the maps


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


def _bins(errors, threshold: float | None):
    """Colour bin index per error (array in, int array out): error / threshold against BINS."""
    import numpy as np

    e = np.asarray(errors, dtype=np.float64)
    nonfinite = ~np.isfinite(e) | (e >= _HUGE)
    if threshold:
        ratio = e / threshold
    else:  # exact profile: any error at all is beyond tolerance
        ratio = np.where(e == 0, 0.0, np.maximum(e, 1.0 + 1e-9))
    uppers = np.array([u for u, _, _ in BINS[:-1]])
    idx = np.searchsorted(uppers, np.where(nonfinite, np.inf, ratio), side="left")
    return np.where(nonfinite, len(BINS) - 1, idx)


def heatmap_svg(heatmap: list[list[float]] | None, threshold: float | None) -> dict | None:
    """Drawing data for the error heatmap over output H x W: one path per colour bin.

    Returns {"w", "h", "paths": [(colour, d)], "rows", "cols", "pooled"} or None. Path
    data holds only numbers and path commands (built here, never from input text).
    """
    import numpy as np

    try:
        grid = np.asarray(heatmap, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if grid.ndim != 2 or grid.size == 0:
        return None
    rows, cols = grid.shape
    grid = np.where(np.isnan(grid), np.inf, grid)
    sh, sw = -(-rows // HEATMAP_CELLS), -(-cols // HEATMAP_CELLS)
    pooled = np.pad(grid, ((0, -rows % sh), (0, -cols % sw)), constant_values=0.0)
    pooled = pooled.reshape(pooled.shape[0] // sh, sh, pooled.shape[1] // sw, sw).max(axis=(1, 3))
    bins = _bins(pooled, threshold)
    ph, pw = bins.shape
    cell = max(4, min(16, 320 // max(ph, pw)))
    parts: dict[int, list[str]] = {}
    for i in range(ph):
        row = bins[i].tolist()
        j = 0
        while j < pw:  # one rectangle per run of one colour along the row
            k = j
            while k + 1 < pw and row[k + 1] == row[j]:
                k += 1
            n = (k - j + 1) * cell
            parts.setdefault(row[j], []).append(f"M{j * cell} {i * cell}h{n}v{cell}h-{n}z")
            j = k + 1
    paths = [(BINS[b][1], "".join(ds)) for b, ds in sorted(parts.items())]
    return {"w": pw * cell, "h": ph * cell, "paths": paths, "rows": rows, "cols": cols, "pooled": (ph, pw) != (rows, cols)}


def channel_bars_svg(errors: list[float] | None, threshold: float | None) -> dict | None:
    """Drawing data for per-channel worst errors: log-scale bars, a threshold line."""
    import numpy as np

    try:
        vals = np.asarray(errors, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if vals.ndim != 1 or vals.size == 0:
        return None
    bins = _bins(vals, threshold).tolist()
    height, bar = 80, max(2, min(12, 480 // vals.size))

    def y(r: float) -> float:  # log10 of error / threshold, from 10^-2 (bottom) to 10^6 (top)
        if not math.isfinite(r):
            return 0.0
        r = min(max(r, 1e-2), 1e6)
        return round(height * (1 - (math.log10(r) + 2) / 8), 1)

    scale = threshold or 1.0
    parts: dict[int, list[str]] = {}
    for i, (v, b) in enumerate(zip(vals.tolist(), bins)):
        top = 0.0 if b == len(BINS) - 1 else y(v / scale)
        parts.setdefault(b, []).append(f"M{i * bar} {height}V{top}h{max(bar - 1, 1)}V{height}z")
    return {"w": vals.size * bar, "h": height, "paths": [(BINS[b][1], "".join(ds)) for b, ds in sorted(parts.items())],
            "threshold_y": y(1.0), "count": int(vals.size)}


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


def _detail(rec: dict, anchor: str, base: Path, full: bool, out: Path | None = None) -> dict:
    f = rec.get("figures") or {}
    thr = _fig(f, "threshold")
    expected, actual = _shapes(rec)
    kind = rec.get("kind") or ""
    d = {"anchor": anchor, "id": str(rec.get("case_id", "")), "kind": kind,
         "message": rec.get("message") or "", "case": _case_dict(rec), "expected_shape": expected,
         "actual_shape": actual, "figures": [(k, cell_number(v) if not isinstance(v, list) else str(v)) for k, v in f.items()],
         "diagnosis": rec.get("diagnosis") if isinstance(rec.get("diagnosis"), dict) else None,
         "known": _known(rec), "notes": [str(n) for n in rec.get("notes") or []], "full": full,
         "invalid": None, "criteria": criteria(f) if f and kind != "shape" else None,
         "bits": None}
    if kind == "invalid_accepted":
        d["invalid"] = {"reason": _invalid_reason(rec), "received": _received(rec)}
        d["criteria"] = None
    if "effective_bits" in f:
        from .compare import effective_bits_text

        text = effective_bits_text(f)
        d["bits"] = None if text in d["message"] else text  # said once
    if full:
        d["case_text"] = _case_text(_case_dict(rec))
        d["heatmap"] = heatmap_svg(rec.get("heatmap"), thr)
        d["bars"] = channel_bars_svg(rec.get("channel_errors"), thr)
        d["worst"] = _worst_rows(rec)
        d["minimised"] = _case_text(rec.get("minimised")) if rec.get("minimised") else ""
        d["repro"], d["repro_problem"] = _read_repro(base, rec.get("repro"))
        d["repro_path"] = rec.get("repro") if isinstance(rec.get("repro"), str) else ""
        d["repro_href"] = _repro_href(base, out or base, d["repro_path"]) if d["repro"] else None
        d["repro_lines"] = d["repro"].count("\n") if d["repro"] else 0
    return d


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


def backend_page(name: str, info: dict, records: list[dict], base: Path, out: Path | None = None) -> dict:
    """Everything the backend template shows, as plain data."""
    divergent = sorted((r for r in records if r.get("status") == "diverge"), key=_severity, reverse=True)
    anchors = {id(r): f"d{i}" for i, r in enumerate(divergent)}
    details = [_detail(r, anchors[id(r)], base, i < DETAIL_LIMIT, out) for i, r in enumerate(divergent)]
    by_op_dtype: OrderedDict[tuple[str, str], Counter] = OrderedDict()
    for r in sorted(records, key=lambda r: (_case_dict(r).get("op", ""), _case_dict(r).get("dtype", ""))):
        c = _case_dict(r)
        key = "known" if r.get("known") else r.get("status")
        by_op_dtype.setdefault((c.get("op", "?"), c.get("dtype", "?")), Counter())[key] += 1
    errors, errors_left = _error_groups([r for r in records if r.get("status") in ("error", "crash", "timeout")])
    version = info.get("version") or next((r.get("backend_version") for r in records if r.get("backend_version")), "")
    device = info.get("device") or next((r.get("device") for r in records if r.get("device")), "")
    rows = [_row(r, anchors.get(id(r))) for r in records]
    return {
        "name": name, "version": version or "", "device": device or "", "spec": info.get("spec") or "",
        "counts": _counts(records), "total": len(records),
        "by_op_dtype": [{"op": op, "dtype": dt, "counts": [cnt.get(s, 0) for s in STATUSES + ("known",)]}
                        for (op, dt), cnt in by_op_dtype.items()],
        "rows": rows, "not_passing": sum(1 for r in rows if r["status"] != "pass"),
        "details": details, "detail_limit": DETAIL_LIMIT,
        "details_full": sum(1 for d in details if d["full"]), "errors": errors, "errors_left": errors_left,
        "unsupported": sum(1 for r in records if r.get("status") == "unsupported"),
        "unsupported_groups": _unsupported_groups(records), "criteria": _table_criteria(records),
    }


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


def _cross(by_backend: dict[str, list[dict]], pages: dict[str, str], anchors: dict[int, str]) -> tuple[list[dict], int]:
    """Per case with at least one divergence: each backend's verdict and who agrees with whom."""
    index: OrderedDict[str, dict[str, dict]] = OrderedDict()
    for backend, recs in by_backend.items():
        for r in recs:
            index.setdefault(str(r.get("case_id", "")), {})[backend] = r
    rows = []
    for case_id, recs in index.items():
        if not any(r.get("status") == "diverge" for r in recs.values()):
            continue
        cells, groups = [], OrderedDict()
        for backend in by_backend:
            r = recs.get(backend)
            status, text, full = _verdict(r)
            known = bool(r is not None and r.get("known"))
            href = pages[backend] + (f"#{anchors[id(r)]}" if r is not None and id(r) in anchors else "")
            cells.append({"status": status, "text": text, "title": f"{backend}: {full}" + (" (known)" if known else ""),
                          "href": href, "known": known})
            if status in ("pass", "diverge"):
                groups.setdefault(full, []).append(backend)
        rows.append({"id": case_id, "label": short_label(case_id), "cells": cells,
                     "agree": _agreement(groups, len(by_backend))})
    rows.sort(key=lambda r: -sum(c["status"] == "diverge" for c in r["cells"]))
    return rows[:CROSS_LIMIT], max(0, len(rows) - CROSS_LIMIT)


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
        page = backend_page(backend, info, recs, base, out)
        anchors.update({id(r): row["anchor"] for r, row in zip(recs, page["rows"]) if row["anchor"]})
        path = out / pages[backend]
        row_anchor = {row["id"]: row["anchor"] for row in page["rows"] if row["anchor"]}
        found = _findings_view("page_items", run, backend, lambda cid: f"#{row_anchor[cid]}" if cid in row_anchor else None)
        page_common = dict(common, environment={**common["environment"], **_fingerprint_items(run, info)})
        path.write_text(template.render(page=page, index="index.html", findings=found, **page_common), encoding="utf-8")
        written.append(path)
        summaries.append({"name": backend, "href": pages[backend], "version": page["version"],
                          "device": page["device"], "counts": page["counts"], "total": page["total"]})
    cross, cross_left = _cross(by_backend, pages, anchors)
    index_env = dict(common["environment"])
    for backend in by_backend:  # the machine once, then each backend's kernel path
        info = infos.get(backend) if isinstance(infos.get(backend), dict) else {}
        items = _fingerprint_items(run, info)
        if items:
            index_env.setdefault("machine", items["machine"])
            index_env[f"kernel path: {backend}"] = items["kernel path"]
    index = env.get_template("index.html").render(
        backends=summaries, groups=_group_tables(by_backend), cross=cross, cross_left=cross_left,
        cross_limit=CROSS_LIMIT, manifest=manifest, findings=_findings_view("index_rows", run, pages),
        **dict(common, environment=index_env))
    path = out / "index.html"
    path.write_text(index, encoding="utf-8")
    written.append(path)
    return written
