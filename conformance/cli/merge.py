"""`conformance merge`: one run from shard results (`run.merge`), written like a run's outputs."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import TextIO

from .. import expected
from ..fingerprint import facts
from ..run.merge import merge
from ..run.outputs import write_outputs
from ..usage import UsageError
from .console import summary


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="RESULTS_JSON", help="the results.json of each shard")
    p.add_argument("--out", default="reports", metavar="DIR",
                   help="where the merged results.json, junit.xml and reports go (default: reports)")
    p.add_argument("--no-report", dest="report", action="store_false", help="skip the HTML reports")
    p.add_argument("--expected", metavar="FILE", help="re-decide known divergences with this manifest")
    p.add_argument("--strict-expected", action="store_true", help="exit 1 when a known divergence is now fixed")
    p.add_argument("--quiet", action="store_true", help="no summary table")


def run(args: argparse.Namespace, stream: TextIO) -> int:
    """Merge the shards' results into --out; the merged run's exit code."""
    merged, copies = merge(args.files)
    out = Path(args.out)
    for src, rel in copies:  # repro paths are relative to the results file's directory
        if (src / rel).is_file() and (src / rel).resolve() != (out / rel).resolve():
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / rel, out / rel)
    entries = []
    if args.expected:
        try:
            entries = expected.load_manifest(args.expected)
        except expected.ManifestError as exc:
            raise UsageError(f"--expected: {exc}") from None
        for rec in merged["records"]:
            rec["known"] = expected.match(entries, rec, facts(merged["fingerprints"].get(rec.get("fingerprint") or "")))
    outcome = write_outputs(out, merged, entries, None, report=args.report,
                            strict_expected=args.strict_expected, expected_path=args.expected)
    if not args.quiet:
        stream.write(summary(outcome))
    for w in outcome.warnings:
        stream.write(f"warning: {w}\n")
    return outcome.exit_code
