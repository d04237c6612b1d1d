"""Which cases a run has: a selector's cases (`cases.sets.select`), of some dtypes, one shard.

Invariants
- Sharding is by a SHA-256 of the case id: the same on every machine and in every
  process, so the shards of a CI matrix are disjoint and together are the whole set.
"""

from __future__ import annotations

import hashlib
import re

from ..spec import Case
from ..usage import UsageError


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' with 1 <= I <= N (1-based, as CI matrices count)."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not m or not (1 <= int(m.group(1)) <= int(m.group(2))):
        raise UsageError(f"--shard: expected I/N with 1 <= I <= N (e.g. 2/4), received {text!r}")
    return int(m.group(1)), int(m.group(2))


def parse_dtypes(values: list[str] | None) -> list[str] | None:
    """--dtype float16,bfloat16 --dtype float32 -> ["float16", "bfloat16", "float32"]."""
    if values is None:
        return None
    out = [d.strip() for v in values for d in v.split(",") if d.strip()]
    if not out:
        raise UsageError(f"--dtype: expected a dtype name, received {','.join(values)!r}")
    return list(dict.fromkeys(out))


def shard_of(case_id: str, n: int) -> int:
    """The 1-based shard of a case: a SHA-256 of its id, the same on every machine."""
    return int.from_bytes(hashlib.sha256(case_id.encode()).digest()[:8], "big") % n + 1


def select_cases(selector: str, *, seed: int = 0, budget: int | None = None, dtypes: list[str] | None = None,
                 shard: tuple[int, int] | None = None) -> list[Case]:
    from conformance.cases.sets import select

    try:
        cases = select(selector, seed=seed, budget=budget, dtypes=dtypes)
    except ValueError as exc:  # CaseFileError, CaseError and unknown selectors are ValueErrors
        raise UsageError(f"--cases {selector!r}: {exc}") from None
    if shard is not None:
        cases = [c for c in cases if shard_of(c.id, shard[1]) == shard[0]]
    return cases
