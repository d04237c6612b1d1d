"""Backend adapters: one small module per framework behind one duck-typed contract.

    name: str                                   # "torch", "torch[native_pad]", "torch:cuda" ...
    version() -> str                            # framework version
    device() -> str                             # "cpu", "cuda:0", ...
    supports(case) -> str | None                # None, or the framework's own reason it can't
    run(case, *operands) -> np.ndarray          # canonical layouts in and out, case dtype
    repro_code(case) -> str                     # built-ins: the standalone source `run` executes
    ops: tuple[str, ...]                        # optional: the ops it computes (absent: the two
                                                # forward ops); another op is never asked for

`operands` are `case.operands`: (x, filters, bias) for conv2d and depthwise_conv2d (the
forward contract, unchanged), (dy, filters) for the gradients w.r.t. the input, (x, dy) for
the gradients w.r.t. the filters, (x, filters, pointwise, bias) for separable_conv2d.

Importing this package (or any adapter module) imports no framework: each adapter
imports its framework when it first computes. `registry` derives the built-ins from the
adapter classes' declarations and turns a spec string into an adapter; `probe_reason`
and `framework_reason` are the public helpers for writing `supports()`.
"""

from ._base import framework_reason, probe_reason
from .registry import (BUILTINS, BackendError, BackendInfo, SupportsError, check_contract, checked_supports,
                       default_specs, discover, load)

__all__ = ["BUILTINS", "BackendError", "BackendInfo", "SupportsError", "check_contract", "checked_supports",
           "default_specs", "discover", "framework_reason", "load", "probe_reason"]
