"""One backend in its own process: the worker loop (`python -m conformance.process.worker FD SPEC`).

Invariants
- A worker is a fresh interpreter (`process.handle` starts it) that rebuilds its adapter
  with `registry.load(spec)` once and keeps it for every case, so a framework is
  imported once.
- Only the case (as a dict) crosses to the worker; it regenerates the inputs with
  `make_inputs(case)`, which are deterministic from the case id. The output array comes
  back over a socket pair, its bytes out-of-band (`process.wire`).
- Every case is answered by `protocol.answer`, the one adapter call; the worker writes
  the repro scripts of its own adapter (`scripts`), so the parent never loads it.
- The worker ignores SIGINT (the parent decides when to stop) and exits when the parent
  disappears (`process.child`); its stdout and stderr are its log.

Messages (tuples): parent -> worker ("run", case_dict, repeats) | ("repro", case_dict,
precision, spec, calls) | ("short_repro", case_dict, header, spec) | ("framework_code", case_dict, spec) | ("stop",)
(repeats: a `repeats.Policy` as a dict; spec: how a script loads an adapter without
repro_code, None for its class; calls: how many times a script calls the framework);
worker -> parent ("ready", info) | ("failed", error) first (info: name, version, device and
the environment fingerprint, conformance.fingerprint), then per request
("unsupported", reason) | ("output", array, backend_s, notes, repeated) | ("raised", error, backend_s)
| ("adapter_error", error) | ("repro", text_or_None, error_or_None) (for each script or code
request). A run request is
answered by ("phase", "run") once supports() has returned None, before run() starts: a
worker that dies or hangs before it did so, died or hung inside supports() (`Worker.phase`);
("phase", "repeat") follows when the first call returned and the case is run again.
("adapter_error", error): supports() raised or returned neither None nor a str.
"""

from __future__ import annotations

import faulthandler
import sys
from multiprocessing.connection import Connection

from ..protocol import answer, error_dict
from ..repeats import Policy
from . import wire
from .child import requests, start_child


def serve(conn: Connection, spec: str) -> None:
    """Build the adapter from `spec`, then answer requests until told to stop or the parent leaves."""
    start_child()
    faulthandler.enable(all_threads=False)  # a segfault or abort leaves the Python stack in the log
    try:
        from conformance.adapters import registry

        # The adapter is built before anything imports its framework here: a variant that
        # must set the environment a framework reads at import (TF_ENABLE_ONEDNN_OPTS,
        # XLA_FLAGS) does so in its constructor; version() then imports the framework.
        adapter = registry.load(spec)
        info = {"name": str(adapter.name), "version": str(adapter.version()), "device": str(adapter.device())}
    except BaseException as exc:  # an import that fails any way at all is a failed start
        wire.send(conn, ("failed", error_dict(exc)))
        return
    from conformance.fingerprint import fingerprint

    try:
        info["fingerprint"] = fingerprint(adapter)  # after version(): the framework is imported
    except Exception as exc:  # the environment is worth recording, not worth a failed start
        info["fingerprint"] = {"error": f"{type(exc).__name__}: {exc}"}
    wire.send(conn, ("ready", info))

    for msg, case in requests(conn):
        if msg[0] == "run":
            wire.send(conn, answer(adapter, case, on_run=lambda: wire.send(conn, ("phase", "run")),
                                   repeats=Policy.from_dict(msg[2]),
                                   on_repeat=lambda: wire.send(conn, ("phase", "repeat"))))
        else:
            wire.send(conn, _source(msg[0], case, adapter, *msg[2:]))


def _source(request: str, case, adapter, *args) -> tuple:
    """("repro", text, None) or ("repro", None, error) for a script or code request."""
    from conformance import scripts

    try:
        if request == "repro":
            precision, spec, calls = args
            return ("repro", scripts.make_script(case, adapter, spec=spec, precision=precision, calls=calls), None)
        if request == "short_repro":  # printing the kernel path of this worker (fingerprint.path_line)
            from conformance.fingerprint import fingerprint, path_line

            header, spec, precision = args
            return ("repro", scripts.make_short_script(case, adapter, spec=spec, header=header, precision=precision,
                                                       kernel_path=path_line(fingerprint(adapter))), None)
        if request == "framework_code":
            (spec,) = args
            return ("repro", scripts.framework_code(case, adapter, spec), None)
        raise ValueError(f"request: expected run, repro, short_repro or framework_code, received {request!r}")
    except Exception as exc:
        return ("repro", None, error_dict(exc))


def _main(argv: list[str]) -> None:
    fd, spec = int(argv[0]), argv[1]
    serve(Connection(fd), spec)


if __name__ == "__main__":
    _main(sys.argv[1:])
