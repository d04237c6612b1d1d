"""A deterministic covering-array sweep over the convolution parameters.

`sweep(seed, budget)` builds rows of parameter *levels* (`LEVELS`) greedily, AETG-style:
each new row is the best of a few candidates, each candidate seeded with a combination
not yet covered and completed one parameter at a time with the level that covers the
most uncovered combinations. It stops when every combination is covered:

- every 2-way combination of all twelve parameters (`LEVELS`), and
- every 3-way combination of `STRENGTH3` (op, stride, dilation, padding,
  multiplier/groups, dtype), where the interactions between them are richest.

Each row then becomes a `Case` by *deriving* a valid geometry from its levels: the
output size is drawn (1..4 per axis), the input size is computed from it, so that the
padding kind holds (never by drawing and filtering).

Invariants
- Deterministic: the same (seed, budget) gives the same cases, in the same order, on
  every machine and Python process (private `random.Random` streams seeded with
  integers/strings, no set iteration order, no global RNG).
- Every case is valid and maps back to exactly the levels of its row (`levels_of`), so
  `coverage()` measures what was built; it can also measure any other list of cases.
- Combinations no valid case can have are not counted: `SAME-odd` (a total pad that is
  odd on some axis) needs an effective kernel > 1 and, with stride 1, an even one;
  `SAME-even` (even on every axis) needs, with stride 1, odd effective kernels.
- `budget=None` gives exactly the covering array. A smaller budget stops early: the
  coverage is then below 100% and a `CoverageWarning` says so. A larger budget adds
  seeded random valid rows after the covering array.

Padding kinds: `VALID`; `SAME-even` (every axis' total pad even, positive where the
geometry allows); `SAME-odd` (odd on every axis that allows it, at least one);
`explicit` (asymmetric explicit pads, lo != hi on both axes).
"""

from __future__ import annotations

import functools
import itertools
import math
import random
import warnings
from typing import Any

from conformance.spec import DATA_FORMATS, DTYPES, FORWARD_OPS, GRADIENT_OPS, OP_INFO, OPS, PROFILES, Case

#: The ops of the training sweep: every op that is not a forward conv (the gradients and
#: the separable conv). Their covering array is built apart from the forward one, so
#: adding ops never moves a forward case of the default set.
TRAINING_OPS = tuple(op for op in OPS if op not in FORWARD_OPS)

LEVELS: dict[str, tuple[Any, ...]] = {
    "op": FORWARD_OPS,
    "kernel": ((1, 1), (2, 2), (3, 3), (3, 2)),
    "stride": ((1, 1), (2, 2), (1, 2), (3, 3)),
    "dilation": ((1, 1), (2, 2), (3, 1)),
    "padding": ("VALID", "SAME-even", "SAME-odd", "explicit"),
    # in_channels per group for conv2d, in_channels for depthwise
    "channels": (1, 3, 8, 17),
    # groups for conv2d (in_channels = groups * channels), channel_multiplier for depthwise
    "mult_groups": (1, 2, 3),
    "batch": (1, 2),
    "dtype": DTYPES,
    "data_format": DATA_FORMATS,
    "profile": PROFILES,
    "bias": (False, True),
}
PARAMS = tuple(LEVELS)
STRENGTH3 = ("op", "stride", "dilation", "padding", "mult_groups", "dtype")
#: Candidate rows tried per added row (more: smaller arrays, slower construction).
CANDIDATES = 6
#: Output channels per group of a conv2d row are drawn from these.
OUT_PER_GROUP = (1, 2, 3, 5)
#: Asymmetric explicit pads (lo, hi) are drawn from these.
EXPLICIT_PADS = ((0, 1), (1, 0), (1, 2), (2, 1), (0, 2), (2, 0))
MAX_OUT = 4

_GEOMETRY = ("kernel", "stride", "dilation", "padding")


class CoverageWarning(UserWarning):
    """The budget was too small for the covering array: some combinations are missing."""


# ---- feasibility of (kernel, stride, dilation, padding) ------------------------------


def _totals(eff: int, stride: int) -> set[int]:
    """Total SAME pads an axis can have: input n in [(out-1)s+1, out*s] gives eff-1-j."""
    return {max(eff - 1 - j, 0) for j in range(stride)}


def _axes(kernel, stride, dilation):
    return [((kernel[a] - 1) * dilation[a] + 1, stride[a]) for a in range(2)]


def _feasible(kernel, stride, dilation, padding) -> bool:
    axes = [_totals(e, s) for e, s in _axes(kernel, stride, dilation)]
    if padding == "SAME-odd":
        return any(t % 2 for ts in axes for t in ts)
    if padding == "SAME-even":
        return all(any(t % 2 == 0 for t in ts) for ts in axes)
    return True


@functools.lru_cache(maxsize=None)
def _feasible_partials() -> frozenset[tuple]:
    """Every projection of a feasible geometry tuple (level indices; None = unassigned)."""
    out = set()
    ranges = [range(len(LEVELS[p])) for p in _GEOMETRY]
    for combo in itertools.product(*ranges):
        if _feasible(*(LEVELS[p][i] for p, i in zip(_GEOMETRY, combo))):
            for mask in itertools.product((False, True), repeat=len(_GEOMETRY)):
                out.add(tuple(v if keep else None for v, keep in zip(combo, mask)))
    return frozenset(out)


_GEO_IDX = tuple(PARAMS.index(p) for p in _GEOMETRY)
_OP, _BIAS = PARAMS.index("op"), PARAMS.index("bias")


def ops_levels(ops: tuple[str, ...] = FORWARD_OPS) -> dict[str, tuple[Any, ...]]:
    """The levels of the covering array of `ops`: LEVELS with those ops."""
    return {**LEVELS, "op": tuple(ops)}


def _check_ops(ops) -> tuple[str, ...]:
    if isinstance(ops, str):
        ops = (ops,)
    ops = tuple(ops)
    if not ops or any(op not in OPS for op in ops) or len(set(ops)) != len(ops):
        raise ValueError(f"ops: expected distinct ops among {', '.join(OPS)}, received {ops!r}")
    return ops


def _check_triples(triples) -> tuple[str, ...]:
    triples = tuple(triples)
    if any(p not in PARAMS for p in triples) or len(set(triples)) != len(triples) or 0 < len(triples) < 3:
        raise ValueError(f"triples: expected () or 3 or more distinct parameters among {', '.join(PARAMS)}, "
                         f"received {triples!r}")
    return triples


def _row_ok(row: list, ops: tuple[str, ...] = FORWARD_OPS) -> bool:
    # A gradient op takes no bias (spec.Case refuses one): op and bias levels exclude each other.
    if row[_OP] is not None and row[_BIAS] == 1 and ops[row[_OP]] in GRADIENT_OPS:
        return False
    return tuple(row[i] for i in _GEO_IDX) in _feasible_partials()


# ---- the combinations to cover ------------------------------------------------------


@functools.lru_cache(maxsize=None)
def interactions(triples: tuple[str, ...] = STRENGTH3) -> tuple[tuple[int, ...], ...]:
    """Parameter-index tuples whose level combinations must all be covered."""
    two = list(itertools.combinations(range(len(PARAMS)), 2))
    three = list(itertools.combinations(sorted(PARAMS.index(p) for p in triples), 3))
    return tuple(two + three)


@functools.lru_cache(maxsize=None)
def _universe(ops: tuple[str, ...] = FORWARD_OPS, triples: tuple[str, ...] = STRENGTH3) -> dict[tuple[int, ...], frozenset[tuple[int, ...]]]:
    """Feasible level combinations of each interaction (those some valid case can have)."""
    space = ops_levels(ops)
    out = {}
    for inter in interactions(triples):
        combos = set()
        for combo in itertools.product(*(range(len(space[PARAMS[i]])) for i in inter)):
            row: list = [None] * len(PARAMS)
            for i, v in zip(inter, combo):
                row[i] = v
            if _row_ok(row, ops):
                combos.add(combo)
        out[inter] = frozenset(combos)
    return out


def _new_combos(row: list, inters, uncovered) -> int:
    return sum(tuple(row[i] for i in inter) in uncovered[inter] for inter in inters)


# ---- greedy construction ------------------------------------------------------------


def _candidate(rng: random.Random, live, uncovered, by_param, ops) -> list:
    # Seed with an uncovered combination of the interaction with most left to cover.
    inter = max(live, key=lambda k: (len(live[k]), [-i for i in k]))
    seed_levels = rng.choice(sorted(live[inter]))
    row: list = [None] * len(PARAMS)
    for i, v in zip(inter, seed_levels):
        row[i] = v
    rest = [i for i in range(len(PARAMS)) if row[i] is None]
    rng.shuffle(rest)
    for i in rest:
        best, best_gain = [], -1
        for v in range(len(ops_levels(ops)[PARAMS[i]])):
            row[i] = v
            if not _row_ok(row, ops):
                continue
            gain = sum(tuple(row[j] for j in inter) in uncovered[inter]
                       for inter in by_param[i] if all(row[j] is not None for j in inter))
            if gain > best_gain:
                best, best_gain = [v], gain
            elif gain == best_gain:
                best.append(v)
        row[i] = rng.choice(best)
    return row


def _random_row(rng: random.Random, ops) -> list:
    space = ops_levels(ops)
    row: list = [None] * len(PARAMS)
    for i in range(len(PARAMS)):
        row[i] = rng.choice([v for v in range(len(space[PARAMS[i]])) if _row_ok(row[:i] + [v] + row[i + 1:], ops)])
    return row


@functools.lru_cache(maxsize=32)
def _rows(seed: int, budget: int | None, ops: tuple[str, ...] = FORWARD_OPS,
          triples: tuple[str, ...] = STRENGTH3) -> tuple[tuple[int, ...], ...]:
    # The forward array keeps its historic stream (its cases must never move); others get their own.
    rng = random.Random(seed if ops == FORWARD_OPS else f"conv-conformance-sweep:{seed}:{','.join(ops)}")
    uncovered = {k: set(v) for k, v in _universe(ops, triples).items() if v}
    by_param = {i: [inter for inter in uncovered if i in inter] for i in range(len(PARAMS))}
    rows: list[list] = []
    while any(uncovered.values()) and (budget is None or len(rows) < budget):
        live = {k: v for k, v in uncovered.items() if v}
        cands = [_candidate(rng, live, uncovered, by_param, ops) for _ in range(CANDIDATES)]
        gains = [_new_combos(c, live, uncovered) for c in cands]
        row = cands[gains.index(max(gains))]
        rows.append(row)
        for inter in live:
            uncovered[inter].discard(tuple(row[i] for i in inter))
    seen = {tuple(r) for r in rows}
    tries = 0
    while budget is not None and len(rows) < budget and tries < 50 * budget:
        tries += 1
        row = _random_row(rng, ops)
        if tuple(row) not in seen:  # a repeated row would be a repeated case
            seen.add(tuple(row))
            rows.append(row)
    return tuple(tuple(r) for r in rows)


# ---- rows to cases ------------------------------------------------------------------


def _axis_size(rng: random.Random, padding: str, eff: int, stride: int,
               max_out: int = MAX_OUT) -> tuple[int, tuple[int, int] | None]:
    """(input size, explicit pads or None) for one axis with a drawn output size."""
    out = rng.randint(1, max_out)
    if padding == "VALID":
        return (out - 1) * stride + eff + rng.randrange(stride), None
    if padding == "explicit":
        lo, hi = rng.choice(EXPLICIT_PADS)
        n = (out - 1) * stride + eff + rng.randrange(stride) - lo - hi
        while n < 1:  # pads wider than the span: a larger output keeps the input non-empty
            n += stride
        return n, (lo, hi)
    # SAME: n = (out-1)*s + 1 + j gives total pad max(eff-1-j, 0); pick j for the parity.
    want = 1 if padding == "SAME-odd" else 0
    js = [j for j in range(stride) if max(eff - 1 - j, 0) % 2 == want]
    if not js:  # SAME-odd on an axis that cannot be odd (another axis is)
        js = list(range(stride))
    positive = [j for j in js if eff - 1 - j > 0]
    return (out - 1) * stride + 1 + rng.choice(positive or js), None


def make_case(levels: dict[str, Any], rng: random.Random, *, reason: str | None = None,
              max_out: int = MAX_OUT) -> Case:
    """The valid case of one row of levels (parameter name -> level value)."""
    k, s, d, pad = levels["kernel"], levels["stride"], levels["dilation"], levels["padding"]
    sizes, pads = [], []
    for eff, st in _axes(k, s, d):
        n, p = _axis_size(rng, pad, eff, st, max_out)
        sizes.append(n)
        pads.append(p)
    if pad == "explicit":
        padding: Any = (pads[0], pads[1])
    else:
        padding = "VALID" if pad == "VALID" else "SAME"
    fields: dict[str, Any] = dict(op=levels["op"], batch=levels["batch"], height=sizes[0], width=sizes[1],
                                  kernel=k, strides=s, dilations=d, padding=padding, dtype=levels["dtype"],
                                  data_format=levels["data_format"], profile=levels["profile"], bias=levels["bias"],
                                  reason=reason)
    c, mg = levels["channels"], levels["mult_groups"]
    if OP_INFO[levels["op"]].forward == "conv2d":
        fields.update(in_channels=c * mg, groups=mg, out_channels=mg * rng.choice(OUT_PER_GROUP))
    else:
        fields.update(in_channels=c, channel_multiplier=mg)
        if levels["op"] == "separable_conv2d":  # its pointwise stage's outputs
            fields.update(out_channels=rng.choice(OUT_PER_GROUP))
    return Case(**fields)


def padding_kind(case: Case) -> str:
    """VALID, SAME-even, SAME-odd or explicit (the sweep's padding levels)."""
    if case.padding == "VALID":
        return "VALID"
    if case.padding != "SAME":
        return "explicit"
    pads = case.geometry.pads
    return "SAME-odd" if any(sum(p) % 2 for p in pads) else "SAME-even"


def levels_of(case: Case) -> dict[str, Any]:
    """The level of each parameter a case has (the value itself, level or not)."""
    conv = case.forward_op == "conv2d"
    return {
        "op": case.op,
        "kernel": case.kernel,
        "stride": case.strides,
        "dilation": case.dilations,
        "padding": padding_kind(case),
        "channels": case.in_channels // case.groups if conv else case.in_channels,
        "mult_groups": case.groups if conv else case.channel_multiplier,
        "batch": case.batch,
        "dtype": case.dtype,
        "data_format": case.data_format,
        "profile": case.profile,
        "bias": case.bias,
    }


def sweep(seed: int = 0, budget: int | None = None, ops=FORWARD_OPS, triples=STRENGTH3) -> list[Case]:
    """The covering-array cases of `ops` for `seed`: all of them (`budget=None`) or at most `budget`.

    A budget below the covering array's size stops early and warns (`CoverageWarning`)
    with the coverage reached; one above it adds seeded random valid cases. Each tuple of
    ops has its own array (`sweep(ops=TRAINING_OPS)`: the gradients and the separable conv);
    `triples` names the parameters whose 3-way combinations it covers (() for pairs only:
    a smaller array).
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed: expected an integer, received {seed!r}")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 1):
        raise ValueError(f"budget: expected an integer >= 1 or None, received {budget!r}")
    ops = _check_ops(ops)
    triples = _check_triples(triples)
    cases = list(_cases(seed, budget, ops, triples))
    needed = len(_rows(seed, None, ops, triples))
    if budget is not None and len(cases) == budget and needed > budget:
        cov = coverage(cases, ops, triples)
        warnings.warn(CoverageWarning(
            f"sweep budget {budget} is below the {needed} cases the covering array needs "
            f"(seed {seed}): 2-way coverage {_pct(cov['t2'])}, 3-way {_pct(cov['t3'])}"), stacklevel=2)
    return cases


@functools.lru_cache(maxsize=32)
def _cases(seed: int, budget: int | None, ops: tuple[str, ...], triples: tuple[str, ...]) -> tuple[Case, ...]:
    space = ops_levels(ops)
    # The forward array keeps its historic names and streams; another array's rows say its ops.
    stream = f"{seed}" if ops == FORWARD_OPS else f"{seed}:{','.join(ops)}"
    if triples != STRENGTH3:
        stream += f":{','.join(triples)}"
    out = []
    for index, row in enumerate(_rows(seed, budget, ops, triples)):
        levels = {p: space[p][v] for p, v in zip(PARAMS, row)}
        rng = random.Random(f"conv-conformance-sweep:{stream}:{index}")
        label = "sweep" if ops == FORWARD_OPS else "training sweep"
        case = make_case(levels, rng, reason=f"{label} seed {seed}, row {index}")
        # The derivation must realise exactly the drawn levels, or coverage would lie.
        if not case.is_valid or levels_of(case) != levels:
            raise AssertionError(f"sweep row {index} derived {case.id} ({case.invalid_reason}), levels "
                                 f"{levels_of(case)} instead of {levels}")
        out.append(case)
    return tuple(out)


# ---- coverage -----------------------------------------------------------------------


def coverage(cases, ops=FORWARD_OPS, triples=STRENGTH3) -> dict[str, Any]:
    """Covered / total feasible combinations of the covering array of `ops`: t2 over all
    PARAMS, t3 over `triples` (STRENGTH3).

    Any cases may be measured; cases of other ops, invalid cases and values that are not
    levels count for nothing. Returns {"cases": n, "t2": {...}, "t3": {...}} with, for each
    strength, "params", "covered", "total", "percent" and "missing" (up to 10, as level
    mappings).
    """
    ops, triples = _check_ops(ops), _check_triples(triples)
    space = ops_levels(ops)
    index = {p: {v: i for i, v in enumerate(space[p])} for p in PARAMS}
    rows = []
    for case in cases:
        if case.is_valid and case.op in ops:
            lv = levels_of(case)
            rows.append([index[p].get(lv[p]) for p in PARAMS])
    universe = _universe(ops, triples)
    result: dict[str, Any] = {"cases": len(rows)}
    t3_params = sorted(PARAMS.index(p) for p in triples)
    for key, inters in (("t2", [k for k in universe if len(k) == 2]),
                        ("t3", list(itertools.combinations(t3_params, 3)))):
        covered = total = 0
        missing = []
        for inter in inters:
            have = {tuple(r[i] for i in inter) for r in rows}
            for combo in sorted(universe[inter]):
                total += 1
                if combo in have:
                    covered += 1
                elif len(missing) < 10:
                    missing.append({PARAMS[i]: space[PARAMS[i]][v] for i, v in zip(inter, combo)})
        params = list(PARAMS) if key == "t2" else list(triples)
        result[key] = {"params": params, "covered": covered, "total": total,
                       "percent": 100.0 * covered / total if total else 100.0, "missing": missing}
    return result


def _pct(part: dict) -> str:
    return f"{part['covered']}/{part['total']} ({math.floor(part['percent'] * 10) / 10:.1f}%)"


def describe_coverage(cases, ops=FORWARD_OPS, triples=STRENGTH3) -> str:
    """A few lines for people: the t-way coverage of `cases` (of `ops`) and what is missing."""
    cov = coverage(cases, ops, triples)
    lines = [f"{cov['cases']} valid cases",
             f"2-way, all {len(PARAMS)} parameters: {_pct(cov['t2'])} combinations",
             f"3-way, {', '.join(triples)}: {_pct(cov['t3'])} combinations"]
    for key in ("t2", "t3"):
        for m in cov[key]["missing"]:
            lines.append(f"  missing ({key}): " + ", ".join(f"{p}={v}" for p, v in m.items()))
    return "\n".join(lines)


# ---- medium cases: the sizes the covering array's tiny rows never reach ---------------

#: Levels of the medium cases: the sweep's, widened to sizes where blocking, SIMD tails,
#: long reductions and batch strides live (dtype, layout and profile levels unchanged).
MEDIUM_LEVELS: dict[str, tuple[Any, ...]] = {
    **LEVELS,
    "kernel": ((1, 1), (3, 3), (3, 2), (5, 5), (1, 3), (4, 4), (7, 1)),
    "stride": ((1, 1), (2, 2), (1, 2), (3, 3), (2, 1)),
    "dilation": ((1, 1), (2, 2), (3, 1), (1, 2)),
    "channels": (5, 8, 13, 16, 24, 33, 64, 72),
    "mult_groups": (1, 2, 4),
    "batch": (1, 2, 3, 4),
}
#: Multiply-adds a medium case may have at most (keeps a default run at a few minutes).
MEDIUM_MAX_MACS = 3_000_000
#: Output rows and columns of a medium case are drawn up to this.
MEDIUM_MAX_OUT = 24


def medium(seed: int = 0, count: int = 60, ops=FORWARD_OPS) -> list[Case]:
    """`count` seeded random valid cases of `ops` of medium size (outputs up to 24x24, up to
    72 channels per group, batch up to 4, kernels up to 7, every dtype, layout and profile).

    Constructed, not filtered: the output size is drawn last, bounded so the case stays
    under MEDIUM_MAX_MACS. Deterministic: a seed gives the same cases on every machine,
    and a smaller count is a prefix of a larger one. A gradient case drops the bias drawn.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed: expected an integer, received {seed!r}")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"count: expected an integer >= 0, received {count!r}")
    ops = _check_ops(ops)
    # The forward cases keep their historic stream (they must never move); other ops name theirs.
    stream = f"{seed}" if ops == FORWARD_OPS else f"{seed}:{','.join(ops)}"
    space = {**MEDIUM_LEVELS, "op": ops}
    out = []
    for index in range(count):
        rng = random.Random(f"conv-conformance-medium:{stream}:{index}")
        levels = {p: rng.choice(v) for p, v in space.items()}
        if levels["op"] in GRADIENT_OPS:
            levels["bias"] = False
        kh, kw = levels["kernel"]
        c, mg = levels["channels"], levels["mult_groups"]
        # Multiply-adds per output pixel: kh*kw*(C/groups) per output channel, times the
        # groups*out_per_group output channels (conv2d) or the C*M outputs (depthwise; the
        # separable conv adds C*M per pointwise output).
        conv = OP_INFO[levels["op"]].forward == "conv2d"
        per_pixel = kh * kw * c * mg * (max(OUT_PER_GROUP) if conv else 1)
        if levels["op"] == "separable_conv2d":
            per_pixel += c * mg * max(OUT_PER_GROUP)
        max_out = max(1, min(MEDIUM_MAX_OUT, math.isqrt(MEDIUM_MAX_MACS // (levels["batch"] * per_pixel))))
        out.append(make_case(levels, rng, reason=f"medium seed {seed}, case {index}", max_out=max_out))
    return out
