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
3. Optionally confirm each predicate actively (`confirm`): new cases inside the predicate
   (covered cases with free fields mutated) must diverge the same way (same kind), near
   misses (one atom flipped) must not. The backend runs through the runner's worker
   (`runner.Backend.ask`) and the record is judged by `runner.judge`, the verdict the run
   itself uses.

Invariants
- A finding's id depends only on (backend, kind, hypothesis, predicate text): the same bug
  found on two machines or in two runs has the same id, whatever the discovery order.
  `key` (kind, hypothesis, predicate) matches a finding across backends.
- Findings only add to a run; they never change a record or a verdict.
- Everything here is plain data (JSON types); the engine imports no framework.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from .spec import ALL_PROFILES, DATA_FORMATS, DTYPES, OPS, PROFILES, Case, CaseError
from .text import safe_filename
from .vocabulary import KIND_PHRASES

#: Version of the results.json `findings` section (docs/results-schema.md).
FINDINGS_VERSION = 1
#: Default active-confirmation budget, seconds per finding.
CONFIRM_BUDGET_S = 4.0
#: New cases inside the predicate, and near misses, tried at most per finding.
CONFIRM_INSIDE = 3
CONFIRM_NEAR = 3
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

def _case_of(rec: dict[str, Any]) -> Case | None:
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


def _macs(c: Case) -> int:
    shape = c.output_shape
    return shape[0] * shape[1] * shape[2] * shape[3] * max(c.reduction_size, 1) + sum(c.input_shape)


def build(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The findings of a run (plain dicts), per backend in record order, then by size."""
    by_backend: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        by_backend.setdefault(rec["backend"], []).append(rec)
    out = []
    for backend, recs in by_backend.items():
        passed = [c for c in (_case_of(r) for r in recs if r["status"] == "pass") if c is not None]
        negatives = [features(c) for c in passed]
        groups: dict[tuple[str, str | None], list[tuple[dict, Case]]] = {}
        for r in recs:
            c = _case_of(r) if r["status"] == "diverge" else None
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
    first = min(members, key=lambda m: _macs(m[1]))[0]
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
    """The runner's minimised case when one of the group has it (and the predicate holds
    for it), else the smallest covered case."""
    for r, _ in members:
        if r.get("minimised"):
            try:
                m = Case.from_dict(r["minimised"])
            except (CaseError, TypeError):
                continue
            if atoms is None or holds(atoms, m):
                return m
    return min((c for _, c in members), key=_macs)


# ---- active confirmation -------------------------------------------------------------

def _mutations(c: Case, rng: random.Random) -> Case | None:
    """One random single-field change of `c` (validated), or None when it makes no case."""
    field = rng.choice(("batch", "height", "width", "channels", "kernel", "strides", "dilations", "padding",
                        "dtype", "profile", "bias", "data_format", "multiplier"))
    ch: dict[str, Any] = {}
    if field in ("batch", "height", "width"):
        ch[field] = getattr(c, field) + rng.choice((1, 2))  # growing keeps the bug in view
    elif field == "channels":
        if c.op == "conv2d":
            g = c.groups
            ch.update(in_channels=g * rng.randint(1, 4), out_channels=g * rng.randint(1, 4))
        else:
            ch["in_channels"] = rng.randint(1, 6)
    elif field == "multiplier" and c.op == "depthwise_conv2d":
        ch["channel_multiplier"] = rng.randint(1, 3)
    elif field in ("kernel", "strides", "dilations"):
        v = list(getattr(c, field))
        axis = rng.randrange(2)
        v[axis] = max(1, v[axis] + rng.choice((-1, 1)))
        ch[field] = tuple(v)
    elif field == "padding":
        ch["padding"] = rng.choice(("SAME", "VALID", ((1, 0), (0, 1)), ((1, 1), (1, 1))))
    elif field == "dtype":
        ch["dtype"] = rng.choice(DTYPES)
    elif field == "profile":
        ch["profile"] = rng.choice(PROFILES)
    elif field == "bias":
        ch["bias"] = not c.bias
    elif field == "data_format":
        ch["data_format"] = rng.choice(DATA_FORMATS)
    if not ch:
        return None
    try:
        return c.replace(**ch)
    except (CaseError, TypeError, ValueError):
        return None


def candidates(finding: dict[str, Any], seen: set[str], bases: list[Case] | None = None, *, tries: int = 600
               ) -> tuple[list[Case], list[tuple[Case, str]]]:
    """(inside, near misses) for a finding: new cases (ids not in `seen`) obtained by
    mutating covered cases (`bases`, default the minimal case) one to three fields at a
    time; inside cases satisfy the predicate, near misses falsify exactly one atom
    (returned with that atom's text). Deterministic: seeded by the finding id."""
    atoms = [Atom.from_dict(a) for a in finding["atoms"] or []]
    rng = random.Random(finding["id"])
    bases = sorted(bases or [Case.from_dict(finding["minimal_case"])], key=lambda c: c.id)
    inside: list[Case] = []
    near: dict[str, Case] = {}
    used = set(seen)
    for _ in range(tries):
        if len(inside) >= CONFIRM_INSIDE and len(near) >= min(CONFIRM_NEAR, len(atoms)):
            break
        c: Case | None = rng.choice(bases)
        for _ in range(rng.randint(1, 3)):
            c = _mutations(c, rng) if c is not None else None
        if c is None or c.id in used or sum(c.input_shape) > 10_000:
            continue
        values = features(c)
        false = [a for a in atoms if not a.holds(values)]
        if not false and len(inside) < CONFIRM_INSIDE:
            inside.append(c)
            used.add(c.id)
        elif len(false) == 1 and false[0].text() not in near and len(near) < CONFIRM_NEAR:
            near[false[0].text()] = c
            used.add(c.id)
    return inside, [(c, t) for t, c in near.items()]


#: The confirmation step of a run stops after this many per-finding budgets in all.
CONFIRM_RUN_FACTOR = 15


def confirm(finding: dict[str, Any], judge_case: Callable[[Case], dict[str, Any]], seen: set[str],
            bases: list[Case] | None = None, *, budget_s: float = CONFIRM_BUDGET_S,
            also_kinds: Iterable[str] = ()) -> dict[str, Any]:
    """Try the finding's predicate on new cases; returns the `confirmation` dict (and sets it).

    `judge_case(case)` runs the backend and returns its record (the runner's verdict).
    confirmed: every inside case tried diverged with the finding's kind and no near miss
    did; refuted: one of them did not; unconfirmed: nothing could be tried in the budget.
    Unsupported cases and errors count for neither side. `also_kinds`: kinds that count as
    the same divergence (those of the backend's other findings with the same predicate: a
    dropped dilation is a wrong shape or wrong values, whichever the geometry gives).
    """
    kinds = {finding["kind"], *also_kinds}
    t0 = time.monotonic()
    conf: dict[str, Any] = {"status": "unconfirmed", "budget_s": budget_s, "inside": [], "near_misses": [],
                            "seconds": 0.0}
    if finding["atoms"] is None:
        conf["status"] = "skipped"
        conf["reason"] = NO_PREDICATE
        finding["confirmation"] = conf
        return conf
    inside, near = candidates(finding, seen, bases)
    # Interleaved, so that a short budget tries both sides.
    plan = []
    for i in range(max(len(inside), len(near))):
        plan += [("inside", c, None) for c in inside[i:i + 1]] + [("near", c, t) for c, t in near[i:i + 1]]
    for side, case, flipped in plan:
        if time.monotonic() - t0 > budget_s:
            break
        rec = judge_case(case)
        same = rec["status"] == "diverge" and rec["kind"] in kinds
        row = {"case_id": case.id, "case": case.to_dict(), "status": rec["status"], "kind": rec["kind"],
               "as_expected": None}
        if rec["status"] in ("pass", "diverge"):
            row["as_expected"] = same if side == "inside" else not same
        if side == "inside":
            conf["inside"].append(row)
        else:
            row["flipped"] = flipped
            conf["near_misses"].append(row)
    judged = [r for r in conf["inside"] + conf["near_misses"] if r["as_expected"] is not None]
    if any(r["as_expected"] is False for r in judged):
        conf["status"] = "refuted"
    elif any(r["as_expected"] for r in conf["inside"]):
        conf["status"] = "confirmed"
    conf["seconds"] = round(time.monotonic() - t0, 3)
    finding["confirmation"] = conf
    return conf


# ---- with the run's workers: confirmation and the short repro ---------------------------

#: Kinds whose bug shows with small integer inputs (not tied to the values' magnitudes).
SMALL_INTEGER_KINDS = ("value", "shape", "invalid_accepted", "dtype")


def judge_on(backend: Any, case: Case, *, with_output: bool = False, timeout: float | None = None,
             precision: str | None = None) -> Any:
    """The run's record for `case` on a runner.Backend: its worker, runner.judge's verdict
    under the run's precision contract (with `with_output`, (record, the backend's output
    or None)); `timeout` caps the wait."""
    from . import record, tolerance

    oracle = record.oracle_for(case)
    limit = backend.timeout if timeout is None else min(backend.timeout, timeout)
    rec, y = record.record_reply(case, backend.name, backend.info, backend.ask(case, limit), oracle, limit,
                          precision or tolerance.DEFAULT_PRECISION)
    return (rec, y) if with_output else rec


def refine(finding: dict[str, Any], records: list[dict[str, Any]], also_kinds: Iterable[str] = ()) -> bool:
    """After a refutation: characterise again with the confirmation's cases as evidence
    (those that diverged the same way join the group, those that passed join the passing
    cases) and take the rule that covers most of the finding's own cases. Updates the
    finding (id, predicate, title; the old predicate under "refined_from") and returns
    True when the predicate changed."""
    kinds = {finding["kind"], *also_kinds}
    conf = finding["confirmation"]
    mine = set(finding["cases"])
    pos = [c for c in (_case_of(r) for r in records if r["case_id"] in mine) if c is not None]
    neg = [c for c in (_case_of(r) for r in records if r["status"] == "pass") if c is not None]
    for row in conf["inside"] + conf["near_misses"]:
        if row["status"] == "diverge" and row["kind"] in kinds:
            pos.append(Case.from_dict(row["case"]))
        elif row["status"] == "pass":
            neg.append(Case.from_dict(row["case"]))
    pf = [features(c) for c in pos]
    rules = [(a, idx) for a, idx in characterise(pf, [features(c) for c in neg]) if a is not None]
    if not rules:
        return False
    atoms, idx = max(rules, key=lambda r: sum(1 for i in r[1] if pos[i].id in mine))
    pred = predicate_text(atoms)
    held = sum(1 for i in idx if pos[i].id in mine)
    if held < len(mine):
        finding.setdefault("notes", []).append(f"refined predicate holds for {held} of the {len(mine)} cases")
    if pred == finding["predicate"]:
        return False
    finding["refined_from"] = {"predicate": finding["predicate"], "id": finding["id"], "confirmation": conf}
    finding.update(id=finding_id(finding["backend"], finding["kind"], finding["hypothesis"], pred),
                   key=shared_key(finding["kind"], finding["hypothesis"], pred), predicate=pred,
                   atoms=[a.to_dict() for a in atoms], title=title(finding["kind"], finding["hypothesis"], atoms))
    return True


def short_repro_for(finding: dict[str, Any], backend: Any, judge_case: Callable[[Case], Any],
                    out: Any = None, bases: list[Case] = ()) -> dict[str, Any] | None:
    """Choose the short repro's case and write its script; sets and returns finding["short_repro"].

    The case is one the suite judged diverging with the finding's kind on this backend:
    the minimal case re-run with small integer inputs (where the kind allows and the
    predicate does not name the profile), else the minimal case itself, else the smallest
    covered cases. The script comes from the backend's worker (its adapter's repro_code),
    and is kept only when, given the output the suite judged, it exits 1 too (its check is
    shorter than the verdict's: where they disagree, the next case is tried).
    `judge_case(case)` returns (record, output).
    """
    from .scripts import exit_code_for
    minimal = Case.from_dict(finding["minimal_case"])
    names_profile = any(a["feature"] == "profile" for a in finding["atoms"] or [])
    tries: list[Case] = []
    if finding["kind"] in SMALL_INTEGER_KINDS and minimal.profile != "small_integers" and not names_profile:
        try:
            tries.append(minimal.replace(profile="small_integers"))
        except CaseError:
            pass
    tries.append(minimal)
    tries += sorted((c for c in bases if c.id != minimal.id), key=_macs)[:3]
    problems = []
    for case in tries:
        rec, y = judge_case(case)
        if rec["status"] != "diverge" or rec["kind"] != finding["kind"]:
            problems.append(f"{case.id}: {rec['status']}{'/' + rec['kind'] if rec['kind'] else ''}")
            continue
        header = (f"{finding['title']}\nconv-conformance finding {finding['id']} on {finding['backend']} "
                  f"{finding.get('backend_version') or ''}, case {case.id}\n"
                  f"python this_file.py exits 1 while the bug is present")
        text, err = backend.repro(case, short_header=header)
        if not text:
            problems.append(f"{case.id}: {err or 'no script'}")
            continue
        if y is not None and exit_code_for(text, y) == 0:
            problems.append(f"{case.id}: the short check passes what the verdict does not")
            continue
        sr = {"case_id": case.id, "case": case.to_dict(), "status": rec["status"], "kind": rec["kind"],
              "script": text, "path": None}
        if out is not None:
            from pathlib import Path

            rel = Path("repro") / safe_filename(finding["backend"]) / f"finding-{finding['id']}.py"
            (Path(out) / rel).parent.mkdir(parents=True, exist_ok=True)
            (Path(out) / rel).write_text(text, encoding="utf-8")
            sr["path"] = rel.as_posix()
        finding["short_repro"] = sr
        return sr
    finding["short_repro"] = None
    finding.setdefault("notes", []).append("no short repro: " + "; ".join(problems))
    return None


#: Findings of different backends are confirmed at once, this many at a time (each uses its
#: own backend's worker; two findings of one backend never run together).
ENRICH_THREADS = 2


def enrich(found: list[dict[str, Any]], backends: dict[str, Any], records: list[dict[str, Any]], *,
           out: Any = None, confirm_budget_s: float | None = CONFIRM_BUDGET_S, precision: str | None = None) -> None:
    """Confirm each finding (unless `confirm_budget_s` is None) and give it a short repro,
    with the live runner.Backend of its backend (findings of other backends stay as built).

    Findings are taken in their order; `ENRICH_THREADS` threads work on findings of
    different backends at once (the workers compute in their own processes)."""
    seen: dict[str, set[str]] = {}
    cases: dict[tuple[str, str], dict] = {}
    # The whole step is bounded too: a run with many findings (a dozen backends, each with
    # its own) must not spend minutes confirming them; the rest say so ("skipped").
    deadline = time.monotonic() + CONFIRM_RUN_FACTOR * (confirm_budget_s or 0.0)
    for r in records:
        seen.setdefault(r["backend"], set()).add(r["case_id"])
        cases[(r["backend"], r["case_id"])] = r["case"]
    pending = [f for f in found if backends.get(f["backend"]) is not None and not backends[f["backend"]].failed]
    busy: set[str] = set()
    lock = threading.Condition()

    def one(f: dict[str, Any]) -> None:
        b = backends[f["backend"]]
        # A new case that hangs must not cost the per-case timeout many times over.
        cap = max(confirm_budget_s or 0.0, 10.0)
        judge_case = lambda c, b=b: judge_on(b, c, timeout=cap, precision=precision)  # noqa: E731
        siblings = {g["kind"] for g in found if g["backend"] == f["backend"] and g["predicate"] == f["predicate"]}
        try:
            bases = [Case.from_dict(cases[(f["backend"], cid)]) for cid in f["cases"][:20]]
            if confirm_budget_s is not None and time.monotonic() >= deadline:
                f["confirmation"] = {"status": "skipped", "budget_s": confirm_budget_s, "inside": [],
                                     "near_misses": [], "seconds": 0.0,
                                     "reason": f"the run's confirmation time ({CONFIRM_RUN_FACTOR} x "
                                               f"{confirm_budget_s:g} s) was spent on earlier findings"}
            elif confirm_budget_s is not None:
                tried = seen.setdefault(f["backend"], set())
                conf = confirm(f, judge_case, tried, bases, budget_s=confirm_budget_s, also_kinds=siblings)
                tried |= {r["case_id"] for r in conf["inside"] + conf["near_misses"]}
                mine = [r for r in records if r["backend"] == f["backend"]]
                if conf["status"] == "refuted" and refine(f, mine, siblings):
                    confirm(f, judge_case, tried, bases, budget_s=confirm_budget_s, also_kinds=siblings)
            short_repro_for(f, b, lambda c, b=b: judge_on(b, c, with_output=True, precision=precision), out,
                            [Case.from_dict(cases[(f["backend"], cid)]) for cid in f["cases"]])
        except Exception as exc:  # a finding's extras must never lose the run
            f.setdefault("notes", []).append(f"confirmation or short repro failed: {type(exc).__name__}: {exc}")

    def take() -> dict[str, Any] | None:
        """The first pending finding whose backend is free (waits for one); None when none is left."""
        with lock:
            while pending:
                f = next((g for g in pending if g["backend"] not in busy), None)
                if f is not None:
                    pending.remove(f)
                    busy.add(f["backend"])
                    return f
                lock.wait()
            return None

    def loop() -> None:
        while (f := take()) is not None:
            try:
                one(f)
            finally:
                with lock:
                    busy.discard(f["backend"])
                    lock.notify_all()

    threads = [threading.Thread(target=loop, name=f"findings-{i}", daemon=True) for i in range(ENRICH_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(0.2)  # in slices, so that Ctrl-C reaches the run


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
    """One line per finding, for the end-of-run summary (cli.summary prints these first)."""
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
