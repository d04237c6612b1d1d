"""From experiments to a predicate: fitted conditions, their conjunctions, designed probes.

What the experiments observed along each necessary parameter (`characterise`) is fitted
here, feature by feature, and the fits conjoined into hypotheses:
1. Fits: for every feature a parameter moves (predicate.FEATURES), the conditions
   (bounds, a residue, a set of values) true for every diverging and false for every
   passing observation along it.
2. Hypotheses: conjunctions with one condition per necessary parameter, where conditions
   on one feature found along several parameters merge (output pixels explains both the
   height and the width); those a passing observation contradicts are dropped; the
   smallest covers come first.
3. Designed probes: a case one move from the base where the simplest hypotheses disagree
   most evenly, or a case built to tell the simplest from the next (an atom of one made
   false, the other's repaired), until one is left or none can be told apart; the
   simplest survivor stands.
4. Narrowing: each bound is moved in its feature's own units (a K found with a 3x3 kernel
   steps by 9; a 1x1 case tells K >= 2305 from K >= 2313); what cannot be closed takes
   the roundest value of the gap (kernels branch on round numbers).

Invariants
- Every hypothesis holds for the base case and for no case observed to pass.
- Deterministic: ties are broken by simplicity, then by text or case id; which cases the
  Prober's cache already holds (the run's records, other shards) never changes a choice.
- Every backend call goes through the Prober (budget, cache, log), and long computations
  check the budget (`Prober.check`).
"""

from __future__ import annotations

import itertools
from typing import Any, Iterable

from . import axes
from .predicate import AXIS, BY_NAME, FEATURES, PER_AXIS, Atom, Predicate, features
from .probe import Evidence, Prober, observe
from .spec import Case

#: Periods a residue condition may have (vector tails, channel blocks, split-K slices).
MODULI = tuple(2 ** k for k in range(1, 11))
#: Hypotheses considered at once; combinations of conditions looked at to find them; the
#: most conditions one hypothesis conjoins.
MAX_HYPOTHESES = 600
MAX_COMBINATIONS = 100_000
MAX_CONDITIONS = 5
#: Designed probes never cost more than this (minimise.cost: multiply-adds + elements).
MAX_PROBE_COST = 4e6
#: Rounds of bound narrowing per atom.
MAX_NARROWING = 14

#: Parameters whose condition is about their own feature only.
_OWN_FEATURE = {"op": ("op",), "validity": ("validity",), "dtype": ("dtype",), "profile": ("profile",),
                "data_format": ("data_format",), "bias": ("bias",)}


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


def fit_param(param: str, ids: list[str], ev: Evidence, m: Case) -> list[tuple[Atom, ...]]:
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
                # Each part alone as well: along this parameter it admits cases that passed,
                # but with another parameter's condition it may be the truth (a stride that
                # shows only while the output keeps two columns: stride >= 2, out_w >= 2).
                for r in range(1, len(cond)):
                    for part in itertools.combinations(cond, r):
                        out.append((_order(part) + 1, part))
    out.sort(key=lambda t: (len(t[1]), t[0], [a.text() for a in t[1]]))
    return list(dict.fromkeys(cond for _, cond in out))


_RANK = {f.name: i for i, f in enumerate(FEATURES)}


def _order(cond: Iterable[Atom]) -> int:
    """How far down FEATURES (primitive first) and how long a period a condition uses."""
    n = 0
    for a in cond:
        if a.feature == AXIS:  # as simple as its sub-atoms on the height axis
            n += _order(a.value)
            continue
        n += _RANK[a.feature] * 4
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
    parameters counts for all of them), with no passing case inside; fewest conditions
    first (a condition may be needed beyond the cover: a stride that shows only while the
    output keeps two columns needs both)."""
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
    for size in range(1, min(len(params) + 1, MAX_CONDITIONS) + 1):
        for combo in itertools.combinations(keys, size):
            looked += 1
            if looked > MAX_COMBINATIONS:
                break
            mask = 0
            for k in combo:
                mask |= covers[k]
            if mask != full:
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


def _grid(v: int, line: axes.Line) -> list[int]:
    vals = {line.low, line.low + 1, line.low + 2, line.low + 3, v - 2, v - 1, v + 1, v + 2, v + 3, 2 * v}
    vals |= {2 ** k for k in range(1, 11)} | {3 * 2 ** k for k in range(0, 9)}
    vals |= {v + 2 ** k for k in range(1, 11)} | {axes.odd_multiple(v, k) for k in range(1, 11)}
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


def _put(out: dict[Case, None], c: Case | None) -> None:
    if c is not None and c not in out and axes.cost(c) <= MAX_PROBE_COST:
        out[c] = None


def near_cases(m: Case) -> list[Case]:
    """Cases one move from `m`: each line over a grid of values, each categorical alternative.
    None has an output narrower than `m`'s (up to 4 rows and columns): where a one-pixel
    output hides a bug, a probe there would only mislead."""
    out: dict[Case, None] = {}
    for line in axes.LINES.values():
        for x in _grid(line.get(m), line):
            c = line.move(m, x)
            c = c if line.name in ("height", "width") else axes.with_room(c, m)
            _put(out, c if c is not None and axes.roomy_as(c, m) else None)
    for p in axes.PARAMS:
        for c in p.neutrals(m) + p.alternatives(m):
            c = c if p.name in ("height", "width") else axes.with_room(c, m)
            _put(out, c if c is not None and axes.roomy_as(c, m) else None)
    flipped = axes.transposed(m)
    _put(out, flipped)
    for line in axes.LINES.values():
        if flipped is not None:
            for x in _grid(line.get(flipped), line)[:6]:
                c = line.move(flipped, x)
                c = c if line.name in ("height", "width") else axes.with_room(c, m)
                _put(out, c if c is not None and axes.roomy_as(c, m) else None)
    return sorted(out, key=lambda c: (axes.cost(c), c.id))


def solved_cases(m: Case, targets: Iterable[tuple[str, int]], wide: bool = False,
                 check=lambda: None) -> list[Case]:
    """Cases two moves from `m` that hit feature values: one secondary line moved, then a
    line that changes the feature solved for each target value. `wide`: the lines of the
    target features themselves move over a wide grid too (powers of two, three times
    them), so that a product feature (pixels, K) can be hit exactly."""
    out: dict[Case, None] = {}
    targets = sorted(set(targets))
    if not targets:
        return []
    names = list(_SECONDARY)
    if wide:  # the lines of the target features only, over the wide grid
        names = list(dict.fromkeys(n for name, _ in targets for n in axes.FEATURE_LINES.get(name, ())))
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
    return sorted(out, key=lambda c: (axes.cost(c), c.id))


#: Hypotheses a designed probe is chosen for at once (the simplest); a probe's outcome
#: then removes every live hypothesis it contradicts.
SPLIT_AMONG = 24


def _best_split(cases: list[Case], live: list[Predicate], ev: Evidence) -> Case | None:
    """The unprobed case on which the simplest live hypotheses disagree most evenly."""
    among = live[:SPLIT_AMONG]
    best, best_split = None, 0
    for c in cases:
        if c.id in ev.div:  # what the backend's cache happens to know must not steer the choice
            continue
        f = features(c)
        n_in = sum(1 for p in among if p.holds(f))
        split = min(n_in, len(among) - n_in)
        if split > best_split:
            best, best_split = c, split
    return best


def split_case(m: Case, h1: Predicate, h2: Predicate, seen: Iterable[str] = ()) -> Case | None:
    """A case a few moves from `m` on which exactly one of `h1`, `h2` holds: an atom of one
    made false by the smallest move, then the other's atoms repaired."""
    seen = set(seen)
    for yes, no in ((h1, h2), (h2, h1)):
        for atom in no.atoms:
            if atom in yes.atoms:
                continue
            for c in axes.making(m, atom, False, no)[:6]:
                for _ in range(3):
                    bad = [a for a in yes.atoms if not a.holds(features(c))]
                    if not bad:
                        break
                    fixes = [d for d in axes.making(c, bad[0], True, yes) if not atom.holds(features(d))]
                    if not fixes:
                        break
                    c = fixes[0]
                for c in (c, axes.with_room(c, m)):
                    if c is not None and yes.holds(c) and not no.holds(c) and c.id not in seen \
                            and axes.cost(c) <= MAX_PROBE_COST and axes.roomy_as(c, m):
                        return c
    return None


def disambiguate(m: Case, preds: list[Predicate], prober: Prober, ev: Evidence) -> list[Predicate]:
    """Probe designed cases where the hypotheses disagree; drop those each probe refutes.
    One move from `m` first (the most even split among the simplest); else a case built to
    tell the simplest from the next; when nothing tells them apart, the simplest stands."""
    live = list(preds)
    near = near_cases(m)
    while len(live) > 1:
        prober.check()
        best = _best_split(near, live, ev)
        if best is None:
            known = set(ev.div)
            best = next((c for other in live[1:] for c in [split_case(m, live[0], other, known)] if c is not None),
                        None)
        if best is None:
            break
        d = observe(prober, ev, best, "tell hypotheses apart")
        if d is None:
            near = [c for c in near if c.id != best.id]
            continue
        f = features(best)
        live = [p for p in live if p.holds(f) == d]
    return sorted(live, key=_simplicity)


# ---- 5. bounds in the feature's own units ---------------------------------------------

def necessary_atoms(m: Case, pred: Predicate, prober: Prober, ev: Evidence) -> Predicate:
    """`pred` without the atoms that are not necessary: each atom made false on the base by
    the smallest move (the others kept true) must make the divergence vanish; an atom whose
    negation still diverges was picked among equals by the fits, not shown by the bug
    (`output size % 32 == 4` beside a flush of subnormals), and is dropped."""
    for atom in list(pred.atoms):
        if len(pred.atoms) == 1:
            break
        others = pred.without(atom)
        moved = next((c for c in axes.making(m, atom, False, pred)
                      if others.holds(c) and not atom.holds(features(c)) and axes.roomy_as(c, m)), None)
        if moved is None:
            continue
        if observe(prober, ev, moved, f"is {atom.text()} needed") is True and _consistent(others, ev, m):
            pred = others
    return pred


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


def narrow(m: Case, pred: Predicate, prober: Prober, ev: Evidence) -> Predicate:
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
        d = observe(prober, ev, pick, f"narrow {atom.text()}")
        if d is None:
            return pred
        if d:
            pred = _with_bound(pred, atom, features(pick)[atom.feature])
    return pred


def _axis_variant(pred: Predicate) -> Predicate | None:
    """`pred` with its atoms on one spatial axis's features (stride_w, dilation_w, out_w,
    ...) as one `axis(...)` atom; None when it has none, or atoms on both axes."""
    sided = [a for a in pred.atoms if a.feature in PER_AXIS_SIDE]
    if not sided or len({PER_AXIS_SIDE[a.feature][1] for a in sided}) != 1:
        return None
    subs = tuple(Atom(PER_AXIS[PER_AXIS_SIDE[a.feature][0]][0], a.form, a.value) for a in sided)
    return Predicate([a for a in pred.atoms if a not in sided] + [Atom(AXIS, "some", subs)])


def with_axis_variants(m: Case, preds: list[Predicate], prober: Prober, ev: Evidence) -> list[Predicate]:
    """`preds` and, when the transposed base diverges too, each one's `axis(...)` variant:
    conditions that must hold on the same axis, either axis (a depthwise stride and
    dilation), which the experiments along one axis cannot tell from that axis alone."""
    variants = {p.text(): v for p in preds for v in [_axis_variant(p)] if v is not None}
    if not variants:
        return preds
    flipped = axes.transposed(m)
    if flipped is None or not observe(prober, ev, flipped, "the same on the other axis"):
        return preds
    out = {p.text(): p for p in preds}
    out.update({v.text(): v for v in variants.values() if _consistent(v, ev, m)})
    return sorted(out.values(), key=_simplicity)


#: Per-axis feature -> (its generic name, 0 for height / 1 for width).
PER_AXIS_SIDE = {name: (g, i) for g, names in PER_AXIS.items() for i, name in enumerate(names)}


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
        key = (abs(v - target), axes.cost(c), c.id)
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
