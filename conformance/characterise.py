"""Characterise one divergence by experiment: its necessary conditions, as a predicate.

From a minimal diverging case `m`:
1. Necessity: each parameter (axes.PARAMS) is moved to a neutral value (stride -> 1,
   dtype -> float32, size -> small, ...) and the case rerun. A parameter whose
   neutralisation makes the divergence vanish is a necessary condition. Categorical
   parameters also try every alternative value.
2. Scans: along each necessary numeric parameter, probes find where the divergence
   starts and stops (bisection to the exact edge) and whether it recurs with a period
   (multiples of 2^k: vector tails, channel blocks, split-K slices).
3. What was observed is fitted, conjoined, told apart by designed probes and narrowed
   into one predicate by `hypotheses` (see there); each of its atoms is then checked to be
   necessary on the base (made false by the smallest move, the divergence must vanish).

Experiments start from `typical(m)`: the minimal case grown to a few output rows and
columns, where it still diverges (a bug's visibility on a one-pixel input turns on
parities nobody files). `shrink` and `refine` serve the discovery loop (`discover`):
bisection to a small case, and more experiments after a refuted confirmation.

Invariants
- The predicate holds for `m` and for no case these experiments observed to pass. The
  run's records are not evidence here (a shard holds other records than the whole run);
  `discover` checks the predicate against them afterwards.
- Deterministic: the same case and the same backend give the same experiments and the
  same predicate (no randomness; ties broken by case id), whatever the run's records.
- Every backend call goes through the Prober (budget, cache, log); a spent budget ends the
  characterisation without a predicate, and its reason says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import axes, hypotheses
from .predicate import Atom, Predicate, features
from .probe import BudgetSpent, Evidence, Prober, observe
from .spec import Case

#: A divergence that vanishes when more parameters than this move one at a time is not one
#: mechanism the vocabulary can state (a hash of the case, say): characterisation stops.
MAX_NECESSARY = 6


@dataclass
class Result:
    """What the experiments found: the predicate (None: nothing in the vocabulary fits),
    the necessary parameters, and why the predicate is missing or incomplete."""

    minimal: Case
    predicate: Predicate | None
    base: Case | None = None  # the case the experiments moved from (`typical(minimal)`)
    necessary: list[str] = field(default_factory=list)
    reason: str = ""
    evidence: Evidence = field(default_factory=Evidence)


# ---- 1. necessity ---------------------------------------------------------------------

#: Parameters whose moves are the input's size itself (others keep the output roomy).
_SIZES = ("height", "width")


def _necessity(m: Case, prober: Prober, ev: Evidence) -> dict[str, dict[str, Any]]:
    """{param: {"cases": ids observed for it, "neutral": the passing neutral case or None}}
    for every parameter moved; it is necessary where "neutral" is a case. A parameter that
    a refuted confirmation later shows necessary (`characterise`'s `extra`) is fitted on
    these cases too: the op's other family diverging beside it says the condition is a set
    of ops, not the base's op alone.

    A move of anything but the input's size keeps the output as roomy as `m`'s
    (axes.with_room). The input's height or width is necessary when an input of ordinary
    size (an output of 8 along it) passes; that the smallest input passes says only that a
    one-pixel output hides the bug, and is tried only where no ordinary size can be."""
    found: dict[str, dict[str, Any]] = {}
    for p in axes.PARAMS:
        ids: list[str] = []
        neutral = None
        if p.name in _SIZES:
            smallest, *typical = p.neutrals(m) + [None]
            tries = [c for c in typical[:1] if c is not None] or [smallest]
        else:
            tries = [axes.with_room(c, m) for c in p.neutrals(m)]
        for c in tries:
            if c is None or c.id == m.id:
                continue
            d = observe(prober, ev, c, f"{p.name} neutral")
            if d is not None:
                ids.append(c.id)
            if d is False:
                neutral = c
                break
        if p.kind == "cat":
            for c in (axes.with_room(c, m) for c in p.alternatives(m)):
                if c is not None and c.id != m.id and c.id not in ids:
                    d = observe(prober, ev, c, f"{p.name} alternative")
                    if d is not None:
                        ids.append(c.id)
                    if d is False and neutral is None:
                        neutral = c
        found[p.name] = {"cases": [m.id] + ids, "neutral": neutral}
    return found


def _same_mechanism(base: Case, found: dict[str, dict[str, Any]], necessary: list[str], prober: Prober,
                    ev: Evidence) -> None:
    """Take out of each necessary categorical parameter's cases the other values that
    diverge by another mechanism: one that still diverges with another necessary parameter
    made neutral too (a grad-filter that drops a batch item, beside a depthwise grad-filter
    that swaps stride and dilation, diverges at stride 1). What is left diverges on the
    same conditions, so its values join the base's in one set (`op in {...}`)."""
    for name in necessary:
        if axes.BY_PARAM[name].kind != "cat":
            continue
        others = [found[q]["neutral"] for q in necessary if q != name]
        kept = []
        for i in found[name]["cases"]:
            c = ev.cases.get(i)
            if i != base.id and ev.div.get(i) and c is not None and any(
                    observe(prober, ev, axes.take(n, c, name), f"{name} as in {i}, {q} neutral") is True
                    for q, n in zip((q for q in necessary if q != name), others)):
                continue
            kept.append(i)
        found[name]["cases"] = kept


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
        if line.name not in _SIZES:
            c = axes.with_room(c, m)
        if c is None or axes.cost(c) > hypotheses.MAX_PROBE_COST:
            return None
        d = observe(prober, ev, c, f"{tag}: {line.name} = {x}")
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
        ks = [k for k in range(1, 11) if axes.odd_multiple(v, k) <= top]
        far = ks and (v // 2 ** ks[-1] + 1) * 2 ** ks[-1]
        if ks and far <= top and at(far) is False:
            if at(far + 1):
                lo_k, hi_k = 0, ks[-1] + 1
                while hi_k - lo_k > 1:
                    mid = (lo_k + hi_k) // 2
                    r = at(axes.odd_multiple(v, mid))
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


def _pair_scans(m: Case, param: str, neutral: Case, prober: Prober, ev: Evidence) -> list[str]:
    """Which axes of a pair parameter (kernel, strides, dilations) matter, then a scan along them."""
    n = getattr(neutral, param)[0]
    h, w = getattr(m, param)
    ids: list[str] = []
    line_h, line_w, line_hw = (axes.LINES[f"{param}.{p}"] for p in ("h", "w", "hw"))

    def try_case(c: Case | None, why: str) -> bool | None:
        c = axes.with_room(c, m)
        d = observe(prober, ev, c, f"{param} {why}")
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


# ---- the whole characterisation -------------------------------------------------------------

#: Experiments start from the minimal case grown to at least this many output rows and
#: columns, where it still diverges: on a one-pixel input with SAME padding most taps read
#: padding, and whether a bug shows at all turns on parities no user cares about.
TYPICAL_OUTPUT = 4


def typical(m: Case, prober: Prober) -> Case:
    """`m` grown (axes.roomy) to an input no smaller than its effective kernel and an
    output of at least TYPICAL_OUTPUT x TYPICAL_OUTPUT, where it still diverges; else
    grown along one axis only; else `m`."""
    if not m.is_valid:
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
        moved = _necessity(base, prober, ev)
        found = {name: info for name, info in moved.items() if info["neutral"] is not None}
        for name, c in (extra or {}).items():
            found.setdefault(name, {"cases": moved.get(name, {}).get("cases", [base.id]), "neutral": c})
            found[name]["cases"].append(c.id)
            ev.add(c, False)
        necessary = [p.name for p in axes.PARAMS if p.name in found]
        if len(necessary) > MAX_NECESSARY:
            return Result(m, None, base, necessary, f"the divergence vanishes when any of {len(necessary)} "
                          f"parameters moves ({', '.join(necessary)}): not one mechanism a predicate can state",
                          ev)
        _same_mechanism(base, found, necessary, prober, ev)
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
            conds = hypotheses.fit_param(name, ids, ev, base)
            if not conds:
                return Result(m, None, base, necessary, f"no condition in the vocabulary fits what {name} does", ev)
            conditions[name] = conds
        preds = hypotheses.with_axis_variants(base, hypotheses.hypotheses(conditions, ev, base), prober, ev)
        if not preds:
            return Result(m, None, base, necessary, "no conjunction of the fitted conditions agrees with "
                          "every passing case", ev)
        live = hypotheses.disambiguate(base, preds, prober, ev)
        pred = hypotheses.necessary_atoms(base, hypotheses.narrow(base, live[0], prober, ev), prober, ev)
        return Result(m, pred, base, necessary, "", ev)
    except BudgetSpent as exc:
        return Result(m, None, base, necessary, str(exc), ev)


def refine(res: Result, refuting: Case, prober: Prober) -> Result | None:
    """After a case inside the predicate passed (`refuting`): the parameters that, moved
    from the base to `refuting`'s value one at a time, make the divergence vanish are
    necessary too, so characterise again with them. Where none does, the categorical
    value that `refuting` shares with the base is taken out of its atom's set, if the
    predicate still holds for the base and for no passing case (a profile on which the
    bug shows on some cases only). None when neither explains it."""
    extra: dict[str, Case] = {}
    base = res.base or res.minimal
    try:
        for param in axes.differing_params(base, refuting):
            c = axes.take(base, refuting, param)
            if c is None or c.id == base.id:
                continue
            if observe(prober, res.evidence, c, f"refine: {param} as in {refuting.id}") is False:
                extra[param] = c
    except BudgetSpent:
        return None
    if extra and not all(p in res.necessary for p in extra):
        return characterise(res.minimal, prober, res.evidence, extra)
    res.evidence.add(refuting, False)
    pred = res.predicate
    for atom in pred.atoms if pred is not None else ():
        value = features(refuting).get(atom.feature)
        if atom.form == "in" and value in atom.value and len(atom.value) > 1:
            smaller = Predicate([a for a in pred.atoms if a != atom]
                                + [Atom(atom.feature, "in", tuple(v for v in atom.value if v != value))])
            if smaller.holds(base) and not any(smaller.holds(f) for f in res.evidence.passing()):
                return Result(res.minimal, smaller, base, res.necessary, "", res.evidence)
    return None
