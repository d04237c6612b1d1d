"""`conformance run`: every selected case on every backend, each backend in its own process.

This is the run's loop: start the workers, dispatch each case to every backend, record
every reply, then the findings step and the outputs. Each of its parts lives in a module
of `conformance.run` named after its job (config, selection, preflight, out_dir, memory,
progress, context, divergences, findings_step, outputs, merge), and the processes it
drives in `conformance.process` (worker, backend, referee).

Invariants
- One worker process per backend (`process.worker`, through `process.backend.Backend`), kept
  alive across cases; a case
  is dispatched to every backend at once (a backend whose record of the previous case is
  written already has it and the next ones: `_top_up`, at most AHEAD cases beyond the one
  being judged, and only in the loop over cases, never while the minimiser or a repro
  uses its worker; a worker answers in order, and each case's time limit starts when
  the worker has answered the one before it), and the oracle for it is computed while they
  run, once, shared by all backends, in the referee process (`process.referee`), which
  also records each output (`record.record_reply` + `record.diagnose_into`, called there). Each
  request to the referee has `timeout` seconds; past it, or when the referee dies, the
  case's remaining records are `timeout` / `error` and the referee is restarted. This
  process holds only the backends' outputs, one at a time.
- A case whose judging is estimated (`process.memory.refusal`) to need more than
  `RunConfig.max_memory` is `unsupported` for every backend before anything runs.
- `OUT` is locked (`run.out_dir.OutLock`) for the whole run: a second run into it is a UsageError
  naming the first one's pid. A fresh run removes an earlier run's generated files there.
- Every worker reports its environment fingerprint (conformance.fingerprint) with its
  hello; each record names its worker's, and manifest `when:` conditions match it.
- A named backend on which no selected case ran (all `unsupported`) makes the run exit 2
  after writing its results (`run.outputs.RunOutcome.errors` says why).
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
  (only for the same run parameters); the stream's state lines (fingerprints,
  minimisations, sessions) give a resumed run the original start time, the summed wall
  time and what was already minimised. A run that completes removes the stream once
  results.json is written (`results.drop_stream`): --resume then continues from that
  results.json, which holds the records and the run's parameters (`results.resume_point`).
- A manifest (`--expected`) only explains a verdict (record["known"]); it never changes
  one. Minimising, diagnosis and repro scripts only add to a divergence's record
  (`run.divergences`), and findings only add to the run (`run.findings_step`).
- Ctrl-C or SIGTERM stops the run between two records; everything done so far is still
  written (results.json, junit.xml, reports) and the run's exit code is 130.
"""

from __future__ import annotations

import signal
import sys
import time
from typing import Any, TextIO

from . import expected as expected_mod
from . import fingerprint as fingerprint_mod
from . import results
from .process.backend import Backend, load_reason
from .process.memory import refusal
from .process.referee import Referee
from .protocol import WorkerDied, WorkerTimeout
from .run.config import RunConfig
from .run.context import BackendState, RunContext
from .run.findings_step import findings_step
from .run.out_dir import OutLock, previous_run, remove_paths
from .run.outputs import RunOutcome, finish, utc_now
from .run.preflight import check_out, load_extras, resume_state
from .run.progress import Progress
from .run.selection import select_cases
from .spec import Case
from .text import memory_size, safe_filename
from .usage import LoadError
from .vocabulary import FAILING_STATUSES


#: Cases a backend's worker may be sent beyond the one being judged (`_top_up`): enough to
#: keep both cores busy while one slow backend holds a case, few enough that a crash or
#: a timeout loses little work (the cases queued behind it are sent again). The default
#: run on 2 cores (AMD EPYC, 2026-12-07): 5 min 52 s with one case ahead, 5 min 11 s with
#: 3, 4 min 50 s with 8, every record's status and kind the same.
AHEAD = 8


def execute(cfg: RunConfig, cases: list[Case] | None = None, stream: TextIO | None = None) -> RunOutcome:
    """Run `cfg`; raises UsageError for bad input before any backend starts, and LoadError
    (a UsageError) when a named backend (`cfg.named`) cannot be loaded, before any case runs."""
    entries, baseline = load_extras(cfg)
    if cases is None:
        cases = select_cases(cfg.selector, seed=cfg.seed, budget=cfg.budget, dtypes=cfg.dtypes, shard=cfg.shard)
    check_out(cfg)
    lock = OutLock(cfg.out)
    lock.acquire()
    try:
        return _execute(cfg, cases, stream, entries, baseline)
    finally:
        lock.release()


def _execute(cfg: RunConfig, cases: list[Case], stream: TextIO | None, entries: list,
             baseline: dict[str, Any] | None) -> RunOutcome:
    resumed = resume_state(cfg)
    header_before, previous = resumed if resumed else ({}, None)
    out_stream = stream or sys.stderr
    # An earlier run's results and pages go only once every backend has loaded: a backend
    # named wrongly (LoadError) must not cost them. Its logs go now: the workers write theirs.
    doomed = previous_run(cfg.out, cfg.force) if previous is None else []
    removed = remove_paths([p for p in doomed if p.name == "logs"])
    cfg.out.mkdir(parents=True, exist_ok=True)
    started = header_before.get("started") or utc_now()
    wall_before = sum(float(s.get("wall_s") or 0) for s in header_before.get("sessions", []))
    t_start = time.monotonic()
    startup_s = cases_s = None
    backends = [Backend(spec, cfg.out / "logs" / f"{safe_filename(spec)}.log", cfg.timeout, cfg.repeats)
                for spec in cfg.specs]
    states = {b: BackendState() for b in backends}
    for b in backends:
        b.worker.start()  # all import their frameworks at once
    referee = Referee(cfg.out / "logs" / "referee.log", cfg.timeout, cfg.precision)
    progress = Progress(len(cases), stream, cfg.quiet)
    new_records: list[dict[str, Any]] = []
    fingerprints: dict[str, dict[str, Any]] = dict(header_before.get("fingerprints") or {})
    interrupted = False
    old_term = signal.getsignal(signal.SIGTERM)

    def _term(signum, frame):
        raise KeyboardInterrupt

    old_int = signal.getsignal(signal.SIGINT)
    try:
        signal.signal(signal.SIGTERM, _term)
        # A SIGINT ignored by inheritance (a process started in the background of a
        # non-interactive shell, and everything it starts, ignores it) must still stop a
        # run and keep what is done: Python's own handler raises KeyboardInterrupt.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:  # not the main thread: SIGTERM and SIGINT keep theirs
        old_term = old_int = None
    writer = None
    refused = False
    found = None
    try:
        for b in backends:
            b.finish_start()
            if cfg.named and b.load_error is not None:
                refused = True
                raise LoadError(b.spec, load_reason(b.spec, b.load_error))
        removed += remove_paths([p for p in doomed if p.name != "logs"])
        if removed and not cfg.quiet:
            out_stream.write(f"conformance: removed the previous run's {', '.join(removed)} from {cfg.out}\n")
        startup_s = time.monotonic() - t_start
        names = [b.name for b in backends]
        for b in backends:  # two specs that load the same adapter name would share records
            if names.count(b.name) > 1:
                b.info["name"] = b.spec
        if not cfg.quiet:  # after the start, so that a refused backend leaves one line on stderr
            out_stream.write(f"conformance: {len(cases)} cases x {len(backends)} backends -> {cfg.out} "
                             f"(backends started in {startup_s:.1f} s)\n")
            out_stream.write(_environment_lines(backends, cfg))
            out_stream.flush()
        progress.t0 = time.monotonic()  # the ETA is about cases, not about importing frameworks
        if previous:
            # A backend that could not start last time was recorded under its spec; if it
            # starts now, its records are under its name and the old errors are superseded.
            current = {b.name for b in backends}
            previous = [r for r in previous if r["backend"] in current]
        done = {(r["case_id"], r["backend"]) for r in previous or []}
        for r in previous or []:
            progress.add(r)
        header = {"params": cfg.params(), "started": started, "argv": cfg.argv}
        stream_file = cfg.out / "results.jsonl"
        if previous is None:
            writer = results.JsonlWriter(stream_file, header)
        elif results.stream_path(stream_file) is None:  # a completed run's results.json was the state
            writer = results.JsonlWriter.replay(stream_file, header_before, previous)
        else:
            writer = results.JsonlWriter(stream_file, None)
        ctx = RunContext(cfg, entries, writer, progress, new_records, referee, fingerprints, states)
        for b in backends:
            ctx.note_fingerprint(b)
        runnable = [c for c in cases if any((c.id, b.name) not in done for b in backends)]
        position = {c.id: i for i, c in enumerate(runnable)}
        for case in cases:
            todo = [b for b in backends if (case.id, b.name) not in done]
            if todo:
                _dispatch(ctx, case, todo, runnable[position[case.id] + 1:position[case.id] + 1 + AHEAD], done)
            progress.case_done()
        cases_s = time.monotonic() - progress.t0
        progress.draw(final=True)
        found = findings_step(cfg, backends, (previous or []) + new_records, entries, stream, fingerprints)
    except KeyboardInterrupt:
        interrupted = True
        if not cfg.quiet:
            out_stream.write("\ninterrupted: stopping the workers and writing what is done\n")
    finally:
        for b in backends:  # all at once: each interpreter's teardown takes a moment
            b.worker.request_stop()
        referee.worker.request_stop()
        for b in backends:
            b.worker.stop(grace=0.0 if refused else 0.5 if interrupted else 2.0)
        referee.stop()
        if writer is not None:
            writer.state("session", started=utc_now(), wall_s=time.monotonic() - t_start)
            writer.close()
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
        if old_int is not None:
            signal.signal(signal.SIGINT, old_int)
    timing = {"wall_s": wall_before + time.monotonic() - t_start, "startup_s": startup_s, "cases_s": cases_s,
              "resumed": previous is not None}
    outcome = finish(cfg, cases, backends, (previous or []) + new_records, entries, baseline, started, interrupted,
                     timing, found, fingerprints)
    if writer is not None and not interrupted:
        # results.json (written durably by `finish`) holds every record and the run's
        # parameters now, all --resume needs: a second copy was a tenth of the report
        # folder. An interrupted run keeps its plain stream.
        results.drop_stream(writer.path)
    return outcome


def _environment_lines(backends: list[Backend], cfg: RunConfig) -> str:
    """The console header: the machine once, then each kernel path once, with the backends
    that run it (a framework's variants on the same path share a line)."""
    fps = [b.fingerprint for b in backends if b.fingerprint]
    lines = []
    if fps:
        lines.append(f"  machine: {fingerprint_mod.machine_line(fps[0])}")
    sharing: dict[str, list[str]] = {}
    for b in backends:
        if b.fingerprint:
            sharing.setdefault(fingerprint_mod.path_line(b.fingerprint), []).append(b.name)
    width = max((len(", ".join(names)) for names in sharing.values()), default=0)
    for path, names in sharing.items():
        lines.append(f"  {', '.join(names):<{width}}  {path}")
    if cfg.max_memory:
        lines.append(f"  limits: --timeout {cfg.timeout:g} s per case and backend (and for the oracle), "
                     f"--max-memory {memory_size(cfg.max_memory)} for the oracle and comparison")
    return "".join(line + "\n" for line in lines)


def _top_up(ctx: RunContext, b: Backend, upcoming: list[Case], done: set) -> None:
    """Send `b` the cases of `upcoming` (the next AHEAD runnable ones, in order) it has not
    been sent, so that it computes while the other backends' outputs are judged; the next
    `_dispatch`es take the replies, in order. Stops at the first case `b` is not asked for
    (already recorded, or refused before anything runs): the queue is always a prefix."""
    state = ctx.states[b]
    for case in upcoming:
        if case.id in state.queued:
            continue
        if (case.id, b.name) in done or refusal(case, ctx.cfg.max_memory) is not None or not b.worker.alive():
            return
        b.send_case(case)
        state.queued.append(case.id)


def _dispatch(ctx: RunContext, case: Case, todo: list[Backend], upcoming: list[Case], done: set) -> None:
    """Every backend of `todo` on `case`; each gets the `upcoming` ones as soon as its record is written."""
    why = refusal(case, ctx.cfg.max_memory)
    if why is not None:  # refused before anything runs: judging it could take the machine's memory
        for b in todo:
            _emit(ctx, b.new_record(case, status="unsupported", message=why))
        return
    live, dead = [], []
    for b in todo:
        state = ctx.states[b]
        if state.queued and state.queued[0] == case.id:
            # already sent; its time limit runs from when the worker answered the case before
            live.append((b, state.head_since + ctx.cfg.timeout))
        else:
            if state.queued:  # never expected: its answers would be taken for this case's; start afresh
                b.worker.kill()
                state.queued = []
            if not b.ensure():
                dead.append(b)
                continue
            state.queued = [case.id]
            ctx.note_fingerprint(b)
            b.send_case(case)
            live.append((b, time.monotonic() + ctx.cfg.timeout))
    if live:
        ctx.referee.begin(case)  # the oracle, in its own process, while the backends compute
    for b in dead:
        _emit(ctx, b.unavailable(case))
    for b, deadline in live:
        state = ctx.states[b]
        try:
            reply = b.worker.receive(deadline)
        except (WorkerDied, WorkerTimeout) as exc:
            reply = exc
        state.head_since = time.monotonic()
        state.queued.pop(0)
        rec = b.stamp(ctx.referee.record(case, b.name, b.info, reply), reply)
        _emit(ctx, rec)
        ctx.progress.draw()
        if isinstance(reply, tuple):
            _top_up(ctx, b, upcoming, done)
        else:
            state.queued = []  # the worker died or was killed with them: sent again after its restart


def _emit(ctx: RunContext, rec: dict[str, Any]) -> None:
    if ctx.entries and rec["status"] in FAILING_STATUSES:
        rec["known"] = expected_mod.match(ctx.entries, rec, ctx.facts(rec))
    ctx.writer.record(rec)
    ctx.records.append(rec)
    ctx.progress.add(rec)


