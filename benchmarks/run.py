"""Where the time of a `conformance run` goes: backends, oracle, comparison, harness.

    python benchmarks/run.py                       # default set, every available backend
    python benchmarks/run.py --cases smoke --backend numpy --backend torch

Figures (one run, --no-report, --no-minimise, into a temporary directory):
- wall: the whole run; startup: until every worker had imported its framework.
- per backend: the sum of `time.backend_s` (inside `adapter.run`, measured in the worker).
- oracle: inputs + reference per case (once per case, shared by the backends);
  compare: the sum of `time.compare_s`.
- critical path: sum over cases of the slowest backend on that case. Backends compute
  concurrently, so a free harness would take startup + critical path (on enough cores).
- case loop: from the first dispatch to the last record (no startup, no output writing).
- harness overhead per case = (case loop - critical path) / cases, and the coarser
  (wall - max backend total) / cases, which also charges startup and output writing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def measure(selector: str, specs: list[str] | None, timeout: float) -> dict:
    from conformance.adapters import registry
    from conformance.run.config import RunConfig
    from conformance.run.selection import select_cases
    from conformance.runner import execute

    specs = specs or registry.default_specs()
    cases = select_cases(selector)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = RunConfig(specs=specs, selector=selector, out=Path(tmp), timeout=timeout, report=False,
                        minimise=False, quiet=True)
        t0 = time.perf_counter()
        outcome = execute(cfg, cases)
        wall = time.perf_counter() - t0
    return figures(outcome.run, wall)


def figures(run: dict, wall: float | None = None) -> dict:
    """The table's figures from a results.json document (wall from the run when not given)."""
    wall = run["run"].get("wall_s") if wall is None else wall
    if wall is None:
        raise SystemExit("benchmarks/run.py: expected a results.json with run.wall_s, received one without it")
    specs = list(run["backends"])
    cases = range(run["run"].get("cases") or len({r["case_id"] for r in run["records"]}))
    records = run["records"]
    per_backend: dict[str, float] = {}
    per_case_max: dict[str, float] = {}
    oracle: dict[str, float] = {}
    compare = 0.0
    for r in records:
        t = r["time"]
        b = t.get("backend_s") or 0.0
        per_backend[r["backend"]] = per_backend.get(r["backend"], 0.0) + b
        per_case_max[r["case_id"]] = max(per_case_max.get(r["case_id"], 0.0), b)
        if t.get("oracle_s") is not None:
            oracle[r["case_id"]] = t["oracle_s"]
        compare += t.get("compare_s") or 0.0
    n = len(cases)
    startup = run["run"].get("startup_s") or 0.0
    loop = run["run"].get("cases_s") or 0.0
    critical = sum(per_case_max.values())
    return {"cases": n, "backends": len(specs), "records": len(records), "wall": wall, "startup": startup,
            "per_backend": per_backend, "oracle": sum(oracle.values()), "compare": compare, "critical": critical,
            "loop": loop, "overhead_per_case": (loop - critical) / n if n else 0.0,
            "coarse_overhead_per_case": (wall - max(per_backend.values(), default=0.0)) / n if n else 0.0}


def table(m: dict) -> str:
    rows = [("cases x backends", f"{m['cases']} x {m['backends']} = {m['records']} records"),
            ("wall", f"{m['wall']:.2f} s"), ("startup (import frameworks)", f"{m['startup']:.2f} s"),
            ("cases per second (case loop)", f"{m['cases'] / max(m['loop'], 1e-9):.2f}")]
    for name, t in sorted(m["per_backend"].items(), key=lambda kv: -kv[1]):
        rows.append((f"  inside {name}", f"{t:.2f} s"))
    rows += [("oracle (once per case)", f"{m['oracle']:.2f} s"), ("compare (all records)", f"{m['compare']:.2f} s"),
             ("critical path (sum of slowest backend per case)", f"{m['critical']:.2f} s"),
             ("case loop (wall - startup - writing outputs)", f"{m['loop']:.2f} s"),
             ("harness overhead per case: (case loop - critical path) / cases", f"{1000 * m['overhead_per_case']:.1f} ms"),
             ("harness overhead per case: wall - max backend total", f"{1000 * m['coarse_overhead_per_case']:.1f} ms")]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", default="default")
    p.add_argument("--backend", action="append", default=None)
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--from", dest="source", metavar="RESULTS_JSON",
                   help="analyse an earlier run instead (its timings include minimising and reports)")
    args = p.parse_args(argv)
    if args.source:
        from conformance.results import load

        print(table(figures(load(args.source))))
    else:
        print(table(measure(args.cases, args.backend, args.timeout)))
    return 0


if __name__ == "__main__":  # the guard matters: worker processes must not rerun this
    sys.exit(main())
