"""The findings step of a run: each backend's divergences characterised by experiment, live.

After the last case, while the workers still run, each backend with divergences gets its
findings from `discover.discover` (docs/findings-engine.md), whose probe is this run's
own verdict on that backend: the case is sent to the backend's worker and its reply
recorded by `record.record_reply`, the record the run itself writes. Then each finding
gets the full repro script of its minimal case (OUT/repro/<backend>/<case id>.py) and
its short repro (OUT/repro/<backend>/finding-<id>.py), each written by the backend's
worker. Manifest entries that pin a finding by id mark its members known.

Invariants
- Findings only add to a run: its `findings` section, two scripts per finding, and on the
  records a finding started from its minimal case (`minimised`), on its other members a
  note; never a record or a verdict. A failure here costs a backend its findings (its divergences then
  stand as one uncharacterised finding, with a note), never the run its verdicts.
- Bounded: `discover`'s budget (backend calls and seconds per finding and per run,
  `--confirm-budget` seconds per finding), and every probe's wait is capped.
- Backends are characterised two at a time (each on its own worker), those with fewer
  divergences first, each with an equal share of the budget left; a backend's findings
  one after another.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from .. import expected as expected_mod
from .. import findings as findings_mod
from .. import tolerance
from ..discover import discover
from ..probe import Budget, Observation, Prober, Tally
from ..record import oracle_for, record_reply
from ..repeats import script_calls
from ..scripts import exit_code_for
from ..spec import Case
from ..text import safe_filename
from .config import FINDING_BUDGET_S
from ..process.memory import memory_estimate

#: What one probe may wait.
PROBE_CAP_S = 10.0
#: Backends characterised at once.
THREADS = 2


def build_findings(records: list[dict[str, Any]], entries: list,
                   fingerprints: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The findings of `records` without a backend at hand (a re-judged run): each
    backend's divergences as its uncharacterised finding, pinned by the manifest."""
    found = findings_mod.with_members([], records)
    expected_mod.pin_findings(entries, records, found, fingerprints)
    return found


def budget_for(seconds_per_finding: float | None) -> Budget:
    """The run's experiment budget: `seconds_per_finding` per finding, twelve times that (at
    least 120) in all, spent THREADS at a time (so about half of it in wall-clock time)."""
    s = seconds_per_finding or FINDING_BUDGET_S
    return Budget(probes_per_finding=200, seconds_per_finding=s, probes_per_run=2000, seconds_per_run=max(12 * s, 120.0))


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


def findings_step(cfg: Any, backends: list[Any], records: list[dict[str, Any]], entries: list,
                  stream: TextIO | None, fingerprints: dict[str, dict[str, Any]] | None = None
                  ) -> tuple[list[dict[str, Any]], dict[str, Any]] | None:
    """(findings, the experiments' cost) of the run, while the workers still run (`cfg`: the
    run's RunConfig, `backends`: its live Backends). None when they could not be built:
    the verdicts are never lost to the findings step."""
    out = stream or sys.stderr
    try:
        live = {b.name: b for b in backends if not b.failed}
        todo = [name for name in dict.fromkeys(r["backend"] for r in records if r["status"] == "diverge")]
        if cfg.confirm_budget_s is None or not todo:
            return build_findings(records, entries, fingerprints), {}
        budget = budget_for(cfg.confirm_budget_s)
        if not cfg.quiet:
            out.write(f"findings: characterising the divergences of {len(todo)} backend"
                      f"{'s' if len(todo) != 1 else ''} by experiment (at most {budget.seconds_per_finding:g} s "
                      f"per finding, {budget.seconds_per_run:g} s in all)\n")
        found, cost = _characterise_all(cfg, live, todo, records, budget)
    except Exception as exc:
        out.write(f"warning: findings could not be built ({type(exc).__name__}: {exc}); "
                  f"the results are written without them\n")
        return None
    expected_mod.pin_findings(entries, records, found, fingerprints)
    if cfg.minimise:  # --no-minimise leaves every record as it diverged
        mark_minimised(records, found)
    for f in found:
        b = live.get(f["backend"])
        if b is not None:
            try:
                write_scripts(f, b, cfg.out, cfg.precision)
            except Exception as exc:  # a finding's scripts must never lose the run
                f["notes"].append(f"repro scripts failed: {type(exc).__name__}: {exc}")
    return found, cost


def mark_minimised(records: list[dict[str, Any]], found: list[dict[str, Any]]) -> None:
    """The record each characterised finding's experiments started from gets its `minimised`
    field: the finding's minimal case (results-schema.md); the other members name it in a note."""
    by_key = {(r["backend"], r["case_id"]): r for r in records}
    for f in found:
        start = by_key.get((f["backend"], f.get("started_from")))
        if start is None or f.get("minimal_case_id") in (None, start["case_id"]):
            continue
        start["minimised"] = f["minimal_case"]
        for m in f["members"]:
            rec = by_key.get((f["backend"], m["case_id"]))
            note = (f"finding {f['id']} holds this divergence; its minimal case {f['minimal_case_id']} was shrunk "
                    f"from {start['case_id']}")
            if rec is not None and rec is not start and note not in (rec.get("notes") or []):
                # (already there when a completed run is resumed from its results.json)
                rec["notes"] = list(rec.get("notes") or []) + [note]


def _characterise_all(cfg: Any, live: dict[str, Any], todo: list[str], records: list[dict[str, Any]],
                      budget: Budget) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """discover() for every backend of `todo`, THREADS at a time; a backend without a live
    worker, or whose experiments failed, keeps its divergences uncharacterised.

    The run's budget is shared fairly: backends with fewer divergences go first, and each
    gets, when it starts, an equal share of what is left (in wall-clock seconds, THREADS
    working at once), so that no backend is left without a single experiment."""
    tallies: dict[str, Tally] = {}
    results: dict[str, list[dict[str, Any]]] = {}
    by_framework: dict[str, list[Any]] = {}  # predicates confirmed so far, tried first by the variants
    n_div = {name: sum(1 for r in records if r["backend"] == name and r["status"] == "diverge") for name in todo}
    pending = sorted(todo, key=lambda n: (n_div[n], todo.index(n)))
    lock = threading.Lock()
    t0 = time.monotonic()
    deadline = t0 + budget.seconds_per_run / THREADS
    probes_left = [budget.probes_per_run]

    def one(name: str, share: Budget) -> None:
        recs = [r for r in records if r["backend"] == name]
        b = live.get(name)
        if b is None:
            results[name] = findings_mod.with_members([], recs)
            for f in results[name]:
                f["notes"].append("not characterised: the backend's worker was not running")
            return
        prober = Prober(_probe_of(b, cfg), share, run=tallies.setdefault(name, Tally()))
        fw = findings_mod.framework_of(name)
        try:
            results[name] = discover(recs, None, name, prober=prober, shrink=cfg.minimise,
                                     siblings=lambda: list(by_framework.get(fw, [])),
                                     confirmed=lambda p: by_framework.setdefault(fw, []).append(p))
        except Exception as exc:  # one backend's experiments must never lose the others
            results[name] = findings_mod.with_members([], recs)
            for f in results[name]:
                f["notes"].append(f"experiments failed: {type(exc).__name__}: {exc}")
        with lock:
            probes_left[0] -= tallies[name].probes

    def loop() -> None:
        while True:
            with lock:
                if not pending:
                    return
                name = pending.pop(0)
                # An equal share of the time left, THREADS backends working at once.
                seconds = max((deadline - time.monotonic()) * THREADS / (len(pending) + 1), 0.001)
                share = Budget(budget.probes_per_finding, budget.seconds_per_finding,
                               max(probes_left[0] // (len(pending) + 1), 1), seconds)
            one(name, share)

    threads = [threading.Thread(target=loop, name=f"findings-{i}", daemon=True) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(0.2)  # in slices, so that Ctrl-C reaches the run
    found = [f for name in todo for f in results.get(name, [])]
    cost = {"backend_calls": sum(t.probes for t in tallies.values()),
            "backend_s": round(sum(t.seconds for t in tallies.values()), 3),
            "wall_s": round(time.monotonic() - t0, 3)}
    return found, cost


def _probe_of(b: Any, cfg: Any):
    """probe(case) -> Observation: the run's verdict on `b`, each wait capped."""
    def probe(case: Case) -> Observation:
        if cfg.max_memory and memory_estimate(case) > cfg.max_memory:
            return Observation("unsupported")
        rec = record_on(b, case, timeout=PROBE_CAP_S, precision=cfg.precision)
        return Observation(rec["status"], rec["kind"])
    return probe


def write_scripts(finding: dict[str, Any], backend: Any, out: Path, precision: str) -> None:
    """The full repro script of the finding's minimal case and its short repro, by the
    backend's worker; the short one is kept only when it exits 1 on the output the suite
    judged diverging (then `finding["short_repro"]`), else a note says why."""
    minimal = Case.from_dict(finding["minimal_case"])
    folder = Path("repro") / safe_filename(finding["backend"])
    (Path(out) / folder).mkdir(parents=True, exist_ok=True)
    rec, y = record_on(backend, minimal, with_output=True, timeout=PROBE_CAP_S, precision=precision)
    # A nondeterministic minimal case: the script calls the framework as often as its record did.
    text, err = backend.repro(minimal, precision, calls=script_calls(rec["kind"], rec.get("repeat")))
    if text:
        rel = folder / f"{minimal.id}.py"
        (Path(out) / rel).write_text(text, encoding="utf-8")
        finding["repro"] = rel.as_posix()
    elif err:
        finding["notes"].append(err)
    if rec["status"] != "diverge":
        finding["notes"].append(f"no short repro: its minimal case {minimal.id} is {rec['status']} now")
        return
    header = (f"{finding['title']}\nconv-conformance finding {finding['id']} on {finding['backend']} "
              f"{finding.get('backend_version') or ''}, case {minimal.id}\n"
              f"exits 1 while the bug is present, 0 once it is fixed (the suite's verdict)")
    short, err = backend.repro(minimal, precision, short_header=header)
    if not short:
        finding["notes"].append(f"no short repro: {err or 'no script'}")
        return
    if y is not None and exit_code_for(short, y) == 0:
        finding["notes"].append("no short repro: its check passes the output the verdict judged diverging")
        return
    rel = folder / f"finding-{finding['id']}.py"
    (Path(out) / rel).write_text(short, encoding="utf-8")
    finding["short_repro"] = {"case_id": minimal.id, "script": short, "path": rel.as_posix()}
