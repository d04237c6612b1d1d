"""One backend in its own process: the worker loop and the parent's handle on it.

Invariants
- A worker is `python -m conformance.worker FD`: a fresh interpreter (no fork of a
  process that may hold framework threads) that rebuilds its adapter with
  `registry.load(spec)` once and keeps it for every case, so a framework is imported once.
- Only the case (as a dict) crosses to the worker; it regenerates the inputs with
  `make_inputs(case)`, which are deterministic from the case id. The output array comes
  back pickled over a socket pair (protocol 5: one copy of the buffer).
- The worker's stdout and stderr go to a log file, never to the run's console: framework
  chatter cannot garble progress lines, and the log tail explains a crash.
- Whatever the adapter does (raise, segfault, abort, hang), the parent learns one of:
  a reply, the process's death (exit code or signal), or a deadline passed. The worker
  ignores SIGINT (the parent decides when to stop) and exits when the parent disappears.

Messages (tuples): parent -> worker ("run", case_dict) | ("repro", case_dict, precision)
| ("short_repro", case_dict, header) | ("stop",);
worker -> parent ("ready", info) | ("failed", error) first (info: name, version, device and
the environment fingerprint, conformance.fingerprint), then per request
("unsupported", reason) | ("output", array, backend_s, notes) | ("raised", error, backend_s)
| ("adapter_error", error) | ("repro", text_or_None, error_or_None). A run request is
answered by ("phase", "run") once supports() has returned None, before run() starts: a
worker that dies or hangs before it did so, died or hung inside supports() (`Worker.phase`).
("adapter_error", error): supports() raised or returned neither None nor a str.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from .protocol import TRACEBACK_LINES, LoadFailed, WorkerDied, WorkerTimeout, answer, error_dict, headline

#: How long a worker may take to import its framework and build the adapter.
STARTUP_TIMEOUT_S = 180.0


# ---- the worker side ------------------------------------------------------------------

def _watch_parent(parent: int) -> None:
    # A hung adapter never reads the socket again; if the parent is gone, nobody will kill us.
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(3)


def serve(conn: Connection, spec: str) -> None:
    """Build the adapter from `spec`, then answer requests until told to stop or the parent leaves."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    faulthandler.enable(all_threads=False)  # a segfault or abort leaves the Python stack in the log
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    try:
        from conformance.adapters import registry

        # The adapter is built before anything imports its framework here: a variant that
        # must set the environment a framework reads at import (TF_ENABLE_ONEDNN_OPTS,
        # XLA_FLAGS) does so in its constructor; version() then imports the framework.
        adapter = registry.load(spec)
        info = {"name": str(adapter.name), "version": str(adapter.version()), "device": str(adapter.device())}
    except BaseException as exc:  # an import that fails any way at all is a failed start
        conn.send(("failed", error_dict(exc)))
        return
    from conformance.fingerprint import fingerprint

    try:
        info["fingerprint"] = fingerprint(adapter)  # after version(): the framework is imported
    except Exception as exc:  # the environment is worth recording, not worth a failed start
        info["fingerprint"] = {"error": f"{type(exc).__name__}: {exc}"}
    conn.send(("ready", info))

    for msg, case in requests(conn):
        if msg[0] == "repro":
            conn.send(_repro(case, adapter, *msg[2:]))
            continue
        if msg[0] == "short_repro":
            conn.send(_short_repro(case, adapter, msg[2]))
            continue
        conn.send(answer(adapter, case, on_run=lambda: conn.send(("phase", "run"))))


def requests(conn: Connection):
    """(message, its Case) for each request of the parent, until it says stop or goes away
    (the worker's and the referee's serving loops)."""
    from conformance.spec import Case

    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg[0] == "stop":
            return
        yield msg, Case.from_dict(msg[1])


def _repro(case, adapter, precision="strict"):
    from conformance.scripts import make_script

    try:
        return ("repro", make_script(case, adapter, precision=precision), None)
    except Exception as exc:
        return ("repro", None, error_dict(exc))


def _short_repro(case, adapter, header):
    from conformance.scripts import make_short_script

    try:
        return ("repro", make_short_script(case, adapter, header=header), None)
    except Exception as exc:
        return ("repro", None, error_dict(exc))


# ---- the parent side ------------------------------------------------------------------

#: How idle thread pools wait, in every worker and the referee unless the user's environment
#: says otherwise: a backend's threads sleep instead of spinning between cases, since a run's
#: backends share the cores and a spinning pool takes CPU from all the others. Waiting is
#: scheduling only: no kernel choice or arithmetic depends on it.
WAIT_POLICY = {"OMP_WAIT_POLICY": "PASSIVE", "OPENBLAS_THREAD_TIMEOUT": "4"}


class Worker:
    """The parent's handle on one worker process (start, ask, kill, restart)."""

    #: While waiting for a reply, the worker's memory is sampled at least this often.
    SAMPLE_S = 0.25

    def __init__(self, spec: str, log_path: Path, module: str = "conformance.worker"):
        self.spec = spec
        self.module = module  # the process's main module: a backend worker, or conformance.referee
        self.log_path = Path(log_path)
        self.proc: subprocess.Popen | None = None
        self.conn: Connection | None = None
        self.info: dict[str, str] | None = None
        self._mark = 0  # log size when the current request was sent
        self._stopping = False
        self.phase: str | None = None  # of the request in hand: "supports" until the worker says "run"
        self._rss: tuple[int | None, int | None] = (None, None)  # (VmRSS, VmHWM) bytes, last sampled

    def start(self) -> None:
        """Launch the process; `await_ready` collects its first message."""
        self._stopping = False
        self._rss = (None, None)
        parent_sock, child_sock = socket.socketpair()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.module, str(child_sock.fileno()), self.spec],
                pass_fds=(child_sock.fileno(),), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                cwd=os.getcwd(), env={**WAIT_POLICY, **os.environ})
        finally:
            log.close()
            child_sock.close()
        self.conn = Connection(parent_sock.detach())

    def await_ready(self, timeout: float = STARTUP_TIMEOUT_S) -> dict[str, str]:
        """The adapter's {name, version, device}; raises RuntimeError with the reason it failed
        (LoadFailed when building the adapter raised, rather than the process dying or hanging)."""
        try:
            msg = self._recv(time.monotonic() + timeout)
        except WorkerTimeout:
            self.kill()
            raise RuntimeError(f"backend {self.spec!r} did not start within {timeout:.0f} s") from None
        except WorkerDied as exc:
            tail = f": {headline(exc.log_tail)}" if exc.log_tail else ""
            raise RuntimeError(f"backend {self.spec!r} could not start ({exc}){tail}") from None
        if msg[0] == "failed":
            self.kill()
            raise LoadFailed(self.spec, msg[1])
        self.info = msg[1]
        return self.info

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send(self, msg: tuple) -> None:
        self.phase = "supports" if msg[0] == "run" else None
        try:
            self._mark = self.log_path.stat().st_size
        except OSError:
            self._mark = 0
        try:
            self.conn.send(msg)
        except OSError:
            pass  # it died; the next receive reports how

    def _recv(self, deadline: float):
        while True:
            # A reply that arrived while another backend was being waited for counts, late
            # deadline or not: the deadline is checked only when nothing is there.
            left = deadline - time.monotonic()
            if left <= 0 and not wait([self.conn], 0):
                raise WorkerTimeout(self.phase)
            # The socket turns readable with EOF when the process dies; the poll below covers
            # a child that left a grandchild holding the socket open.
            self._sample_memory()
            if wait([self.conn], max(min(left, self.SAMPLE_S), 0)):
                try:
                    msg = self.conn.recv()
                except (EOFError, OSError):
                    self._reap()
                    raise WorkerDied(self.exit_info(), self.log_tail(), self.phase) from None
                if msg[0] == "phase":  # progress within one request, not its answer
                    self.phase = msg[1]
                    continue
                return msg
            elif self.proc.poll() is not None:
                raise WorkerDied(self.exit_info(), self.log_tail(), self.phase)

    def _sample_memory(self) -> None:
        """Note the worker's resident memory (VmRSS) and its peak (VmHWM) from /proc, where
        there is one: after an out-of-memory kill, the last sample is all that is left."""
        if self.proc is None:
            return
        try:
            with open(f"/proc/{self.proc.pid}/status", "rb") as fh:
                fields = dict(line.split(b":", 1) for line in fh.read().splitlines() if b":" in line)
            kib = lambda key: int(fields[key].split()[0]) * 1024 if key in fields else None  # noqa: E731
            rss, peak = kib(b"VmRSS"), kib(b"VmHWM")
        except (OSError, ValueError, IndexError):
            return
        if rss is not None or peak is not None:
            self._rss = (rss, peak)

    def _reap(self) -> None:
        try:
            self.proc.wait(5.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def receive(self, deadline: float):
        """The reply to the last request; WorkerDied or WorkerTimeout (then the worker is killed)."""
        try:
            return self._recv(deadline)
        except WorkerTimeout:
            self.kill()
            raise

    def exit_info(self) -> dict[str, Any]:
        code = self.proc.returncode if self.proc else None
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return {"exitcode": code, "signal": name, "rss_bytes": self._rss[0], "peak_rss_bytes": self._rss[1]}
        return {"exitcode": code, "signal": None, "rss_bytes": self._rss[0], "peak_rss_bytes": self._rss[1]}

    def log_tail(self, lines: int = 2 * TRACEBACK_LINES) -> str:
        """What the worker wrote since the current request was sent (its last `lines` lines)."""
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(self._mark)
                text = fh.read().decode("utf-8", errors="replace")
        except OSError:
            return ""
        kept = [ln.rstrip() for ln in text.strip().splitlines() if ln.strip() and not ln.startswith("Extension modules:")]
        return "\n".join(kept[-lines:])

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def request_stop(self) -> None:
        """Ask the worker to leave (it exits after the request in hand)."""
        if self.proc is not None and self.proc.poll() is None and self.conn is not None and not self._stopping:
            self._stopping = True
            self.send(("stop",))

    def stop(self, grace: float = 2.0) -> None:
        """Ask the worker to leave, kill it if it has not within `grace` seconds."""
        if self.proc is None:
            return
        self.request_stop()
        if self.proc.poll() is None:
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        self.kill()


def _main(argv: list[str]) -> None:
    fd, spec = int(argv[0]), argv[1]
    serve(Connection(fd), spec)


if __name__ == "__main__":
    _main(sys.argv[1:])
