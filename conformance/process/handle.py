"""The parent's handle on one child process: start it, send it requests, wait for its
replies within a deadline, kill and restart it.

Invariants
- A child is `python -m MODULE FD ARG`: a fresh interpreter (no fork of a process that
  may hold framework threads), talking over a socket pair; its stdout and stderr go to a
  log file, never to the run's console, so framework chatter cannot garble progress
  lines, and the log tail explains a crash.
- Whatever the child does (raise, segfault, abort, hang), `receive` gives one of: a
  reply, `WorkerDied` (exit code or signal, the memory last sampled, the log tail) or
  `WorkerTimeout` (the deadline passed: the child is killed). A reply that arrived while
  another child was being waited for counts, late deadline or not.
- It knows nothing of what the requests mean: a backend's worker (`process.backend`)
  and the referee (`process.referee`) are both driven through it.
"""

from __future__ import annotations

import collections
import os
import signal
import socket
import subprocess
import sys
import time
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from ..protocol import TRACEBACK_LINES, LoadFailed, WorkerDied, WorkerTimeout, headline
from . import wire

#: How long a worker may take to import its framework and build the adapter.
STARTUP_TIMEOUT_S = 180.0


#: How idle thread pools wait, in every worker and the referee unless the user's environment
#: says otherwise: a backend's threads sleep instead of spinning between cases, since a run's
#: backends share the cores and a spinning pool takes CPU from all the others. Waiting is
#: scheduling only: no kernel choice or arithmetic depends on it.
WAIT_POLICY = {"OMP_WAIT_POLICY": "PASSIVE", "OPENBLAS_THREAD_TIMEOUT": "4"}


class Worker:
    """The parent's handle on one worker process (start, ask, kill, restart)."""

    #: While waiting for a reply, the worker's memory is sampled at least this often.
    SAMPLE_S = 0.25

    def __init__(self, spec: str, log_path: Path, module: str = "conformance.process.worker"):
        self.spec = spec
        self.module = module  # the process's main module: a backend worker, or conformance.process.referee
        self.log_path = Path(log_path)
        self.proc: subprocess.Popen | None = None
        self.conn: Connection | None = None
        self.info: dict[str, str] | None = None
        self._mark = 0  # log size when the request in hand was sent
        #: (log size, phase) at the sending of each "run" request not answered yet, oldest
        #: first: runs may be queued (`runner._top_up`), and each reply belongs to the oldest.
        self._pending: collections.deque[tuple[int, str | None]] = collections.deque()
        self._stopping = False
        self.phase: str | None = None  # of the request in hand: "supports" until the worker says "run"
        self._rss: tuple[int | None, int | None] = (None, None)  # (VmRSS, VmHWM) bytes, last sampled

    def start(self) -> None:
        """Launch the process; `await_ready` collects its first message."""
        self._stopping = False
        self._pending.clear()
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
        try:
            mark = self.log_path.stat().st_size
        except OSError:
            mark = 0
        if msg[0] != "run":  # answered before anything else is sent (or not at all: "oracle", "stop")
            self._mark, self.phase = mark, None
        else:
            self._pending.append((mark, "supports"))
            if len(self._pending) == 1:  # the request in hand
                self._mark, self.phase = self._pending[0]
        try:
            wire.send(self.conn, msg)
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
                    msg = wire.recv(self.conn)
                except (EOFError, OSError):
                    self._reap()
                    raise WorkerDied(self.exit_info(), self.log_tail(), self.phase) from None
                if msg[0] == "phase":  # progress within one request, not its answer
                    self.phase = msg[1]
                    continue
                if self._pending:  # answered: the next queued request is in hand
                    self._pending.popleft()
                    if self._pending:
                        self._mark, self.phase = self._pending[0]
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
