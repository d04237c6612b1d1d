"""The oracle and the comparison of a case, in a process of their own that the run can lose.

A float64 reference of a large case can take minutes, and the reference plus the error
arrays of a 64 Mi-element output take gigabytes: computed in the run's own process, a
slow one stalls progress past any --timeout and an out-of-memory kill loses the whole
run. Here they run in a restartable helper process with a deadline, like a backend.

Invariants
- The helper is `python -m conformance.process.referee FD`, a fresh interpreter; it imports no
  framework (only the engine's NumPy modules).
- It keeps the oracle of one case at a time (the current one), computed once when the
  case is dispatched, while the backends compute, and shared by every backend's record;
  with it the case's verdicts, so that a backend whose output is bitwise identical to
  another's (TensorFlow's variants and Keras, torch's layouts) costs no second comparison
  or diagnosis (`verdict.judge`'s memo).
- Records are exactly `record.record_reply` + `record.diagnose_into`, called here instead of in
  the run's process: the record that comes back is the record the run writes.
- A deadline passed or a helper that dies becomes that (case, backend)'s `timeout` or
  `error` record in the caller (`Referee`), and the helper is restarted for the next case.

Messages: parent -> helper ("oracle", case_dict) | ("record", case_dict, backend, info,
reply, timeout, diagnose, precision) | ("stop",); helper -> parent ("ready", {}) first, then
("recorded", record) | ("failed", error) per "record"; "oracle" has no reply (a failure
there shows in the next "record"). `Referee` is the handle on it, of the run and of the
tools that call backends outside a run (`process.isolated`).
"""

from __future__ import annotations

import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from .. import results, tolerance
from ..protocol import WorkerDied, WorkerTimeout, error_dict
from ..record import diagnose_into, oracle_for, record_reply
from ..spec import Case
from . import wire
from .child import requests, start_child
from .handle import Worker

#: How long the referee may take to start (imports NumPy and the engine).
STARTUP_S = 60.0


def serve(conn: Connection) -> None:
    start_child()
    wire.send(conn, ("ready", {"name": "referee", "version": "", "device": "cpu"}))
    current: tuple[str, Any] | None = None  # (case id, Oracle or the error computing it)
    memo: dict = {}  # the current case's verdicts and diagnoses, by output (verdict.output_key)
    for msg, case in requests(conn):
        if current is None or current[0] != case.id:
            current = None  # free the previous case's arrays before building the next
            memo = {}
            try:
                current = (case.id, oracle_for(case))
            except Exception as exc:
                current = (case.id, exc)
        if msg[0] == "oracle":
            continue
        _, _, backend, info, reply, timeout, diagnose, precision = msg
        oracle = current[1]
        try:
            if isinstance(oracle, Exception):
                raise oracle
            rec, y = record_reply(case, backend, info, reply, oracle, timeout, precision, memo)
            if diagnose and rec["status"] == "diverge":
                diagnose_into(rec, case, y, oracle, memo)
        except Exception as exc:
            wire.send(conn, ("failed", error_dict(exc)))
            continue
        wire.send(conn, ("recorded", rec))


class Referee:
    """The run's handle on the referee process: the oracle and comparison of a case, bounded
    by a deadline and restartable, so that neither a slow nor an out-of-memory case costs the run."""

    def __init__(self, log_path: Path, timeout: float, precision: str = tolerance.DEFAULT_PRECISION):
        self.timeout = timeout
        self.precision = precision
        self.worker = Worker("referee", log_path, module="conformance.process.referee")
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
        self.worker.send(("record", case.to_dict(), backend, info, reply, self.timeout, diagnose, self.precision))
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


if __name__ == "__main__":
    serve(Connection(int(sys.argv[1])))
