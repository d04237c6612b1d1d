"""Findings: a backend's divergences grouped into distinct bugs, each characterised by a predicate.

A *finding* is what a maintainer files as one issue. It is built from plain results.json
records (case parameters, status, kind, diagnosis hypothesis, backend) only:

1. Group a backend's divergences (status `diverge`, known or not) by (kind, hypothesis).
2. Characterise each group: the simplest conjunction of atomic predicates over case fields
   and derived features (`FEATURES`) that is true for every case of the group and false for
   every case that *passed* on that backend (greedy set cover, then redundant atoms pruned).
   A group that no conjunction separates is split (sequential covering: each rule covers
   what it can without admitting a passing case); what no rule covers becomes one finding
   recorded as "no simple predicate".
3. A run then confirms each predicate actively, on the live backend: that is the run's
   findings step (`run.findings_step`), which only adds a finding's `confirmation` and
   `short_repro` and may refine a refuted predicate; this module never runs a backend.

Invariants
- A finding's id depends only on (backend, kind, hypothesis, predicate text): the same bug
  found on two machines or in two runs has the same id, whatever the discovery order.
  `key` (kind, hypothesis, predicate) matches a finding across backends.
- Findings only add to a run; they never change a record or a verdict.
- Everything here is plain data (JSON types) computed from records alone: no backend,
  worker or file is touched, so the reports, a merge and a manifest read findings freely.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from .spec import ALL_PROFILES, DATA_FORMATS, DTYPES, OPS, Case, CaseError
from .vocabulary import KIND_PHRASES

#: Version of the results.json `findings` section (docs/results-schema.md).
FINDINGS_VERSION = 1
#: Rules (split findings) learnt per (kind, hypothesis) group before the rest is "no simple predicate".
MAX_RULES = 4
#: A conjunction of more atoms than this is not a *simple* predicate.
MAX_ATOMS = 4
#: Seeds tried per rule (sequential covering keeps the rule that covers the most).
RULE_SEEDS = 6
NO_PREDICATE = "no simple predicate"

HYPOTHESIS_PHRASES = {
    "wrong_sampling": "the wrong sampling of the stride-1 output",
    "wrong_shape_subblock": "a sub-block of the right output",
    "subnormal_flush": "subnormals flushed to zero",
    "flipped_kernel": "the kernel flipped in both axes",
    "bias_ignored": "the bias ignored",
    "depthwise_channel_order": "depthwise channels in the wrong order",
    "output_layout_nchw": "the output in NCHW order",
}


# ---- features and atoms ---------------------------------------------------------------

@dataclass(frozen=True)
class Feature:
    name: str  # stable name, used in predicate text
    kind: str  # "cat", "bool" or "num"
    get: Callable[[Case], Any]
    domain: tuple = ()  # for "cat"
    words: str = ""  # for "bool": the phrase when true
    words_not: str = ""  # for "bool": the phrase when false, where "no ..." reads wrong


def _pad_kind(c: Case) -> str:
    return c.padding if isinstance(c.padding, str) else "explicit"


def _same_odd(c: Case) -> bool:
    if c.padding != "SAME":
        return False
    return any((lo + hi) % 2 for lo, hi in c.geometry.pads)


def _asymmetric(c: Case) -> bool:
    return any(lo != hi for lo, hi in c.geometry.pads)


def _kernel_exceeds_input(c: Case) -> bool:
    eff = c.geometry.effective_kernel
    return eff[0] > c.height or eff[1] > c.width


FEATURES: tuple[Feature, ...] = (
    Feature("op", "cat", lambda c: c.op, OPS),
    Feature("dtype", "cat", lambda c: c.dtype, DTYPES),
    Feature("profile", "cat", lambda c: c.profile, ALL_PROFILES),
    Feature("invalid", "bool", lambda c: not c.is_valid, words="invalid parameters",
            words_not="valid parameters"),
    Feature("empty_output", "bool", lambda c: c.geometry.out_h * c.geometry.out_w == 0, words="an empty output"),
    Feature("strided", "bool", lambda c: max(c.strides) > 1, words="strides > 1", words_not="unit strides"),
    Feature("dilated", "bool", lambda c: max(c.dilations) > 1, words="dilations > 1", words_not="no dilation"),
    Feature("padding", "cat", _pad_kind, ("VALID", "SAME", "explicit")),
    Feature("data_format", "cat", lambda c: c.data_format, DATA_FORMATS),
    Feature("bias", "bool", lambda c: c.bias, words="a bias"),
    Feature("stride_gt_kernel", "bool", lambda c: any(s > k for s, k in zip(c.strides, c.kernel)),
            words="a stride larger than the kernel"),
    Feature("same_odd_pad", "bool", _same_odd, words="SAME padding with an odd total pad"),
    Feature("asymmetric_pad", "bool", _asymmetric, words="asymmetric pads", words_not="symmetric pads"),
    Feature("kernel_exceeds_input", "bool", _kernel_exceeds_input, words="an effective kernel larger than the input"),
    Feature("one_column_output", "bool", lambda c: c.geometry.out_w == 1, words="a one-column output"),
    Feature("one_row_output", "bool", lambda c: c.geometry.out_h == 1, words="a one-row output"),
    Feature("kernel_1x1", "bool", lambda c: c.kernel == (1, 1), words="a 1x1 kernel"),
    Feature("grouped", "bool", lambda c: c.op == "conv2d" and c.groups > 1, words="groups > 1"),
    Feature("multiplier_gt_1", "bool", lambda c: (c.channel_multiplier or 1) > 1, words="channel multiplier > 1"),
    Feature("batch_gt_1", "bool", lambda c: c.batch > 1, words="batch > 1"),
    Feature("K", "num", lambda c: c.reduction_size),
    Feature("in_channels", "num", lambda c: c.in_channels),
    Feature("per_group_channels", "num", lambda c: c.filter_in_channels),
    Feature("output_size", "num", lambda c: c.geometry.out_h * c.geometry.out_w),
)
_BY_NAME = {f.name: f for f in FEATURES}


@dataclass(frozen=True)
class Atom:
    """One test on one feature: `op` is "=", "!=", "in", "is", "not", "<=" or ">="."""

    feature: str
    op: str
    value: Any = None

    def holds(self, values: dict[str, Any]) -> bool:
        v = values[self.feature]
        if self.op == "=":
            return v == self.value
        if self.op == "!=":
            return v != self.value
        if self.op == "in":
            return v in self.value
        if self.op == "is":
            return bool(v)
        if self.op == "not":
            return not v
        if v is None:
            return False
        return v <= self.value if self.op == "<=" else v >= self.value

    @property
    def complexity(self) -> int:
        """What a reader pays for the atom: a plain fact 2, a negation 3, a set or a bound 4."""
        return 2 if self.op in ("=", "is") else 3 if self.op in ("!=", "not") else 4

    def text(self) -> str:
        if self.op == "is":
            return self.feature
        if self.op == "not":
            return f"not {self.feature}"
        if self.op == "in":
            return f"{self.feature} in {{{', '.join(str(v) for v in self.value)}}}"
        return f"{self.feature} {self.op} {self.value}"

    def words(self) -> str:
        f = _BY_NAME[self.feature]
        if self.op == "is":
            return f.words
        if self.op == "not":
            if f.words_not:
                return f.words_not
            if f.words.startswith(("a ", "an ")):
                return "no " + f.words.split(" ", 1)[1]
            return f"not {f.words}"
        if self.feature == "op" and self.op == "=":
            return str(self.value)
        if self.op == "in":
            return f"{self.feature} {' or '.join(str(v) for v in self.value)}"
        if self.op == "!=":
            return f"{self.feature} other than {self.value}"
        if self.op == "=":
            return f"{self.feature} {self.value}"
        return f"{self.feature} {self.op} {self.value}"

    def to_dict(self) -> dict[str, Any]:
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        return {"feature": self.feature, "op": self.op, "value": value, "text": self.text()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Atom":
        v = d.get("value")
        return cls(d["feature"], d["op"], tuple(v) if isinstance(v, list) else v)


def features(case: Case) -> dict[str, Any]:
    """Every feature of `case` (FEATURES), by name."""
    return {f.name: f.get(case) for f in FEATURES}


def predicate_text(atoms: Iterable[Atom]) -> str:
    atoms = list(atoms)
    return " and ".join(a.text() for a in atoms) if atoms else "true"


def holds(atoms: Iterable[Atom], case: Case | dict[str, Any]) -> bool:
    """Whether the conjunction `atoms` holds for a Case (or its `features` dict)."""
    values = features(case) if isinstance(case, Case) else case
    return all(a.holds(values) for a in atoms)


def parse_predicate(text: str) -> list[Atom]:
    """Atoms from `predicate_text` output ("op = conv2d and strided and K <= 9"); ValueError otherwise."""
    atoms = []
    for part in [p.strip() for p in text.split(" and ")]:
        words = part.split(None, 2)
        if len(words) == 1 and words[0] in _BY_NAME and _BY_NAME[words[0]].kind == "bool":
            atoms.append(Atom(words[0], "is"))
        elif len(words) == 2 and words[0] == "not" and words[1] in _BY_NAME:
            atoms.append(Atom(words[1], "not"))
        elif len(words) == 3 and words[0] in _BY_NAME and words[1] in ("=", "!=", "in", "<=", ">="):
            f, op, raw = _BY_NAME[words[0]], words[1], words[2]
            if op == "in":
                value: Any = tuple(v.strip() for v in raw.strip("{}").split(","))
            elif f.kind == "num":
                try:
                    value = int(raw)
                except ValueError:
                    raise ValueError(f"predicate {text!r}: expected an integer after {words[0]} {op}, "
                                     f"received {raw!r}") from None
            else:
                value = raw
            atoms.append(Atom(words[0], op, value))
        else:
            raise ValueError(f"predicate {text!r}: expected atoms like 'op = conv2d', 'strided', 'not bias', "
                             f"'K <= 9' joined by ' and ', received {part!r} (features: {', '.join(_BY_NAME)})")
    return atoms


def _candidates(seed: dict[str, Any], positives: list[dict[str, Any]]) -> list[Atom]:
    """Atoms true for `seed`, simplest first."""
    out: list[Atom] = []
    for f in FEATURES:
        v = seed[f.name]
        if f.kind == "bool":
            out.append(Atom(f.name, "is" if v else "not"))
        elif f.kind == "cat":
            out.append(Atom(f.name, "=", v))
            out += [Atom(f.name, "!=", u) for u in f.domain if u != v]
            seen = tuple(u for u in f.domain if any(p[f.name] == u for p in positives))
            if 1 < len(seen) < len(f.domain) - 1:
                out.append(Atom(f.name, "in", seen))
        elif v is not None:
            vals = sorted({p[f.name] for p in positives if p[f.name] is not None})
            out += [Atom(f.name, "<=", t) for t in vals if t >= v]
            out += [Atom(f.name, ">=", t) for t in vals if t <= v]
    return out


def _learn_rule(seed: dict[str, Any], positives: list[dict[str, Any]],
                negatives: list[dict[str, Any]]) -> list[Atom] | None:
    """A conjunction true for `seed`, false for every negative, covering as many positives
    as it can; None when no conjunction of the atoms separates `seed` from the negatives."""
    cands = _candidates(seed, positives)
    rule: list[Atom] = []
    pos, neg = list(positives), list(negatives)
    while neg:
        best, best_score = None, None
        for a in cands:
            kept_p = sum(a.holds(p) for p in pos)
            removed = sum(not a.holds(n) for n in neg)
            if removed == 0:
                continue
            # Keep every positive if possible, then remove the most negatives, then simplest.
            score = (kept_p, removed, -a.complexity)
            if best_score is None or score > best_score:
                best, best_score = a, score
        if best is None:
            return None
        rule.append(best)
        pos = [p for p in pos if best.holds(p)]
        neg = [n for n in neg if best.holds(n)]
    # Prune: drop atoms that are not needed to exclude the negatives (complex ones first).
    for a in sorted(rule, key=lambda a: -a.complexity):
        rest = [b for b in rule if b is not a]
        if not any(all(b.holds(n) for b in rest) for n in negatives) and \
                sum(all(b.holds(p) for b in rest) for p in positives) >= sum(all(b.holds(p) for b in rule) for p in positives):
            rule = rest
    rule = _merge(rule)
    return rule if len(rule) <= MAX_ATOMS else None


def _merge(rule: list[Atom]) -> list[Atom]:
    """One atom per categorical feature (=, != or in over what is left of its domain),
    `f = v` for a numeric range of one value; in FEATURES order."""
    out: list[Atom] = []
    for f in FEATURES:
        mine = [a for a in rule if a.feature == f.name]
        if not mine:
            continue
        if f.kind == "cat":
            allowed = [v for v in f.domain if all(a.holds({f.name: v}) for a in mine)]
            if len(allowed) == 1:
                out.append(Atom(f.name, "=", allowed[0]))
            elif len(allowed) == len(f.domain) - 1:
                out.append(Atom(f.name, "!=", next(v for v in f.domain if v not in allowed)))
            else:
                out.append(Atom(f.name, "in", tuple(allowed)))
        elif f.kind == "num":
            lo = max((a.value for a in mine if a.op == ">="), default=None)
            hi = min((a.value for a in mine if a.op == "<="), default=None)
            if lo is not None and lo == hi:
                out.append(Atom(f.name, "=", lo))
            else:
                out += ([Atom(f.name, ">=", lo)] if lo is not None else []) + ([Atom(f.name, "<=", hi)] if hi is not None else [])
        else:
            out += mine[:1]
    return out


def _simplest(positives: list[dict[str, Any]], negatives: list[dict[str, Any]]) -> list[Atom] | None:
    """The conjunction of least total complexity (then fewest atoms) that is true for every
    positive and false for every negative, over at most MAX_ATOMS atoms; None if none.

    Exhaustive over the atoms true for all positives, with each atom's truth over the
    negatives as a bit mask; atoms with the same mask are one (the simplest is kept)."""
    if not positives:
        return None
    cands = [a for a in _candidates(positives[0], positives) if all(a.holds(p) for p in positives)]
    full = (1 << len(negatives)) - 1
    masks: dict[int, Atom] = {}
    for a in cands:
        m = sum(1 << i for i, n in enumerate(negatives) if a.holds(n))
        if m != full and (m not in masks or a.complexity < masks[m].complexity):
            masks[m] = a
    if not negatives:
        return []
    items = sorted(masks.items(), key=lambda kv: kv[1].complexity)
    best: tuple[int, int, tuple] | None = None
    from itertools import combinations

    for size in range(1, MAX_ATOMS + 1):
        if best is not None and 2 * size > best[0]:
            break
        for combo in combinations(range(len(items)), size):
            cx = sum(items[i][1].complexity for i in combo)
            if best is not None and (cx, size) >= best[:2]:
                continue
            m = full
            for i in combo:
                m &= items[i][0]
                if not m:
                    break
            if not m:
                best = (cx, size, combo)
    if best is None:
        return None
    return _merge([items[i][1] for i in best[2]])


def characterise(positives: list[dict[str, Any]], negatives: list[dict[str, Any]]
                 ) -> list[tuple[list[Atom] | None, list[int]]]:
    """[(atoms or None, indices of `positives` covered)], the rules of a group.

    One rule covering everything when a conjunction separates the group from the passing
    cases; otherwise up to MAX_RULES rules (sequential covering), and the positives none
    of them covers under None ("no simple predicate").
    """
    whole = _simplest(positives, negatives)
    if whole is not None:
        return [(whole, list(range(len(positives))))]
    left = list(range(len(positives)))
    rules: list[tuple[list[Atom] | None, list[int]]] = []
    unexplained: list[int] = []
    while left and len(rules) < MAX_RULES:
        best: tuple | None = None
        for seed in left[:RULE_SEEDS]:
            rule = _learn_rule(positives[seed], [positives[i] for i in left], negatives)
            if rule is None:
                continue
            covered = [i for i in left if all(a.holds(positives[i]) for a in rule)]
            score = (len(covered), -len(rule), -sum(a.complexity for a in rule))
            if best is None or score > best[0]:
                best = (score, rule, covered)
        if best is None:
            unexplained += left[:RULE_SEEDS]
            left = left[RULE_SEEDS:]
            continue
        simpler = _simplest([positives[i] for i in best[2]], negatives)
        rules.append((simpler if simpler is not None else best[1], best[2]))
        left = [i for i in left if i not in best[2]]
    unexplained += left
    if unexplained:
        rules.append((None, sorted(unexplained)))
    return rules


# ---- findings from records -----------------------------------------------------------

def case_of(rec: dict[str, Any]) -> Case | None:
    """The Case of a record, None when its case dict is not one (a malformed results file)."""
    try:
        return Case.from_dict(rec["case"])
    except (CaseError, TypeError, KeyError):
        return None


def finding_id(backend: str, kind: str, hypothesis: str | None, predicate: str) -> str:
    """Stable id: a hash of (backend, kind, hypothesis, predicate), never of discovery order."""
    text = "\x1f".join([backend, kind, hypothesis or "", predicate])
    return "F" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]


def shared_key(kind: str, hypothesis: str | None, predicate: str) -> str:
    """The same bug on several backends: (kind, hypothesis, predicate), hashed."""
    text = "\x1f".join([kind, hypothesis or "", predicate])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]


def title(kind: str, hypothesis: str | None, atoms: list[Atom] | None) -> str:
    """A title in words: "depthwise_conv2d with strides > 1 and dilations > 1 returns ..."."""
    if atoms:
        lead = [a for a in atoms if a.feature == "op" and a.op == "="]
        rest = [a for a in atoms if a not in lead]
        subject = lead[0].words() if lead else "convolution"
        if rest:
            subject += " with " + ", ".join(a.words() for a in rest[:-1]) + (" and " if len(rest) > 1 else "") + rest[-1].words()
    else:
        subject = "some cases (no simple predicate)"
    phrase = KIND_PHRASES.get(kind, f"diverges ({kind})")
    if hypothesis and hypothesis != kind:
        phrase += f": {HYPOTHESIS_PHRASES.get(hypothesis, hypothesis.replace('_', ' '))}"
    return f"{subject} {phrase}"


def macs(c: Case) -> int:
    """The size a finding orders cases by: multiply-adds plus input sizes."""
    shape = c.output_shape
    return shape[0] * shape[1] * shape[2] * shape[3] * max(c.reduction_size, 1) + sum(c.input_shape)


def build(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The findings of a run (plain dicts), per backend in record order, then by size."""
    by_backend: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        by_backend.setdefault(rec["backend"], []).append(rec)
    out = []
    for backend, recs in by_backend.items():
        passed = [c for c in (case_of(r) for r in recs if r["status"] == "pass") if c is not None]
        negatives = [features(c) for c in passed]
        groups: dict[tuple[str, str | None], list[tuple[dict, Case]]] = {}
        for r in recs:
            c = case_of(r) if r["status"] == "diverge" else None
            if c is None:
                continue
            groups.setdefault((r["kind"] or "diverge", _hypothesis(r)), []).append((r, c))
        # Rules with the same kind and predicate from different hypotheses are one bug seen
        # through different diagnoses (a wrong shape that is a sub-block, or a stride
        # ignored): one finding, named after its most frequent hypothesis.
        merged: dict[tuple[str, str], tuple[list[Atom] | None, list[tuple[dict, Case]]]] = {}
        for (kind, hyp), members in groups.items():
            positives = [features(c) for _, c in members]
            for atoms, idx in characterise(positives, negatives):
                if not idx:  # a rule that covers none of the group's cases describes nothing
                    continue
                pred = predicate_text(atoms) if atoms is not None else NO_PREDICATE
                slot = merged.setdefault((kind, pred), (atoms, []))
                slot[1].extend(members[i] for i in idx)
        found = [_finding(backend, kind, atoms, members, len(negatives))
                 for (kind, _), (atoms, members) in merged.items()]
        found.sort(key=lambda f: (-f["count"], f["id"]))
        out += found
    return out


def _hypothesis(rec: dict[str, Any]) -> str | None:
    d = rec.get("diagnosis")
    return d.get("hypothesis") if isinstance(d, dict) else None


def _finding(backend: str, kind: str, atoms: list[Atom] | None, members: list[tuple[dict, Case]],
             n_passed: int) -> dict[str, Any]:
    pred = predicate_text(atoms) if atoms is not None else NO_PREDICATE
    order = {r["case_id"]: i for i, (r, _) in enumerate(members)}
    members = sorted(members, key=lambda m: order[m[0]["case_id"]])
    recs = [r for r, _ in members]
    tally: dict[str, int] = {}
    for r in recs:
        tally[_hypothesis(r) or ""] = tally.get(_hypothesis(r) or "", 0) + 1
    hyp = min(tally, key=lambda h: (-tally[h], h == "", h)) or None
    minimal = _minimal_case(atoms, members)
    first = min(members, key=lambda m: macs(m[1]))[0]
    return {
        "id": finding_id(backend, kind, hyp, pred), "key": shared_key(kind, hyp, pred),
        "backend": backend, "backend_version": recs[0].get("backend_version"),
        "kind": kind, "hypothesis": hyp, "hypotheses": {h or "unexplained": n for h, n in sorted(tally.items())},
        "title": title(kind, hyp, atoms),
        "predicate": pred, "atoms": [a.to_dict() for a in atoms] if atoms is not None else None,
        "count": len(recs), "known": sum(1 for r in recs if r.get("known")),
        "unexpected": sum(1 for r in recs if not r.get("known")), "passed_on_backend": n_passed,
        "cases": [r["case_id"] for r in recs],
        "minimal_case": minimal.to_dict(), "minimal_case_id": minimal.id,
        "repro": first.get("repro"), "repro_case_id": first["case_id"],
        "message": (first.get("message") or "").splitlines()[0] if first.get("message") else "",
        "confirmation": {"status": "not_run", "inside": [], "near_misses": [], "seconds": 0.0},
        "short_repro": None, "notes": [],
    }


def _minimal_case(atoms: list[Atom] | None, members: list[tuple[dict, Case]]) -> Case:
    """The run's minimised case when one of the group has it (and the predicate holds
    for it), else the smallest covered case."""
    for r, _ in members:
        if r.get("minimised"):
            try:
                m = Case.from_dict(r["minimised"])
            except (CaseError, TypeError):
                continue
            if atoms is None or holds(atoms, m):
                return m
    return min((c for _, c in members), key=macs)


# ---- comparing runs, console -----------------------------------------------------------

def section(findings: list[dict[str, Any]], *, confirm_enabled: bool, budget_s: float | None) -> dict[str, Any]:
    """The results.json `findings` section."""
    return {"version": FINDINGS_VERSION, "confirmation": {"enabled": confirm_enabled, "budget_s": budget_s},
            "items": findings}


def items(run: dict[str, Any]) -> list[dict[str, Any]]:
    """The findings of a run document: its section, or built from its records when it has none."""
    sec = run.get("findings")
    if isinstance(sec, dict) and isinstance(sec.get("items"), list):
        return sec["items"]
    return build(run.get("records") or [])


def baseline_diff(baseline: dict[str, Any], now: list[dict[str, Any]],
                  backends: Iterable[str] | None = None) -> dict[str, Any]:
    """{"new": [...], "fixed": [...]} findings, matched by id (backend, kind, hypothesis,
    predicate); a baseline finding is fixed only on a backend of this run (`backends`)."""
    before = {f["id"]: f for f in items(baseline)}
    current = {f["id"]: f for f in now}
    row = lambda f: {"id": f["id"], "backend": f["backend"], "kind": f["kind"], "title": f["title"],  # noqa: E731
                     "predicate": f["predicate"], "count": f["count"]}
    return {"new": [row(f) for i, f in current.items() if i not in before],
            "fixed": [row(f) for i, f in before.items() if i not in current
                      and (backends is None or f["backend"] in set(backends))]}


def console_lines(findings: list[dict[str, Any]], limit: int = 40) -> list[str]:
    """One line per finding, for the end-of-run summary (`cli.console.summary` prints these first)."""
    if not findings:
        return []
    lines = [f"{len(findings)} finding{'s' if len(findings) != 1 else ''}:"]
    for f in findings[:limit]:
        conf = (f.get("confirmation") or {}).get("status", "not_run")
        known = " known" if f.get("known") and not f.get("unexpected") else ""
        lines.append(f"  {f['id']}  {f['backend']}  {f['count']} case{'s' if f['count'] != 1 else ''}{known}  "
                     f"[{conf}]  {f['title']}  ({f['predicate']})")
    if len(findings) > limit:
        lines.append(f"  ... and {len(findings) - limit} more findings (results.json lists them all)")
    return lines


# ---- what the report pages show -------------------------------------------------------

def _display(f: dict[str, Any], case_href: Callable[[str], str | None]) -> dict[str, Any]:
    conf = f.get("confirmation") if isinstance(f.get("confirmation"), dict) else {}
    inside, near = conf.get("inside") or [], conf.get("near_misses") or []
    sr = f.get("short_repro") if isinstance(f.get("short_repro"), dict) else None
    links = [{"id": str(c), "href": case_href(str(c))} for c in f.get("cases") or []]
    return {
        "id": str(f.get("id", "")), "title": str(f.get("title", "")), "predicate": str(f.get("predicate", "")),
        "kind": str(f.get("kind") or ""), "hypothesis": str(f.get("hypothesis") or ""),
        "count": int(f.get("count") or 0), "known": int(f.get("known") or 0),
        "unexpected": int(f.get("unexpected") or 0), "backend": str(f.get("backend", "")),
        "confirmation": str(conf.get("status") or "not_run"),
        "inside_ok": sum(1 for r in inside if r.get("as_expected")),
        "inside": sum(1 for r in inside if r.get("as_expected") is not None),
        "near_ok": sum(1 for r in near if r.get("as_expected")),
        "near": sum(1 for r in near if r.get("as_expected") is not None),
        "not_judged": sum(1 for r in inside + near if r.get("as_expected") is None),
        "confirming_cases": [str(r.get("case_id", "")) for r in inside + near],
        "refined_from": str((f.get("refined_from") or {}).get("predicate") or ""),
        "minimal_case_id": str(f.get("minimal_case_id") or ""),
        "short_repro": str(sr.get("script") or "") if sr else "", "short_repro_case": str(sr.get("case_id") or "") if sr else "",
        "short_repro_path": str(sr.get("path") or "") if sr else "",
        "cases": links, "notes": [str(n) for n in f.get("notes") or []],
    }


def page_items(run: dict[str, Any], backend: str, case_href: Callable[[str], str | None]) -> list[dict[str, Any]]:
    """The `findings` of a backend page (templates/backend_findings.html): plain display dicts."""
    return [_display(f, case_href) for f in items(run) if f.get("backend") == backend]


def index_rows(run: dict[str, Any], page_of: dict[str, str]) -> list[dict[str, Any]]:
    """The `findings` of index.html (templates/index_findings.html): one row per bug, matched
    across backends by kind, hypothesis and predicate, with each backend's finding."""
    rows: dict[tuple, dict[str, Any]] = {}
    for f in items(run):
        key = (f.get("kind"), f.get("hypothesis"), f.get("predicate"))
        row = rows.setdefault(key, {"title": str(f.get("title", "")), "predicate": str(f.get("predicate", "")),
                                    "kind": str(f.get("kind") or ""), "hypothesis": str(f.get("hypothesis") or ""),
                                    "backends": []})
        page = page_of.get(f.get("backend"), "")
        row["backends"].append({"name": str(f.get("backend", "")), "id": str(f.get("id", "")),
                                "count": int(f.get("count") or 0),
                                "confirmation": str((f.get("confirmation") or {}).get("status") or "not_run"),
                                "href": f"{page}#finding-{f.get('id')}" if page else ""})
    return sorted(rows.values(), key=lambda r: (-len(r["backends"]), r["kind"], r["hypothesis"], r["predicate"]))
