"""Helpers shared by the runner/CLI tests: tiny case files and in-process CLI calls."""

from __future__ import annotations

import io
from pathlib import Path

import yaml

from conformance import cli, results

ADAPTERS = Path(__file__).resolve().parent / "adapters_for_tests.py"

#: Small conv2d cases; the name's first word tells `Misbehaving` what to do.
BASE = {"op": "conv2d", "batch": 1, "in_channels": 2, "kernel": 3, "out_channels": 2, "dtype": "float32", "width": 5}


def adapter(cls: str) -> str:
    return f"{ADAPTERS}:{cls}"


def case_file(path: Path, names: list[str]) -> Path:
    """A case file with one case per name; heights 5, 6, ... keep the ids distinct.

    A name starting with "accept" or "invalid" gets an invalid case (empty output).
    """
    cases = []
    for i, name in enumerate(names):
        word = name.split("-")[0]
        if word in ("accept", "invalid"):
            cases.append({"name": name, "height": 2, "width": 2 + i, "expect": "error"})
        else:
            cases.append({"name": name, "height": 5 + i})
    path.write_text(yaml.safe_dump({"description": "runner test cases", "defaults": BASE, "cases": cases}))
    return path


def run_cli(*argv: str) -> tuple[int, str]:
    """(exit code, stderr text) of `conformance ARGV` run in this process."""
    err = io.StringIO()
    code = cli.main(list(argv), stream=err)
    return code, err.getvalue()


def verdicts(results_json: Path) -> dict[tuple[str, str], tuple[str, str | None]]:
    run = results.load(results_json)
    return {(r["case_id"], r["backend"]): (r["status"], r["kind"]) for r in run["records"]}


def by_name(results_json: Path, backend: str) -> dict[str, dict]:
    """Records of one backend keyed by the case name."""
    run = results.load(results_json)
    return {r["case"]["name"]: r for r in run["records"] if r["backend"] == backend}
