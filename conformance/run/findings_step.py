"""The findings step of a run: each finding confirmed on its live backend, with a short repro.

After the last case, while the workers still run, `findings_step` builds the findings
of the records (`findings.build`, pure data), then for each finding, with the live
worker of its backend (`process.backend.Backend`):
1. confirms its predicate (`confirm`): new cases inside the predicate (covered cases
   with free fields mutated) must diverge the same way (same kind), near misses (one
   atom flipped) must not; each is run on the worker and recorded by `record_reply`,
   the record the run itself writes;
2. after a refutation, characterises again with the confirmation's cases as evidence
   (`refine`) and confirms the new predicate;
3. chooses the case of its short repro and writes the script (`short_repro_for`,
   `scripts.make_short_script` in the worker), kept only when it exits as the verdict.

Invariants
- Findings only add to a run: a finding's `confirmation`, `short_repro` and refined
  predicate; never a record or a verdict. A failure here costs the finding its extras
  (a note says why), or the run its findings section, never its verdicts.
- Bounded: each finding's confirmation has `confirm_budget_s`, the whole step
  `CONFIRM_RUN_FACTOR` times that; a new case that hangs costs at most its cap.
- `findings` (pure) never imports this module: the reports, merge and manifests read
  findings without a backend.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, TextIO

from .. import expected as expected_mod
from .. import findings as findings_mod
from .. import tolerance
from ..findings import (NO_PREDICATE, Atom, case_of, characterise, features, finding_id, macs, predicate_text,
                        shared_key, title)
from ..record import oracle_for, record_reply
from ..scripts import exit_code_for
from ..spec import DATA_FORMATS, DTYPES, PROFILES, Case, CaseError
from ..text import safe_filename

#: Default active-confirmation budget, seconds per finding.
CONFIRM_BUDGET_S = 4.0
#: New cases inside the predicate, and near misses, tried at most per finding.
CONFIRM_INSIDE = 3
CONFIRM_NEAR = 3


def build_findings(records: list[dict[str, Any]], entries: list,
                   fingerprints: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The findings of `records`; manifest entries that pin a finding by id mark its records
    known (where their `when` conditions hold on the record's fingerprint)."""
    found = findings_mod.build(records)
    expected_mod.pin_findings(entries, records, found, fingerprints)
    return found


def findings_step(cfg: Any, backends: list[Any], records: list[dict[str, Any]], entries: list,
              stream: TextIO | None, fingerprints: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]] | None:
    """The run's findings, confirmed and with short repros, while the workers still run
    (`cfg`: the run's RunConfig, `backends`: its live Backends).
    None when they could not be built: the verdicts are never lost to the findings step."""
    try:
        found = build_findings(records, entries, fingerprints)
    except Exception as exc:
        (stream or sys.stderr).write(f"warning: findings could not be built ({type(exc).__name__}: {exc}); "
                                     f"the results are written without them\n")
        return None
    if found and not cfg.quiet:
        what = f"confirming (at most {cfg.confirm_budget_s:g} s each) and " if cfg.confirm_budget_s else ""
        (stream or sys.stderr).write(f"findings: {len(found)}; {what}writing their short repros\n")
    enrich(found, {b.name: b for b in backends}, records, out=cfg.out,
                        confirm_budget_s=cfg.confirm_budget_s, precision=cfg.precision)
    return found


# ---- confirming a predicate ----------------------------------------------------------------

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


def confirm(finding: dict[str, Any], record_case: Callable[[Case], dict[str, Any]], seen: set[str],
            bases: list[Case] | None = None, *, budget_s: float = CONFIRM_BUDGET_S,
            also_kinds: Iterable[str] = ()) -> dict[str, Any]:
    """Try the finding's predicate on new cases; returns the `confirmation` dict (and sets it).

    `record_case(case)` runs the backend and returns its record (the run's verdict).
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
        rec = record_case(case)
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


#: Kinds whose bug shows with small integer inputs (not tied to the values' magnitudes).
SMALL_INTEGER_KINDS = ("value", "shape", "invalid_accepted", "dtype")


def record_on(backend: Any, case: Case, *, with_output: bool = False, timeout: float | None = None,
              precision: str | None = None) -> Any:
    """The run's record for `case` on a live `process.backend.Backend`: its worker, `record_reply`'s verdict
    under the run's precision contract (with `with_output`, (record, the backend's output
    or None)); `timeout` caps the wait."""
    oracle = oracle_for(case)
    limit = backend.timeout if timeout is None else min(backend.timeout, timeout)
    rec, y = record_reply(case, backend.name, backend.info, backend.ask(case, limit), oracle, limit,
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
    pos = [c for c in (case_of(r) for r in records if r["case_id"] in mine) if c is not None]
    neg = [c for c in (case_of(r) for r in records if r["status"] == "pass") if c is not None]
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


def short_repro_for(finding: dict[str, Any], backend: Any, record_case: Callable[[Case], Any],
                    out: Any = None, bases: list[Case] = ()) -> dict[str, Any] | None:
    """Choose the short repro's case and write its script; sets and returns finding["short_repro"].

    The case is one the suite judged diverging with the finding's kind on this backend:
    the minimal case re-run with small integer inputs (where the kind allows and the
    predicate does not name the profile), else the minimal case itself, else the smallest
    covered cases. The script comes from the backend's worker (its adapter's repro_code),
    and is kept only when, given the output the suite judged, it exits 1 too (its check is
    shorter than the verdict's: where they disagree, the next case is tried).
    `record_case(case)` returns (record, output).
    """
    minimal = Case.from_dict(finding["minimal_case"])
    names_profile = any(a["feature"] == "profile" for a in finding["atoms"] or [])
    tries: list[Case] = []
    if finding["kind"] in SMALL_INTEGER_KINDS and minimal.profile != "small_integers" and not names_profile:
        try:
            tries.append(minimal.replace(profile="small_integers"))
        except CaseError:
            pass
    tries.append(minimal)
    tries += sorted((c for c in bases if c.id != minimal.id), key=macs)[:3]
    problems = []
    for case in tries:
        rec, y = record_case(case)
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
    with the live `process.backend.Backend` of its backend (findings of other backends stay as built).

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
        record_case = lambda c, b=b: record_on(b, c, timeout=cap, precision=precision)  # noqa: E731
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
                conf = confirm(f, record_case, tried, bases, budget_s=confirm_budget_s, also_kinds=siblings)
                tried |= {r["case_id"] for r in conf["inside"] + conf["near_misses"]}
                mine = [r for r in records if r["backend"] == f["backend"]]
                if conf["status"] == "refuted" and refine(f, mine, siblings):
                    confirm(f, record_case, tried, bases, budget_s=confirm_budget_s, also_kinds=siblings)
            short_repro_for(f, b, lambda c, b=b: record_on(b, c, with_output=True, precision=precision), out,
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
