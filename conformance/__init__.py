"""conv-conformance: judge 2-D convolution backends against an exact NumPy oracle.

The engine imports NumPy only; frameworks are imported lazily inside adapters.
"""

from .spec import Case, CaseError, conv_geometry

__version__ = "0.1.0"
__all__ = ["Case", "CaseError", "conv_geometry", "__version__"]
