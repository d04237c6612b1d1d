"""`conformance run`: every selected case on every backend, each backend in its own process.

Invariants
- One worker process per backend (conformance.worker), kept alive across cases; a case
  is dispatched to every backend at once (a backend whose record of the previous case is
  written already has it: `_send_ahead`, one case ahead at most, never while the
  minimiser or a repro uses its worker), and the oracle for it is computed while they
  run, once, shared by all backends, in the referee process (conformance.referee), which
  also judges each output (`record.record_reply` + `record.diagnose_into`, called there). Each
  request to the referee has `timeout` seconds; past it, or when the referee dies, the
  case's remaining records are `timeout` / `error` and the referee is restarted. This
  process holds only the backends' outputs, one at a time.
- A case whose judging is estimated (`memory_estimate`) to need more than
  `RunConfig.max_memory` is `unsupported` for every backend before anything runs.
- `OUT` is locked (OutLock) for the whole run: a second run into it is a UsageError
  naming the first one's pid. A fresh run removes an earlier run's generated files there.
- Every worker reports its environment fingerprint (conformance.fingerprint) with its
  hello; each record names its worker's, and manifest `when:` conditions match it.
- A named backend on which no selected case ran (all `unsupported`) makes the run exit 2
  after writing its results (Outcome.errors says why).
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
  time and what was already minimised.
- A manifest (`--expected`) only explains a verdict (record["known"]); it never changes
  one. Minimising, diagnosis and repro scripts only add to a divergence's record.
- Ctrl-C or SIGTERM stops the run between two records; everything done so far is still
  written (results.json, junit.xml, reports) and the run's exit code is 130.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
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
from .fingerprint import fingerprint_id
from . import fingerprint as fingerprint_mod
from .minimise import minimise
from .record import record_reply
from .report import write_reports
from .run.findings_step import build_findings, findings_step
from .spec import Case
from .text import safe_filename
from .vocabulary import FAILING_STATUSES
from .worker import LoadFailed, Worker, WorkerDied, WorkerTimeout

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
    #: Cases whose oracle and comparison are estimated to need more bytes are `unsupported`
    #: (None: no limit). The CLI's default is a fraction of the available memory.
    max_memory: int | None = None
    #: Write into a non-empty --out that does not hold an earlier run.
    force: bool = False

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


# ---- backends -------------------------------------------------------------------------

class Backend:
    """One backend of the run: its worker, its identity, or why it cannot run."""

    def __init__(self, spec: str, out: Path, timeout: float):
        self.spec = spec
        self.timeout = timeout
        self.worker = Worker(spec, out / "logs" / f"{safe_filename(spec)}.log")
        from conformance.adapters.registry import parse_spec

        # options: the parameters of `torch[memory=channels_last]` or of `--adapter-option`
        # (variant names as {name: None}), as the spec gave them.
        self.info: dict[str, Any] = {"name": spec, "version": None, "device": None, "spec": spec, "error": None,
                                     "options": parse_spec(spec)[1] or None, "fingerprint": None}
        self.fingerprint: dict[str, Any] | None = None  # the worker's environment (conformance.fingerprint)
        self.failed: str | None = None
        self.load_error: dict[str, str] | None = None  # the worker's error when building the adapter raised
        self.restarts = 0
        self.minimise_left = 0.0
        self.minimised: dict[tuple, str] = {}  # (kind, hypothesis) -> the case id minimised for it
        self.ahead: tuple[str, float] | None = None  # (case id, deadline) sent before its turn (`_send_ahead`)

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
        self._take_fingerprint(got)

    def _take_fingerprint(self, got: dict[str, Any]) -> None:
        fp = got.get("fingerprint")
        if isinstance(fp, dict):
            self.fingerprint = fp
            self.info["fingerprint"] = fingerprint_id(fp)

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
        self._take_fingerprint(got)  # the same, unless the machine's state changed under the run
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
    #: Why the run exits 2 after writing its results (a named backend on which no case ran).
    errors: list[str] = field(default_factory=list)


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


def _resume_state(cfg: RunConfig) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """(header, records) of an earlier stream to continue, or None for a fresh run."""
    path = cfg.out / "results.jsonl"
    if not cfg.resume or not path.exists():
        return None
    try:
        header, recs = results.read_jsonl(path)
    except results.ResultsError as exc:
        raise UsageError(f"--resume: {exc}") from None
    for n, rec in enumerate(recs):
        bad = [k for k in ("case_id", "backend", "status") if not isinstance(rec.get(k), str)]
        if bad:
            raise UsageError(f"--resume: {path}: record {n + 1}: expected a string {bad[0]!r}, received "
                             f"{rec.get(bad[0])!r}; rerun without --resume")
    before, now = header.get("params", {}), cfg.params()
    if not isinstance(before, dict):
        raise UsageError(f"--resume: {path}: expected a header with run parameters, received {before!r}")
    diff = [k for k in RESUME_KEYS if before.get(k) != now.get(k)]
    if diff:
        k = diff[0]
        raise UsageError(f"--resume: {path} was written with {k} {before.get(k)!r}, this run has {k} {now.get(k)!r}; "
                         f"rerun with the same parameters or without --resume")
    return header, recs


def _check_out(cfg: RunConfig) -> None:
    if cfg.out.exists() and not cfg.out.is_dir():
        raise UsageError(f"--out {cfg.out}: expected a directory (or a path to create), received an existing "
                         f"{'file' if cfg.out.is_file() else 'non-directory'}")


def preflight(cfg: RunConfig) -> None:
    """Every check of the run's input files (manifest, baseline, resume stream, --out), before anything starts."""
    _check_out(cfg)
    _load_extras(cfg)
    _resume_state(cfg)


# ---- memory ---------------------------------------------------------------------------

#: Bytes the referee holds per input and per output element, oracle, comparison and
#: diagnosis of a divergence included: measured at most 46 and 165 (fitted over 4 Mi-element
#: float16/32/64 conv2d and depthwise cases, in-heavy and out-heavy; a passing output needs
#: under a third of it, being judged block by block); rounded up. tests/test_run_safety.py
#: checks the estimate against the measured peak.
ORACLE_BYTES_PER_INPUT = 64
ORACLE_BYTES_PER_OUTPUT = 192
#: Fixed part: the im2col chunks (oracle._CHUNK_BYTES each) and the interpreter.
ORACLE_FIXED_BYTES = 256 << 20
#: --max-memory default: this fraction of the memory available when the run starts.
MAX_MEMORY_FRACTION = 0.5


def memory_estimate(case: Case) -> int:
    """Bytes the referee needs for `case` (inputs, reference, error arrays); an upper estimate."""
    inputs = case.batch * case.height * case.width * case.in_channels
    outputs = 0
    try:
        out = case.output_shape
        outputs = int(np.prod(out)) if all(d > 0 for d in out) else 0
    except Exception:  # an invalid case has no output to judge: its input is all there is
        pass
    return ORACLE_BYTES_PER_INPUT * inputs + ORACLE_BYTES_PER_OUTPUT * outputs + ORACLE_FIXED_BYTES


def available_memory() -> int | None:
    """MemAvailable of /proc/meminfo (Linux), else None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def default_max_memory() -> int | None:
    avail = available_memory()
    return int(avail * MAX_MEMORY_FRACTION) if avail else None


def parse_memory(text: str) -> int:
    """'8G', '512M', '1.5GiB', '123456789' (bytes) -> bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text or "", re.IGNORECASE)
    if not m:
        raise UsageError(f"--max-memory: expected a size like 8G, 512M or a number of bytes, received {text!r}")
    value = float(m.group(1)) * (1 << (10 * " KMGT".index(m.group(2).upper() or " ")))
    if value <= 0:
        raise UsageError(f"--max-memory: expected a positive size, received {text!r}")
    return int(value)


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB"


# ---- the referee: oracle and comparison in their own process ----------------------------

class Referee:
    """The run's handle on conformance.referee: the oracle and comparison of a case, bounded
    by a deadline and restartable, so that neither a slow nor an out-of-memory case costs the run."""

    def __init__(self, out: Path, timeout: float, precision: str = tolerance.DEFAULT_PRECISION):
        self.timeout = timeout
        self.precision = precision
        self.worker = Worker("referee", out / "logs" / "referee.log", module="conformance.referee")
        self.failed_case: tuple[str, str, str] | None = None  # (case id, status, message) once it failed
        self.restarts = 0

    def _ensure(self) -> str | None:
        """None when the helper is running, else why it cannot start."""
        if self.worker.alive():
            return None
        if self.worker.proc is not None:
            self.restarts += 1
        self.worker.kill()
        self.worker.start()
        try:
            self.worker.await_ready(STARTUP_S)
        except RuntimeError as exc:
            return str(exc)
        return None

    def begin(self, case: Case) -> None:
        """Start the oracle of `case` now, while the backends compute it."""
        self.failed_case = None
        if self._ensure() is None:
            self.worker.send(("oracle", case.to_dict()))

    def record(self, case: Case, backend: str, info: dict[str, Any], reply: Any, diagnose: bool = True) -> dict[str, Any]:
        """The record for one reply: record_reply (+ diagnose_into) in the helper, or a
        timeout/error record when the helper passes --timeout or dies."""
        if not (isinstance(reply, tuple) and reply and reply[0] == "output"):
            return record_reply(case, backend, info, reply, None, self.timeout, self.precision)[0]  # nothing to compare
        if self.failed_case and self.failed_case[0] == case.id:
            return self._failed(case, backend, info, *self.failed_case[1:])
        why = self._ensure()
        if why is not None:
            return self._failed(case, backend, info, "error", f"the oracle process could not start: {why}")
        self.worker.send(("judge", case.to_dict(), backend, info, reply, self.timeout, diagnose, self.precision))
        try:
            msg = self.worker.receive(time.monotonic() + self.timeout)
        except WorkerTimeout:
            self.failed_case = (case.id, "timeout", f"the oracle and comparison took longer than --timeout "
                                                    f"{self.timeout:g} s; their process was killed and restarted")
            return self._failed(case, backend, info, *self.failed_case[1:])
        except WorkerDied as exc:
            hint = " (killed: out of memory? see --max-memory)" if exc.exit.get("signal") == "SIGKILL" else ""
            self.failed_case = (case.id, "error", f"the oracle and comparison process died with "
                                                  f"{exc.exit.get('signal') or 'exit code ' + str(exc.exit.get('exitcode'))}"
                                                  f"{hint}; it is restarted for the next case")
            return self._failed(case, backend, info, *self.failed_case[1:])
        if msg[0] == "failed":
            err = msg[1]
            rec = self._failed(case, backend, info, "error", f"judging the output failed: {err['type']}: {err['message']}")
            rec["error"] = err
            return rec
        return msg[1]

    def _failed(self, case: Case, backend: str, info: dict[str, Any], status: str, message: str) -> dict[str, Any]:
        return results.new_record(case.to_dict(), case.id, backend, backend_version=info.get("version"),
                                  device=info.get("device"), status=status, message=message,
                                  error={"type": "OracleError", "message": message, "traceback": ""}
                                  if status == "error" else None)

    def stop(self) -> None:
        self.worker.stop(grace=0.5)


#: How long the referee may take to start (imports NumPy and the engine).
STARTUP_S = 60.0


# ---- the lock on --out --------------------------------------------------------------------

class OutLock:
    """An exclusive lock on OUT/.conformance.lock for the whole run; the file holds the pid."""

    def __init__(self, out: Path):
        self.path = out / ".conformance.lock"
        self.fh = None

    def acquire(self) -> None:
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock (documented)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            pid = fh.read().strip() or "unknown"
            fh.close()
            raise UsageError(f"--out {self.path.parent}: another conformance run (pid {pid}) is writing there; "
                             f"wait for it to finish or choose another --out") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self.fh = fh

    def release(self) -> None:
        if self.fh is not None:
            self.fh.close()  # closing drops the lock; the file stays (removing it would race)
            self.fh = None


#: Files that keep an empty directory in version control: a directory holding only these is
#: empty to `--out` (the checkout's own reports/ has a .gitkeep), and they are left alone.
PLACEHOLDERS = (".gitkeep", ".keep", ".gitignore")


def _previous_run(out: Path, force: bool) -> list[Path]:
    """What an earlier run generated in `out` (pages, repro scripts, junit, results, logs),
    which the new run replaces, so that its index links everything there is and nothing
    else. Only a directory that holds a results.json/jsonl is treated as a run's; a
    non-empty directory that does not look like one is refused without `force`."""
    if not out.is_dir():
        return []
    entries = [p for p in out.iterdir() if p.name != ".conformance.lock" and p.name not in PLACEHOLDERS]
    if not entries:
        return []

    def generated(p: Path) -> bool:
        return (p.suffix == ".html" or p.name in ("results.json", "results.jsonl", "junit.xml", "results.json.tmp")
                or (p.is_dir() and p.name in ("repro", "logs")))

    looks_like_run = ((out / "results.json").exists() or (out / "results.jsonl").exists()
                      or all(generated(p) for p in entries))
    if not looks_like_run and not force:
        raise UsageError(f"--out {out}: expected an empty directory or an earlier run's, received a directory with "
                         f"{len(entries)} other entries (e.g. {sorted(p.name for p in entries if not generated(p))[0]!r}); pass --force "
                         f"to write there anyway")
    return [p for p in sorted(entries) if generated(p)]


def _remove(paths: list[Path]) -> list[str]:
    """Remove files and directories; their names (directories with a slash)."""
    removed = []
    for p in paths:
        if not p.exists():
            continue
        if p.is_dir():
            shutil.rmtree(p)
            removed.append(p.name + "/")
        else:
            p.unlink()
            removed.append(p.name)
    return removed


def execute(cfg: RunConfig, cases: list[Case] | None = None, stream: TextIO | None = None) -> Outcome:
    """Run `cfg`; raises UsageError for bad input before any backend starts, and LoadError
    (a UsageError) when a named backend (`cfg.named`) cannot be loaded, before any case runs."""
    entries, baseline = _load_extras(cfg)
    if cases is None:
        cases = select_cases(cfg.selector, seed=cfg.seed, budget=cfg.budget, dtypes=cfg.dtypes, shard=cfg.shard)
    _check_out(cfg)
    lock = OutLock(cfg.out)
    lock.acquire()
    try:
        return _execute(cfg, cases, stream, entries, baseline)
    finally:
        lock.release()


def _execute(cfg: RunConfig, cases: list[Case], stream: TextIO | None, entries: list,
             baseline: dict[str, Any] | None) -> Outcome:
    resumed = _resume_state(cfg)
    header_before, previous = resumed if resumed else ({}, None)
    out_stream = stream or sys.stderr
    # An earlier run's results and pages go only once every backend has loaded: a backend
    # named wrongly (LoadError) must not cost them. Its logs go now: the workers write theirs.
    doomed = _previous_run(cfg.out, cfg.force) if previous is None else []
    removed = _remove([p for p in doomed if p.name == "logs"])
    cfg.out.mkdir(parents=True, exist_ok=True)
    started = header_before.get("started") or _now()
    wall_before = sum(float(s.get("wall_s") or 0) for s in header_before.get("sessions", []))
    t_start = time.monotonic()
    startup_s = cases_s = None
    backends = [Backend(spec, cfg.out, cfg.timeout) for spec in cfg.specs]
    for b in backends:
        b.worker.start()  # all import their frameworks at once
    referee = Referee(cfg.out, cfg.timeout, cfg.precision)
    progress = Progress(len(cases), stream, cfg.quiet)
    new_records: list[dict[str, Any]] = []
    fingerprints: dict[str, dict[str, Any]] = dict(header_before.get("fingerprints") or {})
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
        removed += _remove([p for p in doomed if p.name != "logs"])
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
            for b in backends:  # what the interrupted part minimised is not minimised again
                for m in header_before.get("minimised", []):
                    if m.get("backend") == b.name and isinstance(m.get("key"), list) and len(m["key"]) == 2:
                        b.minimised[tuple(m["key"])] = str(m.get("case_id"))
                        b.minimise_left -= float(m.get("seconds") or 0)
        done = {(r["case_id"], r["backend"]) for r in previous or []}
        for r in previous or []:
            progress.add(r)
        header = {"params": cfg.params(), "started": started, "argv": cfg.argv}
        writer = results.JsonlWriter(cfg.out / "results.jsonl", header if previous is None else None)
        ctx = _Context(cfg, entries, writer, progress, new_records, referee, fingerprints)
        for b in backends:
            ctx.note_fingerprint(b)
        runnable = [c for c in cases if any((c.id, b.name) not in done for b in backends)]
        following = dict(zip((c.id for c in runnable), runnable[1:]))  # what `_send_ahead` may send
        for case in cases:
            todo = [b for b in backends if (case.id, b.name) not in done]
            if todo:
                _run_case(ctx, case, todo, following.get(case.id), done)
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
            writer.state("session", started=_now(), wall_s=time.monotonic() - t_start)
            writer.close()
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    timing = {"wall_s": wall_before + time.monotonic() - t_start, "startup_s": startup_s, "cases_s": cases_s,
              "resumed": previous is not None}
    return finish(cfg, cases, backends, (previous or []) + new_records, entries, baseline, started, interrupted,
                  timing, found, fingerprints)


def _environment_lines(backends: list[Backend], cfg: RunConfig) -> str:
    """The console header: the machine once, then each backend's kernel path."""
    fps = [b.fingerprint for b in backends if b.fingerprint]
    lines = []
    if fps:
        lines.append(f"  machine: {fingerprint_mod.machine_line(fps[0])}")
    width = max((len(b.name) for b in backends), default=0)
    for b in backends:
        if b.fingerprint:
            lines.append(f"  {b.name:<{width}}  {fingerprint_mod.path_line(b.fingerprint)}")
    if cfg.max_memory:
        lines.append(f"  limits: --timeout {cfg.timeout:g} s per case and backend (and for the oracle), "
                     f"--max-memory {_gib(cfg.max_memory)} for the oracle and comparison")
    return "".join(line + "\n" for line in lines)


@dataclass
class _Context:
    cfg: RunConfig
    entries: list
    writer: results.JsonlWriter
    progress: Progress
    records: list
    referee: Referee
    fingerprints: dict[str, dict[str, Any]]

    def note_fingerprint(self, b: Backend) -> None:
        """Keep the backend's current fingerprint (once per id, in results.jsonl too, for --resume)."""
        fid = b.info.get("fingerprint")
        if fid and fid not in self.fingerprints and b.fingerprint:
            self.fingerprints[fid] = b.fingerprint
            self.writer.state("fingerprint", id=fid, fingerprint=b.fingerprint)

    def facts(self, rec: dict[str, Any]) -> dict[str, Any]:
        return fingerprint_mod.facts(self.fingerprints.get(rec.get("fingerprint") or ""))


def _over_memory(ctx: _Context, case: Case) -> int | None:
    """The referee's estimated bytes for `case` where they pass --max-memory, else None."""
    needs = memory_estimate(case)
    return needs if ctx.cfg.max_memory and needs > ctx.cfg.max_memory else None


def _send_ahead(ctx: _Context, b: Backend, case: Case, done: set) -> None:
    """Send `b` its next case now, so that it computes while the other backends' outputs of
    this case are judged (one case ahead at most; the next `_run_case` takes the reply)."""
    if (case.id, b.name) in done or _over_memory(ctx, case) is not None or not b.ensure():
        return
    ctx.note_fingerprint(b)
    b.worker.send(("run", case.to_dict()))
    b.ahead = (case.id, time.monotonic() + ctx.cfg.timeout)


def _run_case(ctx: _Context, case: Case, todo: list[Backend], nxt: Case | None, done: set) -> None:
    """Every backend of `todo` on `case`; each gets `nxt` as soon as its record is written."""
    needs = _over_memory(ctx, case)
    if needs is not None:
        # Refused before anything runs: judging it could take the machine's memory.
        msg = (f"needs an estimated {_gib(needs)} to judge (oracle and comparison), over --max-memory "
               f"{_gib(ctx.cfg.max_memory)}; raise --max-memory to run it")
        for b in todo:
            _emit(ctx, results.new_record(case.to_dict(), case.id, b.name, backend_version=b.info["version"],
                                          device=b.info["device"], status="unsupported", message=msg,
                                          fingerprint=b.info.get("fingerprint")))
        return
    live, dead = [], []
    for b in todo:
        if b.ahead is not None and b.ahead[0] == case.id:
            live.append((b, b.ahead[1]))  # already sent, with its deadline from then
        elif b.ensure():
            ctx.note_fingerprint(b)
            b.worker.send(("run", case.to_dict()))
            live.append((b, time.monotonic() + ctx.cfg.timeout))
        else:
            dead.append(b)
        b.ahead = None
    if live:
        ctx.referee.begin(case)  # the oracle, in its own process, while the backends compute
    for b in dead:
        rec = results.new_record(case.to_dict(), case.id, b.name, backend_version=b.info["version"],
                                 device=b.info["device"], status="error", message=b.failed,
                                 error={"type": "BackendError", "message": b.failed, "traceback": ""},
                                 fingerprint=b.info.get("fingerprint"))
        _emit(ctx, rec)
    for b, deadline in live:
        try:
            reply = b.worker.receive(deadline)
        except (WorkerDied, WorkerTimeout) as exc:
            reply = exc
        rec = ctx.referee.record(case, b.name, b.info, reply)
        rec["fingerprint"] = b.info.get("fingerprint")
        if rec["status"] == "diverge":
            _enrich(ctx, case, b, rec)
        if rec["status"] in ("crash", "timeout") and not isinstance(reply, tuple):
            rec["notes"].append("the worker is restarted for the next case")
        _emit(ctx, rec)
        ctx.progress.draw()
        if isinstance(reply, tuple) and nxt is not None:
            _send_ahead(ctx, b, nxt, done)


def _emit(ctx: _Context, rec: dict[str, Any]) -> None:
    if ctx.entries and rec["status"] in FAILING_STATUSES:
        rec["known"] = expected_mod.match(ctx.entries, rec, ctx.facts(rec))
    ctx.writer.record(rec)
    ctx.records.append(rec)
    ctx.progress.add(rec)


def _enrich(ctx: _Context, case: Case, b: Backend, rec: dict[str, Any]) -> None:
    """Repro script and (for unexplained divergences) a minimised case; the diagnosis came with the verdict."""
    text, err = b.repro(case, ctx.cfg.precision)
    if err:
        rec["notes"].append(err)
    if text:
        rel = Path("repro") / safe_filename(b.name) / f"{case.id}.py"
        path = ctx.cfg.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        rec["repro"] = rel.as_posix()
    known = ctx.entries and expected_mod.match(ctx.entries, rec, ctx.facts(rec))
    if not ctx.cfg.minimise or known:
        return
    # One minimisation per backend, kind and diagnosis: the same bug seen on 25 cases
    # shrinks to the same small case 25 times, and the budget is better spent elsewhere.
    key = (rec["kind"], (rec["diagnosis"] or {}).get("hypothesis"))
    if key in b.minimised:
        rec["notes"].append(f"not minimised: {b.minimised[key]} has the same kind and diagnosis on this backend")
    elif b.minimise_left > 0:
        seconds = _minimise_into(ctx, rec, case, b, min(ctx.cfg.minimise_case_s, b.minimise_left))
        b.minimised[key] = case.id
        ctx.writer.state("minimised", backend=b.name, key=list(key), case_id=case.id, seconds=seconds)
    else:
        rec["notes"].append("not minimised: this backend's minimising budget is spent")


def _minimise_into(ctx: _Context, rec: dict[str, Any], case: Case, b: Backend, limit: float) -> float:
    """Minimise `rec`'s divergence into rec["minimised"]; the seconds it took."""
    kind = rec["kind"]
    t0 = time.monotonic()

    def diverges(c: Case) -> bool:
        # A candidate that hangs must not cost the whole per-case timeout past the budget.
        left = max(limit - (time.monotonic() - t0), 1.0)
        if ctx.cfg.max_memory and memory_estimate(c) > ctx.cfg.max_memory:
            return False
        reply = b.ask(c, min(b.timeout, left))
        if isinstance(reply, tuple) and reply and reply[0] == "output":
            ctx.referee.begin(c)  # only outputs need the oracle
        rec2 = ctx.referee.record(c, b.name, b.info, reply, diagnose=False)
        return rec2["status"] == "diverge" and rec2["kind"] == kind

    try:
        smaller = minimise(case, diverges, time_limit=limit)
    except Exception as exc:
        rec["notes"].append(f"minimising failed: {type(exc).__name__}: {exc}")
        smaller = None
    seconds = time.monotonic() - t0
    b.minimise_left -= seconds
    if smaller is not None and smaller.id != case.id:
        rec["minimised"] = smaller.to_dict()
    return seconds


def none_ran(records: list[dict[str, Any]]) -> dict[str, str]:
    """backend -> "0 of N cases supported: <the commonest reason>" for every backend with
    records of which none ran (all unsupported)."""
    by: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by.setdefault(r["backend"], []).append(r)
    out = {}
    for name, recs in by.items():
        if recs and all(r["status"] == "unsupported" for r in recs):
            reasons: dict[str, int] = {}
            for r in recs:
                first = (r["message"] or "").splitlines()[0] if r["message"] else "no reason given"
                reasons[first] = reasons.get(first, 0) + 1
            top = max(reasons, key=reasons.get)
            more = f" (and {len(reasons) - 1} other reasons)" if len(reasons) > 1 else ""
            out[name] = f"0 of {len(recs)} cases supported: {top}{more}"
    return out


def finish(cfg: RunConfig, cases: list[Case], backends: list[Backend], records: list[dict[str, Any]],
           entries: list, baseline: dict[str, Any] | None, started: str, interrupted: bool,
           timing: dict[str, Any] | None = None, found: list[dict[str, Any]] | None = None,
           fingerprints: dict[str, dict[str, Any]] | None = None) -> Outcome:
    """Assemble results.json, junit.xml and the reports from the records; decide the exit code."""
    order = {c.id: i for i, c in enumerate(cases)}
    border = {b.name: i for i, b in enumerate(backends)}
    records = sorted(records, key=lambda r: (order.get(r["case_id"], len(order)), border.get(r["backend"], len(border))))
    fingerprints = dict(fingerprints or {})
    for b in backends:
        if b.fingerprint and b.info.get("fingerprint"):
            fingerprints.setdefault(b.info["fingerprint"], b.fingerprint)
    used = {r.get("fingerprint") for r in records} | {b.info.get("fingerprint") for b in backends}
    run = {
        "schema_version": results.SCHEMA_VERSION, "tool": results.tool(), "environment": results.environment(),
        "run": {"started": started, "finished": _now(), "selector": cfg.selector, "seed": cfg.seed,
                "budget": cfg.budget, "dtypes": cfg.dtypes,
                "shard": f"{cfg.shard[0]}/{cfg.shard[1]}" if cfg.shard else None, "argv": cfg.argv,
                "timeout_s": cfg.timeout, "max_memory": cfg.max_memory, "cases": len(cases),
                "interrupted": interrupted, "precision": cfg.precision, **(timing or {})},
        "backends": {b.name: dict(b.info) for b in backends},
        "fingerprints": {k: v for k, v in fingerprints.items() if k in used},
        "records": records,
        "precision_profile": verdict.precision_profile(records),
    }
    if found is not None:
        from .findings import section

        run["findings"] = section(found, confirm_enabled=cfg.confirm_budget_s is not None,
                                  budget_s=cfg.confirm_budget_s)
    for rec in records:  # resumed records of a backend that failed to start this time
        run["backends"].setdefault(rec["backend"], {"name": rec["backend"], "version": rec["backend_version"],
                                                    "device": rec["device"], "spec": None, "error": None,
                                                    "fingerprint": rec.get("fingerprint")})
    for name, why in none_ran(records).items():
        run["backends"][name]["none_ran"] = why
    outcome = write_outputs(cfg.out, run, entries, baseline, report=cfg.report,
                            strict_expected=cfg.strict_expected, interrupted=interrupted, expected_path=cfg.expected,
                            baseline_path=cfg.baseline)
    if cfg.named and not interrupted:
        # A backend the user asked for on which nothing ran tested nothing: not a green run.
        outcome.errors = [f"{name}: {info['none_ran']}" for name, info in run["backends"].items()
                          if info.get("none_ran")]
        if outcome.errors:
            outcome.exit_code = EXIT_USAGE
    return outcome


def write_outputs(out: Path, run: dict[str, Any], entries: list, baseline: dict[str, Any] | None, *,
                  report: bool, strict_expected: bool = False, interrupted: bool = False,
                  expected_path: str | None = None, baseline_path: str | None = None) -> Outcome:
    """results.json, junit.xml and (optionally) the HTML reports for `run`; the Outcome with its exit code."""
    records = run["records"]
    warnings: list[str] = []
    if "findings" not in run:  # merged or re-judged runs: characterised, not confirmed
        try:
            found = build_findings(records, entries, run.get("fingerprints"))
        except Exception as exc:  # the verdicts are safe whatever happens here; say what broke
            found = []
            warnings.append(f"findings could not be built: {type(exc).__name__}: {exc}")
        run["findings"] = findings_mod.section(found, confirm_enabled=False, budget_s=None)
    if entries:
        run["expected"] = {"path": str(expected_path),
                           **expected_mod.audit(entries, records, run.get("fingerprints"))}
    if baseline is not None:
        run["baseline"] = {"path": str(baseline_path), **expected_mod.baseline_diff(baseline, records),
                           "fingerprints_differ": fingerprint_differences(baseline, run)}
        run["baseline"]["findings"] = findings_mod.baseline_diff(baseline, run["findings"]["items"],
                                                                 {r["backend"] for r in records})
    out.mkdir(parents=True, exist_ok=True)
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


def _backend_fingerprint(run: dict[str, Any], name: str) -> dict[str, Any] | None:
    fid = (run.get("backends", {}).get(name) or {}).get("fingerprint")
    return (run.get("fingerprints") or {}).get(fid) if fid else None


def fingerprint_differences(a: dict[str, Any], b: dict[str, Any]) -> dict[str, list[str]]:
    """backend -> the fingerprint facts that differ between runs `a` and `b` (backends in
    both with a recorded fingerprint; conformance.fingerprint.differences)."""
    out = {}
    for name in a.get("backends", {}):
        if name not in b.get("backends", {}):
            continue
        fa, fb = _backend_fingerprint(a, name), _backend_fingerprint(b, name)
        if fa is None or fb is None:
            if (fa is None) != (fb is None):
                out[name] = ["the environment is recorded in one run only"]
            continue
        diff = fingerprint_mod.differences(fa, fb)
        if diff:
            out[name] = diff
    return out


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
    merged["fingerprints"] = {}
    differ: dict[str, list[str]] = {}
    for path, run in runs[1:]:  # shards of one environment should agree; say where they do not
        for name, lines in fingerprint_differences(first, run).items():
            differ.setdefault(name, []).extend(f"{path}: {line}" for line in lines)
    merged["run"]["fingerprints_differ"] = differ
    seen: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
    records: list[dict[str, Any]] = []
    copies: list[tuple[Path, str]] = []
    for path, run in runs:
        merged["fingerprints"].update(run.get("fingerprints") or {})
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
