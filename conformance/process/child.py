"""What every child process of a run does: answer its parent's requests, and leave when
the parent does.

Invariants
- A child serves requests until the parent says ("stop",) or its end of the socket goes
  away (`requests`); it ignores SIGINT (the parent decides when to stop).
- A child whose parent has gone exits on its own within a second (`watch_parent`): a hung
  adapter never reads the socket again, and nobody else would kill it.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from multiprocessing.connection import Connection

from . import wire


def start_child() -> None:
    """Ignore SIGINT and exit when the parent goes away (call first in a child's serve())."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()


def _watch_parent(parent: int) -> None:
    # A hung adapter never reads the socket again; if the parent is gone, nobody will kill us.
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(3)


def requests(conn: Connection):
    """(message, its Case) for each request of the parent, until it says stop or goes away
    (the worker's and the referee's serving loops)."""
    from conformance.spec import Case

    while True:
        try:
            msg = wire.recv(conn)
        except (EOFError, OSError):
            return
        if msg[0] == "stop":
            return
        yield msg, Case.from_dict(msg[1])
