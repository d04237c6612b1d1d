"""Named case sets and selectors: what `conformance run --cases SELECTOR` runs.

A selector is one of, or a comma-separated union of:
- a set name (`SETS`): `smoke` (the catalogue entries tagged `sets: [smoke]`: a few
  dozen small cases over every op, every dtype, every padding kind, one invalid and
  one special-values case), `default` (catalogue + regressions + a sweep of
  `DEFAULT_BUDGET` forward cases: the covering array, then seeded random valid cases, +
  `DEFAULT_MEDIUM` medium-size random cases + the sample of real layers tagged
  `sets: [default]` in cases/models/, at their `default_dtypes` + the size witnesses of
  cases/witnesses.py, which put every class of the size model (cases/sizes.py) in the
  set; then the training ops' pairs-only covering array and DEFAULT_TRAINING_MEDIUM
  medium cases), `full` (the same with a sweep of `FULL_BUDGET` + `FULL_MEDIUM` medium
  cases, and the training ops' array with triples up to FULL_TRAINING_BUDGET +
  FULL_TRAINING_MEDIUM), `models` (every layer in cases/models/: the conv2d and
  depthwise layers of published networks and the backward and separable convs of some
  of them, float32);
- a path to a YAML case file (it exists, or it ends in .yaml/.yml);
- a case id or a catalogue case name, exactly;
- an fnmatch glob over the ids and names of the `full` set (`dw-*-f16*`, `seed-*`).

Invariants
- Deterministic order (catalogue, regressions, sweep, medium, real layers, witnesses,
  training sweep and medium; then each further selector's cases in order): the training
  sweep and medium cases come after every forward case, so the forward cases of a set
  keep their order whatever the training part holds. No duplicate ids: a case selected twice appears once, first place.
- `budget` is the sweep's budget for `default`/`full` (ignored by the other selectors).
- `dtypes` keeps only cases of those dtypes; an unknown dtype is an error, and so is a
  selection that ends up empty (a run of nothing is never what was meant). The `models`
  set is geometries: with `dtypes` it gives every layer at each of those dtypes.
- An unknown selector raises `SelectorError` listing the set names and saying that no
  case id, name or glob matched; file problems are `CaseFileError`s.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

from conformance.spec import DTYPE_TAGS, DTYPES, Case

from .catalogue import CaseFileError, load_catalogue_entries, load_file, load_model_entries
from .sweep import TRAINING_OPS, medium, sweep
from .witnesses import witnesses

SETS = ("smoke", "default", "full", "models")
#: Sweep size of the default set: the covering array (~75 cases) and random cases after it.
DEFAULT_BUDGET = 200
FULL_BUDGET = 1000
#: Medium-size random cases (sweep.medium) after the sweep: the sizes its tiny rows miss.
DEFAULT_MEDIUM = 60
FULL_MEDIUM = 240
#: The training ops' sweep (sweep.TRAINING_OPS, an array of its own): in `default` its
#: pairs-only covering array (every 2-way combination, ~36 cases; the catalogue's
#: training.yaml holds the hand-picked gradient-bug shapes) and DEFAULT_TRAINING_MEDIUM
#: medium cases; `full` adds the array with the triples too, extended to
#: FULL_TRAINING_BUDGET, and FULL_TRAINING_MEDIUM medium cases.
DEFAULT_TRAINING_TRIPLES: tuple[str, ...] = ()
DEFAULT_TRAINING_MEDIUM = 4
FULL_TRAINING_BUDGET = 300
FULL_TRAINING_MEDIUM = 60


class SelectorError(ValueError):
    """A selector that names no set, file, case id, name or glob match."""


def _retyped(case: Case, dtype: str) -> Case:
    """The case at `dtype`, its name tagged with the dtype when that changes it (names stay unique)."""
    if dtype == case.dtype:
        return case
    name = f"{case.name}-{DTYPE_TAGS[dtype]}" if case.name else None
    return case.replace(dtype=dtype, name=name, reason=case.reason)


def real_layer_sample() -> list[Case]:
    """The real layers of cases/models/ tagged `sets: [default]`, at each of their
    `default_dtypes`: the default set's size classes (see `cases default --coverage`)."""
    out = []
    for e in load_model_entries():
        if "default" in e.sets:
            out.extend(_retyped(e.case, d) for d in (e.default_dtypes or (e.case.dtype,)))
    return out


def _named_set(name: str, seed: int, budget: int | None, dtypes=None) -> list[Case]:
    if name == "models":
        cases = [e.case for e in load_model_entries()]
        return [_retyped(c, d) for c in cases for d in dtypes] if dtypes else cases
    entries = load_catalogue_entries()
    if name == "smoke":
        return [e.case for e in entries if "smoke" in e.sets]
    size = budget if budget is not None else (DEFAULT_BUDGET if name == "default" else FULL_BUDGET)
    count = DEFAULT_MEDIUM if name == "default" else FULL_MEDIUM
    cases = [e.case for e in entries] + sweep(seed, size) + medium(seed, count) + real_layer_sample() + witnesses()
    # The training ops after every forward case, so adding them moved no forward case; `full`
    # holds every case of `default` (the pairs-only array, a prefix of the medium cases).
    cases += sweep(seed, None, TRAINING_OPS, DEFAULT_TRAINING_TRIPLES)
    if name == "full":
        cases += sweep(seed, FULL_TRAINING_BUDGET, TRAINING_OPS)
    cases += medium(seed, DEFAULT_TRAINING_MEDIUM if name == "default" else FULL_TRAINING_MEDIUM, TRAINING_OPS)
    seen: set[str] = set()
    return [c for c in cases if not (c.id in seen or seen.add(c.id))]


def _looks_like_path(selector: str) -> bool:
    return selector.endswith((".yaml", ".yml")) or "/" in selector or Path(selector).is_file()


def _one(selector: str, seed: int, budget: int | None, dtypes=None) -> list[Case]:
    if selector in SETS:
        return _named_set(selector, seed, budget, dtypes)
    if _looks_like_path(selector):
        if not Path(selector).is_file():
            raise CaseFileError(selector, None, "expected an existing YAML case file, received a path that does not exist")
        return load_file(selector)
    full = _named_set("full", seed, budget if budget is not None and budget > FULL_BUDGET else None)
    models = _named_set("models", seed, None)
    pool = full + models
    exact = [c for c in pool if selector in (c.id, c.name)]
    if exact:
        return exact
    if any(ch in selector for ch in "*?["):
        matched = [c for c in pool if fnmatch.fnmatchcase(c.id, selector)
                   or (c.name is not None and fnmatch.fnmatchcase(c.name, selector))]
        if matched:
            return matched
    raise SelectorError(
        f"cases: expected a set name ({', '.join(SETS)}), a YAML case file, a case id or name, or an id glob; "
        f"received {selector!r}, and no case id, name or glob in the {len(full)}-case full set or the "
        f"{len(models)}-case models set matched it")


def select(selector: str = "default", *, seed: int = 0, budget: int | None = None,
           dtypes=None) -> list[Case]:
    """The cases a selector names (see the module docstring), deduplicated, in order."""
    if not isinstance(selector, str) or not selector.strip():
        raise SelectorError(f"cases: expected a selector (one of {', '.join(SETS)}, a file, an id or a glob), "
                            f"received {selector!r}")
    if dtypes is not None:
        if isinstance(dtypes, str):
            dtypes = [d.strip() for d in dtypes.split(",") if d.strip()]
        bad = [d for d in dtypes if d not in DTYPES]
        if bad or not dtypes:
            raise SelectorError(f"dtypes: expected some of {', '.join(DTYPES)}, received {list(dtypes)!r}")
    out: list[Case] = []
    seen: set[str] = set()
    for part in (p.strip() for p in selector.split(",")):
        if not part:
            continue
        for case in _one(part, seed, budget, dtypes):
            if case.id not in seen and (dtypes is None or case.dtype in dtypes):
                seen.add(case.id)
                out.append(case)
    if not out:
        raise SelectorError(f"cases: selector {selector!r} with dtypes {list(dtypes) if dtypes else 'any'} "
                            "selects no case")
    return out
