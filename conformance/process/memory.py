"""How much memory judging a case takes, and the --max-memory budget every path allows for it.

Invariants
- `memory_estimate(case)` is an upper estimate of what the referee process holds for a
  case (inputs, reference, error arrays, diagnosis); tests/test_run_safety.py checks it
  against the measured peak.
- A case over the budget (`refusal`) is `unsupported` for every backend before anything
  runs, with the same message on every path that calls a backend: `conformance run`
  (`RunConfig.max_memory`, --max-memory), the pytest plugin (--conformance-max-memory),
  `explore` and `repro` (--max-memory).
"""

from __future__ import annotations

import re

import numpy as np

from ..spec import FORWARD_OPS, Case
from ..text import memory_size
from ..usage import UsageError


#: Bytes the referee holds per input and per output element, oracle, comparison and
#: diagnosis of a divergence included: measured at most 46 and 165 (fitted over 4 Mi-element
#: float16/32/64 conv2d and depthwise cases, in-heavy and out-heavy; a passing output needs
#: under a third of it, being judged block by block); rounded up. tests/test_run_safety.py
#: checks the estimate against the measured peak.
ORACLE_BYTES_PER_INPUT = 64
ORACLE_BYTES_PER_OUTPUT = 192
#: Fixed part: the im2col chunks (patches.CHUNK_BYTES each) and the interpreter.
ORACLE_FIXED_BYTES = 256 << 20
#: --max-memory default: this fraction of the memory available when the run starts.
MAX_MEMORY_FRACTION = 0.5


def memory_estimate(case: Case) -> int:
    """Bytes the referee needs for `case` (inputs, reference, error arrays); an upper estimate."""
    # x, or every operand of a training op (its dy can outweigh x); its result, or for a
    # gradient the forward output too (the oracle convolves over dy's positions).
    inputs = case.batch * case.height * case.width * case.in_channels
    outputs = 0
    try:
        if case.op not in FORWARD_OPS:
            inputs = max(inputs, sum(int(np.prod(s)) for s in case.operand_shapes if s is not None))
        shapes = (case.output_shape, case.conv_output_shape)
        outputs = max(int(np.prod(s)) if all(d > 0 for d in s) else 0 for s in shapes)
    except Exception:  # an invalid case has no output to judge: its input is all there is
        pass
    return ORACLE_BYTES_PER_INPUT * inputs + ORACLE_BYTES_PER_OUTPUT * outputs + ORACLE_FIXED_BYTES


def refusal(case: Case, max_memory: int | None) -> str | None:
    """Why `case` is refused under the budget `max_memory` (None: no limit), or None to run it."""
    needs = memory_estimate(case)
    if not max_memory or needs <= max_memory:
        return None
    return (f"needs an estimated {memory_size(needs)} to judge (oracle and comparison), over --max-memory "
            f"{memory_size(max_memory)}; raise --max-memory (the pytest plugin's --conformance-max-memory) to run it")


def available_memory() -> int | None:
    """MemAvailable of /proc/meminfo (Linux), else None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def default_max_memory() -> int | None:
    avail = available_memory()
    return int(avail * MAX_MEMORY_FRACTION) if avail else None


def parse_memory(text: str) -> int:
    """'8G', '512M', '1.5GiB', '123456789' (bytes) -> bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text or "", re.IGNORECASE)
    if not m:
        raise UsageError(f"--max-memory: expected a size like 8G, 512M or a number of bytes, received {text!r}")
    value = float(m.group(1)) * (1 << (10 * " KMGT".index(m.group(2).upper() or " ")))
    if value <= 0:
        raise UsageError(f"--max-memory: expected a positive size, received {text!r}")
    return int(value)
