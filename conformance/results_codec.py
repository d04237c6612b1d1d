"""The compact encoding of results.json (schema 3): how a run's records are written, and read back.

A run in memory (and in results.jsonl) holds one full record per (case, backend), each
with its case, every field and every float at 17 digits: 16 MB for a default run of 15
backends. The file holds the same run in a third of that (docs/results-schema.md, "The
compact encoding"):
- `cases`: case id -> case parameters, once; a record names its case by `case_id`.
- A record field equal to its default is left out: the default is the record's run-level
  value for `backend_version`, `device`, `fingerprint` (those of `backends[backend]`),
  `precision` (`run.precision`) and a pass's `message` (`PASS_MESSAGE`); `new_record`'s
  value (null, "", [], {}) for every other field.
- `known`: the distinct `known` objects (manifest entries that explain records), once; a
  record's `known` is the index of its object there.
- `layouts`: field -> names. An object of such a field (`figures`, `time`, `repeat`, each
  element of `worst`) whose keys are the first names of its layout, in order, is written as
  the list of its values; any other object is written as it is.
- Display figures are rounded to `DISPLAY_DIGITS` significant digits (figures, times,
  heatmap, channel errors, the worst elements' errors and limits); a worst element's
  `actual` keeps the shortest repr that round-trips in the case's dtype, its `expected`
  `EXPECTED_DIGITS` digits (all 17 for float64 cases): exact enough for a bug report. `actual`
  is read back exactly (its repr, read in the case's dtype).

Invariants
- `decode(encode(run))` equals `run` but for that rounding: every record has its case and
  every field again, in `new_record`'s order, and in-memory records never change shape.
- This module imports nothing of the package: `results` passes it `new_record`.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import numpy as np

#: Significant digits of the display figures (4: what the reports show, e.g. 4.574e+04).
DISPLAY_DIGITS = 4
#: Significant digits of a worst element's exact result (float64 cases keep all 17): 9
#: digits resolve well below one float32 ulp, enough to see its error in the file.
EXPECTED_DIGITS = 9
#: A pass record's usual message, left out of the file.
PASS_MESSAGE = "within tolerance"
#: Fields whose objects are written as lists of values, in these orders (a file carries its own).
LAYOUTS: dict[str, list[str]] = {
    "figures": ["max_sigma_error", "sigma_limit", "elements", "mismatched", "max_abs_error", "max_rel_error",
                "max_normalised_error", "threshold", "hard_bound", "max_ulp", "effective_bits", "dtype_bits",
                "nonfinite_mismatches", "rounding_bias_z_limit", "precision", "precision_met", "rounding_bias_z"],
    "time": ["backend_s", "oracle_s", "compare_s"],
    "repeat": ["calls", "reason", "seconds", "identical"],
    "worst": ["index", "expected", "actual", "magnitude", "normalised_error", "limit", "sigma_error"],
}
#: Record fields whose default is a run-level value: field -> (top-level object, key) to read it from.
_RUN_DEFAULTS = ("backend_version", "device", "fingerprint", "precision")
#: Record fields always written (what a reader needs to find a record).
_KEPT = ("case_id", "backend", "status")
#: The numpy type whose shortest repr a worst element's `actual` keeps, per case dtype.
_ACTUAL_TYPES = {"float16": np.float16, "bfloat16": np.float32, "float32": np.float32}

NewRecord = Callable[..., dict[str, Any]]


class EncodingError(ValueError):
    """A results.json of schema 3 whose compact encoding cannot be read back; the message
    names the field at fault."""


def _rounded(value: Any, digits: int = DISPLAY_DIGITS) -> Any:
    """`value` with every float rounded to `digits` significant digits (in lists and objects)."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, list):
        return [_rounded(v, digits) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    return value


def _worst_element(el: dict[str, Any], dtype: str | None) -> dict[str, Any]:
    out = {}
    for key, v in el.items():
        if key == "actual" and isinstance(v, float) and dtype in _ACTUAL_TYPES:
            v = float(str(_ACTUAL_TYPES[dtype](v)))  # numpy's str: the shortest repr in that type
        elif key == "expected" and isinstance(v, float) and dtype != "float64":
            v = _rounded(v, EXPECTED_DIGITS)
        elif key not in ("index", "expected", "actual"):
            v = _rounded(v)
        out[key] = v
    return out


def _key(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True)


def _packed(obj: Any, layout: list[str]) -> Any:
    """`obj` as the list of its values when its keys are the first names of `layout`, in order."""
    if isinstance(obj, dict) and obj and list(obj) == layout[:len(obj)]:
        return list(obj.values())
    return obj


def _run_default(run: dict[str, Any], rec: dict[str, Any], field: str) -> Any:
    if field == "precision":
        return run["run"].get("precision")
    info = run["backends"].get(rec["backend"]) or {}
    return info.get("version" if field == "backend_version" else field)


def _default(run: dict[str, Any], rec: dict[str, Any], field: str, blank: dict[str, Any]) -> Any:
    """What `decode` gives `field` of `rec` when the file leaves it out (`blank`: `new_record`'s)."""
    if field in _RUN_DEFAULTS:
        return _run_default(run, rec, field)
    if field == "message" and rec["status"] == "pass":
        return PASS_MESSAGE
    return blank[field]


def encode(run: dict[str, Any], new_record: NewRecord) -> dict[str, Any]:
    """The document to write for `run` (a new object; `run` is not changed)."""
    cases: dict[str, Any] = {}
    known: dict[str, tuple[int, dict[str, Any]]] = {}  # canonical JSON -> (index, the `known` object)
    records = []
    for rec in run["records"]:
        cases.setdefault(rec["case_id"], rec["case"])
        if cases[rec["case_id"]] != rec["case"]:  # one id, two parameter sets: keep this record's own
            records.append(dict(rec))
            continue
        default = new_record({}, rec["case_id"], rec["backend"])
        dtype = rec["case"].get("dtype") if isinstance(rec["case"], dict) else None
        out: dict[str, Any] = {}
        for field, value in rec.items():
            if field == "case":
                continue
            if field not in _KEPT and field in default and value == _default(run, rec, field, default):
                continue
            if field in ("figures", "time", "heatmap", "channel_errors"):
                value = _rounded(value)
            if field == "worst" and isinstance(value, list):
                value = [_packed(_worst_element(el, dtype), LAYOUTS["worst"]) if isinstance(el, dict) else el
                         for el in value]
            elif field in LAYOUTS:
                value = _packed(value, LAYOUTS[field])
            elif field == "known" and isinstance(value, dict):
                value = known.setdefault(_key(value), (len(known), value))[0]
            out[field] = value
        records.append(out)
    doc = {k: v for k, v in run.items() if k != "records"}
    doc.update(layouts=LAYOUTS, cases=cases, known=[v for _, v in known.values()], records=records)
    return doc


def _unpacked(value: Any, layout: list[str], where: str) -> Any:
    if not isinstance(value, list):
        return value
    if len(value) > len(layout):
        raise EncodingError(f"{where}: expected at most {len(layout)} values (layouts), received {len(value)}")
    return dict(zip(layout, value))


def _exact_actual(el: Any, dtype: str | None) -> Any:
    """A worst element with its `actual` back at its exact value (its shortest repr, read in the
    case's dtype: -2e-07 is the float16 -1.7881393432617188e-07)."""
    if isinstance(el, dict) and isinstance(el.get("actual"), float) and dtype in _ACTUAL_TYPES:
        el["actual"] = float(_ACTUAL_TYPES[dtype](el["actual"]))
    return el


def decode(doc: dict[str, Any], new_record: NewRecord) -> dict[str, Any]:
    """The run in memory (full records) of a schema-3 document; EncodingError names what
    cannot be read back. Other problems are left to `results.validate`."""
    layouts, cases, known = doc.get("layouts", {}), doc.get("cases", {}), doc.get("known", [])
    records = doc.get("records")
    for name, value, label in (("layouts", layouts, "an object"), ("cases", cases, "an object"),
                               ("known", known, "a list"), ("records", records, "a list")):
        if not isinstance(value, list if name in ("known", "records") else dict):
            raise EncodingError(f"{name}: expected {label}, received {type(value).__name__}")
    for field, names in layouts.items():
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise EncodingError(f"layouts.{field}: expected a list of field names, received {str(names)[:40]!r}")
    if not isinstance(doc.get("backends"), dict) or not isinstance(doc.get("run"), dict):
        return doc  # results.validate names the missing or mistyped section
    run = {k: v for k, v in doc.items() if k not in ("layouts", "cases", "known", "records")}
    full = []
    for i, rec in enumerate(records):
        where = f"records[{i}]"
        if not isinstance(rec, dict) or not isinstance(rec.get("case_id"), str) or \
                not isinstance(rec.get("backend"), str):
            full.append(rec)  # validate says what is wrong with it
            continue
        if "case" not in rec and rec["case_id"] not in cases:
            raise EncodingError(f"{where}.case_id: expected a key of 'cases', received {rec['case_id']!r}")
        out = new_record(rec.get("case", cases.get(rec["case_id"])), rec["case_id"], rec["backend"])
        for field in _RUN_DEFAULTS:
            out[field] = _run_default(run, rec, field)
        if rec.get("status") == "pass":
            out["message"] = PASS_MESSAGE
        dtype = out["case"].get("dtype") if isinstance(out["case"], dict) else None
        for field, value in rec.items():
            if field == "worst" and isinstance(value, list) and "worst" in layouts:
                value = [_exact_actual(_unpacked(el, layouts["worst"], f"{where}.worst[{j}]"), dtype)
                         for j, el in enumerate(value)]
            elif field in layouts and field != "worst":
                value = _unpacked(value, layouts[field], f"{where}.{field}")
            elif field == "known" and isinstance(value, int) and not isinstance(value, bool):
                if not 0 <= value < len(known) or not isinstance(known[value], dict):
                    raise EncodingError(f"{where}.known: expected an index of 'known' (0 to {len(known) - 1}), "
                                        f"received {value}")
                value = dict(known[value])
            out[field] = value
        full.append(out)
    run["records"] = full
    return run
