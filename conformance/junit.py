"""junit.xml from a run: one <testcase> per (case, backend), one <testsuite> per backend.

Mapping (docs/results-schema.md):
- classname = backend name, name = case id, time = seconds inside the backend (to the
  millisecond, as pytest writes it; results.json has them to 4 digits).
- pass -> plain testcase; unsupported -> <skipped> with the backend's reason (its first
  REASON_CHARS characters).
- diverge / error / crash / timeout not in the manifest -> <failure> (type = the
  divergence kind or the status, message = the one-line message, text = what CI needs to
  read: the case's description, diagnosis, error and the end of its traceback, exit,
  repeats, repro; the figures and the case parameters are in results.json, the parameters
  in the case id too).
  They all fail: a backend that crashes or hangs on a case is not conformant.
- a known divergence (matched --expected) -> <skipped type="known"> whose message names
  the kind (or status), the manifest entry, its reason and link, so CI shows it without failing.
- in addition, one <testcase classname="BACKEND.findings" name="ID: title"> per finding
  (conformance.findings): a <failure> while any case it covers is unexpected, else
  <skipped type="known">; properties predicate, kind, hypothesis, confirmation, cases.
- the environment (properties fingerprint, cpu and kernel_path: the machine and the
  backend's kernel path, one line each) is written once per <testsuite> when all of its
  records share one fingerprint (the usual case), else on each testcase whose record has
  one: 8,000 testcases repeating the same three lines were half of the file.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from .fingerprint import machine_line, path_line
from .repeats import repeat_lines
from .results import is_unexpected


#: Characters of an unsupported record's reason a skip message keeps (results.json has it whole).
REASON_CHARS = 160
#: Lines of a traceback a failure's text keeps (its end: where it was raised).
TRACEBACK_LINES = 12


def _clipped(text: str) -> str:
    """`text` cut to REASON_CHARS characters (CI's test views show one line of a skip reason)."""
    return text if len(text) <= REASON_CHARS else text[:REASON_CHARS - 3].rstrip() + "..."


def _details(rec: dict[str, Any]) -> str:
    """What CI shows under a failure: the case's own description (its id, the testcase name,
    holds the parameters), the diagnosis, the error with the end of its traceback, the exit,
    the repeats and the repro; the figures are in the message and, all of them, in results.json."""
    case = rec.get("case") or {}
    parts = [f"case: {case['name']}: {case.get('reason') or ''}".rstrip(": ")] if case.get("name") else []
    if rec.get("diagnosis"):
        parts.append(f"diagnosis: {rec['diagnosis'].get('hypothesis')}: {rec['diagnosis'].get('explanation')}")
    if rec.get("error"):
        tb = (rec["error"].get("traceback") or "").rstrip("\n").splitlines()
        cut = [f"  ... ({len(tb) - TRACEBACK_LINES} lines of the traceback above)"] if len(tb) > TRACEBACK_LINES else []
        parts.append("\n".join([f"{rec['error']['type']}: {rec['error']['message']}", *cut, *tb[-TRACEBACK_LINES:]]))
    if rec.get("exit"):
        parts.append(f"exit: {json.dumps(rec['exit'])}")
    parts += repeat_lines(rec.get("repeat"))
    if rec.get("repro"):
        parts.append(f"repro: {rec['repro']}")
    return "\n".join(parts)


def _finding_cases(suite: ET.Element, backend: str, run: dict[str, Any]) -> tuple[int, int, int]:
    """One <testcase classname="BACKEND.findings" name="ID: title"> per finding of `backend`
    (the same findings as results.json): a failure while any of its cases is unexpected,
    skipped (type known) when all are known. Returns (testcases, failures, skipped)."""
    found = [f for f in ((run.get("findings") or {}).get("items") or []) if f.get("backend") == backend]
    failures = skipped = 0
    for f in found:
        tc = ET.SubElement(suite, "testcase", classname=f"{backend}.findings", name=f"{f['id']}: {f['title']}",
                           time="0.000")
        pred = (f.get("predicate") or {}).get("text") or "(uncharacterised)"
        cases = ", ".join(m["case_id"] for m in f.get("members") or [])
        text = (f"status: {f['status']}\npredicate: {pred}\n{f.get('summary', '')}\ncases ({f['count']}): {cases}\n"
                f"minimal case: {f['minimal_case_id']}")
        for label, rel in (("repro", f.get("repro")), ("short repro", (f.get("short_repro") or {}).get("path"))):
            if rel:
                text += f"\n{label}: {rel}"
        if f.get("unexpected"):
            failures += 1
            kind = next(iter(f.get("kinds") or {}), "diverge")
            fail = ET.SubElement(tc, "failure", type=kind,
                                 message=f"finding {f['id']}: {f['title']} ({f['count']} cases)")
            fail.text = text
        else:
            skipped += 1
            ET.SubElement(tc, "skipped", type="known", message=f"known finding {f['id']}: {f['title']}")
        props = ET.SubElement(tc, "properties")
        for name, value in (("status", f["status"]), ("predicate", pred), ("kinds", f.get("summary", "")),
                            ("cases", f["count"])):
            ET.SubElement(props, "property", name=name, value=str(value))
    return len(found), failures, skipped


def _environment(fid: str, fp: dict[str, Any]) -> list[tuple[str, str]]:
    return [("fingerprint", fid), ("cpu", machine_line(fp)), ("kernel_path", path_line(fp))]


def _properties(parent: ET.Element, pairs: list[tuple[str, str]]) -> None:
    props = ET.Element("properties")
    parent.insert(0, props)  # JUnit readers expect properties first
    for name, value in pairs:
        ET.SubElement(props, "property", name=name, value=value)


def build(run: dict[str, Any]) -> ET.Element:
    root = ET.Element("testsuites", name="conformance")
    by_backend: dict[str, list[dict[str, Any]]] = {}
    for rec in run["records"]:
        by_backend.setdefault(rec["backend"], []).append(rec)
    totals = {"tests": 0, "failures": 0, "skipped": 0, "time": 0.0}
    fingerprints = run.get("fingerprints") or {}
    for backend, recs in by_backend.items():
        suite = ET.SubElement(root, "testsuite", name=backend)
        shared = {rec.get("fingerprint") for rec in recs}
        shared_fp = next(iter(shared)) if len(shared) == 1 else None
        if shared_fp in fingerprints:
            _properties(suite, _environment(shared_fp, fingerprints[shared_fp]))
        failures = skipped = 0
        total_time = 0.0
        for rec in recs:
            t = (rec.get("time") or {}).get("backend_s") or 0.0
            total_time += t
            tc = ET.SubElement(suite, "testcase", classname=backend, name=rec["case_id"], time=f"{t:.3f}")
            fp = fingerprints.get(rec.get("fingerprint") or "")
            env_props = _environment(rec["fingerprint"], fp) if fp and rec["fingerprint"] != shared_fp else []
            if rec["status"] == "unsupported":
                skipped += 1
                ET.SubElement(tc, "skipped", message=f"unsupported: {_clipped(rec['message'])}")
            elif is_unexpected(rec):
                failures += 1
                fail = ET.SubElement(tc, "failure", type=rec["kind"] or rec["status"],
                                     message=f"{rec['status']}: {rec['message']}")
                fail.text = _details(rec)
            elif rec.get("known"):
                skipped += 1
                known = rec["known"]
                link = f" ({known['link']})" if known.get("link") else ""
                # The kind (or, for error/crash/timeout, the status) and the manifest entry are
                # in the message: a <properties> block on each of 1,200 known testcases was an
                # eighth of a default run's file.
                ET.SubElement(tc, "skipped", type="known",
                              message=f"known {rec['kind'] or rec['status']} (manifest entry "
                                      f"{known.get('manifest_entry')}): {known['reason']}{link}")
            if env_props:
                _properties(tc, env_props)
        extra, f_failures, f_skipped = _finding_cases(suite, backend, run)
        failures += f_failures
        skipped += f_skipped
        suite.set("tests", str(len(recs) + extra))
        suite.set("failures", str(failures))
        suite.set("errors", "0")
        suite.set("skipped", str(skipped))
        suite.set("time", f"{total_time:.3f}")
        totals["tests"] += len(recs) + extra
        totals["failures"] += failures
        totals["skipped"] += skipped
        totals["time"] += total_time
    root.set("tests", str(totals["tests"]))
    root.set("failures", str(totals["failures"]))
    root.set("errors", "0")
    root.set("skipped", str(totals["skipped"]))
    root.set("time", f"{totals['time']:.3f}")
    return root


def write(path: str | Path, run: dict[str, Any]) -> None:
    tree = ET.ElementTree(build(run))
    ET.indent(tree, space="")  # one element a line (grep-able); indenting 8,000 testcases cost 75 kB
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tree.write(path, encoding="utf-8", xml_declaration=True)
