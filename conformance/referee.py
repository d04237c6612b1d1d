"""The oracle and the comparison of a case, in a process of their own that the run can lose.

A float64 reference of a large case can take minutes, and the reference plus the error
arrays of a 64 Mi-element output take gigabytes: computed in the run's own process, a
slow one stalls progress past any --timeout and an out-of-memory kill loses the whole
run. Here they run in a restartable helper process with a deadline, like a backend.

Invariants
- The helper is `python -m conformance.referee FD`, a fresh interpreter; it imports no
  framework (only the engine's NumPy modules).
- It keeps the oracle of one case at a time (the current one), computed once when the
  case is dispatched, while the backends compute, and shared by every backend's record;
  with it the case's verdicts, so that a backend whose output is bitwise identical to
  another's (TensorFlow's variants and Keras, torch's layouts) costs no second comparison
  or diagnosis (`verdict.judge`'s memo).
- Records are exactly `record.record_reply` + `record.diagnose_into`, called here instead of in
  the run's process: the record that comes back is the record the run writes.
- A deadline passed or a helper that dies becomes that (case, backend)'s `timeout` or
  `error` record in the caller (runner), and the helper is restarted for the next case.

Messages: parent -> helper ("oracle", case_dict) | ("judge", case_dict, backend, info,
reply, timeout, diagnose, precision) | ("stop",); helper -> parent ("ready", {}) first, then
("judged", record) | ("failed", error) per "judge"; "oracle" has no reply (a failure
there shows in the next "judge").
"""

from __future__ import annotations

import signal
import sys
import threading
from multiprocessing.connection import Connection
from typing import Any


def serve(conn: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from conformance import record
    from conformance.worker import _watch_parent, error_dict, requests

    import os

    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    conn.send(("ready", {"name": "referee", "version": "", "device": "cpu"}))
    current: tuple[str, Any] | None = None  # (case id, Oracle or the error computing it)
    memo: dict = {}  # the current case's verdicts and diagnoses, by output (verdict.output_key)
    for msg, case in requests(conn):
        if current is None or current[0] != case.id:
            current = None  # free the previous case's arrays before building the next
            memo = {}
            try:
                current = (case.id, record.oracle_for(case))
            except Exception as exc:
                current = (case.id, exc)
        if msg[0] == "oracle":
            continue
        _, _, backend, info, reply, timeout, diagnose, precision = msg
        oracle = current[1]
        try:
            if isinstance(oracle, Exception):
                raise oracle
            rec, y = record.record_reply(case, backend, info, reply, oracle, timeout, precision, memo)
            if diagnose and rec["status"] == "diverge":
                record.diagnose_into(rec, case, y, oracle, memo)
        except Exception as exc:
            conn.send(("failed", error_dict(exc)))
            continue
        conn.send(("judged", rec))


if __name__ == "__main__":
    serve(Connection(int(sys.argv[1])))
