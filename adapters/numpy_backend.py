"""The NumPy backend: the oracle itself, rounded to the case dtype.

It must pass every valid case (a failure means the suite, not a framework, is wrong)
and raise ValueError on every invalid case. Its repro imports the oracle, which is
NumPy only.
Kernel path (`facts`): the BLAS its float64 GEMMs run on (the oracle's sums are exact
whatever the BLAS's order or FMA use: recorded to explain, not to excuse).
"""

from __future__ import annotations

from conformance.spec import Case

from typing import Any

from ._base import BuiltinAdapter, Fact
from ._program import Program


class NumpyAdapter(BuiltinAdapter):
    """The oracle itself as a backend: the self-check."""

    framework = "numpy"
    base_name = "numpy"
    distributions = ("numpy",)
    facts = {"numpy.blas": Fact(str, "the BLAS NumPy's matrix products run on (numpy.show_config: "
                                     "scipy-openblas, mkl, accelerate, ...)")}

    def __init__(self, device: str = "cpu"):
        if device != "cpu":
            raise ValueError(f"device: expected 'cpu' for the NumPy backend, received {device!r}")
        super().__init__(device)

    def _kernel_path(self, ns: dict[str, Any]) -> dict[str, dict[str, Any]]:
        np = ns["np"]
        try:
            blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        except (TypeError, KeyError):  # NumPy < 1.26 prints its configuration only
            blas = {}
        return {"numpy": {"version": np.__version__, "blas": blas.get("name"), "blas_version": blas.get("version")}}

    def _program(self, case: Case) -> Program:
        setup = "import numpy as np\nfrom conformance.oracle import convolve\nfrom conformance.spec import Case\n"
        compute = f"""\
case = Case.from_json({case.to_json()!r})
if not case.is_valid:
    raise ValueError(f"invalid case {{case.id}}: {{case.invalid_reason}}")
if x.shape != case.input_shape or filters.shape != case.filter_shape:
    raise ValueError(f"expected x {{case.input_shape}} and filters {{case.filter_shape}}, received {{x.shape}} and {{filters.shape}}")
# float64 (compensated for float64 cases), rounded once to the case dtype.
with np.errstate(over="ignore"):  # results beyond the dtype's range round to +-Inf, as IEEE says
    y = convolve(case, x, filters, bias).astype(x.dtype)
"""
        return Program(setup, compute)
