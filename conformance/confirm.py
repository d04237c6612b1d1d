"""Confirm a predicate on fresh cases: inside it must diverge, just outside it must pass.

Inside cases are random cases repaired until every atom holds; an outside case is an
inside one with exactly one atom made false by the smallest move (a bound crossed by
one step, a residue broken by one, the nearest value outside a set). Both are judged by
the one verdict, through the probe.

Invariants
- Fresh cases depend on the predicate and the backend's framework only (the random
  generator is seeded by both), never on the run's records or the variant: two variants
  whose outputs are bitwise identical get identical confirmations.
- A row counts `for` (inside diverged, outside passed), `against` (inside passed;
  outside diverged in the same way), or `neither`: unsupported, errors, crashes and
  timeouts; an outside case another finding's predicate covers; an outside case that
  diverges in another way, not through this mechanism: it still diverges when another
  condition of the predicate is taken away too, or it passes once a parameter takes the
  value it had where the bug was shown (its divergence needs something this bug does
  not: a float16 precision bug met while confirming a stride bug).
- `confirmed`: at least one row for and none against. `refuted`: a row against.
  `unconfirmed`: no row for (nothing could be judged within the budget).
"""

from __future__ import annotations

import hashlib
import random
from typing import Any, Iterable

from . import axes
from .predicate import Atom, Predicate, features
from .probe import BudgetSpent, Prober
from .spec import DATA_FORMATS, DTYPES, FORWARD_OPS, OP_INFO, Case, CaseError

#: Fresh inside cases per predicate; every atom also gets one just-outside case.
INSIDE = 4
#: Random draws tried per inside case before giving up on it.
DRAWS = 60
#: Fresh cases stay small: multiply-adds + elements (minimise.cost) at most this.
MAX_COST = 8e6


def seed(framework: str, predicate: Predicate, salt: str = "") -> int:
    text = "\x1f".join([framework, predicate.text(), salt])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def random_case(rng: random.Random, ops: tuple[str, ...] = FORWARD_OPS) -> Case | None:
    """A small random valid case of one of `ops`: the starting point an inside case is
    repaired from. A training op's case is its forward case's (no bias for a gradient)."""
    op = rng.choice(ops)
    kernel = (rng.choice((1, 2, 3, 3, 4)), rng.choice((1, 2, 3, 3, 4)))
    common = dict(batch=rng.choice((1, 1, 2)), height=rng.randint(4, 12), width=rng.randint(4, 12), kernel=kernel,
                  strides=(rng.choice((1, 1, 2)), rng.choice((1, 1, 2))),
                  dilations=(rng.choice((1, 1, 2)), rng.choice((1, 1, 2))),
                  padding=rng.choice(("VALID", "SAME", ((1, 1), (1, 1)), ((0, 1), (1, 0)))),
                  dtype=rng.choice(("float32", "float32") + DTYPES), data_format=rng.choice(DATA_FORMATS),
                  bias=rng.random() < 0.5)
    if OP_INFO[op].result != "output":
        common["bias"] = False
    try:
        if OP_INFO[op].forward == "conv2d":
            g = rng.choice((1, 1, 1, 2))
            c = Case(op=op, in_channels=g * rng.randint(1, 6), out_channels=g * rng.randint(1, 6), groups=g, **common)
        else:
            extra = dict(out_channels=rng.randint(1, 6)) if op == "separable_conv2d" else {}
            c = Case(op=op, in_channels=rng.randint(1, 6), channel_multiplier=rng.randint(1, 3), **common, **extra)
    except CaseError:
        return None
    return axes.grown(c) if not c.is_valid else c


def _ops(pred: Predicate) -> tuple[str, ...]:
    """The ops fresh cases are drawn from: a predicate on training ops only draws those;
    any other draws the forward ops (as before the training ops existed: same streams)."""
    for atom in pred.atoms:
        if atom.feature == "op" and atom.form == "in" and not set(atom.value) & set(FORWARD_OPS):
            return tuple(atom.value)
    return FORWARD_OPS


def inside_case(pred: Predicate, rng: random.Random) -> Case | None:
    """A fresh random case on which every atom holds (None after DRAWS failed draws)."""
    ops = _ops(pred)
    for _ in range(DRAWS):
        c = random_case(rng, ops)
        if c is None:
            continue
        for _ in range(3):
            bad = [a for a in pred.atoms if not a.holds(features(c))]
            if not bad:
                break
            moved = axes.making(c, bad[0], True, pred, rng)
            if not moved:
                break
            c = moved[0]
        if c is None or not pred.holds(c):
            continue
        room = axes.roomy(c, 3) if c.is_valid else None
        if room is not None and pred.holds(room) and axes.cost(room) <= MAX_COST:
            return room
        if axes.cost(c) <= MAX_COST:
            return c
    return None


def outside_case(c: Case, pred: Predicate, atom: Atom) -> Case | None:
    """`c` with `atom` made false by the smallest move, every other atom still true."""
    others = pred.without(atom)
    for moved in axes.making(c, atom, False, pred):
        f = features(moved)
        if not atom.holds(f) and all(a.holds(f) for a in others.atoms) and \
                (any(a.feature == "validity" for a in pred.atoms) or f["validity"] == "valid"):
            return moved
    return None


#: Parameters tried first when asking whether an outside divergence needs something the
#: bug does not (the value-dependent ones: another bug hides there most often).
_SUSPECTS = ("dtype", "profile", "data_format", "bias", "padding", "op", "batch", "groups", "out_channels",
             "in_channels", "kernel", "strides", "dilations", "height", "width")
#: Backend calls one diverging outside case may cost to find out.
ANOTHER_WAY_CALLS = 4


def _another_way(c: Case, pred: Predicate, negated: Atom, prober: Prober, base: Case | None) -> str | None:
    """Why the diverging outside case `c` says nothing against `pred`, or None:
    - it still diverges with another of the predicate's conditions taken away as well; or
    - it passes once a parameter takes the value it has in `base` (where the bug was
      shown, so the bug does not need that parameter's value in `c`), while staying
      outside: its divergence needs a condition this bug does not."""
    calls = 0
    for b in pred.atoms:
        if b == negated or calls >= ANOTHER_WAY_CALLS:
            continue
        c2 = next(iter(axes.making(c, b, False, pred.without(negated))), None)
        if c2 is None:
            continue
        calls += 1
        if prober(c2, f"confirm: outside, without {b.text()} too").diverges:
            return f"diverges without {b.text()} too: another way"
    if base is None:
        return None
    differing = axes.differing_params(c, base)
    for param in sorted(differing, key=lambda p: _SUSPECTS.index(p) if p in _SUSPECTS else len(_SUSPECTS)):
        if calls >= ANOTHER_WAY_CALLS:
            break
        c2 = axes.take(c, base, param)
        if c2 is None or c2 == c or negated.holds(features(c2)):
            continue
        calls += 1
        if prober(c2, f"confirm: outside, {param} as where the bug was shown").diverges is False:
            return f"diverges only with its {param}, which the bug does not need: another way"
    return None


def confirm(pred: Predicate, framework: str, prober: Prober, others: Iterable[Predicate] = (),
            base: Case | None = None) -> dict[str, Any]:
    """The `confirmation` of `pred` on this backend (see the module docstring). `base`: a
    case on which the bug was shown (the experiments' own), for the another-way test."""
    rng = random.Random(seed(framework, pred))
    others = [o for o in others if o != pred]
    rows: list[dict[str, Any]] = []
    inside: list[Case] = []
    try:
        while len(inside) < INSIDE:
            c = inside_case(pred, rng)
            if c is None:
                break
            if c.id in {x.id for x in inside}:
                continue
            inside.append(c)
            obs = prober(c, "confirm: inside")
            counts = {True: "for", False: "against", None: "neither"}[obs.diverges]
            rows.append(_row("inside", c, obs, counts))
        for i, atom in enumerate(pred.atoms):
            if not inside:
                break
            c = outside_case(inside[i % len(inside)], pred, atom)
            if c is None:
                continue
            obs = prober(c, f"confirm: outside, not {atom.text()}")
            why = None
            if obs.diverges is False:
                counts = "for"
            elif obs.diverges is None:
                counts = "neither"
            elif any(o.holds(c) for o in others):
                counts, why = "neither", "another finding's predicate covers it"
            else:
                why = _another_way(c, pred, atom, prober, base)
                counts = "neither" if why else "against"
            rows.append(_row("outside", c, obs, counts, negated=atom.text(), why=why))
    except BudgetSpent as exc:
        rows.append({"side": "budget", "note": str(exc)})
    judged = [r for r in rows if r.get("counts") in ("for", "against")]
    status = ("refuted" if any(r["counts"] == "against" for r in judged)
              else "confirmed" if any(r["counts"] == "for" and r["side"] == "inside" for r in judged)
              else "unconfirmed")
    return {"status": status, "rows": rows}


def _row(side: str, c: Case, obs, counts: str, **extra: Any) -> dict[str, Any]:
    row = {"side": side, "case_id": c.id, "case": c.to_dict(), "status": obs.status, "kind": obs.kind,
           "counts": counts}
    row.update({k: v for k, v in extra.items() if v is not None})
    return row
