"""The NumPy backend: the oracle itself, rounded to the case dtype.

It must pass every valid case (a failure means the suite, not a framework, is wrong)
and raise ValueError on every invalid case. Its repro imports the oracle, which is
NumPy only.
"""

from __future__ import annotations

from conformance.spec import Case

from ._base import BuiltinAdapter
from ._program import Program


class NumpyAdapter(BuiltinAdapter):
    """The oracle itself as a backend: the self-check."""

    framework = "numpy"
    base_name = "numpy"
    distributions = ("numpy",)

    def __init__(self, device: str = "cpu"):
        if device != "cpu":
            raise ValueError(f"device: expected 'cpu' for the NumPy backend, received {device!r}")
        super().__init__(device)

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
