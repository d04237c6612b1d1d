"""The message wire between a run's processes (`conformance.process.wire`): what `recv`
returns is what `send` was given, arrays included, whatever their layout."""

from __future__ import annotations

import socket
import threading
from multiprocessing.connection import Connection

import numpy as np
import pytest

from conformance.process import wire
from conformance.repeats import Repeated


@pytest.fixture()
def pair():
    a, b = socket.socketpair()
    ends = Connection(a.detach()), Connection(b.detach())
    yield ends
    for end in ends:
        end.close()


def _through(pair, msg):
    got = []
    reader = threading.Thread(target=lambda: got.append(wire.recv(pair[1])))
    reader.start()  # a large message does not fit the socket's buffer: read while it is written
    wire.send(pair[0], msg)
    reader.join()
    return got[0]


ARRAYS = {
    "float32 of 8 MiB": np.arange(1 << 21, dtype=np.float32).reshape(1, 1024, 2048, 1),
    "float16": np.linspace(-2, 2, 35, dtype=np.float16).reshape(5, 7),
    "bool": np.array([True, False, True]),
    "empty": np.zeros((0, 3), dtype=np.float64),
    "not contiguous": np.arange(64, dtype=np.float64).reshape(8, 8)[:, ::3],
    "fortran order": np.asfortranarray(np.arange(12, dtype=np.int32).reshape(3, 4)),
}


@pytest.mark.parametrize("name", list(ARRAYS))
def test_an_array_comes_back_with_its_dtype_shape_and_bytes(pair, name):
    sent = ARRAYS[name]
    tag, got = _through(pair, ("output", sent))
    assert (tag, got.dtype, got.shape, got.tobytes()) == ("output", sent.dtype, sent.shape, sent.tobytes())


def test_a_received_array_is_writable(pair):
    got = _through(pair, ("output", np.ones(4, dtype=np.float32)))[1]
    got[0] = 2.0
    assert got.tolist() == [2.0, 1.0, 1.0, 1.0]


def test_arrays_inside_a_reply_come_back_in_their_places(pair):
    first, other = np.zeros(3, dtype=np.float32), np.ones((2, 2), dtype=np.float64)
    msg = ("output", first, 0.5, ["a note"], Repeated(2, "small", 0.1, 1, 2, other))
    got = _through(pair, msg)
    assert (got[0], got[2], got[3], got[4].reason, got[4].call) == ("output", 0.5, ["a note"], "small", 2)
    assert got[1].tolist() == first.tolist() and got[4].other.tolist() == other.tolist()


def test_a_peer_that_leaves_in_the_middle_of_a_message_is_an_eof(pair):
    import os
    import struct

    pair[0].send_bytes(struct.pack("<I", 1) + struct.pack("<Q", 1024) + b"x")
    os.write(pair[0].fileno(), b"12345")  # 5 of the 1024 promised bytes, then the peer is gone
    pair[0].close()
    with pytest.raises(EOFError):
        wire.recv(pair[1])
