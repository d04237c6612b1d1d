"""A backend judged case by case outside a run, isolated as `conformance run` isolates it:
the pytest plugin, `conformance explore` and `conformance repro` call backends only here.

    backend = IsolatedBackend("torch", logs, timeout=60.0, max_memory=8 << 30)
    backend.start(); backend.ready()          # LoadError when it cannot be built
    rec = backend.record(case)                # the record `conformance run` writes
    text, problem = backend.script(case)      # its repro script, written by the worker
    backend.stop()

Invariants
- The backend computes in its worker process (`process.backend.Backend`): the adapter is
  built there, never in the caller, with the run's timeout per request (`DEFAULT_TIMEOUT_S`
  unless told). The oracle and the record are made in the referee process
  (`process.referee.Referee`, one per backend or one shared by a session's backends), under
  the run's memory budget (`process.memory.refusal`). So a (case, backend) pair gets the
  record `conformance run` writes: status, kind, message and figures alike, the `crash`,
  `timeout` and memory refusal included (tests/test_verdict.py compares them).
- A worker that crashes or hangs gives that case's `crash` / `timeout` record (with the
  signal and the log's last line) and is restarted for the next case; one that cannot
  start again gives `error` records (`Backend.unavailable`). `record` never raises for
  anything the backend does.
- Why the referee and not this process for the oracle: a large case's float64 reference
  and error arrays take gigabytes and can take minutes. In the caller, an out-of-memory
  kill would end the pytest session (or explore) with every result so far, and a slow
  oracle would outlast any timeout; in the referee it is that case's `error` / `timeout`.
  It costs one more interpreter (NumPy and the engine, no framework).
- Nothing here imports a framework, and nothing here knows of a run's bookkeeping.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import tolerance
from ..fingerprint import facts
from ..spec import Case
from ..text import safe_filename
from ..usage import LoadError
from .backend import DEFAULT_TIMEOUT_S, Backend, load_reason
from .memory import refusal
from .referee import Referee


class IsolatedBackend:
    """One backend behind its worker, each case recorded by a referee. `logs` is the folder
    of the worker's log (`<spec>.log`) and of the referee's when it has its own."""

    def __init__(self, spec: str, logs: Path, *, timeout: float = DEFAULT_TIMEOUT_S, max_memory: int | None = None,
                 precision: str = tolerance.DEFAULT_PRECISION, referee: Referee | None = None):
        self.spec = spec
        self.timeout = timeout
        self.max_memory = max_memory
        self.precision = precision
        self.backend = Backend(spec, Path(logs) / f"{safe_filename(spec)}.log", timeout)
        self._own_referee = referee is None
        self.referee = referee or Referee(Path(logs) / "referee.log", timeout, precision)

    # ---- identity (what the worker said at start) ------------------------------------------

    @property
    def name(self) -> str:
        return self.backend.name

    @property
    def version(self) -> str:
        return str(self.backend.info["version"])

    @property
    def device(self) -> str:
        return str(self.backend.info["device"])

    @property
    def fingerprint(self) -> dict[str, Any] | None:
        """The worker's environment (`conformance.fingerprint`), None when it reported none."""
        return self.backend.fingerprint

    @property
    def facts(self) -> dict[str, Any]:
        """The fingerprint facts manifest `when:` conditions are matched against."""
        return facts(self.fingerprint)

    # ---- life ------------------------------------------------------------------------------

    def start(self) -> None:
        """Launch the worker (a session launches all of its backends, then waits for each)."""
        self.backend.worker.start()

    def ready(self) -> None:
        """Wait for the worker's hello; LoadError (the spec and why) when it cannot start."""
        b = self.backend
        b.finish_start()
        if b.failed:
            b.worker.kill()
            raise LoadError(self.spec, load_reason(self.spec, b.load_error) if b.load_error else b.failed)

    def stop(self) -> None:
        """Ask the worker (and an own referee) to leave, and make sure they have."""
        self.backend.worker.request_stop()
        if self._own_referee:
            self.referee.worker.request_stop()
        self.backend.worker.stop(grace=2.0)
        if self._own_referee:
            self.referee.stop()

    # ---- cases -----------------------------------------------------------------------------

    def record(self, case: Case, *, diagnose: bool = True) -> dict[str, Any]:
        """The results.json record of `case` on this backend: see the module invariants.
        `diagnose=False` leaves out the diagnosis of a divergence (it never changes the verdict)."""
        b = self.backend
        why = refusal(case, self.max_memory)
        if why is not None:
            return b.new_record(case, status="unsupported", message=why)
        if not b.ensure():
            return b.unavailable(case)
        self.referee.begin(case)  # the oracle, in its own process, while the backend computes
        reply = b.ask(case)
        return b.stamp(self.referee.record(case, b.name, b.info, reply, diagnose=diagnose), reply)

    def script(self, case: Case, *, spec: str | None = None, precision: str | None = None,
               calls: int = 1) -> tuple[str | None, str | None]:
        """(script, problem): the full repro script of `case`, written by the worker's adapter.
        `spec` is how it loads an adapter without `repro_code` (default: its class); `calls`
        how many times it calls the framework (`repeats.script_calls`)."""
        return self.backend.repro(case, precision or self.precision, spec=spec, calls=calls)

    def short_script(self, case: Case, header: str, *, spec: str | None = None,
                     precision: str | None = None) -> tuple[str | None, str | None]:
        """(script, problem): a finding's short repro script of `case`, printing the worker's kernel path."""
        return self.backend.repro(case, precision or self.precision, short_header=header, spec=spec)

    def framework_code(self, case: Case, *, spec: str | None = None) -> tuple[str | None, str | None]:
        """(source, problem): the framework call of `case` as a script writes it."""
        return self.backend.framework_code(case, spec)
