"""The tests `pytest --conformance` collects (see `conformance.pytest_plugin`).

Items (under one collector named `conformance`, so node ids read
`conformance::test_conformance[torch-conv-n1-8x8x3-k3x3-o4-s1x1-d1x1-same-f32]`):
- `test_conformance[<backend>-<case id>]`: one per (case, backend) of the selected set.
- `test_property[<backend>-<op>]`: hypothesis draws valid cases of one op, shrinks a
  divergence to a minimal case (bounded by the loaded hypothesis profile).
- `test_property_invalid[<backend>]`: hypothesis draws invalid cases; each must raise.

Invariants
- Collection is deterministic (the case set is a deterministic list, backends keep their
  command-line order, duplicates are dropped), so pytest-xdist workers agree on the ids.
- Every backend runs in its own worker process, as in `conformance run`
  (`process.isolated.IsolatedBackend`): started at collection, all at once, stopped when
  pytest ends; each case has --conformance-timeout seconds, and a case over the
  --conformance-max-memory budget is `unsupported` (skipped). One referee process per
  pytest process computes the oracle and makes every record. A test's verdict is the
  record `conformance run` writes for its pair: a backend that crashes or hangs fails that
  test as `crash` / `timeout`, naming the case; its worker is restarted and the session
  goes on. No framework is imported into the pytest process.
- A (case, backend) pair that an `--conformance-expected` manifest entry pins by its exact
  id is marked `xfail(strict=True, raises=KnownDivergence)`; a divergence that a glob
  entry explains is an imperative xfail, and a pass under a glob entry passes. For a
  pinned pair the divergence the entry names is an
  expected failure; a different divergence (another kind) still fails; a pass is a strict
  XPASS, i.e. a failure that says the manifest is out of date (upstream fixed the bug).
- The property tests honour the manifest too: a drawn case whose divergence an entry
  explains (backend, version, case glob, kind, `when` conditions on the worker's
  fingerprint) holds the property; only unexplained divergences are counterexamples.
- A property test draws from one seed: `--hypothesis-seed`'s when given, else one fixed per
  test under a derandomized profile (`ci`), else a fresh random one. Its failure message
  prints the seed and the command line that draws the same cases again.
- A failing test's message carries the case id and parameters, the error figures against
  the bound, the diagnosis (or the error, the crash's signal and log line, the timeout), and
  the paths of the repro script and bug report it wrote.
"""

from __future__ import annotations

import json
import os
import random
import re
import shlex
import zlib
from pathlib import Path
from typing import Any

import pytest

from .process.backend import DEFAULT_TIMEOUT_S
from .process.isolated import IsolatedBackend
from .process.memory import default_max_memory, parse_memory
from .process.referee import Referee
from .repeats import repeat_lines, script_calls
from .spec import OPS, Case
from .text import number, safe_filename
from .usage import LoadError, UsageError

FIGURE_KEYS = ("mismatched", "elements", "max_abs_error", "max_rel_error", "max_normalised_error", "threshold",
               "hard_bound", "max_ulp", "effective_bits", "dtype_bits", "expected_shape", "actual_shape")


class ConformanceFailure(AssertionError):
    """A (case, backend) pair that diverges; str() is the full report."""

    def __init__(self, message: str, case: Case | None = None):
        super().__init__(message)
        self.case = case


class KnownDivergence(ConformanceFailure):
    """A divergence that an --conformance-expected manifest entry names (xfail's `raises`)."""


class TestedBackend:
    """One backend under test: its spec, its id label and its worker (`IsolatedBackend`)."""

    __test__ = False  # a helper, not a test class

    def __init__(self, spec: str, label: str, worker: IsolatedBackend):
        self.spec = spec
        self.label = label
        self.worker = worker
        self.facts = worker.facts  # what manifest `when:` conditions are matched against

    def covers(self, entry, case: Case) -> bool:
        """`entry` applies to `case` here: by case id glob, and by its predicate where it pins a finding."""
        return entry.covers(self.worker.name, self.worker.version, case.id, self.facts) and \
            (entry.finding is None or entry.predicate_covers(case))

    def known(self, entries: list, case: Case, rec: dict[str, Any]):
        """The manifest entry that explains the record `rec` of `case`, or None (a `finding:`
        predicate pin explains whatever case its predicate covers)."""
        return next((e for e in entries if e.explains_case(self.worker.name, self.worker.version, case,
                                                           rec["kind"] or rec["status"], self.facts)), None)


def _label(spec: str, name: str, builtins: Any) -> str:
    # Built-in names are readable ids already ("torch[native_pad]"); a module or file spec
    # is not, so the adapter's own name stands in for it.
    return spec if spec in builtins else name


class ConformancePlugin:
    """Registered by the plugin only when --conformance is given."""

    def __init__(self, config: pytest.Config, specs: list[str]):
        self.config = config
        self.specs = list(dict.fromkeys(specs))
        base = Path(config.invocation_params.dir)
        self.out_dir = base / config.getoption("conformance_out")
        self.precision = config.getoption("conformance_precision")
        timeout = config.getoption("conformance_timeout")
        if timeout is not None and not timeout > 0:
            raise pytest.UsageError(f"--conformance-timeout: expected a positive number of seconds, received {timeout:g}")
        self.timeout = DEFAULT_TIMEOUT_S if timeout is None else timeout
        memory = config.getoption("conformance_max_memory")
        try:
            self.max_memory = parse_memory(memory) if memory else default_max_memory()
        except UsageError as exc:  # its message names run's option; this one is spelled differently
            raise pytest.UsageError(str(exc).replace("--max-memory", "--conformance-max-memory", 1)) from None
        self.backends: list[TestedBackend] | None = None
        self.referee: Referee | None = None
        self._workers: list[IsolatedBackend] = []  # every worker started, to stop them all at the end

    def load_backends(self) -> list[TestedBackend]:
        """Start every backend's worker (all at once) and the referee, once per pytest process."""
        if self.backends is None:
            from .adapters import registry

            # Each pytest-xdist worker has its backends' processes and logs of its own.
            logs = self.out_dir / "logs" / os.environ.get("PYTEST_XDIST_WORKER", "main")
            self.referee = Referee(logs / "referee.log", self.timeout, self.precision)
            self._workers = [IsolatedBackend(spec, logs, timeout=self.timeout, max_memory=self.max_memory,
                                             precision=self.precision, referee=self.referee) for spec in self.specs]
            for w in self._workers:
                w.start()
            for spec, w in zip(self.specs, self._workers):
                try:
                    w.ready()
                except LoadError as exc:
                    raise pytest.UsageError(f"--backend/--adapter {spec!r}: {exc.reason}") from None
            self.backends = [TestedBackend(spec, _label(spec, w.name, registry.BUILTINS), w)
                             for spec, w in zip(self.specs, self._workers)]
        return self.backends

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        for w in self._workers:
            w.stop()
        if self.referee is not None:
            self.referee.stop()

    def load_cases(self) -> list[Case]:
        from .cases import sets

        selector = self.config.getoption("conformance_cases")
        try:
            return list(sets.select(selector))
        except ValueError as exc:
            raise pytest.UsageError(f"--conformance-cases {selector!r}: {exc}") from None

    def load_manifest(self) -> list:
        path = self.config.getoption("conformance_expected")
        if not path:
            return []
        from .expected import load_manifest

        try:
            return load_manifest(Path(self.config.invocation_params.dir) / path)
        except ValueError as exc:
            raise pytest.UsageError(f"--conformance-expected: {exc}") from None

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, session: pytest.Session, config: pytest.Config,
                                      items: list[pytest.Item]) -> None:
        # tryfirst: our items exist before -k, -m and --deselect filter the list.
        collector = ConformanceCollector.from_parent(session, name="conformance", nodeid="conformance")
        collector.plugin = self
        new = collector.collect()
        # The terminal's "collected N items" counts collect reports: announce ours.
        session.ihook.pytest_collectreport(report=pytest.CollectReport(collector.nodeid, "passed", None, new))
        items.extend(new)


def _reason(entry) -> str:
    return entry.reason + (f" ({entry.link})" if entry.link else "")


class ConformanceCollector(pytest.Collector):
    plugin: ConformancePlugin

    def collect(self) -> list[pytest.Item]:
        plugin = self.plugin
        backends = plugin.load_backends()
        cases = plugin.load_cases()
        manifest = plugin.load_manifest()
        items: list[pytest.Item] = []
        for backend in backends:
            w = backend.worker
            for case in cases:
                item = CaseItem.from_parent(self, name=f"test_conformance[{backend.label}-{case.id}]",
                                            backend=backend, case=case)
                item.entries = [e for e in manifest if backend.covers(e, case)]
                pin = next((e for e in item.entries if e.pins(w.name, w.version, case.id, backend.facts)), None)
                if pin is not None:
                    # Pinned by its exact id: a pass is XPASS(strict), the bug was fixed upstream.
                    item.add_marker(pytest.mark.xfail(strict=True, raises=KnownDivergence, reason=_reason(pin)))
                items.append(item)
        if not plugin.config.getoption("conformance_no_properties"):
            for backend in backends:
                for op in OPS:
                    items.append(PropertyItem.from_parent(self, name=f"test_property[{backend.label}-{op}]",
                                                          backend=backend, op=op, valid=True))
                items.append(PropertyItem.from_parent(self, name=f"test_property_invalid[{backend.label}]",
                                                      backend=backend, op=None, valid=False))
            for item in items:
                if isinstance(item, PropertyItem):
                    item.manifest = manifest
        return items


class _ConformanceItem(pytest.Item):
    backend: TestedBackend

    def __init__(self, *, backend: TestedBackend, **kwargs: Any):
        super().__init__(**kwargs)
        self.backend = backend
        self.add_marker("conformance")

    @property
    def plugin(self) -> ConformancePlugin:
        return self.parent.plugin

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, ConformanceFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return Path(__file__), None, self.name

    def check(self, case: Case, *, entries=()) -> dict[str, Any]:
        """Judge `case` on the backend's worker; raise ConformanceFailure (or KnownDivergence)
        unless it passes. Returns the record.

        A divergence a covering manifest entry explains is a KnownDivergence (the xfail of a
        pinned pair); under a glob entry it is an imperative xfail instead, so a pass there
        is simply a pass.
        """
        rec = self.backend.worker.record(case)
        if rec["status"] == "unsupported":
            pytest.skip(f"{self.backend.label} does not support {case.id}: {rec['message']}")
        if rec["status"] == "pass":
            return rec
        explaining = next((e for e in entries if e.matches_kind(rec["kind"] or rec["status"])), None)
        if explaining is not None and not any(m.name == "xfail" for m in self.iter_markers()):
            pytest.xfail(_reason(explaining))
        exc_type = ConformanceFailure if explaining is None else KnownDivergence
        raise exc_type(failure_message(self.backend, case, rec, self.write_artifacts(case, rec)), case)

    def write_artifacts(self, case: Case, rec: dict[str, Any]) -> list[str]:
        """Write the repro script and bug report (both made by the backend's worker); return
        lines naming them (or why not)."""
        from . import bug_reports

        backend = self.backend
        stem = safe_filename(f"{backend.label}-{case.id}")
        lines = []
        text, problem = backend.worker.script(case, spec=backend.spec,
                                              calls=script_calls(rec["kind"], rec.get("repeat")))
        try:
            if text is None:
                raise OSError(problem)
            self.plugin.out_dir.mkdir(parents=True, exist_ok=True)
            script = self.plugin.out_dir / f"{stem}.py"
            script.write_text(text, encoding="utf-8")
            lines.append(f"repro: {script}  (run: python {script})")
        except OSError as exc:
            lines.append(f"repro: not written ({exc})")
        try:
            report = self.plugin.out_dir / f"{stem}.md"
            report.write_text(bug_reports.bug_report(case, rec, backend.worker, spec=backend.spec), encoding="utf-8")
            lines.append(f"bug report: {report}")
        except OSError as exc:
            lines.append(f"bug report: not written ({exc})")
        return lines


class CaseItem(_ConformanceItem):
    def __init__(self, *, case: Case, **kwargs: Any):
        super().__init__(**kwargs)
        self.case = case
        self.entries = []
        self.user_properties.append(("case", case.to_json()))

    def runtest(self) -> None:
        self.check(self.case, entries=self.entries)


class PropertyItem(_ConformanceItem):
    def __init__(self, *, op: str | None, valid: bool, **kwargs: Any):
        super().__init__(**kwargs)
        self.op = op
        self.valid = valid
        self.manifest: list = []  # --conformance-expected: a drawn case's known divergence holds the property

    def runtest(self) -> None:
        from hypothesis import HealthCheck, given, seed, settings

        from .cases import strategies

        if self.valid:
            strategy = strategies.valid_cases(ops=(self.op,))
        else:
            strategy = strategies.invalid_cases()

        # Slow backends and large draws are expected; the verdict is what matters. No
        # deadline: a framework's first call (its import, kernel selection) takes seconds.
        known: list[str] = []
        drawn_from = self.seed()
        worker = self.backend.worker

        @seed(drawn_from)
        @settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                        HealthCheck.filter_too_much])
        @given(case=strategy)
        def prop(case: Case) -> None:
            rec = worker.record(case, diagnose=False)  # the final, shrunk case is diagnosed below
            if rec["status"] in ("pass", "unsupported"):
                return
            entry = self.backend.known(self.manifest, case, rec)
            if entry is not None:  # a divergence the manifest names: known, not a counterexample
                known.append(f"{case.id}: {rec['kind'] or rec['status']} (manifest entry {entry.index})")
                return
            raise ConformanceFailure(failure_message(self.backend, case, rec, []), case)

        try:
            prop()
            if known:
                self.user_properties.append(("known_divergences", f"{len(known)}, first {known[0]}"))
        except ConformanceFailure as exc:
            # Artifacts only for the final, shrunk case (not for every shrinking step).
            rec = worker.record(exc.case)
            lines = self.write_artifacts(exc.case, rec) + [
                f"hypothesis seed: {drawn_from}; this test's draws again: {self.rerun_command(drawn_from)}"]
            raise ConformanceFailure(failure_message(self.backend, exc.case, rec, lines), exc.case) from None

    def seed(self) -> int | str:
        """The seed this test draws from: --hypothesis-seed's, else one fixed per test under a
        derandomized profile (the same draws every run), else a fresh random one."""
        from hypothesis import settings

        forced = self.config.getoption("--hypothesis-seed", default=None)
        if forced is not None:
            try:
                return int(forced)
            except ValueError:
                return forced  # hypothesis seeds from any string too, as its own plugin does
        if settings.default.derandomize:
            return zlib.crc32(self.nodeid.encode())
        return random.SystemRandom().randrange(1 << 32)

    def rerun_command(self, drawn_from: int | str) -> str:
        """This pytest command line, for this test only (`-k`), drawing from `drawn_from`."""
        args, skip = [], False
        for arg in self.config.invocation_params.args:
            if skip:
                skip = False
            elif arg in ("--hypothesis-seed", "-k"):
                skip = True  # and its value, the next argument
            elif not (arg.startswith("--hypothesis-seed=") or (arg.startswith("-k") and arg != "-k")):
                args.append(arg)
        # -k matches words of [\w:+-.[]\/] as substrings of the test's name; a name with other
        # characters (an option's "=") is matched by its words together.
        words = re.findall(r"[\w:+\-.\[\]\\/]+", self.name)
        return shlex.join(["python", "-m", "pytest", *args, f"--hypothesis-seed={drawn_from}",
                           "-k", " and ".join(words)])


def failure_message(backend: TestedBackend, case: Case, rec: dict[str, Any], artifacts: list[str]) -> str:
    """The failure text: what, where, how badly, probably why, how to reproduce."""
    w = backend.worker
    status = rec["status"]
    what = f"diverges ({rec['kind']})" if status == "diverge" else status
    lines = [f"{backend.label} {what} on case {case.id}",
             f"backend: {w.name} {w.version} on {w.device} (spec {backend.spec!r})",
             f"case: {json.dumps(case.to_dict(), sort_keys=True)}",
             f"{rec['message']}"]
    figures = rec.get("figures") or {}
    if figures:
        shown = ", ".join(f"{k}={number(figures[k])}" for k in FIGURE_KEYS if k in figures)
        lines.append(f"figures: {shown}")
        if "threshold" in figures and figures.get("max_normalised_error") is not None:
            lines.append(f"bound: max normalised error {number(figures['max_normalised_error'])} vs threshold "
                         f"{number(figures['threshold'])} (hard bound {number(figures['hard_bound'])})")
        for worst in (rec.get("worst") or [])[:3]:
            lines.append(f"  at {worst['index']}: expected {worst['expected']}, actual {worst['actual']}, "
                         f"normalised error {number(worst['normalised_error'])}")
    error = rec.get("error") or {}
    if status == "error" and (error.get("traceback") or error.get("message")):
        lines.append((error.get("traceback") or error["message"]).rstrip().splitlines()[-1])
    lines += repeat_lines(rec.get("repeat"))
    diag = rec.get("diagnosis")
    if diag is not None:
        lines.append(f"diagnosis: {diag.get('hypothesis') or 'unexplained'}: {diag.get('explanation')}")
    elif status == "diverge" and case.is_valid:
        lines.append("diagnosis: none available")
    lines.extend(artifacts)
    return "\n".join(lines)
