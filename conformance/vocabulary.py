"""The words of a verdict: record statuses and divergence kinds, and which of them fail a run.

They are a stable vocabulary: results.json, junit.xml, the reports, manifests (`kind:`)
and the CLI all use them (docs/results-schema.md). This module is their one home.

Invariants
- It imports nothing: every module of the engine may use it, so it sits at the bottom
  of the import graph.
- A status is decided by the verdict (`verdict.judge`), or, for `crash` and `timeout`,
  which exist only in worker processes, by the record (`record.record_reply`); a kind is
  decided once, by `compare.compare`. Nothing here decides; it only names.
"""

#: The status of a (case, backend) record, in the order tables show them.
STATUSES = ("pass", "diverge", "unsupported", "error", "crash", "timeout")
#: Statuses that make a (case, backend) pair non-conformant unless a manifest entry knows it.
FAILING_STATUSES = ("diverge", "error", "crash", "timeout")

#: Divergence kinds, decided by `compare.compare` (its docstring defines each).
KINDS = ("shape", "dtype", "nonfinite", "subnormal_flush", "inexact", "precision", "value", "rounding_bias",
         "invalid_accepted")
#: Kinds that say nothing about a backend's precision: a precision profile counts such
#: records (`other`) but does not rank them.
NOT_PRECISION_KINDS = ("shape", "dtype", "nonfinite", "subnormal_flush", "inexact", "value", "invalid_accepted")
#: What each kind says about a backend, as the end of a sentence ("... returns wrong values").
KIND_PHRASES = {
    "shape": "returns an output of the wrong shape",
    "dtype": "returns an output of the wrong dtype",
    "nonfinite": "returns wrong NaN/Inf values",
    "subnormal_flush": "flushes subnormals to zero",
    "inexact": "is inexact where the exact result is representable",
    "precision": "computes in a reduced precision",
    "value": "returns wrong values",
    "rounding_bias": "rounds with a systematic bias",
    "invalid_accepted": "accepts an invalid case instead of raising an error",
}
