"""One backend of a run behind its worker process: its identity, its fingerprint, or why it
cannot run; restarts after a crash or a timeout; one case or one repro script on request.

Invariants
- A backend's adapter is built only in its worker (`process.worker`): this process never
  imports a framework. What the worker reports at start (name, version, device and the
  environment fingerprint) is the backend's identity in every record.
- A worker that died or hung is restarted for the next request; one that cannot start
  again marks the backend `failed` for the rest of the run (no retry per case), and a
  restart with another version is refused.
- It knows nothing of the run loop (it imports nothing of `run` or `runner`): it is the
  handle every path that calls a backend uses (`runner`, and `process.isolated` for the
  pytest plugin, `explore` and `repro`).
- The records it makes without running a case (`new_record`, `unavailable`) carry its
  identity like every other record of it.
- Every case it sends carries its repeat policy (`repeats.Policy`, the run's, else
  `repeats.DEFAULT`), bounded by the case's time limit: every path that calls a backend
  through this handle judges `nondeterministic` alike.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from .. import repeats as repeats_mod
from .. import results, tolerance
from ..fingerprint import fingerprint_id
from ..protocol import LoadFailed, WorkerDied, WorkerTimeout
from ..spec import Case
from .handle import Worker

#: Seconds a backend has for one case (`conformance run --timeout`, and every other path's
#: option of it) before its worker is killed and the case is a `timeout`.
DEFAULT_TIMEOUT_S = 60.0


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


class Backend:
    """One backend behind its worker process: its identity, or why it cannot run. The worker
    writes its stdout and stderr to `log_path`; `timeout` bounds each request; `repeats`
    says which cases are run again with the same inputs."""

    def __init__(self, spec: str, log_path: Path, timeout: float,
                 repeats: repeats_mod.Policy = repeats_mod.DEFAULT):
        self.spec = spec
        self.timeout = timeout
        self.repeats = repeats
        self.worker = Worker(spec, log_path)
        from conformance.adapters.registry import parse_spec

        # options: the parameters of `torch[memory=channels_last]` or of `--adapter-option`
        # (variant names as {name: None}), as the spec gave them.
        self.info: dict[str, Any] = {"name": spec, "version": None, "device": None, "spec": spec, "error": None,
                                     "options": parse_spec(spec)[1] or None, "fingerprint": None}
        self.fingerprint: dict[str, Any] | None = None  # the worker's environment (conformance.fingerprint)
        self.failed: str | None = None
        self.load_error: dict[str, str] | None = None  # the worker's error when building the adapter raised
        self.restarts = 0

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

    def send_case(self, case: Case, timeout: float | None = None) -> None:
        """Ask the worker for `case` (the reply is `worker.receive`'s), repeated per this
        backend's policy within `timeout` (default: its own)."""
        limit = self.timeout if timeout is None else timeout
        policy = self.repeats
        if policy.calls and (policy.budget_s is None or policy.budget_s > limit):
            policy = replace(policy, budget_s=limit)
        self.worker.send(("run", case.to_dict(), policy.to_dict()))

    def ask(self, case: Case, timeout: float | None = None) -> Any:
        """One case, start to finish (used by the minimiser): the reply or the exception."""
        if not self.ensure():
            return WorkerDied({"exitcode": None, "signal": None}, self.failed or "")
        self.send_case(case, timeout)
        try:
            return self.worker.receive(time.monotonic() + (self.timeout if timeout is None else timeout))
        except (WorkerDied, WorkerTimeout) as exc:
            return exc

    def new_record(self, case: Case, **fields: Any) -> dict[str, Any]:
        """A results.json record of `case` on this backend, with its identity and `fields`."""
        return results.new_record(case.to_dict(), case.id, self.name, backend_version=self.info["version"],
                                  device=self.info["device"], fingerprint=self.info.get("fingerprint"), **fields)

    def stamp(self, rec: dict[str, Any], reply: Any) -> dict[str, Any]:
        """`rec`, the referee's record of this backend's `reply`, with the worker's fingerprint,
        and after a crash or a timeout the note that the worker is restarted."""
        rec["fingerprint"] = self.info.get("fingerprint")
        if rec["status"] in ("crash", "timeout") and not isinstance(reply, tuple):
            rec["notes"].append("the worker is restarted for the next case")
        return rec

    def unavailable(self, case: Case) -> dict[str, Any]:
        """The `error` record of a case this backend cannot run: its worker cannot start (`failed`)."""
        return self.new_record(case, status="error", message=self.failed,
                               error={"type": "BackendError", "message": self.failed, "traceback": ""})

    def repro(self, case: Case, precision: str = tolerance.DEFAULT_PRECISION,
              short_header: str | None = None, spec: str | None = None,
              calls: int = 1) -> tuple[str | None, str | None]:
        """(script, problem): the full repro script (calling the framework `calls` times), or
        with `short_header` a finding's short one. `spec` is how the script loads an adapter
        without `repro_code` (default: its class)."""
        if short_header is None:
            return self._source(("repro", case.to_dict(), precision, spec, calls), "repro script")
        return self._source(("short_repro", case.to_dict(), short_header, spec, precision), "repro script")

    def framework_code(self, case: Case, spec: str | None = None) -> tuple[str | None, str | None]:
        """(source, problem): the framework call of `case` as a script writes it (`scripts.framework_code`)."""
        return self._source(("framework_code", case.to_dict(), spec), "framework code")

    def _source(self, request: tuple, what: str) -> tuple[str | None, str | None]:
        if not self.ensure():
            return None, f"{what} failed: {self.failed}"
        self.worker.send(request)
        try:
            _, text, err = self.worker.receive(time.monotonic() + self.timeout)
        except (WorkerDied, WorkerTimeout) as exc:
            return None, f"{what} failed: {str(exc) or f'no answer within {self.timeout:g} s'}"
        return text, (f"{what} failed: {err['type']}: {err['message']}" if err else None)
