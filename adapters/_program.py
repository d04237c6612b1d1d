"""Run a backend by executing the very source text its repro carries.

A built-in adapter describes one case as a `Program`: `setup` (imports, and whatever
does not depend on the arrays: an ONNX model and its session, JAX configuration) and
`compute` (turns the case's operands, NumPy arrays named as `Case.operands` says: `x`,
`filters`, `bias` for the forward ops, `dy` and `pointwise` for the others, into `y`). `run` executes exactly
that text; `repro_code` returns exactly that text. They cannot drift apart.

Invariants
- The source imports only NumPy and the one framework, and reads no name but the case's
  operands; it defines `y`, the canonical NumPy result.
- A setup is executed once per process for each distinct setup text (its namespace
  is cached): identical text means an identical model/session, so caching by text is
  caching by signature. Each compute gets a fresh copy of that namespace.
- Source is registered with `linecache`, so a framework error's traceback shows the
  line of the snippet that raised it.
"""

from __future__ import annotations

import hashlib
import linecache
from typing import Any, NamedTuple

import numpy as np


class Program(NamedTuple):
    setup: str
    compute: str

    @property
    def source(self) -> str:
        return self.setup.rstrip("\n") + "\n\n" + self.compute.rstrip("\n") + "\n"


_CODE: dict[str, Any] = {}
_SETUPS: dict[str, dict[str, Any]] = {}
_MAX_SETUPS = 256  # ONNX sessions hold memory: bound the cache (oldest evicted first)


def _compiled(text: str, label: str):
    code = _CODE.get(text)
    if code is None:
        filename = f"<{label} {hashlib.sha1(text.encode()).hexdigest()[:10]}>"
        linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
        code = _CODE[text] = compile(text, filename, "exec")
    return code


def execute(program: Program, label: str, arrays: dict[str, np.ndarray | None]) -> np.ndarray:
    """Run `program` on the arrays (name -> array: the case's operands) and return its `y`."""
    return namespace(program, label, arrays)["y"]


def namespace(program: Program, label: str, arrays: dict[str, np.ndarray | None]) -> dict[str, Any]:
    """Run `program` on the arrays (name -> array) and return every name it defined (`y`,
    and the model, session or interpreter it built: what a kernel-path probe reads)."""
    base = _SETUPS.get(program.setup)
    if base is None:
        base = {"__name__": f"conformance_{label}"}
        exec(_compiled(program.setup, label), base)  # noqa: S102 (our own generated source)
        if len(_SETUPS) >= _MAX_SETUPS:
            _SETUPS.pop(next(iter(_SETUPS)))
        _SETUPS[program.setup] = base
    ns = dict(base)
    ns.update(arrays)
    exec(_compiled(program.compute, label), ns)  # noqa: S102
    if "y" not in ns:
        raise RuntimeError(f"{label}: expected the program to define y, received names {sorted(ns)}")
    return ns
