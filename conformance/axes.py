"""The parameters an experiment moves, one at a time, and how a case moves along each.

An experiment asks "does the divergence survive when this parameter takes a neutral
value?" (stride -> 1, dtype -> float32, ...). A *parameter* here is what a user would
name: `strides`, `in_channels`, `dtype`. A *line* is one integer direction of a numeric
parameter that a scan walks along: `strides.h`, `strides.w`, `strides.hw` (both axes
together); `in_channels` (per group for a valid grouped conv2d, so that a move keeps
the grouping valid).

Invariants
- `move(case, value)` returns a well-formed Case of the same validity category as
  `case` (`predicate.validity`), or None: an experiment never turns a valid case into an
  invalid one by accident, nor the reverse. The `validity` parameter is the one move
  whose purpose is to change it. A move that would empty the output of a valid case
  grows the input to the smallest size that keeps it valid instead.
- Moves are pure and deterministic (no randomness; callers bring their own).
- Nothing here runs a backend.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

from . import minimise
from .predicate import AXIS, BY_NAME, Atom, Predicate, features
from .spec import ALL_PROFILES, DATA_FORMATS, DTYPES, GRADIENT_OPS, OP_INFO, Case, CaseError


#: minimise.cost (multiply-adds + elements), cached: experiments ask it of the same cases often.
cost = lru_cache(maxsize=1 << 16)(minimise.cost)


def validity(c: Case) -> str:
    """predicate.validity, from the cached features."""
    return features(c)["validity"]


def _same_validity(before: Case, after: Case) -> bool:
    return validity(before) == validity(after)


def grown(c: Case) -> Case | None:
    """`c`, or `c` with the smallest larger input that gives a non-empty output where only
    the output's emptiness made it invalid."""
    if validity(c) != "empty_output":
        return c
    (pt, pb), (pl, pr) = c.padding if not isinstance(c.padding, str) else ((0, 0), (0, 0))
    eff_h, eff_w = c.geometry.effective_kernel
    try:
        c = c.replace(height=max(c.height, eff_h - pt - pb), width=max(c.width, eff_w - pl - pr))
    except CaseError:
        return None
    return c if validity(c) != "empty_output" else None


def roomy(c: Case, out: int = 4) -> Case | None:
    """`c` with an input at least as large as its effective kernel and an output of at
    least `out` rows and columns (grown, never shrunk), or None: a case where every filter
    tap reads real input somewhere, so that a bug in any tap can show."""
    eff_h, eff_w = c.geometry.effective_kernel
    return _grown(c, max(c.height, eff_h), max(c.width, eff_w), out, out, 4096)


def _grown(c: Case, h: int, w: int, want_h: int, want_w: int, tries: int) -> Case | None:
    """`c` with an h x w input grown a row or a column at a time until its output has at
    least `want_h` rows and `want_w` columns; None when no valid case gets there in `tries`."""
    for _ in range(tries):
        try:
            moved = c if (h, w) == (c.height, c.width) else c.replace(height=h, width=w)
        except CaseError:
            return None
        g = moved.geometry
        if g.out_h >= want_h and g.out_w >= want_w:
            return moved
        h += g.out_h < want_h
        w += g.out_w < want_w
    return None


def roomy_as(c: Case, base: Case, out: int = 4) -> bool:
    """Whether `c`'s output has at least as many rows and columns as `base`'s, up to `out`
    (always, where either is invalid)."""
    if not (c.is_valid and base.is_valid):
        return True
    g, b = c.geometry, base.geometry
    return g.out_h >= min(out, b.out_h) and g.out_w >= min(out, b.out_w)


def with_room(c: Case | None, base: Case, out: int = 4) -> Case | None:
    """`c` with its input grown (never shrunk) until its output has at least as many rows
    and columns as `base`'s, up to `out`: a move of the stride, the kernel or the dilation
    should not also make the output one pixel wide, where most bugs cannot show."""
    if c is None or not (c.is_valid and base.is_valid):
        return c
    want_h, want_w = min(out, base.geometry.out_h), min(out, base.geometry.out_w)
    return _grown(c, c.height, c.width, want_h, want_w, 512) or c


def replace(c: Case, keep_validity: bool = True, **changes: Any) -> Case | None:
    """`c.replace(**changes)` of the same validity category (see the invariants), or None.
    Cached: experiments move the same case the same way many times, and building a Case
    (validated) is what they spend most of their own time on."""
    return _replace(c, keep_validity, tuple(sorted(changes.items())))


@lru_cache(maxsize=1 << 16)
def _replace(c: Case, keep_validity: bool, items: tuple) -> Case | None:
    changes = dict(items)
    try:
        out = c.replace(**changes)
    except (CaseError, TypeError, ValueError):
        return None
    if keep_validity and validity(c) == "valid" and validity(out) == "empty_output":
        out = grown(out)
    if out is None or (keep_validity and not _same_validity(c, out)):
        return None
    return out


def _grouped(c: Case) -> bool:
    return c.forward_op == "conv2d" and validity(c) == "valid" and c.filter_channels is None


# ---- lines: integer directions --------------------------------------------------------

@dataclass(frozen=True)
class Line:
    """One integer direction: `get(case)` its value, `set(case, v)` the moved case or None."""

    name: str
    get: Callable[[Case], int]
    set: Callable[[Case, int], Case | None]
    low: int = 1  # the smallest value the line takes
    cap: int = 4096  # scans never go past this

    def move(self, c: Case, v: int) -> Case | None:
        if v < self.low or v > self.cap:
            return None
        return self.set(c, v)


def _set_in(c: Case, v: int) -> Case | None:
    if _grouped(c):
        return replace(c, in_channels=c.groups * v)
    return replace(c, in_channels=v)


def _get_in(c: Case) -> int:
    return c.in_channels // c.groups if _grouped(c) else c.in_channels


def _set_out(c: Case, v: int) -> Case | None:
    if c.op == "separable_conv2d":  # its pointwise output channels: the multiplier is the depthwise stage's
        return replace(c, out_channels=v)
    if c.forward_op != "conv2d":
        return replace(c, channel_multiplier=v)
    if _grouped(c):
        return replace(c, out_channels=c.groups * v)
    return replace(c, out_channels=v)


def _get_out(c: Case) -> int:
    if c.op == "separable_conv2d":
        return c.out_channels
    if c.forward_op != "conv2d":
        return c.channel_multiplier
    return c.out_channels // c.groups if _grouped(c) else c.out_channels


def _set_groups(c: Case, v: int) -> Case | None:
    if c.forward_op != "conv2d":
        return None
    if _grouped(c):  # keep the channels per group: a valid grouping stays valid
        return replace(c, groups=v, in_channels=v * (c.in_channels // c.groups),
                        out_channels=v * (c.out_channels // c.groups))
    return replace(c, groups=v)


def _pair_line(field: str, part: str, cap: int) -> Line:
    def get(c: Case) -> int:
        h, w = getattr(c, field)
        return h if part == "h" else w if part == "w" else max(h, w)

    def set_(c: Case, v: int) -> Case | None:
        h, w = getattr(c, field)
        new = (v, w) if part == "h" else (h, v) if part == "w" else (v, v)
        return replace(c, **{field: new})

    return Line(f"{field}.{part}", get, set_, 1, cap)


LINES: dict[str, Line] = {line.name: line for line in (
    Line("batch", lambda c: c.batch, lambda c, v: replace(c, batch=v), 1, 256),
    Line("height", lambda c: c.height, lambda c, v: replace(c, height=v), 1, 4096),
    Line("width", lambda c: c.width, lambda c, v: replace(c, width=v), 1, 4096),
    Line("in_channels", _get_in, _set_in, 1, 8192),
    Line("out_channels", _get_out, _set_out, 1, 8192),
    Line("groups", lambda c: c.groups, _set_groups, 1, 256),
    *(_pair_line("kernel", p, 32) for p in ("h", "w", "hw")),
    *(_pair_line("strides", p, 32) for p in ("h", "w", "hw")),
    *(_pair_line("dilations", p, 32) for p in ("h", "w", "hw")),
    Line("pads", lambda c: max(max(p) for p in c.geometry.pads),
         lambda c, v: replace(c, padding=((v, v), (v, v))), 0, 32),
)}

def solve(base: Case, line: Line, name: str, target: int) -> list[Case]:
    """Cases along `line` from `base` whose feature `name` is nearest `target` (from
    below and from above), assuming the feature is monotone along the line."""
    feature = BY_NAME[name]

    def f(x: int) -> Any:
        c = line.move(base, x)
        return None if c is None else feature.get(c, c.geometry)

    lo = line.low
    f_lo = f(lo)
    if f_lo is None:
        return []
    # Exponential search for a value on the other side of the target, then bisection.
    hi, f_hi = lo, f_lo
    step = 1
    while True:
        nxt = min(lo + step, line.cap)
        f_nxt = f(nxt)
        if f_nxt is None:
            return []
        hi, f_hi = nxt, f_nxt
        if (f_lo < target) != (f_hi < target) or nxt == line.cap:
            break
        step *= 2
    if (f_lo < target) == (f_hi < target):
        return []
    a, b = lo, hi  # f(a) and f(b) lie on either side of the target
    below_a = f_lo < target
    while b - a > 1:
        mid = (a + b) // 2
        fm = f(mid)
        if fm is None:
            return []
        a, b = (mid, b) if (fm < target) == below_a else (a, mid)
    return [c for c in (line.move(base, a), line.move(base, b), line.move(base, b + 1)) if c is not None]


#: Which lines change a feature (predicate.FEATURES), most direct first: where a repair
#: (confirmation) or a solver (experiments) moves a case to change that feature.
FEATURE_LINES: dict[str, tuple[str, ...]] = {
    "batch": ("batch",), "height": ("height",), "width": ("width",),
    "in_channels": ("in_channels", "groups"), "per_group_channels": ("in_channels",),
    "out_channels": ("out_channels", "in_channels"), "per_group_out_channels": ("out_channels",),
    "groups": ("groups",), "multiplier": ("out_channels",),
    "kernel": ("kernel.hw",), "kernel_h": ("kernel.h",), "kernel_w": ("kernel.w",),
    "stride": ("strides.h", "strides.w", "strides.hw"), "stride_h": ("strides.h",), "stride_w": ("strides.w",),
    "dilation": ("dilations.h", "dilations.w", "dilations.hw"), "dilation_h": ("dilations.h",),
    "dilation_w": ("dilations.w",),
    "out_h": ("height",), "out_w": ("width",), "output_pixels": ("height", "width"),
    "K": ("in_channels", "kernel.hw", "kernel.h"), "input_elements": ("height", "in_channels", "batch"),
    "output_elements": ("height", "width", "out_channels", "batch"),
    "pad": ("pads",), "asymmetric_pad": (),
}


# ---- parameters: what an experiment neutralises -----------------------------------------

@dataclass(frozen=True)
class Param:
    """A parameter an experiment moves. `kind`: "int" (one line), "pair" (three lines:
    .h, .w, .hw) or "cat" (values tried as alternatives)."""

    name: str
    kind: str
    neutrals: Callable[[Case], list[Case]]  # the case with this parameter neutral, candidates in order
    alternatives: Callable[[Case], list[Case]] = lambda c: []  # "cat": the case with every other value


def _cases(*maybe: Case | None) -> list[Case]:
    out, seen = [], set()
    for c in maybe:
        if c is not None and c.id not in seen:
            out.append(c)
            seen.add(c.id)
    return out


def _smallest(c: Case, line: str) -> Case | None:
    """`c` moved along `line` to the smallest value that keeps its validity category."""
    ln = LINES[line]
    for v in range(ln.low, ln.get(c)):
        moved = ln.move(c, v)
        if moved is not None:
            return moved
    return None


def _typical_spatial(c: Case, name: str) -> Case | None:
    """An input `name` (height/width) with an output of 8 along it: not one row or column, not big."""
    line = LINES[name]
    for v in range(line.get(c), line.get(c) + 64):
        moved = line.move(c, v)
        if moved is not None and (moved.geometry.out_h if name == "height" else moved.geometry.out_w) >= 8:
            return moved
    return None


def convert_op(c: Case, keep_validity: bool = True) -> Case | None:
    """The same computation under the other family of the same direction, where one exists:
    depthwise (C, M) is conv2d with groups = C and C*M outputs; conv2d with groups =
    in_channels (or one input channel) is depthwise; otherwise the other family with the
    closest shape. The gradient ops convert the same way (conv2d_backprop_input <->
    depthwise_conv2d_backprop_input, ...); separable_conv2d has no other family (None)."""
    if c.op == "separable_conv2d":
        return None
    other = _FAMILY_SWITCH[c.op]
    if c.forward_op == "depthwise_conv2d":
        return replace(c, op=other, channel_multiplier=None, groups=c.in_channels,
                       out_channels=c.in_channels * c.channel_multiplier, keep_validity=keep_validity)
    m = max(1, c.out_channels // c.in_channels)
    return replace(c, op=other, out_channels=None, groups=1, filter_channels=None,
                   channel_multiplier=m, keep_validity=keep_validity)


#: The op of the other family computing the same direction (forward, gradient of the input, of the filters).
_FAMILY_SWITCH = {"conv2d": "depthwise_conv2d", "depthwise_conv2d": "conv2d",
                  "conv2d_backprop_input": "depthwise_conv2d_backprop_input",
                  "depthwise_conv2d_backprop_input": "conv2d_backprop_input",
                  "conv2d_backprop_filter": "depthwise_conv2d_backprop_filter",
                  "depthwise_conv2d_backprop_filter": "conv2d_backprop_filter"}


def to_op(c: Case, op: str, keep_validity: bool = True) -> Case | None:
    """`c` as a case of `op` with the same forward problem where the op allows it: the
    family converted first when `op`'s forward op differs (`convert_op`), the bias dropped
    for a gradient op, separable's pointwise stage added (out_channels = C*M) or dropped."""
    if c.op == op:
        return c
    base = c
    if c.op == "separable_conv2d":  # its depthwise stage
        base = replace(c, op="depthwise_conv2d", out_channels=None, keep_validity=keep_validity)
    elif OP_INFO[op].forward != c.forward_op:
        base = convert_op(c, keep_validity)
    if base is None:
        return None
    changes: dict[str, Any] = {"op": op}
    if op in GRADIENT_OPS:
        changes["bias"] = False
    if op == "separable_conv2d":
        changes["out_channels"] = base.conv_channels
    return replace(base, keep_validity=keep_validity, **changes)


def op_moves(c: Case) -> list[Case]:
    """The cases one op move away: the other family of the same direction (`convert_op`),
    and a gradient's or separable's forward op (the direction or the composition taken away)."""
    moves = [convert_op(c)]
    if c.op != c.forward_op:
        moves.append(to_op(c, c.forward_op))
    return _cases(*moves)


def to_validity(c: Case, category: str) -> Case | None:
    """The case nearest `c` whose validity category is `category` (predicate.VALIDITY), or None."""
    if validity(c) == category:
        return c
    candidates: list[Case | None] = []
    if category == "valid":
        if validity(c) == "empty_output":
            candidates.append(grown(c))
        if c.forward_op == "conv2d":
            g = c.groups
            candidates += [replace(c, keep_validity=False, filter_channels=None,
                                    in_channels=max(g, -(-c.in_channels // g) * g),
                                    out_channels=max(g, -(-c.out_channels // g) * g)),
                           replace(c, keep_validity=False, groups=1, filter_channels=None)]
    elif category == "empty_output":
        for name in ("width", "height"):
            line = LINES[name]
            v = line.get(c)
            while v > 1:
                v -= 1
                candidates.append(replace(c, keep_validity=False, **{name: v}))
    else:
        base = c if c.forward_op == "conv2d" else to_op(c, "conv2d", keep_validity=False)
        if base is None:
            return None
        g, cin = base.groups, base.in_channels
        if category == "groups_exceed_in_channels":
            candidates.append(replace(base, keep_validity=False, groups=cin + 1, out_channels=cin + 1,
                                       filter_channels=None))
        elif category == "groups_not_dividing_in_channels":
            gg = max(g, 2)
            candidates.append(replace(base, keep_validity=False, groups=gg, in_channels=gg * max(1, cin // gg) + 1,
                                       out_channels=gg * max(1, base.out_channels // gg), filter_channels=None))
        elif category == "groups_not_dividing_out_channels":
            gg = max(g, 2)
            candidates.append(replace(base, keep_validity=False, groups=gg, in_channels=gg * max(1, cin // gg),
                                       out_channels=gg * max(1, base.out_channels // gg) + 1, filter_channels=None))
        elif category == "filter_channels_mismatch":
            candidates.append(replace(base, keep_validity=False, filter_channels=base.filter_in_channels + 1))
    for cand in candidates:
        if cand is not None and validity(cand) == category:
            return cand
    return None


def _explicit_like_same(c: Case) -> Case | None:
    pads = replace(c, padding="SAME", keep_validity=False)
    return replace(c, padding=pads.geometry.pads) if pads is not None else None


def _padding_values(c: Case) -> list[Case]:
    sym = replace(c, padding=((1, 1), (1, 1)))
    return _cases(replace(c, padding="VALID"), replace(c, padding="SAME"), sym, _explicit_like_same(c))


def _pair_neutral(field: str, values: tuple[tuple[int, int], ...]) -> Callable[[Case], list[Case]]:
    return lambda c: _cases(*(replace(c, **{field: v}) for v in values if getattr(c, field) != v))


def _field_values(field: str, values: tuple) -> Callable[[Case], list[Case]]:
    return lambda c: _cases(*(replace(c, **{field: v}) for v in values if getattr(c, field) != v))


PARAMS: tuple[Param, ...] = (
    Param("validity", "cat", lambda c: _cases(to_validity(c, "valid")) if validity(c) != "valid" else [],
          lambda c: _cases(*(to_validity(c, v) for v in ("valid", "empty_output", "groups_exceed_in_channels",
                                                          "groups_not_dividing_in_channels",
                                                          "groups_not_dividing_out_channels",
                                                          "filter_channels_mismatch")))
          if validity(c) != "valid" else []),
    Param("op", "cat", op_moves, op_moves),
    Param("dtype", "cat", _field_values("dtype", ("float32",)), _field_values("dtype", DTYPES)),
    Param("profile", "cat", _field_values("profile", ("normal",)),
          lambda c: _field_values("profile", ALL_PROFILES)(c) if c.profile != "normal" else []),
    Param("data_format", "cat", _field_values("data_format", ("NHWC",)), _field_values("data_format", DATA_FORMATS)),
    Param("bias", "cat", _field_values("bias", (False,)), _field_values("bias", (False, True))),
    Param("padding", "cat", lambda c: _cases(replace(c, padding="VALID")) if c.padding != "VALID" else [],
          _padding_values),
    Param("batch", "int", lambda c: _cases(_smallest(c, "batch"))),
    Param("height", "int", lambda c: _cases(_smallest(c, "height"), _typical_spatial(c, "height"))),
    Param("width", "int", lambda c: _cases(_smallest(c, "width"), _typical_spatial(c, "width"))),
    Param("in_channels", "int", lambda c: _cases(LINES["in_channels"].move(c, 1), LINES["in_channels"].move(c, 16))),
    Param("out_channels", "int", lambda c: _cases(LINES["out_channels"].move(c, 1), LINES["out_channels"].move(c, 16))),
    Param("groups", "int", lambda c: _cases(LINES["groups"].move(c, 1)) if c.forward_op == "conv2d" else []),
    Param("kernel", "pair", _pair_neutral("kernel", ((1, 1), (3, 3)))),
    Param("strides", "pair", _pair_neutral("strides", ((1, 1),))),
    Param("dilations", "pair", _pair_neutral("dilations", ((1, 1),))),
)
BY_PARAM: dict[str, Param] = {p.name: p for p in PARAMS}
#: The line of an "int" parameter.
PARAM_LINE = {"batch": "batch", "height": "height", "width": "width", "in_channels": "in_channels",
              "out_channels": "out_channels", "groups": "groups"}


def odd_multiple(v: int, k: int) -> int:
    """The smallest odd multiple of 2^k above v (divisible by 2^k, not by 2^(k+1))."""
    x = (v // 2 ** k + 1) * 2 ** k
    return x if (x >> k) % 2 else x + 2 ** k


def transposed(c: Case) -> Case | None:
    """`c` with its two spatial axes swapped (sizes, kernel, strides, dilations, pads): what
    tells a bug on one axis from one on either."""
    pad = c.padding if isinstance(c.padding, str) else (c.padding[1], c.padding[0])
    return replace(c, height=c.width, width=c.height, kernel=c.kernel[::-1], strides=c.strides[::-1],
                    dilations=c.dilations[::-1], padding=pad)


# ---- moves that make one atom true or false ------------------------------------------------

#: Moves never make a case costlier than this (minimise.cost: multiply-adds + elements).
MAX_MOVE_COST = 2e7
#: Values tried either way along a line to meet a residue.
MAX_RESIDUE_STEPS = 520


def making(case: Case, atom: Atom, make_true: bool, keep: Predicate, rng: random.Random | None = None,
           max_cost: float = MAX_MOVE_COST) -> list[Case]:
    """Cases one move from `case` on which `atom` holds (`make_true`) or fails, the
    smallest moves first (shuffled a little with `rng`); the other atoms of `keep` on the
    same feature are kept true."""
    if atom.feature == AXIS:
        return _axis_moves(case, atom, make_true, rng, max_cost)
    f = BY_NAME[atom.feature]
    same = [a for a in keep.atoms if a.feature == atom.feature and a != atom]

    def wanted(c: Case) -> bool:
        v = features(c)
        return atom.holds(v) == make_true and all(a.holds(v) for a in same)

    wanted.make_true = make_true

    out: list[Case] = []
    if f.kind == "cat":
        values = [v for v in f.domain if (v in atom.value) == make_true]
        if rng is not None:
            rng.shuffle(values)
        for v in values:
            out += [c for c in _set_cat(case, atom.feature, v) if wanted(c)]
        return out
    if f.kind == "bool":
        out = [c for c in _set_bool(case, atom.feature, not features(case)[atom.feature]) if wanted(c)]
        return out
    return _int_moves(case, atom, same, wanted, rng, max_cost)


def _axis_moves(case: Case, atom: Atom, make_true: bool, rng: random.Random | None,
                max_cost: float) -> list[Case]:
    """An AXIS atom made true on one axis (the one nearer to it first), or false on every
    axis where it holds, one sub-atom at a time."""
    out = []
    if make_true:
        nearer = sorted((0, 1), key=lambda i: -sum(a.holds(features(case)) for a in atom.on_axis(i)))
        for side in nearer:
            subs, c = atom.on_axis(side), case
            for a in subs:
                if c is not None and not a.holds(features(c)):
                    moved = making(c, a, True, Predicate(subs), rng, max_cost)
                    c = moved[0] if moved else None
            if c is not None and atom.holds(features(c)):
                out.append(c)
        return out
    c = case
    for side in (0, 1):
        subs = atom.on_axis(side)
        if all(a.holds(features(c)) for a in subs):
            c = next((m for a in subs for m in making(c, a, False, Predicate(subs), None, max_cost)[:1]), c)
    return [c] if c != case and not atom.holds(features(c)) else []


def _int_moves(case: Case, atom: Atom, same: list[Atom], wanted, rng: random.Random | None,
               max_cost: float) -> list[Case]:
    """Moves along the feature's lines: solved for each bound (and, for a lower bound made
    false, for a half and a quarter of it too: a case far below a K threshold can climb
    back above it by its kernel), then a few steps either way for residues; where one
    line cannot reach a bound, another of its lines is doubled first. Nearest first."""
    names = FEATURE_LINES.get(atom.feature, ())
    steps = min(2 * max([a.value[0] if a.form == "%=" else a.value for a in same + [atom]
                         if a.form in ("%=", "%!=")], default=1) + 4, MAX_RESIDUE_STEPS)
    bounded = any(a.form in ("=", ">=", "<=") for a in same + [atom])
    targets = []
    for b in same + [atom]:
        if b.form in ("=", ">=", "<="):
            targets.append(b.value)
            if b is atom and not wanted.make_true and b.form == ">=":
                targets += [b.value // 2, b.value // 4]
    out: list[Case] = []
    for name in names:
        line = LINES[name]

        def bases():
            yield case
            if not bounded:
                return
            for other in names:  # a bound one line cannot reach alone
                if other != name:
                    ol = LINES[other]
                    yield from (ol.move(case, ol.get(case) * 2 ** k) for k in range(1, 9))

        for base in bases():
            if base is None:
                continue
            starts = [line.get(base)] + [line.get(c) for t in targets if t > 0
                                         for c in solve(base, line, atom.feature, t)]
            found = []
            for s0 in dict.fromkeys(starts):
                for d in range(steps):
                    hit = [c for x in ((s0 + d, s0 - d) if d else (s0,)) for c in [line.move(base, x)]
                           if c is not None and c.id != case.id and wanted(c) and cost(c) <= max_cost]
                    if hit:
                        found += [c for c in hit if c not in found]
                        break
            if found:
                if rng is not None:
                    rng.shuffle(found)
                out += found
                break
    return out


def _set_cat(case: Case, name: str, value: str) -> list[Case]:
    if name == "op":
        return [c for c in [to_op(case, value, keep_validity=False)] if c is not None and c.op == value]
    if name == "validity":
        return [c for c in [to_validity(case, value)] if c is not None]
    if name == "padding":
        specs = {"VALID": ["VALID"], "SAME": ["SAME"], "explicit": [((1, 1), (1, 1)), ((0, 1), (1, 0))]}[value]
        return [c for c in (replace(case, padding=p) for p in specs) if c is not None]
    c = replace(case, **{name: value})
    return [c] if c is not None else []


def _set_bool(case: Case, name: str, value: bool) -> list[Case]:
    if name == "bias":
        c = replace(case, bias=value)
        return [c] if c is not None else []
    if name == "asymmetric_pad":
        specs = [((0, 1), (1, 0)), ((1, 2), (0, 1))] if value else [((1, 1), (1, 1)), "VALID"]
        return [c for c in (replace(case, padding=p) for p in specs) if c is not None]
    return []


def differing_params(a: Case, b: Case) -> list[str]:
    """The PARAMS whose fields differ between `a` and `b` (in PARAMS order)."""
    out = []
    fields = {"validity": (), "op": ("op",), "dtype": ("dtype",), "profile": ("profile",),
              "data_format": ("data_format",), "bias": ("bias",), "padding": ("padding",), "batch": ("batch",),
              "height": ("height",), "width": ("width",), "in_channels": ("in_channels",),
              "out_channels": ("out_channels", "channel_multiplier"), "groups": ("groups",),
              "kernel": ("kernel",), "strides": ("strides",), "dilations": ("dilations",)}
    for p in PARAMS:
        if p.name == "validity":
            if validity(a) != validity(b):
                out.append(p.name)
        elif any(getattr(a, f) != getattr(b, f) for f in fields[p.name]):
            out.append(p.name)
    return out


def take(a: Case, b: Case, param: str) -> Case | None:
    """`a` with `param` as `b` has it (fields copied; same validity category as `a`), or None."""
    fields = {"op": None, "dtype": ("dtype",), "profile": ("profile",), "data_format": ("data_format",),
              "bias": ("bias",), "padding": ("padding",), "batch": ("batch",), "height": ("height",),
              "width": ("width",), "kernel": ("kernel",), "strides": ("strides",), "dilations": ("dilations",)}
    if param == "op":
        return to_op(a, b.op) if a.op != b.op else a
    if param == "validity":
        return to_validity(a, validity(b))
    if param == "in_channels":
        return LINES["in_channels"].move(a, LINES["in_channels"].get(b))
    if param == "out_channels":
        return LINES["out_channels"].move(a, LINES["out_channels"].get(b)) if a.op == b.op else None
    if param == "groups":
        return LINES["groups"].move(a, b.groups) if a.op == b.op and a.forward_op == "conv2d" else None
    return replace(a, **{f: getattr(b, f) for f in fields[param]})
