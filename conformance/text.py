"""How values become text: numbers in messages and tables, JSON-safe numbers, file names.

Every message, console line, report cell and file name of the engine is built with
these, so that one number reads the same everywhere (a divergence's "max normalised
error 3.2" in the record, the console and the bug report).

Invariants
- It imports nothing of the engine: it sits at the bottom of the import graph.
- `json_safe` is the only place non-finite floats become the strings "nan", "inf" and
  "-inf" (results.json forbids bare NaN/Infinity tokens).
- `safe_filename` is the only rule turning a name (a backend spec such as
  `torch[memory=channels_last]` or `path/to/file.py:Class`) into a file name.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np


def json_safe(obj: Any) -> Any:
    """JSON-safe copy: non-finite floats become "nan"/"inf"/"-inf" (results.json forbids NaN),
    NumPy scalars plain numbers; dicts, lists and tuples are copied (tuples as lists)."""
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        if math.isfinite(v):
            return v
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def number(v: Any, digits: int = 4, *, none: str = "inf") -> str:
    """A number in a message or a console line: `digits` significant digits ("%g").

    None is written `none` (figures record an infinite bound, such as the hard bound of a
    sum too long to have one, as null); strings (figures recorded as "nan"/"inf") and
    integers are written as they are.
    """
    if v is None:
        return none
    if isinstance(v, str):
        return v
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return f"{float(v):.{digits}g}"


def cell_number(v: Any) -> str:
    """A number in a report table cell: empty for a missing figure, 4 significant digits in
    [1e-3, 1e5), else 3 in scientific notation, so that a column of them lines up."""
    if v is None or v == "":
        return ""
    if isinstance(v, str):
        return v
    v = float(v)
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if math.isnan(v):
        return "nan"
    if v == 0:
        return "0"
    if 1e-3 <= abs(v) < 1e5:
        return f"{v:.4g}"
    return f"{v:.3e}"


def memory_size(n: int) -> str:
    """A number of bytes for a message: GiB with one decimal from a quarter GiB up ("1.5 GiB"),
    else whole MiB ("96 MiB")."""
    return f"{n / 2 ** 30:.1f} GiB" if n >= 2 ** 28 else f"{n / 2 ** 20:.0f} MiB"


def safe_filename(name: str, default: str = "backend") -> str:
    """`name` as a file name: runs of anything but letters, digits, "_", "." and "-" become
    one "_", leading and trailing "_", "." and "-" go (no hidden files); `default` when
    nothing is left. `torch[memory=channels_last]` -> `torch_memory_channels_last`."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._-") or default


def clip(text: str, limit: int) -> str:
    """`text` on one line, cut to at most `limit` characters at a word boundary, with "…" when cut."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:(") + "…"


def ranges(idx: list[int], limit: int = 12) -> str:
    """[0, 1, 2, 5, 7, 8] -> '0-2, 5, 7-8' (at most `limit` runs)."""
    if not idx:
        return "none"
    runs, start, prev = [], idx[0], idx[0]
    for i in idx[1:] + [None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        runs.append(f"{start}" if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    more = f", ... ({len(runs) - limit} more runs)" if len(runs) > limit else ""
    return ", ".join(runs[:limit]) + more
