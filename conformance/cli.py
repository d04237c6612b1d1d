"""The `conformance` command: run, backends, cases, merge, repro, explore.

Exit codes (every subcommand): 0 nothing unexpected; 1 an unexpected divergence, error,
crash or timeout (a backend that crashes or hangs is not conformant), or with
--strict-expected a known divergence that is now fixed; 2 bad usage or bad input (one
line on stderr, no traceback), including a --backend/--adapter that cannot be loaded;
130 interrupted (what was done is written).

`repro`, `explore` and `report` live in conformance.repro, .explore and .report; each exposes
`add_arguments(parser)` and `run(args) -> int` and is imported only when its subcommand
is used.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
import warnings
from pathlib import Path
from typing import Sequence, TextIO

from . import runner
from .runner import EXIT_FAIL, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UsageError
from .text import clip, number
from .vocabulary import STATUSES

LAZY = {"repro": ("conformance.repro", "reproduce one case on one backend in this process, with a bug-report script"),
        "explore": ("conformance.explore", "search for divergences with hypothesis-generated cases"),
        "report": ("conformance.report", "render the HTML reports of a saved results.json")}


#: Lines of unexpected results in the summary (one per distinct backend, kind and message); the rest are counted.
SUMMARY_ROWS = 60
#: Unsupported reasons listed per backend in the summary (most frequent first); the rest are counted.
UNSUPPORTED_ROWS = 8
#: Characters of a message on one summary line: one result's, and one standing for many.
MESSAGE_CHARS, GROUP_MESSAGE_CHARS = 160, 400


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line and exit 2, like every other bad input
        raise UsageError(f"{self.prog}: {message}")


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, received {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, received {text!r}")
    return v


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


def _add_run(sub) -> None:
    p = sub.add_parser("run", help="run the case set on the backends and write results and reports",
                       description="Run every selected case on every backend, each backend in its own worker process.")
    p.add_argument("--backend", action="append", default=[], metavar="NAME",
                   help="a built-in or entry-point backend (repeatable; default: every available one)")
    p.add_argument("--adapter", action="append", default=[], metavar="SPEC",
                   help="an ad-hoc adapter, module:Class or path/to/file.py:Class (repeatable)")
    p.add_argument("--adapter-option", action=_AdapterOption, default={}, metavar="NAME=VALUE", dest="adapter_options",
                   help="a keyword argument (a string) for the class or factory of the --adapter before it (repeatable)")
    p.add_argument("--cases", default="default", metavar="SELECTOR",
                   help="set name (smoke, default, full, models), case file, case id or id glob; comma-separated unions (default: default)")
    p.add_argument("--seed", type=int, default=0, help="seed of generated case sets (default 0)")
    p.add_argument("--budget", type=int, default=None, help="size budget of generated case sets")
    p.add_argument("--dtype", action="append", default=None, metavar="DTYPE",
                   help="only cases of these dtypes (repeatable, or comma-separated: float16,bfloat16)")
    p.add_argument("--out", default="reports", metavar="DIR", help="output directory (default: reports)")
    p.add_argument("--force", action="store_true",
                   help="write into a non-empty --out that holds no earlier run (an earlier run's pages, scripts "
                        "and results are always replaced)")
    p.add_argument("--max-memory", metavar="SIZE", default=None,
                   help="cases whose oracle and comparison are estimated to need more (e.g. 8G) are unsupported "
                        f"(default: {runner.MAX_MEMORY_FRACTION * 100:.0f}%% of the memory available at the start)")
    p.add_argument("--timeout", type=_positive_float, default=60.0, metavar="SECONDS",
                   help="per case and backend; past it the worker is killed and the case is a timeout (default 60)")
    p.add_argument("--expected", metavar="FILE", help="YAML manifest of known divergences (docs/running.md)")
    p.add_argument("--strict-expected", action="store_true", help="exit 1 when a known divergence is now fixed")
    p.add_argument("--baseline", metavar="FILE", help="an earlier results.json: report new and fixed divergences")
    p.add_argument("--shard", metavar="I/N", help="run only shard I of N (1-based; by a hash of the case id)")
    p.add_argument("--resume", action="store_true", help="continue OUT/results.jsonl, skipping recorded pairs")
    p.add_argument("--no-report", dest="report", action="store_false", help="skip the HTML reports")
    p.add_argument("--minimise", dest="minimise", action="store_true", default=True,
                   help=f"minimise unexplained divergences, one per backend, kind and diagnosis (default; "
                        f"at most {runner.MINIMISE_CASE_S:g} s each, {runner.MINIMISE_BACKEND_S:g} s per backend)")
    p.add_argument("--no-minimise", dest="minimise", action="store_false", help="do not minimise divergences")
    p.add_argument("--confirm-budget", type=_positive_float, default=4.0, metavar="SECONDS",
                   help="confirm each finding's predicate on new cases for at most this long (default 4)")
    p.add_argument("--no-confirm", dest="confirm", action="store_false",
                   help="do not confirm findings (they are still grouped, characterised and get a short repro)")
    p.add_argument("--quiet", action="store_true", help="no progress lines and no summary table")
    p.add_argument("--precision", choices=("strict", "relaxed", "any", "tf32"), default="strict",
                   help="precision contract of the verdict: strict (default: 16-bit types accumulate in float32), "
                        "relaxed, any (accumulation in the dtype accepted), tf32 (README: tolerance)")


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    parser = _Parser(prog="conformance", description="Conformance suite for 2-D convolution backends.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    _add_run(sub)
    p = sub.add_parser("backends", help="list every backend, with version and device, and why one is unavailable")
    p.add_argument("--deep", action="store_true", help="import each framework (in a child process) to check it")
    p = sub.add_parser("cases", help="list the case ids of a selector")
    p.add_argument("selector", nargs="?", default="default")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--budget", type=int, default=None)
    p.add_argument("--dtype", action="append", default=None, metavar="DTYPE", help="repeatable or comma-separated")
    p.add_argument("--shard", metavar="I/N")
    p.add_argument("--coverage", action="store_true", help="print the sweep coverage and the size distribution of the selection")
    p = sub.add_parser("merge", help="combine shard results.json files into one run")
    p.add_argument("files", nargs="+", metavar="RESULTS_JSON")
    p.add_argument("--out", default="reports", metavar="DIR")
    p.add_argument("--no-report", dest="report", action="store_false")
    p.add_argument("--expected", metavar="FILE", help="re-decide known divergences with this manifest")
    p.add_argument("--strict-expected", action="store_true")
    p.add_argument("--quiet", action="store_true")
    for name, (module, help_text) in LAZY.items():
        p = sub.add_parser(name, help=help_text)
        if argv and argv[0] == name:  # only the subcommand in use imports its module
            try:
                importlib.import_module(module).add_arguments(p)
            except ImportError as exc:
                raise UsageError(f"conformance {name}: not available ({exc})") from None
    return parser


# ---- run ------------------------------------------------------------------------------

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
        # its worker reports it (runner.LoadError), before any case runs.
        if name not in known and not registry.is_parameterised_builtin(name):
            raise UsageError(f"--backend: unknown backend {name!r}: expected one of {', '.join(known)}, "
                             f"or a built-in with parameters such as 'keras[backend=jax]' "
                             f"(use --adapter for module:Class or file.py:Class)")
    specs = list(dict.fromkeys(list(args.backend) + adapters))
    return specs


def _dtypes(values: list[str] | None) -> list[str] | None:
    """--dtype float16,bfloat16 --dtype float32 -> ["float16", "bfloat16", "float32"]."""
    if values is None:
        return None
    out = [d.strip() for v in values for d in v.split(",") if d.strip()]
    if not out:
        raise UsageError(f"--dtype: expected a dtype name, received {','.join(values)!r}")
    return list(dict.fromkeys(out))


def cmd_run(args, argv: Sequence[str], stream: TextIO) -> int:
    shard = runner.parse_shard(args.shard) if args.shard is not None else None
    args.dtype = _dtypes(args.dtype)
    max_memory = runner.parse_memory(args.max_memory) if args.max_memory else runner.default_max_memory()
    cfg = runner.RunConfig(specs=[], selector=args.cases, seed=args.seed, budget=args.budget, dtypes=args.dtype,
                           out=Path(args.out), timeout=args.timeout, expected=args.expected, baseline=args.baseline,
                           shard=shard, resume=args.resume, report=args.report, minimise=args.minimise,
                           strict_expected=args.strict_expected, quiet=args.quiet, argv=list(argv),
                           confirm_budget_s=args.confirm_budget if args.confirm else None,
                           named=bool(args.backend or args.adapter), precision=args.precision,
                           max_memory=max_memory, force=args.force)
    cfg.specs = _specs(args)
    cases = runner.select_cases(cfg.selector, seed=cfg.seed, budget=cfg.budget, dtypes=cfg.dtypes, shard=shard)
    if not cases and shard is None:  # an empty shard of a small set is fine; an empty selection is not
        raise UsageError(f"--cases {cfg.selector!r}: expected at least one case, received none"
                         + (f" in shard {args.shard}" if shard else "") + (f" for dtypes {args.dtype}" if args.dtype else ""))
    runner.preflight(cfg)
    try:
        outcome = runner.execute(cfg, cases, stream)  # writes the "N cases x M backends" line once they started
    except runner.LoadError as exc:
        option = "--backend" if exc.spec in args.backend else "--adapter"
        raise UsageError(f"{option} {exc}") from None
    if not args.quiet:
        stream.write(summary(outcome))
    for w in outcome.warnings:
        stream.write(f"warning: {w}\n")
    for e in outcome.errors:  # exit 2: a named backend tested nothing
        stream.write(f"error: {e}\n")
    return outcome.exit_code


def summary(outcome: runner.Outcome) -> str:
    """The end-of-run table: backend x status counts, the unexpected failures, fixed entries, paths."""
    from .results import counts, is_unexpected

    from .findings import console_lines

    run = outcome.run
    table = counts(run["records"])
    cols = list(STATUSES) + ["known"]
    width = max([len(b) for b in table] + [7])
    lines = [""] + console_lines((run.get("findings") or {}).get("items") or [])
    lines += ["", f"{'backend':<{width}}  " + "  ".join(f"{c:>11}" for c in cols)]
    for backend, row in table.items():
        lines.append(f"{backend:<{width}}  " + "  ".join(f"{row[c]:>11}" for c in cols))
    for name, info in run["backends"].items():
        if info.get("error"):
            lines.append(f"! {name}: {info['error']}")
        elif info.get("none_ran"):
            lines.append(f"! {name}: {info['none_ran']}")
    unsupported = unsupported_lines(run["records"])
    if unsupported:
        lines.append("\nunsupported (the backends' own reasons):")
        lines += unsupported
    bad = [r for r in run["records"] if is_unexpected(r)]
    if bad:
        lines.append(f"\n{len(bad)} unexpected:")
        lines += unexpected_lines(run["records"], bad)
    profile = run.get("precision_profile") or {}
    if profile:
        lines.append(f"\nprecision profile (contract in force: {run['run'].get('precision', 'strict')}):")
        for backend, per_dtype in profile.items():
            cells = [f"{d}: {p['meets'] or 'none'} (max e {number(p['max_normalised_error'], 3, none='n/a')})"
                     for d, p in per_dtype.items()]
            lines.append(f"  {backend:<{width}}  " + "; ".join(cells))
    fixed = (run.get("expected") or {}).get("fixed") or []
    if fixed:
        lines.append(f"\n!!! {len(fixed)} KNOWN DIVERGENCE(S) NOW PASS: update the --expected manifest !!!")
        for f in fixed:
            lines.append(f"  {f['backend']}  {f['case_id']}  (entry {f['manifest_entry']}: {f['reason']})")
    unmatched = (run.get("expected") or {}).get("unmatched") or []
    gated = (run.get("expected") or {}).get("not_applicable") or []
    if gated:
        lines.append(f"note: manifest entries {gated} do not apply here: their `when` conditions do not hold "
                     f"on this environment")
    unmatched = [i for i in unmatched if i not in gated]
    if unmatched:
        lines.append(f"note: manifest entries {unmatched} match no case of this run")
    untested = (run.get("expected") or {}).get("untested") or []
    if untested:
        lines.append(f"note: manifest entries {untested} cover no case of this run that could show their kind "
                     f"(e.g. subnormal_flush without subnormal inputs, invalid_accepted without invalid cases)")
    if "baseline" in run:
        base = run["baseline"]
        lines.append(f"\nagainst baseline {base['path']}: {len(base['new'])} new, {len(base['fixed'])} fixed")
        for r in base["new"]:
            lines.append(f"  new    {r['backend']}  {r['case_id']}  {r['kind'] or r['status']} (was {r['was']})")
        for r in base["fixed"]:
            lines.append(f"  fixed  {r['backend']}  {r['case_id']}  (was {r['was']})")
        fb = base.get("findings")
        if fb:
            lines.append(f"findings against the baseline: {len(fb['new'])} new, {len(fb['fixed'])} fixed")
            lines += [f"  new finding    {f['id']}  {f['backend']}  {f['title']}  ({f['predicate']})" for f in fb["new"]]
            lines += [f"  fixed finding  {f['id']}  {f['backend']}  {f['title']}  ({f['predicate']})" for f in fb["fixed"]]
        for name, diff in (base.get("fingerprints_differ") or {}).items():
            lines.append(f"  environment differs from the baseline for {name}: {'; '.join(diff)}")
    for name, diff in (run["run"].get("fingerprints_differ") or {}).items():
        lines.append(f"note: the merged files ran {name} in different environments: {'; '.join(diff)}")
    if run["run"].get("interrupted"):
        lines.append("\ninterrupted: the results cover the cases finished before the interruption (--resume continues)")
    where = f"  report: {outcome.reports}" if outcome.reports else ""
    lines.append(f"\nresults: {outcome.out / 'results.json'}  junit: {outcome.out / 'junit.xml'}{where}")
    verdict = {EXIT_OK: "OK", EXIT_FAIL: "FAILED", EXIT_INTERRUPTED: "INTERRUPTED"}.get(outcome.exit_code, "")
    lines.append(f"conformance: {verdict}")
    return "\n".join(lines) + "\n"


def unexpected_lines(records: list[dict], bad: list[dict]) -> list[str]:
    """One line per distinct (backend, kind or status, message) among the unexpected `bad`
    records, in order of first appearance: a single record names its case; a repeated
    message gives its count and first case, or "all N cases" when it covers every record of
    that backend (a backend that could not start, or fails the same way on everything).
    At most SUMMARY_ROWS lines; the rest are counted."""
    per_backend: dict[str, int] = {}
    for r in records:
        per_backend[r["backend"]] = per_backend.get(r["backend"], 0) + 1
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in bad:
        msg = r["message"].splitlines()[0] if r["message"] else ""
        groups.setdefault((r["backend"], _label(r), msg), []).append(r)
    lines = []
    for (backend, label, msg), recs in list(groups.items())[:SUMMARY_ROWS]:
        if len(recs) == 1:
            lines.append(f"  {backend}  {recs[0]['case_id']}  {label}: {clip(msg, MESSAGE_CHARS)}")
        elif len(recs) == per_backend[backend]:  # one line stands for many: room for the whole reason
            lines.append(f"  {backend}  all {len(recs)} cases: {label}: {clip(msg, GROUP_MESSAGE_CHARS)}")
        else:
            lines.append(f"  {backend}  {len(recs)} cases (first {recs[0]['case_id']}): {label}: "
                         f"{clip(msg, GROUP_MESSAGE_CHARS)}")
    left = sum(len(recs) for recs in list(groups.values())[SUMMARY_ROWS:])
    if left:
        lines.append(f"  ... and {left} more (results.json, junit.xml and the reports list them all)")
    return lines


def _label(rec: dict) -> str:
    """The kind (or status), with the diagnosis hypothesis where it says more: "value (flipped_kernel)"."""
    label = rec.get("kind") or rec["status"]
    diag = rec.get("diagnosis") if isinstance(rec.get("diagnosis"), dict) else {}
    hyp = diag.get("hypothesis")
    return f"{label} ({hyp})" if hyp and hyp != label else label


def unsupported_lines(records: list[dict]) -> list[str]:
    """One line per backend and reason it gave for not running cases, with a count, most
    frequent first; at most UNSUPPORTED_ROWS reasons per backend, the rest counted."""
    per: dict[str, dict[str, int]] = {}
    for r in records:
        if r["status"] == "unsupported":
            reason = (r["message"] or "").strip().splitlines()[0] if (r["message"] or "").strip() else "(no reason given)"
            per.setdefault(r["backend"], {}).setdefault(reason, 0)
            per[r["backend"]][reason] += 1
    lines = []
    for backend, reasons in per.items():
        ranked = sorted(reasons.items(), key=lambda kv: -kv[1])
        for reason, n in ranked[:UNSUPPORTED_ROWS]:
            lines.append(f"  {backend}  {n} case{'s' if n != 1 else ''}: {clip(reason, GROUP_MESSAGE_CHARS)}")
        rest = ranked[UNSUPPORTED_ROWS:]
        if rest:
            lines.append(f"  {backend}  {sum(n for _, n in rest)} more cases for {len(rest)} other reasons "
                         f"(results.json and the reports list them)")
    return lines


# ---- other subcommands ----------------------------------------------------------------

def _why_not(info) -> str:
    """Why a backend is unavailable, or why an available one is not in the default run."""
    if info.reason:
        return info.reason
    excluded = getattr(info, "excluded", None)
    return f"not in the default run: {excluded}" if excluded else ""


def cmd_backends(args, stream: TextIO) -> int:
    from conformance.adapters import registry

    infos = registry.discover(deep=args.deep)
    width = max(len(i.name) for i in infos) if infos else 7
    out = sys.stdout
    out.write(f"{'backend':<{width}}  {'available':<9}  {'version':<14}  {'device':<8}  default  reason\n")
    for i in infos:
        out.write(f"{i.name:<{width}}  {'yes' if i.available else 'no':<9}  {str(i.version or '-'):<14}  "
                  f"{str(i.device or '-'):<8}  {'yes' if i.default else 'no':<7}  {_why_not(i)}\n")
    return EXIT_OK


def cmd_cases(args, stream: TextIO) -> int:
    shard = runner.parse_shard(args.shard) if args.shard is not None else None
    args.dtype = _dtypes(args.dtype)
    cases = runner.select_cases(args.selector, seed=args.seed, budget=args.budget, dtypes=args.dtype, shard=shard)
    for c in cases:
        sys.stdout.write(c.id + "\n")
    if args.coverage:
        try:
            from conformance.cases.sweep import coverage
        except ImportError as exc:
            raise UsageError(f"cases --coverage: not available ({exc})") from None
        from conformance.cases.sizes import describe_sizes

        sys.stdout.write(_coverage_text(coverage(cases)))
        sys.stdout.write(describe_sizes(cases))
    stream.write(f"{len(cases)} cases\n")
    return EXIT_OK


def _coverage_text(cov: dict) -> str:
    """{"cases", "t2": {...}, "t3": {...}} (conformance.cases.sweep.coverage) as a few lines."""
    lines = [f"coverage of {cov.get('cases')} valid cases:"]
    for key, label in (("t2", "pairs"), ("t3", "triples")):
        part = cov.get(key)
        if not isinstance(part, dict):
            continue
        lines.append(f"  {label} over {', '.join(part.get('params', []))}: {part.get('covered')} of "
                     f"{part.get('total')} feasible combinations ({part.get('percent', 0):.1f}%)")
        for miss in (part.get("missing") or [])[:5]:
            lines.append(f"    missing: {miss}")
    return "\n".join(lines) + "\n"


def cmd_merge(args, stream: TextIO) -> int:
    merged, copies = runner.merge(args.files)
    out = Path(args.out)
    for src, rel in copies:  # repro paths are relative to the results file's directory
        if (src / rel).is_file() and (src / rel).resolve() != (out / rel).resolve():
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / rel, out / rel)
    entries = []
    if args.expected:
        from . import expected

        try:
            entries = expected.load_manifest(args.expected)
        except expected.ManifestError as exc:
            raise UsageError(f"--expected: {exc}") from None
        from .fingerprint import facts

        for rec in merged["records"]:
            rec["known"] = expected.match(entries, rec, facts(merged["fingerprints"].get(rec.get("fingerprint") or "")))
    outcome = runner.write_outputs(out, merged, entries, None, report=args.report,
                                   strict_expected=args.strict_expected, expected_path=args.expected)
    if not args.quiet:
        stream.write(summary(outcome))
    for w in outcome.warnings:
        stream.write(f"warning: {w}\n")
    return outcome.exit_code


def main(argv: Sequence[str] | None = None, stream: TextIO | None = None) -> int:
    """Entry point; returns (and, as a script, exits with) the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    stream = stream or sys.stderr
    with warnings.catch_warnings():
        # A warning (e.g. a --budget too small for the covering array) is one plain line,
        # not Python's file:line and source line.
        warnings.showwarning = lambda message, *_a, **_k: stream.write(f"warning: {message}\n")
        return _main(argv, stream)


def _main(argv: list[str], stream: TextIO) -> int:
    try:
        args = build_parser(argv).parse_args(argv)
        if args.command == "run":
            return cmd_run(args, argv, stream)
        if args.command == "backends":
            return cmd_backends(args, stream)
        if args.command == "cases":
            return cmd_cases(args, stream)
        if args.command == "merge":
            return cmd_merge(args, stream)
        module = importlib.import_module(LAZY[args.command][0])
        return int(module.run(args))
    except UsageError as exc:
        stream.write(f"error: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        stream.write("interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `conformance cases | head`
        return EXIT_OK
