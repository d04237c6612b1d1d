"""Running experiments on one backend: observations, the budget, and the log of every move.

The findings engine never calls a backend itself. It is handed a `probe(case) ->
Observation` callback: in a run, the run's worker and referee (the one verdict); in
tests, the verdict called in process on a NumPy backend. `Prober` wraps that callback
with what every experiment needs.

Invariants
- An Observation is the one verdict's status and kind for one case: it is never
  re-judged here. `diverges` is True for `diverge`, False for `pass`, and None for
  everything that says nothing about the bug (unsupported, error, crash, timeout).
- A case is probed at most once per run: observations are cached by case id (a backend
  is deterministic on a case; the run's own records seed the cache for free).
- The budget is checked before each call, and by `check()` inside long computations:
  backend calls, and wall-clock seconds (the backend's time and the experiments' own),
  per finding and per run. When it is spent `BudgetSpent` is raised, and the caller says
  so in what it publishes.
- Every call (cached or not) is logged with the move that produced the case, so a finding
  can list the experiments behind it.
"""

from __future__ import annotations

import time
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from .predicate import features
from .spec import Case


@dataclass(frozen=True)
class Observation:
    """The verdict on one case: `status` (pass, diverge, unsupported, error, crash,
    timeout) and the divergence `kind` (None unless it diverged)."""

    status: str
    kind: str | None = None

    @property
    def diverges(self) -> bool | None:
        return True if self.status == "diverge" else False if self.status == "pass" else None


@dataclass(frozen=True)
class Budget:
    """Bounds on the experiments: backend calls and the seconds they take, per finding and per run."""

    probes_per_finding: int = 160
    seconds_per_finding: float = 15.0
    probes_per_run: int = 1200
    seconds_per_run: float = 40.0

    def __post_init__(self) -> None:
        for name in ("probes_per_finding", "seconds_per_finding", "probes_per_run", "seconds_per_run"):
            if getattr(self, name) <= 0:
                raise ValueError(f"budget {name}: expected a number > 0, received {getattr(self, name)!r}")


class BudgetSpent(Exception):
    """The budget named in the message is spent."""


@dataclass
class Tally:
    """Backend calls and seconds; one run's may be shared by the Probers of several
    backends working at once (`add` holds its lock)."""

    probes: int = 0
    seconds: float = 0.0  # in backend calls
    wall: float = 0.0  # closed findings' wall-clock seconds (the run's tally only)
    lock: Any = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, probes: int = 0, seconds: float = 0.0, wall: float = 0.0) -> None:
        with self.lock:
            self.probes += probes
            self.seconds += seconds
            self.wall += wall


class Prober:
    """`probe` with a cache, a budget and a log. `seen`: observations known without a call
    (the run's own records), by case id. `run`: the run's tally, shared with the Probers
    of its other backends (default: this Prober's own)."""

    def __init__(self, probe: Callable[[Case], Observation], budget: Budget,
                 seen: dict[str, Observation] | None = None, run: Tally | None = None):
        self._probe = probe
        self.budget = budget
        self.cache: dict[str, Observation] = dict(seen or {})
        self.run = run if run is not None else Tally()
        self.finding = Tally()
        self.rows: list[dict[str, Any]] = []
        self._t0 = time.monotonic()

    def start_finding(self) -> None:
        """Count and log afresh for the next finding (the run's totals carry on)."""
        self.run.add(wall=self.finding_wall())
        self.finding = Tally()
        self.rows = []
        self._t0 = time.monotonic()

    def finding_wall(self) -> float:
        return time.monotonic() - self._t0

    def left(self) -> bool:
        """Whether one more call fits the budget."""
        b, wall = self.budget, self.finding_wall()
        return (self.finding.probes < b.probes_per_finding and wall < b.seconds_per_finding
                and self.run.probes < b.probes_per_run and self.run.wall + wall < b.seconds_per_run)

    def run_left(self) -> bool:
        """Whether the run's budget allows another finding."""
        b = self.budget
        return self.run.probes < b.probes_per_run and self.run.wall + self.finding_wall() < b.seconds_per_run

    def check(self) -> None:
        """Raise BudgetSpent when the budget is spent."""
        if not self.left():
            b, f, r, wall = self.budget, self.finding, self.run, self.finding_wall()
            raise BudgetSpent(
                f"experiment budget spent: {f.probes} of {b.probes_per_finding} backend calls and "
                f"{wall:.1f} of {b.seconds_per_finding:g} s for this finding, {r.probes} of "
                f"{b.probes_per_run} calls and {r.wall + wall:.1f} of {b.seconds_per_run:g} s for the run")

    def __call__(self, case: Case, move: str) -> Observation:
        obs = self.cache.get(case.id)
        if obs is None:
            self.check()
            t0 = time.perf_counter()
            obs = self._probe(case)
            dt = time.perf_counter() - t0
            self.run.add(1, dt)
            self.finding.add(1, dt)
            self.cache[case.id] = obs
        self.rows.append({"move": move, "case_id": case.id, "status": obs.status, "kind": obs.kind})
        return obs


def seen_from_records(records: list[dict[str, Any]]) -> dict[str, Observation]:
    """The observations a backend's records already hold (pass and diverge only), by case id."""
    out = {}
    for r in records:
        if r.get("status") in ("pass", "diverge") and r.get("case_id"):
            out[r["case_id"]] = Observation(r["status"], r.get("kind"))
    return out


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


def observe(prober: Prober, ev: Evidence, case: Case | None, move: str) -> bool | None:
    """Run `case` (None: nothing) through `prober`, record it in `ev`; whether it diverged."""
    if case is None:
        return None
    obs = prober(case, move)
    ev.add(case, obs.diverges)
    return obs.diverges
