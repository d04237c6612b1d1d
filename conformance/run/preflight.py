"""The run's input files, read and checked before anything starts: the manifest (--expected),
the baseline (--baseline), the run to resume (--resume: its stream, or a completed
run's results.json) and --out.

Invariants
- Every problem with them is a UsageError naming the option and the file, raised before
  a worker starts; a resumed stream must have been written with the same parameters
  (`config.RESUME_KEYS`).
"""

from __future__ import annotations

from typing import Any

from .. import expected as expected_mod
from .. import results
from ..usage import UsageError
from .config import RESUME_KEYS, RunConfig


def load_extras(cfg: RunConfig) -> tuple[list, dict[str, Any] | None]:
    """(manifest entries, baseline run) of --expected and --baseline (empty, None without them)."""
    entries, baseline = [], None
    if cfg.expected:
        try:
            entries = expected_mod.load_manifest(cfg.expected)
        except expected_mod.ManifestError as exc:
            raise UsageError(f"--expected: {exc}") from None
    if cfg.baseline:
        try:
            baseline = results.load(cfg.baseline)
        except results.ResultsError as exc:
            raise UsageError(f"--baseline: {exc}") from None
    return entries, baseline


def resume_state(cfg: RunConfig) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """(header, records) of an earlier run to continue, or None for a fresh run: its stream
    (results.jsonl, left by an interrupted run), else a completed run's results.json."""
    if not cfg.resume:
        return None
    path = results.stream_path(cfg.out / "results.jsonl")
    try:
        if path is not None:
            header, recs = results.read_jsonl(path)
        elif (cfg.out / "results.json").is_file():
            path = cfg.out / "results.json"
            point = results.resume_point(results.load(path))
            if point is None:
                raise UsageError(f"--resume: {path}: expected a run's results.json with its parameters "
                                 f"(run.params), received one without (a merge, or a file of schema 2 without "
                                 f"its results.jsonl.gz); rerun without --resume")
            header, recs = point
        else:
            return None
    except results.ResultsError as exc:
        raise UsageError(f"--resume: {exc}") from None
    for n, rec in enumerate(recs):
        bad = [k for k in ("case_id", "backend", "status") if not isinstance(rec.get(k), str)]
        if bad:
            raise UsageError(f"--resume: {path}: record {n + 1}: expected a string {bad[0]!r}, received "
                             f"{rec.get(bad[0])!r}; rerun without --resume")
    before, now = header.get("params", {}), cfg.params()
    if not isinstance(before, dict):
        raise UsageError(f"--resume: {path}: expected a header with run parameters, received {before!r}")
    diff = [k for k in RESUME_KEYS if before.get(k) != now.get(k)]
    if diff:
        k = diff[0]
        raise UsageError(f"--resume: {path} was written with {k} {before.get(k)!r}, this run has {k} {now.get(k)!r}; "
                         f"rerun with the same parameters or without --resume")
    return header, recs


def check_out(cfg: RunConfig) -> None:
    """--out is a directory or a path to create, never an existing file."""
    if cfg.out.exists() and not cfg.out.is_dir():
        raise UsageError(f"--out {cfg.out}: expected a directory (or a path to create), received an existing "
                         f"{'file' if cfg.out.is_file() else 'non-directory'}")


def preflight(cfg: RunConfig) -> None:
    """Every check of the run's input files (manifest, baseline, resume stream, --out), before anything starts."""
    check_out(cfg)
    load_extras(cfg)
    resume_state(cfg)
