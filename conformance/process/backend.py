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
  handle any path that calls a backend in isolation can use.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .. import tolerance
from ..fingerprint import fingerprint_id
from ..protocol import LoadFailed, WorkerDied, WorkerTimeout
from ..spec import Case
from .handle import Worker


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
    writes its stdout and stderr to `log_path`; `timeout` bounds each request."""

    def __init__(self, spec: str, log_path: Path, timeout: float):
        self.spec = spec
        self.timeout = timeout
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
                         ("short_repro", case.to_dict(), short_header, precision))
        try:
            _, text, err = self.worker.receive(time.monotonic() + self.timeout)
        except (WorkerDied, WorkerTimeout) as exc:
            return None, f"repro script failed: {exc}"
        return text, (f"repro script failed: {err['type']}: {err['message']}" if err else None)
