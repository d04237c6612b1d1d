"""Known divergences (an --expected manifest) and the diff against a baseline run.

A manifest is a YAML list of entries:

    - backend: tensorflow          # a backend name or an fnmatch glob ("torch*")
      version: ">=2.16,<3"         # optional PEP 440 specifier set on backend_version
      cases: "dw-*-s2x2-d2x2-*"    # an id glob or a list of them
      op: depthwise_conv2d         # optional: only cases of this op (or a list); cases then defaults to "*"
      kind: shape                  # optional: only divergences of this kind (or a list)
      precision: strict            # optional: only records judged under this contract (or a list)
      reason: "depthwise with strides > 1 and dilations > 1 returns a wrongly shaped result"
      link: https://github.com/tensorflow/tensorflow/issues/...   # optional
      when: {tensorflow.onednn: true, cpu.flags: avx512f}           # optional conditions

`when` holds facts of the environment fingerprint of the worker that produced a record
(conformance.fingerprint.CONDITIONS): all must hold for the entry to apply to it. A
boolean or integer must be equal; a string matches as an fnmatch glob (`cpu.model:
"*EPYC*"`); `cpu.flags` and `onnxruntime.providers` take one name or a list, each of
which must be present (`"!avx512f"`: absent). A fact the record's fingerprint does not
have (another framework, an old results file) does not hold.

    - backend: jax
      finding: "dtype != float16 and profile = subnormal"   # or a finding id: F2d809d6406
      reason: "flushes subnormals"                          # (cases then defaults to "*")

Invariants
- An entry only ever *explains* a record: the verdict stays `diverge` (or error, crash,
  timeout) and the record gains `known`; nothing is skipped or re-judged.
- An entry "covers" a (case, backend) pair when backend, version and case id match, kind
  aside; it "pins" the pair when one of its case patterns is that exact id (no glob).
  The manifest is out of date — *fixed* — where a pinned pair now passes, or where an
  entry covers pairs in the run but explains none of them (a glob entry's bug is gone).
  A glob entry does not make every passing pair it covers "fixed": `"*"` with a kind is
  how one says "this backend flushes subnormals wherever a case has them". An entry that
  covers nothing in the run is reported as unmatched (it may belong to another shard or
  backend, so it is a note, not an error).
- An entry applies to a record only where its `when` conditions hold on that record's
  fingerprint; where they do not, it covers nothing there, so it is never FIXED on a
  machine (or kernel path) that does not have the bug.
- A malformed manifest raises ManifestError naming the file, the entry index and the
  rule: unknown keys, kinds, statuses and condition names included.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, replace
from pathlib import Path

from .tolerance import PRECISIONS
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from .fingerprint import CONDITIONS
from .spec import OP_INFO, OPS
from .vocabulary import FAILING_STATUSES, KINDS, NONDETERMINISTIC

ENTRY_KEYS = ("backend", "version", "cases", "op", "kind", "precision", "reason", "link", "finding", "when")
#: What `kind` may name: a divergence kind, or a failing status (for errors, crashes, timeouts).
KNOWN_KINDS = (*KINDS, *FAILING_STATUSES)
#: Conditions that take a set of names (each must be present; "!name": absent).
SET_CONDITIONS = tuple(name for name, kind in CONDITIONS.items() if kind is list)


class ManifestError(ValueError):
    """A malformed --expected manifest."""


@dataclass(frozen=True)
class Entry:
    index: int
    backend: str
    version: SpecifierSet | None
    cases: tuple[str, ...]
    kinds: tuple[str, ...] | None
    reason: str
    link: str | None
    #: Only records judged under one of these precision contracts (None: any contract).
    precisions: tuple[str, ...] | None = None
    #: `finding:` pins a finding: its id (explains the cases that finding's predicate covers
    #: in this run) or a predicate (conformance.predicate text: explains every case it
    #: covers, wherever it comes from: a run, a merge, the pytest plugin's drawn cases).
    finding: str | None = None
    predicate: Any = None
    when: tuple[tuple[str, Any], ...] = ()
    #: Only cases of these ops (None: any op); matched by the case id's op tag (spec.OP_INFO).
    ops: tuple[str, ...] | None = None

    def holds(self, facts: dict[str, Any] | None) -> bool:
        """Every `when` condition holds on `facts` (conformance.fingerprint.facts of a record)."""
        facts = facts or {}
        for name, want in self.when:
            if name not in facts:
                return False
            have = facts[name]
            if name in SET_CONDITIONS:
                names = set(have if isinstance(have, list) else [have])
                for w in want:
                    if (w[1:] in names) if w.startswith("!") else (w not in names):
                        return False
            elif isinstance(want, str):
                if not fnmatch.fnmatchcase(str(have), want):
                    return False
            elif have != want or type(have) is not type(want):
                return False
        return True

    def covers(self, backend: str, version: str | None, case_id: str, facts: dict[str, Any] | None = None) -> bool:
        if not fnmatch.fnmatchcase(backend, self.backend):
            return False
        if self.when and not self.holds(facts):
            return False
        if self.version is not None:
            try:
                if not self.version.contains(Version(str(version)), prereleases=True):
                    return False
            except InvalidVersion:
                return False  # "unknown" satisfies no range
        if self.ops is not None and case_id.split("-", 1)[0] not in {OP_INFO[op].tag for op in self.ops}:
            return False
        return any(fnmatch.fnmatchcase(case_id, g) for g in self.cases)

    def pins(self, backend: str, version: str | None, case_id: str, facts: dict[str, Any] | None = None) -> bool:
        """Covers the pair through an exact case id (a pattern with no glob characters)."""
        return self.covers(backend, version, case_id, facts) and case_id in self.cases

    def matches_kind(self, kind: str | None) -> bool:
        return self.kinds is None or kind in self.kinds

    def explains(self, rec: dict[str, Any], facts: dict[str, Any] | None = None) -> bool:
        if rec["status"] not in FAILING_STATUSES or not self.covers(rec["backend"], rec["backend_version"], rec["case_id"],
                                                             facts):
            return False
        if self.precisions is not None and (rec.get("precision") or "strict") not in self.precisions:
            return False
        if self.finding is not None and not self._predicate_holds(rec):
            return False
        return self.kinds is None or (rec["kind"] or rec["status"]) in self.kinds

    def _predicate_holds(self, rec: dict[str, Any]) -> bool:
        """A predicate pin holds for the record's case; an id pin is applied by `pin_findings`."""
        from .spec import Case, CaseError

        try:
            return self.predicate_covers(Case.from_dict(rec["case"]))
        except (CaseError, TypeError, KeyError):
            return False

    def predicate_covers(self, case: Any) -> bool:
        """Whether this entry's `finding:` predicate covers `case` (False for an id pin)."""
        return self.predicate is not None and self.predicate.holds(case)

    def explains_case(self, backend: str, version: str | None, case: Any, kind: str | None,
                      facts: dict[str, Any] | None = None) -> bool:
        """Explains `kind` (or status) on `case`, a Case judged outside a run (the pytest
        plugin): by case id glob, and by its predicate where it pins a finding."""
        if not self.covers(backend, version, case.id, facts) or not self.matches_kind(kind):
            return False
        return self.finding is None or self.predicate_covers(case)

    def known(self) -> dict[str, Any]:
        return {"reason": self.reason, "link": self.link, "manifest_entry": self.index}


def _strings(path: Path, i: int, key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) and value:
        return (value,)
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    raise ManifestError(f"{path}: entry {i}: {key}: expected a non-empty string or list of strings, received {value!r}")


def _conditions(path: Path, i: int, raw: Any) -> tuple[tuple[str, Any], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict) or not raw:
        raise ManifestError(f"{path}: entry {i}: when: expected a mapping of conditions like "
                            f"{{tensorflow.onednn: true}}, received {raw!r}")
    out = []
    for name, value in raw.items():
        if name not in CONDITIONS:
            raise ManifestError(f"{path}: entry {i}: when: expected a condition among {', '.join(CONDITIONS)}, "
                                f"received {name!r}")
        kind = CONDITIONS[name]
        if name in SET_CONDITIONS:
            value = _strings(path, i, f"when.{name}", value)
        elif kind is bool and not isinstance(value, bool):
            raise ManifestError(f"{path}: entry {i}: when.{name}: expected true or false, received {value!r}")
        elif kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise ManifestError(f"{path}: entry {i}: when.{name}: expected an integer, received {value!r}")
        elif kind is str and not (isinstance(value, str) and value):
            raise ManifestError(f"{path}: entry {i}: when.{name}: expected a string (a glob), received {value!r}")
        out.append((str(name), value))
    return tuple(out)


def load_manifest(path: str | Path) -> list[Entry]:
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except IsADirectoryError:
        raise ManifestError(f"{path}: expected a YAML manifest file, received a directory") from None
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path}: expected a YAML manifest (UTF-8 text), received bytes that are not UTF-8 "
                            f"(at byte {exc.start})") from None
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read the expected-divergence manifest ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        first = " ".join(str(exc).split())[:160]
        raise ManifestError(f"{path}: expected YAML, received a syntax error ({first})") from None
    except RecursionError:
        raise ManifestError(f"{path}: expected YAML, received a document nested too deeply") from None
    if data is None:
        return []
    if not isinstance(data, list):
        raise ManifestError(f"{path}: expected a YAML list of entries, received {type(data).__name__}")
    entries = []
    for i, raw in enumerate(data):
        if not isinstance(raw, dict):
            raise ManifestError(f"{path}: entry {i}: expected a mapping with {', '.join(ENTRY_KEYS)}, received {raw!r}")
        unknown = sorted(set(raw) - set(ENTRY_KEYS))
        if unknown:
            raise ManifestError(f"{path}: entry {i}: expected keys among {', '.join(ENTRY_KEYS)}, received {unknown[0]!r}")
        finding, predicate = _finding_pin(path, i, raw.get("finding"))
        ops = _strings(path, i, "op", raw["op"]) if raw.get("op") is not None else None
        for op in ops or ():
            if op not in OPS:
                raise ManifestError(f"{path}: entry {i}: op: expected one of {', '.join(OPS)}, received {op!r}")
        if finding is not None or ops is not None:
            raw = {"cases": "*", **raw}
        for key in ("backend", "cases", "reason"):
            if key not in raw:
                raise ManifestError(f"{path}: entry {i}: expected a {key!r} key, received none")
        backend = _strings(path, i, "backend", raw["backend"])
        if len(backend) != 1:
            raise ManifestError(f"{path}: entry {i}: backend: expected one name or glob, received {raw['backend']!r}")
        version = None
        if raw.get("version") is not None:
            try:
                version = SpecifierSet(str(raw["version"]))
            except InvalidSpecifier:
                raise ManifestError(f"{path}: entry {i}: version: expected a PEP 440 range like '>=2.16,<3', "
                                    f"received {raw['version']!r}") from None
        kinds = _strings(path, i, "kind", raw["kind"]) if raw.get("kind") is not None else None
        for k in kinds or ():
            if k not in KNOWN_KINDS:
                raise ManifestError(f"{path}: entry {i}: kind: expected one of {', '.join(KNOWN_KINDS)}, "
                                    f"received {k!r}")
        reason = raw["reason"]
        if not isinstance(reason, str) or not reason.strip():
            raise ManifestError(f"{path}: entry {i}: reason: expected a non-empty string, received {reason!r}")
        link = raw.get("link")
        if link is not None and not isinstance(link, str):
            raise ManifestError(f"{path}: entry {i}: link: expected a URL string, received {link!r}")
        precisions = None
        if raw.get("precision") is not None:
            precisions = _strings(path, i, "precision", raw["precision"])
            wrong = [p for p in precisions if p not in PRECISIONS]
            if wrong:
                raise ManifestError(f"{path}: entry {i}: precision: expected one of {', '.join(PRECISIONS)}, "
                                    f"received {wrong[0]!r}")
        when = _conditions(path, i, raw.get("when"))
        entries.append(Entry(i, backend[0], version, _strings(path, i, "cases", raw["cases"]), kinds, reason, link,
                             precisions, finding=finding, predicate=predicate, when=when, ops=ops))
    return entries


def _finding_pin(path: Path, i: int, value: Any) -> tuple[str | None, Any]:
    """(text, predicate.Predicate) of a `finding:` value: None for a finding id (F + 10 hex digits)."""
    import re

    if value is None:
        return None, None
    if not isinstance(value, str) or not value.strip():
        raise ManifestError(f"{path}: entry {i}: finding: expected a finding id (F0123456789) or a predicate "
                            f"('op = depthwise_conv2d and axis(stride >= 2, dilation >= 2)'), received {value!r}")
    value = value.strip()
    if re.fullmatch(r"F[0-9a-f]{10}", value):
        return value, None
    from .predicate import parse

    try:
        return value, parse(value)
    except ValueError as exc:
        raise ManifestError(f"{path}: entry {i}: finding: {exc}") from None


def pin_findings(entries: list[Entry], records: list[dict[str, Any]], found: list[dict[str, Any]],
                 fingerprints: dict[str, dict[str, Any]] | None = None) -> None:
    """Entries that pin a finding by id explain the failing records that finding's predicate
    covers (its members; record["known"], where no earlier entry already explains them, and
    where the entry's `when` conditions hold on the record's fingerprint, one of
    `fingerprints`); every finding's known and unexpected counts are updated."""
    from .fingerprint import facts as facts_of

    pins = [e for e in entries if e.finding is not None and e.predicate is None]
    fingerprints = fingerprints or {}
    by_pair = {(r["case_id"], r["backend"]): r for r in records}
    for f in found:
        cids = [m["case_id"] for m in f.get("members") or []]
        for e in pins:
            if e.finding != f["id"] or not fnmatch.fnmatchcase(f["backend"], e.backend):
                continue
            for cid in cids:
                rec = by_pair.get((cid, f["backend"]))
                if rec is not None and rec["status"] in FAILING_STATUSES and not rec.get("known") \
                        and e.covers(rec["backend"], rec["backend_version"], cid,
                                     facts_of(fingerprints.get(rec.get("fingerprint") or ""))) \
                        and e.matches_kind(rec["kind"]):
                    rec["known"] = e.known()
        recs = [by_pair[(cid, f["backend"])] for cid in cids if (cid, f["backend"]) in by_pair]
        f["known"] = sum(1 for r in recs if r.get("known"))
        f["unexpected"] = len(recs) - f["known"]


def match(entries: list[Entry], rec: dict[str, Any], facts: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The `known` value for a record: the first entry that explains it, else None.
    `facts`: conformance.fingerprint.facts of the record's fingerprint (for `when`)."""
    for entry in entries:
        if entry.explains(rec, facts):
            return entry.known()
    return None


def audit(entries: list[Entry], records: list[dict[str, Any]],
          fingerprints: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """{"fixed": [...], "unmatched": [entry indices], "not_applicable": [entry indices]}.

    fixed: passing pairs an entry pins by exact id, and (case_id "*") entries that cover
    pairs in this run but explain none of them — both only where the entry's `when`
    conditions hold on the record's fingerprint. unmatched: entries covering nothing;
    not_applicable: those of them that would cover pairs but whose conditions hold on no
    record's fingerprint (another CPU or kernel path: nothing to say about them here).
    """
    from .fingerprint import facts as facts_of

    fps = fingerprints or {}
    cache: dict[Any, dict[str, Any]] = {}
    fixed, used, explaining, gated, testable = [], set(), set(), set(), set()
    cases: dict[str, Any] = {}  # case id -> its Case (None: unreadable), for `_could_show`
    for rec in records:
        fid = rec.get("fingerprint")
        if fid not in cache:
            cache[fid] = facts_of(fps.get(fid or ""))
        facts = cache[fid]
        for entry in entries:
            if not entry.covers(rec["backend"], rec["backend_version"], rec["case_id"], facts):
                if entry.when and replace(entry, when=()).covers(rec["backend"], rec["backend_version"],
                                                                 rec["case_id"]):
                    gated.add(entry.index)
                continue
            used.add(entry.index)
            if entry.index not in testable and (entry.kinds is None or _could_show(entry.kinds, rec, cases)):
                testable.add(entry.index)
            if entry.explains(rec, facts) or (rec.get("known") or {}).get("manifest_entry") == entry.index:
                explaining.add(entry.index)
            if rec["status"] == "pass" and entry.pins(rec["backend"], rec["backend_version"], rec["case_id"], facts) \
                    and (entry.kinds is None or _could_show(entry.kinds, rec, cases)):
                fixed.append({"case_id": rec["case_id"], "backend": rec["backend"], "manifest_entry": entry.index,
                              "reason": entry.reason})
    pinned_fixed = {f["manifest_entry"] for f in fixed}
    for entry in entries:
        if entry.index in testable and entry.index not in explaining and entry.index not in pinned_fixed:
            fixed.append({"case_id": "*", "backend": entry.backend, "manifest_entry": entry.index,
                          "reason": entry.reason + " (no case this entry covers diverges any more)"})
    unmatched = [e.index for e in entries if e.index not in used]
    untested = [e.index for e in entries if e.index in used and e.index not in testable and e.index not in explaining]
    return {"fixed": fixed, "unmatched": unmatched, "not_applicable": [i for i in unmatched if i in gated],
            "untested": untested}


def _could_show(kinds: tuple[str, ...], rec: dict[str, Any], cases: dict[str, Any]) -> bool:
    """Could the record's case show one of `kinds` at all (`compare.kind_possible`)? Its
    Case is parsed once into `cases`; a record without a readable case could show anything.
    `nondeterministic` only where the case was run again (the record has a `repeat`)."""
    from .compare import kind_possible
    from .spec import Case

    kinds = tuple(k for k in kinds if k != NONDETERMINISTIC or rec.get("repeat"))
    if not kinds:
        return False
    cid = rec["case_id"]
    if cid not in cases:
        try:
            cases[cid] = Case.from_dict(rec["case"])
        except Exception:
            cases[cid] = None
    return cases[cid] is None or any(kind_possible(k, cases[cid]) for k in kinds)


def baseline_diff(baseline: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, Any]:
    """{"new": [...], "fixed": [...]} against an earlier results.json.

    new: failing now and not failing before (including pairs the baseline did not run);
    fixed: failing before, passing now. Known (manifest) status is ignored: a divergence
    is new or fixed whatever anyone knows about it.
    """
    before = {(r["case_id"], r["backend"]): r for r in baseline.get("records", [])}
    new, fixed = [], []
    for rec in records:
        old = before.get((rec["case_id"], rec["backend"]))
        now_failing = rec["status"] in FAILING_STATUSES
        was_failing = old is not None and old["status"] in FAILING_STATUSES
        row = {"case_id": rec["case_id"], "backend": rec["backend"], "status": rec["status"], "kind": rec["kind"],
               "was": None if old is None else old["status"], "message": rec["message"]}
        if now_failing and not was_failing:
            new.append(row)
        elif was_failing and rec["status"] == "pass":
            fixed.append(row)
    return {"new": new, "fixed": fixed}
