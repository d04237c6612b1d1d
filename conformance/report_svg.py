"""Drawing data for a divergence's SVG figures: the error heatmap and the per-channel bars.

Invariants
- Only numbers and SVG path commands are built here, never text from a results file, so
  the templates (templates/_svg.html) may put the path data in an attribute as it is.
- Colours come from `BINS`, normalised error over the case's threshold; non-finite
  errors (written as 1e300 by compare) take the last bin.
- A heatmap has at most `HEATMAP_CELLS` cells per axis (max-pooled), so one figure stays
  a few kilobytes whatever the output size.
"""

from __future__ import annotations

import math

#: Heatmaps are max-pooled to at most this many cells per axis for display.
HEATMAP_CELLS = 32
#: Colour bins for normalised error / threshold (upper bounds), then beyond and non-finite.
BINS = (
    (0.5, "#f4f9f4", "≤ ½ threshold"),
    (1.0, "#c7e9c0", "≤ threshold"),
    (2.0, "#fee391", "≤ 2×"),
    (10.0, "#fdae61", "≤ 10×"),
    (100.0, "#f46d43", "≤ 100×"),
    (1e3, "#d73027", "≤ 10³×"),
    (1e6, "#a50026", "≤ 10⁶×"),
    (math.inf, "#40004b", "> 10⁶× or non-finite"),
)
_HUGE = 1e299  # compare writes non-finite errors as 1e300 in the maps


def _bins(errors, threshold: float | None):
    """Colour bin index per error (array in, int array out): error / threshold against BINS."""
    import numpy as np

    e = np.asarray(errors, dtype=np.float64)
    nonfinite = ~np.isfinite(e) | (e >= _HUGE)
    if threshold:
        ratio = e / threshold
    else:  # exact profile: any error at all is beyond tolerance
        ratio = np.where(e == 0, 0.0, np.maximum(e, 1.0 + 1e-9))
    uppers = np.array([u for u, _, _ in BINS[:-1]])
    idx = np.searchsorted(uppers, np.where(nonfinite, np.inf, ratio), side="left")
    return np.where(nonfinite, len(BINS) - 1, idx)


def _float_array(values, ndim: int):
    """`values` as a non-empty float64 array of `ndim` dimensions, or None (bad input is not drawn)."""
    import numpy as np

    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return arr if arr.ndim == ndim and arr.size else None


def heatmap_svg(heatmap: list[list[float]] | None, threshold: float | None) -> dict | None:
    """Drawing data for the error heatmap over output H x W: one path per colour bin.

    Returns {"w", "h", "paths": [(colour, d)], "rows", "cols", "pooled"} or None. Path
    data holds only numbers and path commands (built here, never from input text).
    """
    import numpy as np

    grid = _float_array(heatmap, 2)
    if grid is None:
        return None
    rows, cols = grid.shape
    grid = np.where(np.isnan(grid), np.inf, grid)
    sh, sw = -(-rows // HEATMAP_CELLS), -(-cols // HEATMAP_CELLS)
    pooled = np.pad(grid, ((0, -rows % sh), (0, -cols % sw)), constant_values=0.0)
    pooled = pooled.reshape(pooled.shape[0] // sh, sh, pooled.shape[1] // sw, sw).max(axis=(1, 3))
    bins = _bins(pooled, threshold)
    ph, pw = bins.shape
    cell = max(4, min(16, 320 // max(ph, pw)))
    parts: dict[int, list[str]] = {}
    for i in range(ph):
        row = bins[i].tolist()
        j = 0
        while j < pw:  # one rectangle per run of one colour along the row
            k = j
            while k + 1 < pw and row[k + 1] == row[j]:
                k += 1
            n = (k - j + 1) * cell
            parts.setdefault(row[j], []).append(f"M{j * cell} {i * cell}h{n}v{cell}h-{n}z")
            j = k + 1
    paths = [(BINS[b][1], "".join(ds)) for b, ds in sorted(parts.items())]
    return {"w": pw * cell, "h": ph * cell, "paths": paths, "rows": rows, "cols": cols, "pooled": (ph, pw) != (rows, cols)}


def channel_bars_svg(errors: list[float] | None, threshold: float | None) -> dict | None:
    """Drawing data for per-channel worst errors: log-scale bars, a threshold line."""
    vals = _float_array(errors, 1)
    if vals is None:
        return None
    bins = _bins(vals, threshold).tolist()
    height, bar = 80, max(2, min(12, 480 // vals.size))

    def y(r: float) -> float:  # log10 of error / threshold, from 10^-2 (bottom) to 10^6 (top)
        if not math.isfinite(r):
            return 0.0
        r = min(max(r, 1e-2), 1e6)
        return round(height * (1 - (math.log10(r) + 2) / 8), 1)

    scale = threshold or 1.0
    parts: dict[int, list[str]] = {}
    for i, (v, b) in enumerate(zip(vals.tolist(), bins)):
        top = 0.0 if b == len(BINS) - 1 else y(v / scale)
        parts.setdefault(b, []).append(f"M{i * bar} {height}V{top}h{max(bar - 1, 1)}V{height}z")
    return {"w": vals.size * bar, "h": height, "paths": [(BINS[b][1], "".join(ds)) for b, ds in sorted(parts.items())],
            "threshold_y": y(1.0), "count": int(vals.size)}
