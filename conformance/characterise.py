"""Characterise one divergence by experiment: its necessary conditions, as a predicate.

From a minimal diverging case `m`:
1. Necessity: each parameter (axes.PARAMS) is moved to a neutral value (stride -> 1,
   dtype -> float32, size -> small, ...) and the case rerun. A parameter whose
   neutralisation makes the divergence vanish is a necessary condition. Categorical
   parameters also try every alternative value.
2. Scans: along each necessary numeric parameter, probes find where the divergence
   starts and stops (bisection to the exact edge) and whether it recurs with a period
   (multiples of 2^k: vector tails, channel blocks, split-K slices).
3. Fits: for every feature that the parameter moves (predicate.FEATURES), the conditions
   (bounds, residue, set of values) consistent with what was observed along it.
4. Hypotheses: one fitted condition per necessary parameter, conjoined; those a passing
   observation contradicts are dropped. Probes are then designed (one or two lines moved,
   values solved for a feature's bound) where the surviving hypotheses disagree, until
   one is left or none of the designed cases tells them apart; the simplest is kept.
5. Bounds are narrowed in the chosen feature's own units (a K found with a 3x3 kernel
   steps by 9; a 1x1 case tells K >= 2305 from K >= 2313).

Invariants
- The predicate holds for `m` and for no case observed to pass (the run's own records
  included): it is never wider than the evidence allows.
- Deterministic: the same case and the same backend give the same experiments and the
  same predicate (no randomness; ties broken by case id).
- Every backend call goes through the Prober (budget, cache, log); `BudgetSpent` leaves
  the characterisation with the best predicate so far, said to be incomplete.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Iterable

from . import axes
from .minimise import cost
from .predicate import BY_NAME, FEATURES, Atom, Predicate, features, validity
from .probe import BudgetSpent, Prober
from .spec import Case

#: Periods a residue condition may have (vector tails, channel blocks, split-K slices).
MODULI = tuple(2 ** k for k in range(1, 11))
#: Hypotheses considered at once; combinations of conditions looked at to find them; the
#: most conditions one hypothesis conjoins.
MAX_HYPOTHESES = 600
MAX_COMBINATIONS = 100_000
MAX_CONDITIONS = 5
#: A divergence that vanishes when more parameters than this move one at a time is not one
#: mechanism the vocabulary can state (a hash of the case, say): characterisation stops.
MAX_NECESSARY = 6
#: Designed probes never cost more than this (minimise.cost: multiply-adds + elements).
MAX_PROBE_COST = 5e7
#: Rounds of bound narrowing per atom.
MAX_NARROWING = 14

#: Parameters whose condition is about their own feature only.
_OWN_FEATURE = {"op": ("op",), "validity": ("validity",), "dtype": ("dtype",), "profile": ("profile",),
                "data_format": ("data_format",), "bias": ("bias",)}


class Evidence:
    """Conclusive observations (diverges True/False) gathered while characterising."""

    def __init__(self) -> None:
        self.cases: dict[str, Case] = {}
        self.div: dict[str, bool] = {}
        self.feats: dict[str, dict[str, Any]] = {}

    def add(self, case: Case, diverges: bool | None) -> None:
        if diverges is None:
            return
        self.cases[case.id] = case
        self.div[case.id] = diverges
        if case.id not in self.feats:
            self.feats[case.id] = features(case)

    def passing(self) -> list[dict[str, Any]]:
        return [self.feats[i] for i, d in self.div.items() if not d]

    def diverging(self) -> list[dict[str, Any]]:
        return [self.feats[i] for i, d in self.div.items() if d]


@dataclass
class Result:
    """What the experiments found: the predicate (None: nothing in the vocabulary fits),
    the necessary parameters, and why the predicate is missing or incomplete."""

    minimal: Case
    predicate: Predicate | None
    base: Case | None = None  # the case the experiments moved from (`typical(minimal)`)
    necessary: list[str] = field(default_factory=list)
    reason: str = ""
    complete: bool = True
    evidence: Evidence = field(default_factory=Evidence)


def _probe(prober: Prober, ev: Evidence, case: Case | None, move: str) -> bool | None:
    if case is None:
        return None
    obs = prober(case, move)
    ev.add(case, obs.diverges)
    return obs.diverges


# ---- 1. necessity ---------------------------------------------------------------------

def _necessity(m: Case, prober: Prober, ev: Evidence) -> dict[str, dict[str, Any]]:
    """{param: {"cases": ids observed for it, "neutral": the passing neutral case or None}}
    for every necessary parameter."""
    found: dict[str, dict[str, Any]] = {}
    for p in axes.PARAMS:
        ids: list[str] = []
        neutral = None
        for c in p.neutrals(m):
            if c.id == m.id:
                continue
            d = _probe(prober, ev, c, f"{p.name} neutral")
            if d is not None:
                ids.append(c.id)
            if d is False:
                neutral = c
                break
        if p.kind == "cat":
            for c in p.alternatives(m):
                if c.id != m.id and c.id not in ids:
                    d = _probe(prober, ev, c, f"{p.name} alternative")
                    if d is not None:
                        ids.append(c.id)
                    if d is False and neutral is None:
                        neutral = c
        if neutral is not None:
            found[p.name] = {"cases": [m.id] + ids, "neutral": neutral}
    return found


# ---- 2. scans -------------------------------------------------------------------------

def _admitted(residue: tuple | None):
    if residue is None:
        return lambda x: True
    if residue[0] == "%=":
        return lambda x: x % residue[1] == residue[2]
    return lambda x: x % residue[1] != 0


def _admitted_near(x: int, a: int, b: int, ok) -> int | None:
    """An admitted integer strictly between a and b (a < b), nearest to x."""
    for delta in range(0, b - a):
        for y in (x - delta, x + delta):
            if a < y < b and ok(y):
                return y
        if x - delta <= a and x + delta >= b:
            break
    return None


def _bisect(d_end: int, p_end: int, at, ok) -> None:
    """Narrow (d_end diverges, p_end passes) until no admitted value lies between them."""
    for _ in range(40):
        a, b = min(d_end, p_end), max(d_end, p_end)
        mid = _admitted_near((a + b) // 2, a, b, ok)
        if mid is None:
            return
        r = at(mid)
        if r is None:
            return
        if r:
            d_end = mid
        else:
            p_end = mid


def _scan(m: Case, line: axes.Line, u: int, prober: Prober, ev: Evidence, tag: str) -> list[str]:
    """Probe along `line` from `m` (which diverges at value v) given that the value `u`
    passes: the exact edge(s) and any period (see the module docstring). The ids observed."""
    v = line.get(m)
    ids: list[str] = []

    def at(x: int) -> bool | None:
        c = line.move(m, x)
        if c is None or cost(c) > MAX_PROBE_COST:
            return None
        d = _probe(prober, ev, c, f"{tag}: {line.name} = {x}")
        if d is not None:
            ids.append(c.id)
        return d

    if u > v:  # the divergence lives below the neutral value: find its upper edge
        _bisect(v, u, at, lambda x: True)
        return ids
    residue = None
    top = line.cap
    above = at(v + 1)
    if above is not False:
        # Periodic passes (x % 2^k == 0 passes: a vector tail)? A multiple of a large power
        # of two above v tells; then a binary search over k, on odd multiples of 2^k (each
        # divisible by 2^k and by no higher power), finds the period exactly.
        ks = [k for k in range(1, 11) if _odd_multiple(v, k) <= top]
        far = ks and (v // 2 ** ks[-1] + 1) * 2 ** ks[-1]
        if ks and far <= top and at(far) is False:
            if at(far + 1):
                lo_k, hi_k = 0, ks[-1] + 1
                while hi_k - lo_k > 1:
                    mid = (lo_k + hi_k) // 2
                    r = at(_odd_multiple(v, mid))
                    if r is None:
                        break
                    lo_k, hi_k = (lo_k, mid) if r is False else (mid, hi_k)
                residue = ("%!=", 2 ** hi_k)
            else:
                _bisect(v, far, at, lambda x: True)
    else:
        # v + 1 passes: a residue (x % 2^k == v % 2^k) or an upper edge at v.
        ks = [k for k in range(1, 11) if v + 2 ** k <= top]
        if ks and at(v + 2 ** ks[-1]):
            lo_k, hi_k = 0, ks[-1]
            while hi_k - lo_k > 1:
                mid = (lo_k + hi_k) // 2
                r = at(v + 2 ** mid)
                if r is None:
                    break
                lo_k, hi_k = (mid, hi_k) if r is False else (lo_k, mid)
            residue = ("%=", 2 ** hi_k, v % 2 ** hi_k)
    ok = _admitted(residue)
    a0 = next((x for x in range(line.low, v) if ok(x)), None)
    if a0 is not None and at(a0) is False:
        _bisect(v, a0, at, ok)
    return ids


def _odd_multiple(v: int, k: int) -> int:
    """The smallest odd multiple of 2^k above v (divisible by 2^k, not by 2^(k+1))."""
    x = (v // 2 ** k + 1) * 2 ** k
    return x if (x >> k) % 2 else x + 2 ** k


def _pair_scans(m: Case, param: str, neutral: Case, prober: Prober, ev: Evidence) -> list[str]:
    """Which axes of a pair parameter (kernel, strides, dilations) matter, then a scan along them."""
    n = getattr(neutral, param)[0]
    h, w = getattr(m, param)
    ids: list[str] = []
    line_h, line_w, line_hw = (axes.LINES[f"{param}.{p}"] for p in ("h", "w", "hw"))

    def try_case(c: Case | None, why: str) -> bool | None:
        d = _probe(prober, ev, c, f"{param} {why}")
        if d is not None:
            ids.append(c.id)
        return d

    if h != n and w != n:
        dh = try_case(line_w.move(m, n), "height only")
        dw = try_case(line_h.move(m, n), "width only")
        if dh and not dw:
            base, line = line_w.move(m, n), line_h
        elif dw and not dh:
            base, line = line_h.move(m, n), line_w
        elif dh and dw:
            base, line = line_w.move(m, n), line_h
        else:
            base, line = m, line_hw
    else:
        line = line_h if h != n else line_w
        other = line_w if line is line_h else line_h
        swapped = other.move(line.move(m, n), line.get(m)) if line.move(m, n) is not None else None
        try_case(swapped, "on the other axis")
        base = m
    if base is None:
        return ids
    ev.add(base, True)
    return ids + _scan(base, line, n, prober, ev, param)


# ---- 3. fits --------------------------------------------------------------------------

def _fit_int(name: str, points: list[tuple[Any, bool]], v0: int) -> list[tuple[Atom, ...]]:
    """Conditions on integer feature `name` true for every diverging point and false for
    every passing one: bounds (the extreme diverging values), optionally with a residue."""
    if v0 is None or any(x is None for x, d in points if d):
        return []
    div = sorted({x for x, d in points if d})
    ok_pts = sorted({x for x, d in points if not d and x is not None})
    residues: list[Atom | None] = [None]
    for mod in MODULI:
        residues.append(Atom(name, "%=", (mod, v0 % mod)))
        if v0 % mod:
            residues.append(Atom(name, "%!=", mod))
    out = []
    for res in residues:
        adm = (lambda x: True) if res is None else (lambda x, r=res: r.holds({name: x}))
        if not all(adm(x) for x in div):
            continue
        passing = [x for x in ok_pts if adm(x)]
        lo, hi = div[0], div[-1]
        if any(lo <= x <= hi for x in passing):
            continue
        atoms: list[Atom] = []
        if any(x < lo for x in passing):
            atoms.append(Atom(name, ">=", lo))
        if any(x > hi for x in passing):
            atoms.append(Atom(name, "<=", hi))
        if res is not None:
            if not any(not adm(x) for x in ok_pts):
                continue  # a residue that excludes nothing observed says nothing
            atoms.append(res)
        if atoms:
            out.append(tuple(atoms))
    return out


def _fit_param(param: str, ids: list[str], ev: Evidence, m: Case) -> list[tuple[Atom, ...]]:
    """The conditions (tuples of atoms on one feature) that explain what was observed along
    `param`, simplest first."""
    pts = [i for i in dict.fromkeys(ids) if i in ev.div]
    names = _OWN_FEATURE.get(param) or tuple(
        f.name for f in FEATURES if len({repr(ev.feats[i][f.name]) for i in pts}) > 1)
    m_feats = features(m)
    out: list[tuple[int, tuple[Atom, ...]]] = []
    for name in names:
        f = BY_NAME[name]
        points = [(ev.feats[i][name], ev.div[i]) for i in pts]
        if f.kind == "cat":
            values = tuple(v for v, d in points if d)
            if any(v in values for v, d in points if not d):
                continue
            out.append((0, (Atom(name, "in", tuple(set(values))),)))
        elif f.kind == "bool":
            want = m_feats[name]
            if all(bool(v) == want for v, d in points if d) and all(bool(v) != want for v, d in points if not d):
                out.append((0, (Atom(name, "is" if want else "not"),)))
        else:
            for cond in _fit_int(name, points, m_feats[name]):
                out.append((_order(cond), cond))
    out.sort(key=lambda t: (len(t[1]), t[0], [a.text() for a in t[1]]))
    return [cond for _, cond in out]


def _order(cond: Iterable[Atom]) -> int:
    """How far down FEATURES (primitive first) and how long a period a condition uses."""
    n = 0
    for a in cond:
        n += [f.name for f in FEATURES].index(a.feature) * 4
        if a.form in ("%=", "%!="):
            n += 1 + (a.value[0] if a.form == "%=" else a.value).bit_length()
    return n


# ---- 4. hypotheses and designed probes ----------------------------------------------------

def _simplicity(p: Predicate) -> tuple:
    return (len(p.atoms), sum(_order((a,)) for a in p.atoms), p.text())


def _consistent(p: Predicate, ev: Evidence, m: Case) -> bool:
    return p.holds(features(m)) and not any(p.holds(f) for f in ev.passing())


def _key(cond: tuple[Atom, ...]) -> tuple:
    """Conditions on one feature with the same forms and the same residue merge into one
    (their bounds tightened): the same mechanism seen along two parameters."""
    return (cond[0].feature, tuple(sorted(a.form for a in cond)),
            tuple(a.text() for a in cond if a.form in ("%=", "%!=", "in", "is", "not")))


def hypotheses(conditions: dict[str, list[tuple[Atom, ...]]], ev: Evidence, m: Case) -> list[Predicate]:
    """Conjunctions of fitted conditions that explain every necessary parameter (each
    parameter by one of its own conditions; a condition on one feature found along several
    parameters counts for all of them), with no passing case inside. Smallest covers first."""
    params = list(conditions)
    merged: dict[tuple, list[Atom]] = {}
    covers: dict[tuple, int] = {}
    for i, name in enumerate(params):
        for cond in conditions[name]:
            k = _key(cond)
            merged.setdefault(k, []).extend(cond)
            covers[k] = covers.get(k, 0) | (1 << i)
    keys = sorted(merged, key=lambda k: (-bin(covers[k]).count("1"), _order(merged[k]), str(k)))
    full = (1 << len(params)) - 1
    out: dict[str, Predicate] = {}
    looked = 0
    for size in range(1, min(len(params), MAX_CONDITIONS) + 1):
        for combo in itertools.combinations(keys, size):
            looked += 1
            if looked > MAX_COMBINATIONS:
                break
            mask = 0
            for k in combo:
                mask |= covers[k]
            if mask != full or any(_redundant(covers, combo, k) for k in combo):
                continue
            p = Predicate(a for k in combo for a in merged[k])
            if p.text() not in out and _consistent(p, ev, m):
                out[p.text()] = p
            if len(out) >= MAX_HYPOTHESES:
                break
        if len(out) >= MAX_HYPOTHESES or looked > MAX_COMBINATIONS:
            break
    if not params:
        out["true"] = Predicate()
    return sorted(out.values(), key=_simplicity)


def _redundant(covers: dict[tuple, int], combo: tuple, k: tuple) -> bool:
    rest = 0
    for j in combo:
        if j != k:
            rest |= covers[j]
    return covers[k] & ~rest == 0


def _grid(v: int, line: axes.Line) -> list[int]:
    vals = {line.low, line.low + 1, line.low + 2, line.low + 3, v - 2, v - 1, v + 1, v + 2, v + 3, 2 * v}
    vals |= {2 ** k for k in range(1, 11)} | {3 * 2 ** k for k in range(0, 9)}
    vals |= {v + 2 ** k for k in range(1, 11)} | {_odd_multiple(v, k) for k in range(1, 11)}
    return sorted(x for x in vals if line.low <= x <= line.cap and x != v)


def _targets(preds: list[Predicate]) -> set[tuple[str, int]]:
    """(feature, value) pairs worth hitting exactly: each bound that not every hypothesis
    shares, and its neighbours."""
    out = set()
    shared = set.intersection(*(set(p.atoms) for p in preds)) if preds else set()
    for p in preds:
        for a in p.atoms:
            if a in shared:
                continue
            if a.form in ("=", ">=", "<="):
                out |= {(a.feature, a.value - 1), (a.feature, a.value), (a.feature, a.value + 1)}
    return out


_SECONDARY = ("batch", "height", "width", "in_channels", "out_channels", "groups", "kernel.hw", "kernel.h",
              "strides.hw", "dilations.hw")


def _put(out: dict[str, Case], c: Case | None) -> None:
    if c is not None and c.id not in out and cost(c) <= MAX_PROBE_COST:
        out[c.id] = c


def near_cases(m: Case) -> list[Case]:
    """Cases one move from `m`: each line over a grid of values, each categorical alternative."""
    out: dict[str, Case] = {}
    for line in axes.LINES.values():
        for x in _grid(line.get(m), line):
            _put(out, line.move(m, x))
    for p in axes.PARAMS:
        for c in p.neutrals(m) + p.alternatives(m):
            _put(out, c)
    flipped = axes.transposed(m)
    _put(out, flipped)
    for line in axes.LINES.values():
        if flipped is not None:
            for x in _grid(line.get(flipped), line)[:6]:
                _put(out, line.move(flipped, x))
    return sorted(out.values(), key=lambda c: (cost(c), c.id))


def solved_cases(m: Case, targets: Iterable[tuple[str, int]], wide: bool = False,
                 check=lambda: None) -> list[Case]:
    """Cases two moves from `m` that hit feature values: one secondary line moved, then a
    line that changes the feature solved for each target value. `wide`: the lines of the
    target features themselves move over a wide grid too (powers of two, three times
    them), so that a product feature (pixels, K) can be hit exactly."""
    out: dict[str, Case] = {}
    targets = sorted(set(targets))
    if not targets:
        return []
    names = list(_SECONDARY)
    if wide:
        names += [n for name, _ in targets for n in axes.FEATURE_LINES.get(name, ()) if n not in names]
    bases = [m]
    for name in names:
        line = axes.LINES[name]
        v = line.get(m)
        values = {line.low, line.low + 1, line.low + 2, v + 1, 2 * v, 3 * v}
        if wide and any(name in axes.FEATURE_LINES.get(f, ()) for f, _ in targets):
            values |= {2 ** k for k in range(13)} | {3 * 2 ** k for k in range(12)}
        for x in sorted(values - {v}):
            bases.append(line.move(m, x))
    for base in bases:
        if base is None:
            continue
        check()
        _put(out, base)
        for name, t in targets:
            for line_name in axes.FEATURE_LINES.get(name, ()):
                for c in axes.solve(base, axes.LINES[line_name], name, t):
                    _put(out, c)
    return sorted(out.values(), key=lambda c: (cost(c), c.id))


def _best_split(cases: list[Case], feats: dict[str, dict], live: list[Predicate], prober: Prober,
                ev: Evidence) -> Case | None:
    best, best_split = None, 0
    for c in cases:
        if c.id in ev.div or prober.known(c) is not None:
            continue
        f = feats.get(c.id) or feats.setdefault(c.id, features(c))
        n_in = sum(1 for p in live if p.holds(f))
        split = min(n_in, len(live) - n_in)
        if split > best_split:
            best, best_split = c, split
    return best


def _disambiguate(m: Case, preds: list[Predicate], prober: Prober, ev: Evidence) -> list[Predicate]:
    """Probe designed cases where the hypotheses disagree; drop those each probe refutes.
    Cases one move away are tried first; solved two-move cases only where none tells."""
    live = list(preds)
    feats: dict[str, dict] = {}
    near = near_cases(m)
    solved: list[Case] | None = None
    while len(live) > 1:
        best = _best_split(near, feats, live, prober, ev)
        if best is None:
            if solved is None:
                solved = solved_cases(m, _targets(live), check=prober.check)
            best = _best_split(solved, feats, live, prober, ev)
        if best is None:
            break
        d = _probe(prober, ev, best, "tell hypotheses apart")
        if d is None:
            continue
        f = feats[best.id]
        live = [p for p in live if p.holds(f) == d]
    return sorted(live, key=_simplicity)


# ---- 5. bounds in the feature's own units ---------------------------------------------

def roundest(a: int, b: int, ok=lambda x: True) -> int | None:
    """The admitted integer in (a, b] divisible by the highest power of two (the smallest
    such): where a kernel's threshold most likely lies (2^16, 2304 = 9 * 256, 512)."""
    best = None
    for k in range(max(b, 1).bit_length(), -1, -1):
        step = 2 ** k
        x = (a // step + 1) * step
        while x <= b and not ok(x):
            x += step
        if x <= b:
            best = x
            break
    return best


def _narrow(m: Case, pred: Predicate, prober: Prober, ev: Evidence) -> Predicate:
    """Close the gap between the nearest passing value and each bound with cases whose
    feature falls inside it (the other atoms kept true): the roundest value first, then
    halving. What cannot be closed takes the roundest value of what is left (a prior:
    thresholds in kernels are round numbers)."""
    for _ in range(MAX_NARROWING):
        gap = _widest_gap(pred, ev)
        if gap is None:
            return pred
        atom, p_val, d_val = gap
        ok = _residue_ok(pred, atom.feature)
        lo, hi = sorted((p_val, d_val))
        want = [x for x in (roundest(lo, hi - 1, ok), (lo + hi) // 2) if x is not None and lo < x < hi]
        pick = None
        for target in want:
            cases = solved_cases(m, [(atom.feature, target)], wide=True, check=prober.check)
            pick = _nearest_in_gap(cases, pred, atom, lo, hi, target, ev)
            if pick is not None:
                break
        if pick is None:
            guess = roundest(lo, hi, ok) if atom.form == ">=" else hi - 1
            return _with_bound(pred, atom, guess if guess is not None else atom.value)
        d = _probe(prober, ev, pick, f"narrow {atom.text()}")
        if d is None:
            return pred
        if d:
            pred = _with_bound(pred, atom, features(pick)[atom.feature])
    return pred


def _residue_ok(pred: Predicate, feature: str):
    residue = [a for a in pred.atoms if a.feature == feature and a.form in ("%=", "%!=")]
    return lambda x: all(a.holds({feature: x}) for a in residue)


def _with_bound(pred: Predicate, atom: Atom, value: int) -> Predicate:
    return Predicate([a for a in pred.atoms if a != atom] + [Atom(atom.feature, atom.form, value)])


def _nearest_in_gap(cases: list[Case], pred: Predicate, atom: Atom, lo: int, hi: int, target: int,
                    ev: Evidence) -> Case | None:
    others = pred.without(atom)
    ok = _residue_ok(pred, atom.feature)
    best = None
    for c in cases:
        f = features(c)
        v = f[atom.feature]
        if c.id in ev.div or v is None or not lo < v < hi or not ok(v) or not others.holds(f):
            continue
        key = (abs(v - target), cost(c), c.id)
        if best is None or key < best[0]:
            best = (key, c)
    return best[1] if best else None


def _widest_gap(pred: Predicate, ev: Evidence) -> tuple[Atom, int, int] | None:
    """(bound atom, nearest passing value, the bound) for a bound with unprobed values between."""
    for atom in pred.atoms:
        if atom.form not in (">=", "<="):
            continue
        others = pred.without(atom)
        residue = [a for a in pred.atoms if a.feature == atom.feature and a.form in ("%=", "%!=")]
        near = None
        for i, d in ev.div.items():
            f = ev.feats[i]
            v = f[atom.feature]
            if d or v is None or not others.holds(f) or not all(a.holds(f) for a in residue):
                continue
            if atom.form == ">=" and v < atom.value and (near is None or v > near):
                near = v
            if atom.form == "<=" and v > atom.value and (near is None or v < near):
                near = v
        if near is None:
            continue
        a, b = sorted((near, atom.value))
        if any(all(r.holds({atom.feature: x}) for r in residue) for x in range(a + 1, min(b, a + 4097))):
            return atom, near, atom.value
    return None


# ---- the whole characterisation -------------------------------------------------------------

#: Experiments start from the minimal case grown to at least this many output rows and
#: columns, where it still diverges: on a one-pixel input with SAME padding most taps read
#: padding, and whether a bug shows at all turns on parities no user cares about.
TYPICAL_OUTPUT = 4


def typical(m: Case, prober: Prober) -> Case:
    """`m` grown (axes.roomy) to an input no smaller than its effective kernel and an
    output of at least TYPICAL_OUTPUT x TYPICAL_OUTPUT, where it still diverges; else
    grown along one axis only; else `m`."""
    if validity(m) != "valid":
        return m
    both = axes.roomy(m, TYPICAL_OUTPUT)
    tries = [both]
    if both is not None:
        tries += [axes.replace(m, height=both.height), axes.replace(m, width=both.width)]
    for c in tries:
        if c is None or c.id == m.id:
            continue
        if prober(c, "typical size").diverges:
            return c
    return m


def shrink(case: Case, diverges) -> Case:
    """`case` with each line (batch, sizes, channels, kernel, strides, dilations) bisected
    down to the smallest value that still diverges: a few probes per line where
    minimise.minimise would step down one at a time."""
    for name in ("batch", "height", "width", "in_channels", "out_channels", "groups", "kernel.h", "kernel.w",
                 "strides.h", "strides.w", "dilations.h", "dilations.w"):
        line = axes.LINES[name]
        d_end, p_end = line.get(case), line.low - 1
        while d_end - p_end > 1:
            mid = (d_end + p_end) // 2
            c = line.move(case, mid)
            if c is None:
                break
            if diverges(c):
                d_end = mid
            else:
                p_end = mid
        if d_end != line.get(case):
            case = line.move(case, d_end) or case
    return case


def characterise(m: Case, prober: Prober, evidence: Evidence | None = None,
                 extra: dict[str, Case] | None = None) -> Result:
    """The predicate of the bug that makes `m` diverge (see the module docstring).
    `evidence`: observations already made that the predicate must respect. `extra`:
    parameters known to be necessary beyond what the neutral moves show ({param: a case
    moved along it that passes}), from a refuted confirmation."""
    ev = evidence or Evidence()
    ev.add(m, True)
    necessary: list[str] = []
    base = m
    try:
        base = typical(m, prober)
        ev.add(base, True)
        found = _necessity(base, prober, ev)
        for name, c in (extra or {}).items():
            found.setdefault(name, {"cases": [base.id], "neutral": c})
            found[name]["cases"].append(c.id)
            ev.add(c, False)
        necessary = [p.name for p in axes.PARAMS if p.name in found]
        if len(necessary) > MAX_NECESSARY:
            return Result(m, None, base, necessary, f"the divergence vanishes when any of {len(necessary)} "
                          f"parameters moves ({', '.join(necessary)}): not one mechanism a predicate can state",
                          True, ev)
        conditions: dict[str, list[tuple[Atom, ...]]] = {}
        for name in necessary:
            info = found[name]
            p = axes.BY_PARAM[name]
            ids = list(info["cases"])
            if p.kind == "int":
                line = axes.LINES[axes.PARAM_LINE[name]]
                ids += _scan(base, line, line.get(info["neutral"]), prober, ev, name)
            elif p.kind == "pair":
                ids += _pair_scans(base, name, info["neutral"], prober, ev)
            conds = _fit_param(name, ids, ev, base)
            if not conds:
                return Result(m, None, base, necessary, f"no condition in the vocabulary fits what {name} does",
                              True, ev)
            conditions[name] = conds
        preds = hypotheses(conditions, ev, base)
        if not preds:
            return Result(m, None, base, necessary, "no conjunction of the fitted conditions agrees with "
                          "every passing case", True, ev)
        live = _disambiguate(base, preds, prober, ev)
        pred = _narrow(base, live[0], prober, ev)
        return Result(m, pred, base, necessary, "", True, ev)
    except BudgetSpent as exc:
        return Result(m, None, base, necessary, str(exc), False, ev)


def refine(res: Result, refuting: Case, prober: Prober) -> Result | None:
    """After an inside case `refuting` passed: the parameters that, moved from the base to
    `refuting`'s value one at a time, make the divergence vanish are necessary too;
    characterise again with them. None when no single move explains it."""
    extra: dict[str, Case] = {}
    base = res.base or res.minimal
    try:
        for param in axes.differing_params(base, refuting):
            c = axes.take(base, refuting, param)
            if c is None or c.id == base.id:
                continue
            if _probe(prober, res.evidence, c, f"refine: {param} as in {refuting.id}") is False:
                extra[param] = c
    except BudgetSpent:
        return None
    if not extra or all(p in res.necessary for p in extra):
        return None
    return characterise(res.minimal, prober, res.evidence, extra)
