"""`conformance run`: every selected case on every backend, each backend in its own process.

Invariants
- One worker process per backend (conformance.worker), kept alive across cases; a case
  is dispatched to every backend at once, and the oracle for it is computed in this
  process while they run, once, shared by all backends.
- Every (case, backend) pair ends as exactly one record: pass, diverge, unsupported,
  error, crash (the worker died: exit code or signal) or timeout (no answer within
  `timeout` seconds: the worker is killed). After a crash or a timeout the worker is
  restarted for the next case; a backend that cannot start gives `error` records at
  once, never a retry per case.
- A backend the user named (`RunConfig.named`: --backend/--adapter) whose worker cannot
  build the adapter (BackendError, ImportError, SyntaxError ...) is bad input: the run
  stops with `LoadError` (a UsageError) once the workers have reported, before any case
  runs and before results.jsonl is opened; only the worker logs are left. In the default
  run (every available backend) such a backend is a broken installation: `error` records.
- Records are appended to OUT/results.jsonl and flushed as they are decided, so an
  interrupted run keeps them and `resume` skips exactly the pairs already recorded
  (only for the same run parameters).
- A manifest (`--expected`) only explains a verdict (record["known"]); it never changes
  one. Minimising, diagnosis and repro scripts only add to a divergence's record.
- Ctrl-C or SIGTERM stops the run between two records; everything done so far is still
  written (results.json, junit.xml, reports) and the run's exit code is 130.
"""

from __future__ import annotations

import hashlib
import math
import re
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from . import expected as expected_mod
from . import findings as findings_mod
from . import junit, results, tolerance, verdict
from .diagnose import diagnose
from .inputs import make_inputs
from .minimise import minimise
from .oracle import reference
from .report import write_reports
from .spec import Case
from .worker import LoadFailed, Worker, WorkerDied, WorkerTimeout, headline

#: Minimising a divergence: at most this long per divergence and per backend in a run.
MINIMISE_CASE_S = 10.0
MINIMISE_BACKEND_S = 60.0
EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
RESUME_KEYS = ("selector", "seed", "budget", "dtypes", "shard", "backends", "precision")


class UsageError(Exception):
    """Bad usage or bad input: the CLI prints the message on one line and exits 2."""


class LoadError(UsageError):
    """A backend the user named cannot be loaded; `spec` and `reason` let the CLI name the option."""

    def __init__(self, spec: str, reason: str):
        self.spec = spec
        self.reason = reason
        super().__init__(f"{spec}: {reason}")


def load_reason(spec: str, error: dict[str, str]) -> str:
    """Why building the adapter for `spec` failed, from the worker's {type, message}.

    Registry messages start by naming the spec ("backend spec 'x.py:Foo': import failed: ...");
    the caller names it already, so that prefix is dropped. Anything else that was raised
    (an adapter's constructor, version() or device()) keeps its exception type.
    """
    msg = error.get("message") or ""
    if error.get("type") != "BackendError":
        return f"{error.get('type')}: {msg}" if msg else str(error.get("type"))
    for prefix in (f"backend spec {spec!r}: ", f"adapter {spec!r}: ", f"backend {spec!r}: ", f"backend {spec!r} is ",
                   f"backend {spec!r} "):
        if msg.startswith(prefix):
            return msg[len(prefix):]
    return msg


@dataclass
class RunConfig:
    specs: list[str]
    selector: str = "default"
    seed: int = 0
    budget: int | None = None
    dtypes: list[str] | None = None
    out: Path = Path("reports")
    timeout: float = 60.0
    expected: str | None = None
    baseline: str | None = None
    shard: tuple[int, int] | None = None
    resume: bool = False
    report: bool = True
    minimise: bool = True
    minimise_case_s: float = MINIMISE_CASE_S
    minimise_backend_s: float = MINIMISE_BACKEND_S
    strict_expected: bool = False
    quiet: bool = False
    #: Findings: confirm each predicate on new cases for at most this long (None: do not confirm).
    confirm_budget_s: float | None = 4.0
    argv: list[str] = field(default_factory=list)
    #: The user named `specs` (--backend/--adapter): one that cannot be loaded stops the run
    #: (LoadError) instead of giving an error record per case.
    named: bool = False
    #: The precision contract every verdict is judged under (tolerance.PRECISIONS).
    precision: str = tolerance.DEFAULT_PRECISION

    def params(self) -> dict[str, Any]:
        """What must match for --resume to continue a stream."""
        return {"selector": self.selector, "seed": self.seed, "budget": self.budget,
                "dtypes": sorted(self.dtypes) if self.dtypes else None,
                "shard": f"{self.shard[0]}/{self.shard[1]}" if self.shard else None, "backends": list(self.specs),
                "precision": self.precision}


# ---- selection ------------------------------------------------------------------------

def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' with 1 <= I <= N (1-based, as CI matrices count)."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not m or not (1 <= int(m.group(1)) <= int(m.group(2))):
        raise UsageError(f"--shard: expected I/N with 1 <= I <= N (e.g. 2/4), received {text!r}")
    return int(m.group(1)), int(m.group(2))


def shard_of(case_id: str, n: int) -> int:
    """The 1-based shard of a case: a SHA-256 of its id, the same on every machine."""
    return int.from_bytes(hashlib.sha256(case_id.encode()).digest()[:8], "big") % n + 1


def select_cases(selector: str, *, seed: int = 0, budget: int | None = None, dtypes: list[str] | None = None,
                 shard: tuple[int, int] | None = None) -> list[Case]:
    from conformance.cases.sets import select

    try:
        cases = select(selector, seed=seed, budget=budget, dtypes=dtypes)
    except ValueError as exc:  # CaseFileError, CaseError and unknown selectors are ValueErrors
        raise UsageError(f"--cases {selector!r}: {exc}") from None
    if shard is not None:
        cases = [c for c in cases if shard_of(c.id, shard[1]) == shard[0]]
    return cases


# ---- judging --------------------------------------------------------------------------

_safe = verdict.safe


@dataclass
class Oracle:
    inputs: Any  # conformance.inputs.Inputs
    ref: Any  # Reference or None for an invalid case
    seconds: float


def oracle_for(case: Case) -> Oracle:
    t0 = time.perf_counter()
    inputs = make_inputs(case)
    ref = reference(case, *inputs) if case.is_valid else None
    return Oracle(inputs, ref, time.perf_counter() - t0)


def judge(case: Case, backend: str, info: dict[str, Any], reply: Any, oracle: Oracle | None,
          timeout: float, precision: str = tolerance.DEFAULT_PRECISION) -> tuple[dict[str, Any], Any]:
    """(record, output or None) for one worker reply (or the WorkerDied / WorkerTimeout raised).

    A thin caller of `verdict.judge`, which decides the status and kind; only a crash and a
    timeout, which exist only in worker processes, are recorded here.
    """
    rec = results.new_record(case.to_dict(), case.id, backend, backend_version=info.get("version"),
                             device=info.get("device"))
    rec["time"]["oracle_s"] = oracle.seconds if oracle else None
    rec["precision"] = precision
    if isinstance(reply, WorkerDied):
        last = headline(reply.log_tail)
        where = ("inside the adapter's supports(), before the case ran" if getattr(reply, "phase", None) == "supports"
                 else "while running the case")
        rec.update(status="crash", exit=reply.exit, message=f"{reply} {where}" + (f"; log: {last}" if last else ""))
        if reply.log_tail:
            rec["error"] = {"type": reply.exit.get("signal") or f"exit code {reply.exit.get('exitcode')}",
                            "message": str(reply), "traceback": reply.log_tail}
        return rec, None
    if isinstance(reply, WorkerTimeout):
        inside = " (inside the adapter's supports())" if getattr(reply, "phase", None) == "supports" else ""
        rec.update(status="timeout",
                   message=f"no result within {timeout:g} s{inside}; the worker was killed and restarted")
        return rec, None
    v = verdict.judge(case, reply, oracle.ref if oracle else None, oracle.inputs if oracle else None, precision)
    rec.update(v.fields())
    rec["time"]["backend_s"] = v.backend_s
    rec["time"]["compare_s"] = v.compare_s
    return rec, (reply[1] if reply[0] == "output" else None)


def diagnose_into(rec: dict[str, Any], case: Case, y: Any, oracle: Oracle) -> None:
    """Add a diagnosis to a divergence's record (it never changes the status or the kind)."""
    if y is None or not case.is_valid:
        return
    try:
        d = diagnose(case, np.asarray(y), oracle.inputs, rec.get("precision") or tolerance.DEFAULT_PRECISION)
    except Exception as exc:  # a diagnosis failure must not lose the verdict
        rec["notes"].append(f"diagnosis failed: {type(exc).__name__}: {exc}")
        return
    rec["diagnosis"] = _safe(d.to_dict())


# ---- backends -------------------------------------------------------------------------

def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "backend"


class Backend:
    """One backend of the run: its worker, its identity, or why it cannot run."""

    def __init__(self, spec: str, out: Path, timeout: float):
        self.spec = spec
        self.timeout = timeout
        self.worker = Worker(spec, out / "logs" / f"{safe_name(spec)}.log")
        from conformance.adapters.registry import parse_spec

        # options: the parameters of `torch[memory=channels_last]` or of `--adapter-option`
        # (variant names as {name: None}), as the spec gave them.
        self.info: dict[str, Any] = {"name": spec, "version": None, "device": None, "spec": spec, "error": None,
                                     "options": parse_spec(spec)[1] or None}
        self.failed: str | None = None
        self.load_error: dict[str, str] | None = None  # the worker's error when building the adapter raised
        self.restarts = 0
        self.minimise_left = 0.0
        self.minimised: dict[tuple, str] = {}  # (kind, hypothesis) -> the case id minimised for it

    @property
    def name(self) -> str:
        return self.info["name"]

    def finish_start(self) -> None:
        try:
            got = self.worker.await_ready()
        except LoadFailed as exc:  # building the adapter raised
            self.load_error = exc.error
            self.failed = f"could not be loaded: {load_reason(self.spec, exc.error)}"
            self.info["error"] = self.failed
            return
        except RuntimeError as exc:  # the process died or hung while starting
            self.failed = str(exc)
            self.info["error"] = self.failed
            return
        self.info.update(name=got["name"], version=got["version"], device=got["device"])

    def ensure(self) -> bool:
        """A live worker (restarted after a crash or timeout); False once it cannot start."""
        if self.failed:
            return False
        if self.worker.alive():
            return True
        self.restarts += 1
        self.worker.kill()
        self.worker.start()
        try:
            got = self.worker.await_ready()
        except RuntimeError as exc:
            self.failed = f"could not be restarted after a crash or timeout: {exc}"
            return False
        if got["version"] != self.info["version"]:
            self.failed = f"restarted with version {got['version']}, expected {self.info['version']}"
            return False
        return True

    def ask(self, case: Case, timeout: float | None = None) -> Any:
        """One case, start to finish (used by the minimiser): the reply or the exception."""
        if not self.ensure():
            return WorkerDied({"exitcode": None, "signal": None}, self.failed or "")
        self.worker.send(("run", case.to_dict()))
        try:
            return self.worker.receive(time.monotonic() + (self.timeout if timeout is None else timeout))
        except (WorkerDied, WorkerTimeout) as exc:
            return exc

    def repro(self, case: Case, precision: str = tolerance.DEFAULT_PRECISION,
              short_header: str | None = None) -> tuple[str | None, str | None]:
        """(script, problem): the full repro script, or with `short_header` a finding's short one."""
        if not self.ensure():
            return None, None
        self.worker.send(("repro", case.to_dict(), precision) if short_header is None else
                         ("short_repro", case.to_dict(), short_header))
        try:
            _, text, err = self.worker.receive(time.monotonic() + self.timeout)
        except (WorkerDied, WorkerTimeout) as exc:
            return None, f"repro script failed: {exc}"
        return text, (f"repro script failed: {err['type']}: {err['message']}" if err else None)


# ---- progress -------------------------------------------------------------------------

class Progress:
    """One line per backend on stderr: redrawn in place on a TTY, every PLAIN_EVERY_S otherwise."""

    PLAIN_EVERY_S = 15.0

    def __init__(self, total: int, stream: TextIO | None = None, quiet: bool = False):
        self.total = total
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.rows: dict[str, dict[str, int]] = {}
        self.t0 = time.monotonic()
        self.done_cases = 0
        self.drawn = 0
        self.last_plain = self.t0

    def add(self, rec: dict[str, Any]) -> None:
        row = self.rows.setdefault(rec["backend"], {})
        key = "known" if rec.get("known") else rec["status"]
        row[key] = row.get(key, 0) + 1

    def case_done(self, final: bool = False) -> None:
        self.done_cases += 1
        self.draw(final)

    #: No ETA before this many cases, nor before this share of them: the first cases
    #: (warm-up, one-off kernel compilation) say little about the rest.
    ETA_MIN_CASES, ETA_MIN_SHARE = 20, 0.1

    def _eta(self) -> str:
        enough = max(self.ETA_MIN_CASES, math.ceil(self.ETA_MIN_SHARE * self.total))
        if self.done_cases < enough or self.done_cases >= self.total:
            return ""
        left = (time.monotonic() - self.t0) / self.done_cases * (self.total - self.done_cases)
        return f" ETA {_duration(left)}"

    def lines(self) -> list[str]:
        width = max((len(n) for n in self.rows), default=8)
        out = []
        for name, row in self.rows.items():
            n = sum(row.values())
            parts = " ".join(f"{k} {v}" for k, v in sorted(row.items()))
            out.append(f"{name:<{width}}  {n}/{self.total}  {parts}{self._eta()}")
        return out

    def draw(self, final: bool = False) -> None:
        if self.quiet or not self.rows:
            return
        now = time.monotonic()
        if self.tty:
            lines = self.lines()
            up = f"\x1b[{self.drawn}F" if self.drawn else ""
            self.stream.write(up + "".join(f"\x1b[2K{line}\n" for line in lines))
            self.drawn = len(lines)
        elif final or now - self.last_plain >= self.PLAIN_EVERY_S:
            self.last_plain = now
            self.stream.write("".join(f"[{_duration(now - self.t0)}] {line}\n" for line in self.lines()))
        self.stream.flush()


def _duration(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else (f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s")


# ---- the run --------------------------------------------------------------------------

@dataclass
class Outcome:
    run: dict[str, Any]
    exit_code: int
    out: Path
    reports: str | None = None
    warnings: list[str] = field(default_factory=list)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _load_extras(cfg: RunConfig):
    entries, baseline = [], None
    if cfg.expected:
        try:
            entries = expected_mod.load_manifest(cfg.expected)
        except expected_mod.ManifestError as exc:
            raise UsageError(f"--expected: {exc}") from None
    if cfg.baseline:
        try:
            baseline = results.load(cfg.baseline)
        except results.ResultsError as exc:
            raise UsageError(f"--baseline: {exc}") from None
    return entries, baseline


def _resume_state(cfg: RunConfig) -> list[dict[str, Any]] | None:
    """Records of an earlier stream to continue, or None for a fresh run."""
    path = cfg.out / "results.jsonl"
    if not cfg.resume or not path.exists():
        return None
    try:
        header, recs = results.read_jsonl(path)
    except results.ResultsError as exc:
        raise UsageError(f"--resume: {exc}") from None
    before, now = header.get("params", {}), cfg.params()
    diff = [k for k in RESUME_KEYS if before.get(k) != now.get(k)]
    if diff:
        k = diff[0]
        raise UsageError(f"--resume: {path} was written with {k} {before.get(k)!r}, this run has {k} {now.get(k)!r}; "
                         f"rerun with the same parameters or without --resume")
    return recs


def preflight(cfg: RunConfig) -> None:
    """Every check of the run's input files (manifest, baseline, resume stream), before anything starts."""
    _load_extras(cfg)
    _resume_state(cfg)


def execute(cfg: RunConfig, cases: list[Case] | None = None, stream: TextIO | None = None) -> Outcome:
    """Run `cfg`; raises UsageError for bad input before any backend starts, and LoadError
    (a UsageError) when a named backend (`cfg.named`) cannot be loaded, before any case runs."""
    entries, baseline = _load_extras(cfg)
    if cases is None:
        cases = select_cases(cfg.selector, seed=cfg.seed, budget=cfg.budget, dtypes=cfg.dtypes, shard=cfg.shard)
    previous = _resume_state(cfg)
    cfg.out.mkdir(parents=True, exist_ok=True)
    started = _now()
    t_start = time.monotonic()
    startup_s = cases_s = None
    backends = [Backend(spec, cfg.out, cfg.timeout) for spec in cfg.specs]
    if previous is None:
        for b in backends:
            b.worker.log_path.unlink(missing_ok=True)
    for b in backends:
        b.worker.start()  # all import their frameworks at once
    progress = Progress(len(cases), stream, cfg.quiet)
    new_records: list[dict[str, Any]] = []
    interrupted = False
    old_term = signal.getsignal(signal.SIGTERM)

    def _term(signum, frame):
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, _term)
    except ValueError:  # not the main thread: SIGTERM keeps its default
        old_term = None
    writer = None
    refused = False
    found = None
    try:
        for b in backends:
            b.finish_start()
            b.minimise_left = cfg.minimise_backend_s
            if cfg.named and b.load_error is not None:
                refused = True
                raise LoadError(b.spec, load_reason(b.spec, b.load_error))
        startup_s = time.monotonic() - t_start
        if not cfg.quiet:  # after the start, so that a refused backend leaves one line on stderr
            out = stream or sys.stderr
            out.write(f"conformance: {len(cases)} cases x {len(backends)} backends -> {cfg.out} "
                      f"(backends started in {startup_s:.1f} s)\n")
            out.flush()
        progress.t0 = time.monotonic()  # the ETA is about cases, not about importing frameworks
        names = [b.name for b in backends]
        for b in backends:  # two specs that load the same adapter name would share records
            if names.count(b.name) > 1:
                b.info["name"] = b.spec
        if previous:
            # A backend that could not start last time was recorded under its spec; if it
            # starts now, its records are under its name and the old errors are superseded.
            current = {b.name for b in backends}
            previous = [r for r in previous if r["backend"] in current]
        done = {(r["case_id"], r["backend"]) for r in previous or []}
        for r in previous or []:
            progress.add(r)
        header = {"params": cfg.params(), "started": started, "argv": cfg.argv}
        writer = results.JsonlWriter(cfg.out / "results.jsonl", header if previous is None else None)
        ctx = _Context(cfg, entries, writer, progress, new_records)
        for case in cases:
            todo = [b for b in backends if (case.id, b.name) not in done]
            if todo:
                _run_case(ctx, case, todo)
            progress.case_done()
        cases_s = time.monotonic() - progress.t0
        progress.draw(final=True)
        found = _findings(cfg, backends, (previous or []) + new_records, entries, stream)
    except KeyboardInterrupt:
        interrupted = True
        if not cfg.quiet:
            (stream or sys.stderr).write("\ninterrupted: stopping the workers and writing what is done\n")
    finally:
        for b in backends:  # all at once: each interpreter's teardown takes a moment
            b.worker.request_stop()
        for b in backends:
            b.worker.stop(grace=0.0 if refused else 0.5 if interrupted else 2.0)
        if writer is not None:
            writer.close()
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    timing = {"wall_s": time.monotonic() - t_start, "startup_s": startup_s, "cases_s": cases_s}
    return finish(cfg, cases, backends, (previous or []) + new_records, entries, baseline, started, interrupted,
                  timing, found)


def build_findings(records: list[dict[str, Any]], entries: list) -> list[dict[str, Any]]:
    """The findings of `records`; manifest entries that pin a finding by id mark its records known."""
    found = findings_mod.build(records)
    expected_mod.pin_findings(entries, records, found)
    return found


def _findings(cfg: RunConfig, backends: list[Backend], records: list[dict[str, Any]], entries: list,
              stream: TextIO | None) -> list[dict[str, Any]] | None:
    """The run's findings, confirmed and with short repros, while the workers still run."""
    found = build_findings(records, entries)
    if found and not cfg.quiet:
        what = f"confirming (at most {cfg.confirm_budget_s:g} s each) and " if cfg.confirm_budget_s else ""
        (stream or sys.stderr).write(f"findings: {len(found)}; {what}writing their short repros\n")
    findings_mod.enrich(found, {b.name: b for b in backends}, records, out=cfg.out,
                        confirm_budget_s=cfg.confirm_budget_s, precision=cfg.precision)
    return found


@dataclass
class _Context:
    cfg: RunConfig
    entries: list
    writer: results.JsonlWriter
    progress: Progress
    records: list


def _run_case(ctx: _Context, case: Case, todo: list[Backend]) -> None:
    live, dead = [], []
    for b in todo:
        if b.ensure():
            b.worker.send(("run", case.to_dict()))
            live.append((b, time.monotonic() + ctx.cfg.timeout))
        else:
            dead.append(b)
    oracle = oracle_for(case) if live else None  # while the backends compute
    for b in dead:
        rec = results.new_record(case.to_dict(), case.id, b.name, backend_version=b.info["version"],
                                 device=b.info["device"], status="error", message=b.failed,
                                 error={"type": "BackendError", "message": b.failed, "traceback": ""})
        _emit(ctx, rec)
    for b, deadline in live:
        try:
            reply = b.worker.receive(deadline)
        except (WorkerDied, WorkerTimeout) as exc:
            reply = exc
        rec, y = judge(case, b.name, b.info, reply, oracle, ctx.cfg.timeout, ctx.cfg.precision)
        if rec["status"] == "diverge":
            _enrich(ctx, case, b, rec, y, oracle)
        if rec["status"] in ("crash", "timeout"):
            rec["notes"].append("the worker is restarted for the next case")
        _emit(ctx, rec)


def _emit(ctx: _Context, rec: dict[str, Any]) -> None:
    if ctx.entries and rec["status"] in results.FAILING:
        rec["known"] = expected_mod.match(ctx.entries, rec)
    ctx.writer.record(rec)
    ctx.records.append(rec)
    ctx.progress.add(rec)


def _enrich(ctx: _Context, case: Case, b: Backend, rec: dict[str, Any], y: Any, oracle: Oracle) -> None:
    """Diagnosis, repro script and (for unexplained divergences) a minimised case."""
    diagnose_into(rec, case, y, oracle)
    text, err = b.repro(case, ctx.cfg.precision)
    if err:
        rec["notes"].append(err)
    if text:
        rel = Path("repro") / safe_name(b.name) / f"{case.id}.py"
        path = ctx.cfg.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        rec["repro"] = rel.as_posix()
    known = ctx.entries and expected_mod.match(ctx.entries, rec)
    if not ctx.cfg.minimise or known:
        return
    # One minimisation per backend, kind and diagnosis: the same bug seen on 25 cases
    # shrinks to the same small case 25 times, and the budget is better spent elsewhere.
    key = (rec["kind"], (rec["diagnosis"] or {}).get("hypothesis"))
    if key in b.minimised:
        rec["notes"].append(f"not minimised: {b.minimised[key]} has the same kind and diagnosis on this backend")
    elif b.minimise_left > 0:
        _minimise_into(rec, case, b, min(ctx.cfg.minimise_case_s, b.minimise_left))
        b.minimised[key] = case.id
    else:
        rec["notes"].append("not minimised: this backend's minimising budget is spent")


def _minimise_into(rec: dict[str, Any], case: Case, b: Backend, limit: float) -> None:
    kind, precision = rec["kind"], rec.get("precision") or tolerance.DEFAULT_PRECISION
    t0 = time.monotonic()

    def diverges(c: Case) -> bool:
        # A candidate that hangs must not cost the whole per-case timeout past the budget.
        left = max(limit - (time.monotonic() - t0), 1.0)
        rec2, _ = judge(c, b.name, b.info, b.ask(c, min(b.timeout, left)), oracle_for(c), b.timeout, precision)
        return rec2["status"] == "diverge" and rec2["kind"] == kind

    try:
        smaller = minimise(case, diverges, time_limit=limit)
    except Exception as exc:
        rec["notes"].append(f"minimising failed: {type(exc).__name__}: {exc}")
        smaller = None
    b.minimise_left -= time.monotonic() - t0
    if smaller is not None and smaller.id != case.id:
        rec["minimised"] = smaller.to_dict()


def finish(cfg: RunConfig, cases: list[Case], backends: list[Backend], records: list[dict[str, Any]],
           entries: list, baseline: dict[str, Any] | None, started: str, interrupted: bool,
           timing: dict[str, Any] | None = None, found: list[dict[str, Any]] | None = None) -> Outcome:
    """Assemble results.json, junit.xml and the reports from the records; decide the exit code."""
    order = {c.id: i for i, c in enumerate(cases)}
    border = {b.name: i for i, b in enumerate(backends)}
    records = sorted(records, key=lambda r: (order.get(r["case_id"], len(order)), border.get(r["backend"], len(border))))
    run = {
        "schema_version": results.SCHEMA_VERSION, "tool": results.tool(), "environment": results.environment(),
        "run": {"started": started, "finished": _now(), "selector": cfg.selector, "seed": cfg.seed,
                "budget": cfg.budget, "dtypes": cfg.dtypes,
                "shard": f"{cfg.shard[0]}/{cfg.shard[1]}" if cfg.shard else None, "argv": cfg.argv,
                "timeout_s": cfg.timeout, "cases": len(cases), "interrupted": interrupted,
                "precision": cfg.precision, **(timing or {})},
        "backends": {b.name: dict(b.info) for b in backends},
        "records": records,
        "precision_profile": verdict.precision_profile(records),
    }
    if found is not None:
        from .findings import section

        run["findings"] = section(found, confirm_enabled=cfg.confirm_budget_s is not None,
                                  budget_s=cfg.confirm_budget_s)
    for rec in records:  # resumed records of a backend that failed to start this time
        run["backends"].setdefault(rec["backend"], {"name": rec["backend"], "version": rec["backend_version"],
                                                    "device": rec["device"], "spec": None, "error": None})
    return write_outputs(cfg.out, run, entries, baseline, report=cfg.report,
                         strict_expected=cfg.strict_expected, interrupted=interrupted, expected_path=cfg.expected,
                         baseline_path=cfg.baseline)


def write_outputs(out: Path, run: dict[str, Any], entries: list, baseline: dict[str, Any] | None, *,
                  report: bool, strict_expected: bool = False, interrupted: bool = False,
                  expected_path: str | None = None, baseline_path: str | None = None) -> Outcome:
    """results.json, junit.xml and (optionally) the HTML reports for `run`; the Outcome with its exit code."""
    records = run["records"]
    if "findings" not in run:  # merged or re-judged runs: characterised, not confirmed
        run["findings"] = findings_mod.section(build_findings(records, entries), confirm_enabled=False, budget_s=None)
    if entries:
        run["expected"] = {"path": str(expected_path), **expected_mod.audit(entries, records)}
    if baseline is not None:
        run["baseline"] = {"path": str(baseline_path), **expected_mod.baseline_diff(baseline, records)}
        run["baseline"]["findings"] = findings_mod.baseline_diff(baseline, run["findings"]["items"],
                                                                 {r["backend"] for r in records})
    out.mkdir(parents=True, exist_ok=True)
    warnings: list[str] = []
    reports = None
    if report:
        try:
            write_reports(run, out)
            reports = str(out / "index.html")
        except Exception as exc:  # the verdicts are already safe on disk; say what broke
            warnings.append(f"HTML reports failed: {type(exc).__name__}: {exc}")
    results.write(out / "results.json", run)
    junit.write(out / "junit.xml", run)
    code = exit_code(run, strict_expected)
    return Outcome(run, EXIT_INTERRUPTED if interrupted else code, out, reports, warnings)


def exit_code(run: dict[str, Any], strict_expected: bool = False) -> int:
    """1 for any unexpected diverge/error/crash/timeout (or, strict, a fixed manifest entry), else 0."""
    if any(results.is_unexpected(r) for r in run["records"]):
        return EXIT_FAIL
    if strict_expected and (run.get("expected") or {}).get("fixed"):
        return EXIT_FAIL
    return EXIT_OK


def merge(paths: list[str]) -> tuple[dict[str, Any], list[tuple[Path, str]]]:
    """One run from shard results, and the repro scripts to copy ((shard dir, relative path));
    UsageError on mixed schemas or conflicting verdicts."""
    runs = []
    for p in paths:
        try:
            runs.append((p, results.load(p)))
        except results.ResultsError as exc:
            raise UsageError(f"merge: {exc}") from None
    first = runs[0][1]
    merged = {k: v for k, v in first.items() if k not in ("records", "expected", "baseline", "findings")}
    merged["run"] = dict(first["run"], shard=None, merged_from=[str(p) for p, _ in runs],
                         started=min(r["run"]["started"] for _, r in runs),
                         finished=max(r["run"]["finished"] for _, r in runs),
                         interrupted=any(r["run"].get("interrupted") for _, r in runs))
    merged["backends"] = {}
    seen: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
    records: list[dict[str, Any]] = []
    copies: list[tuple[Path, str]] = []
    for path, run in runs:
        for name, info in run["backends"].items():
            other = merged["backends"].setdefault(name, info)
            if other.get("version") != info.get("version") and info.get("version") is not None:
                if other.get("version") is None:
                    merged["backends"][name] = info
                else:
                    raise UsageError(f"merge: backend {name!r} has version {other.get('version')} in one file and "
                                     f"{info.get('version')} in {path}; expected shards of one environment")
        for rec in run["records"]:
            pair = (rec["case_id"], rec["backend"])
            if pair in seen:
                p0, r0 = seen[pair]
                if (r0["status"], r0["kind"]) != (rec["status"], rec["kind"]):
                    raise UsageError(f"merge: case {pair[0]} on {pair[1]} is {r0['status']}"
                                     f"{'/' + r0['kind'] if r0['kind'] else ''} in {p0} but {rec['status']}"
                                     f"{'/' + rec['kind'] if rec['kind'] else ''} in {path}; expected one verdict per pair")
                continue
            seen[pair] = (path, rec)
            records.append(rec)
            if rec.get("repro"):
                copies.append((Path(path).parent, rec["repro"]))
    merged["records"] = records
    merged["precision_profile"] = verdict.precision_profile(records)
    return merged, copies
