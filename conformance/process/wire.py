"""How a run's processes send each other messages: a pickled tuple, and the bytes of the
NumPy arrays in it raw beside the pickle instead of copied into it.

A size witness's output (2^24 float32 elements: 64 MiB) crosses twice for each backend,
worker -> run -> referee. `Connection.send` pickles it with protocol 4, which copies the
array's bytes into the pickle, and `Connection.recv` copies them twice more on the way
in (its read buffer, then the array): about 0.2 CPU-s per 64 MiB crossing on machine C.
Here an array's buffer goes out-of-band (pickle protocol 5): written to the socket from
the array itself, and read from the socket straight into the receiving array's memory.

Invariants
- Every message between the run's process and a child (a backend's worker, the referee)
  goes through `send` and `recv`, both ways; nothing else writes to or reads from their
  socket.
- `recv(conn)` returns what `send(conn, msg)` was given: arrays of the same dtype, shape
  and bytes, writable, in memory of their own; non-contiguous arrays travel inside the
  pickle, as with protocol 4.
- One message is one `Connection` message (the buffer count, their sizes, the pickle),
  then each buffer's bytes unframed, in order. A peer that goes away mid-message is an
  EOFError, as `Connection.recv` raises.
"""

from __future__ import annotations

import os
import pickle
import struct
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

_COUNT = struct.Struct("<I")


def send(conn: Connection, msg: Any) -> None:
    """Send `msg` (any picklable object), its arrays' bytes out-of-band."""
    buffers: list[pickle.PickleBuffer] = []
    head = pickle.dumps(msg, protocol=5, buffer_callback=buffers.append)
    views = [b.raw() for b in buffers]
    conn.send_bytes(_COUNT.pack(len(views)) + struct.pack(f"<{len(views)}Q", *(v.nbytes for v in views)) + head)
    for view in views:
        _write_all(conn.fileno(), view)


def recv(conn: Connection) -> Any:
    """The next message `send` sent on the other end (EOFError when the peer went away)."""
    frame = conn.recv_bytes()
    (count,) = _COUNT.unpack_from(frame)
    sizes = struct.unpack_from(f"<{count}Q", frame, _COUNT.size)
    head = memoryview(frame)[_COUNT.size + 8 * count:]
    buffers = [_read_exactly(conn.fileno(), size) for size in sizes]
    return pickle.loads(head, buffers=buffers)


def _write_all(fd: int, view: memoryview) -> None:
    while view.nbytes:
        written = os.write(fd, view)
        view = view[written:]


def _read_exactly(fd: int, size: int) -> np.ndarray:
    """`size` bytes from `fd` into a fresh uint8 array (no copy beyond the kernel's)."""
    out = np.empty(size, dtype=np.uint8)
    view, got = memoryview(out), 0
    while got < size:
        n = os.readv(fd, [view[got:]])
        if n == 0:
            raise EOFError("the other end went away in the middle of a message")
        got += n
    return out
