"""Which cases a run has: a selector's cases (`cases.sets.select`), of some dtypes, one shard.

Invariants
- Bad input is a UsageError naming the option (`--dtype`, `--shard`, or the option or
  argument that holds the selector), with a did-you-mean hint for a misspelled dtype or
  set name.
- Sharding is by a SHA-256 of the case id: the same on every machine and in every
  process, so the shards of a CI matrix are disjoint and together are the whole set.
"""

from __future__ import annotations

import hashlib
import re

from ..spec import DTYPES, Case
from ..usage import UsageError, did_you_mean


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
    for d in out:
        if d not in DTYPES:
            raise UsageError(f"--dtype: expected {', '.join(DTYPES)} (repeatable or comma-separated), received "
                             f"{d!r}{did_you_mean(d, DTYPES)}")
    return list(dict.fromkeys(out))


def shard_of(case_id: str, n: int) -> int:
    """The 1-based shard of a case: a SHA-256 of its id, the same on every machine."""
    return int.from_bytes(hashlib.sha256(case_id.encode()).digest()[:8], "big") % n + 1


def set_name_hint(selector: str) -> str:
    """A did-you-mean hint for the first comma-separated part of `selector` that looks like a
    misspelled set name ("" when none does; a case id or a file is not a set name)."""
    from conformance.cases.sets import SETS

    for part in (p.strip() for p in selector.split(",")):
        hint = did_you_mean(part, SETS) if part and part not in SETS else ""
        if hint:
            return hint
    return ""


def select_cases(selector: str, *, seed: int = 0, budget: int | None = None, dtypes: list[str] | None = None,
                 shard: tuple[int, int] | None = None, option: str = "--cases") -> list[Case]:
    """The cases of `selector` (in shard I of N); `option` is what the user wrote it as, for errors."""
    from conformance.cases.sets import select

    try:
        cases = select(selector, seed=seed, budget=budget, dtypes=dtypes)
    except ValueError as exc:  # CaseFileError, CaseError and unknown selectors are ValueErrors
        message = str(exc).removeprefix("cases: ")
        raise UsageError(f"{option}: {message}{set_name_hint(selector)}") from None
    if shard is not None:
        cases = [c for c in cases if shard_of(c.id, shard[1]) == shard[0]]
    return cases
