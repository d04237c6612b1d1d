"""`conformance run`: its options, and the run from them (`runner.execute`).

    conformance run [--backend NAME ...] [--adapter SPEC [--adapter-option NAME=VALUE] ...]
                    [--cases SELECTOR] [--dtype DTYPE] [--out DIR] [--expected FILE] ...

Invariants
- Every option is checked before a worker starts (a UsageError naming it: exit 2); a
  named backend that cannot be loaded is refused once its worker says so, naming
  --backend or --adapter, before any case runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TextIO

from .. import repeats
from ..run.config import FINDING_BUDGET_S, RunConfig
from ..run.preflight import preflight
from ..run.selection import parse_dtypes, parse_shard, select_cases
from ..runner import execute
from ..tolerance import DEFAULT_PRECISION, PRECISIONS
from ..usage import LoadError, UsageError
from . import limits
from .backend_specs import check_name, refused
from .console import summary
from .values import integer, non_negative_integer, one_of, positive_seconds


class _AdapterOption(argparse.Action):
    """--adapter-option NAME=VALUE: an option of the last --adapter given before it."""

    def __call__(self, parser, namespace, value, option_string=None):
        adapters = getattr(namespace, "adapter", None) or []
        if not adapters:
            raise UsageError(f"{option_string} {value}: expected it after the --adapter it belongs to")
        name, eq, val = value.partition("=")
        if not eq or not name.strip():
            raise UsageError(f"{option_string}: expected NAME=VALUE, received {value!r}")
        options = dict(getattr(namespace, self.dest, None) or {})
        options.setdefault(len(adapters) - 1, {})[name.strip()] = val.strip()
        setattr(namespace, self.dest, options)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", action="append", default=[], metavar="NAME",
                   help="a built-in or entry-point backend (repeatable; default: every available one)")
    p.add_argument("--adapter", action="append", default=[], metavar="SPEC",
                   help="an ad-hoc adapter, module:Class or path/to/file.py:Class (repeatable)")
    p.add_argument("--adapter-option", action=_AdapterOption, default={}, metavar="NAME=VALUE", dest="adapter_options",
                   help="a keyword argument (a string) for the class or factory of the --adapter before it (repeatable)")
    p.add_argument("--cases", default="default", metavar="SELECTOR",
                   help="set name (smoke, default, full, models), case file, case id or id glob; comma-separated unions (default: default)")
    p.add_argument("--seed", type=integer, default=0, help="seed of generated case sets (default 0)")
    p.add_argument("--budget", type=integer, default=None, help="size budget of generated case sets")
    p.add_argument("--dtype", action="append", default=None, metavar="DTYPE",
                   help="only cases of these dtypes (repeatable, or comma-separated: float16,bfloat16)")
    p.add_argument("--out", default="reports", metavar="DIR", help="output directory (default: reports)")
    p.add_argument("--force", action="store_true",
                   help="write into a non-empty --out that holds no earlier run (an earlier run's pages, scripts "
                        "and results are always replaced)")
    limits.add_arguments(p)
    p.add_argument("--expected", metavar="FILE", help="YAML manifest of known divergences (docs/running.md)")
    p.add_argument("--strict-expected", action="store_true", help="exit 1 when a known divergence is now fixed")
    p.add_argument("--baseline", metavar="FILE", help="an earlier results.json: report new and fixed divergences")
    p.add_argument("--shard", metavar="I/N", help="run only shard I of N (1-based; by a hash of the case id)")
    p.add_argument("--resume", action="store_true", help="continue OUT/results.jsonl, skipping recorded pairs")
    p.add_argument("--no-report", dest="report", action="store_false", help="skip the HTML reports")
    p.add_argument("--minimise", dest="minimise", action="store_true", default=True,
                   help="findings: shrink each divergence to a minimal case before the experiments (default)")
    p.add_argument("--no-minimise", dest="minimise", action="store_false",
                   help="findings: run the experiments from the divergence itself")
    p.add_argument("--confirm-budget", type=positive_seconds, default=FINDING_BUDGET_S, metavar="SECONDS",
                   help=f"findings: seconds of experiments (characterising and confirming) per finding "
                        f"(default {FINDING_BUDGET_S:g}; twelve times that, at least 120, per run)")
    p.add_argument("--no-confirm", dest="confirm", action="store_false",
                   help="findings: no experiments; each backend's divergences are one uncharacterised finding")
    p.add_argument("--quiet", action="store_true", help="no progress lines and no summary table")
    p.add_argument("--repeats", type=non_negative_integer, default=repeats.DEFAULT_CALLS, metavar="N",
                   help=f"call the backend N more times with the same inputs, and flag differing results as "
                        f"`nondeterministic` (default {repeats.DEFAULT_CALLS}; 0: off), on every case of at most "
                        f"{repeats.SMALL_MACS:,} multiply-adds and 1 in {repeats.SAMPLE} of the others of at most "
                        f"{repeats.SAMPLED_OUTPUTS:,} output elements "
                        f"(docs/running.md: repeats)")
    p.add_argument("--repeat-all", action="store_true",
                   help="repeat every case, not only the small ones and the sample (--repeats N times)")
    p.add_argument("--precision", type=one_of(PRECISIONS), choices=PRECISIONS, default=DEFAULT_PRECISION,
                   help="precision contract of the verdict: strict (default: 16-bit types accumulate in float32), "
                        "relaxed, any (accumulation in the dtype accepted), tf32, and the transform algorithms' "
                        "winograd, fft, winograd4, winograd6 (docs/tolerance.md, docs/contracts-transforms.md)")


def _specs(args) -> list[str]:
    from conformance.adapters import registry

    if not args.backend and not args.adapter:
        specs = registry.default_specs()
        if not specs:
            raise UsageError("run: expected at least one available backend, received none (see `conformance backends`)")
        return specs
    known = registry.known_names()
    options = getattr(args, "adapter_options", None) or {}
    try:
        adapters = [registry.with_options(spec, options.get(i, {})) for i, spec in enumerate(args.adapter)]
    except registry.BackendError as exc:
        raise UsageError(f"--adapter-option: {exc}") from None
    for spec in args.adapter:
        if ":" not in spec and spec not in known:  # 'file.py' alone: say what is missing, not "unknown backend"
            raise UsageError(f"--adapter {spec}: expected 'module:Class' or 'path/to/file.py:Class', "
                             f"received no ':Class'")
    for name in args.backend:
        # Loading is the worker's to find out (discover() would cost a second here, and only
        # importing tells): a named backend that cannot load stops the run with exit 2 once
        # its worker reports it (usage.LoadError), before any case runs.
        check_name(name, "--backend", targets=False)
    specs = list(dict.fromkeys(list(args.backend) + adapters))
    return specs


def run(args: argparse.Namespace, stream: TextIO) -> int:
    """Run the cases on the backends; the run's exit code (usage.py)."""
    shard = parse_shard(args.shard) if args.shard is not None else None
    if args.repeat_all and args.repeats == 0:
        raise UsageError("--repeat-all: expected --repeats of at least 1, received --repeats 0 (repeats off)")
    args.dtype = parse_dtypes(args.dtype)
    max_memory = limits.max_memory(args)
    cfg = RunConfig(specs=[], selector=args.cases, seed=args.seed, budget=args.budget, dtypes=args.dtype,
                    out=Path(args.out), timeout=args.timeout, expected=args.expected, baseline=args.baseline,
                           shard=shard, resume=args.resume, report=args.report, minimise=args.minimise,
                           strict_expected=args.strict_expected, quiet=args.quiet, argv=list(args.argv),
                           confirm_budget_s=args.confirm_budget if args.confirm else None,
                           named=bool(args.backend or args.adapter), precision=args.precision,
                           max_memory=max_memory, force=args.force,
                           repeats=repeats.Policy(calls=args.repeats, every=args.repeat_all))
    cfg.specs = _specs(args)
    cases = select_cases(cfg.selector, seed=cfg.seed, budget=cfg.budget, dtypes=cfg.dtypes, shard=shard)
    if not cases and shard is None:  # an empty shard of a small set is fine; an empty selection is not
        raise UsageError(f"--cases {cfg.selector!r}: expected at least one case, received none"
                         + (f" in shard {args.shard}" if shard else "") + (f" for dtypes {args.dtype}" if args.dtype else ""))
    preflight(cfg)
    try:
        outcome = execute(cfg, cases, stream)  # writes the "N cases x M backends" line once they started
    except LoadError as exc:
        raise refused("--backend" if exc.spec in args.backend else "--adapter", exc.spec, exc.reason) from None
    if not args.quiet:
        stream.write(summary(outcome))
    for w in outcome.warnings:
        stream.write(f"warning: {w}\n")
    for e in outcome.errors:  # exit 2: a named backend tested nothing
        stream.write(f"error: {e}\n")
    return outcome.exit_code
