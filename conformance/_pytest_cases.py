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
- The verdict is `conformance.inprocess.run_case`: the suite's one verdict, run in-process.
- A (case, backend) pair that an `--conformance-expected` manifest entry pins by its exact
  id is marked `xfail(strict=True, raises=KnownDivergence)`; a divergence that a glob
  entry explains is an imperative xfail, and a pass under a glob entry passes. For a
  pinned pair the divergence the entry names is an
  expected failure; a different divergence (another kind) still fails; a pass is a strict
  XPASS, i.e. a failure that says the manifest is out of date (upstream fixed the bug).
- The property tests honour the manifest too: a drawn case whose divergence an entry
  explains (backend, version, case glob, kind, `when` conditions on this process's
  fingerprint) holds the property; only unexplained divergences are counterexamples.
- A failing test's message carries the case id and parameters, the error figures against
  the bound, the diagnosis, and the paths of the repro script and bug report it wrote.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .inprocess import CaseOutcome, run_case
from .spec import OPS, Case
from .text import number, safe_filename

FIGURE_KEYS = ("mismatched", "elements", "max_abs_error", "max_rel_error", "max_normalised_error", "threshold",
               "hard_bound", "max_ulp", "effective_bits", "dtype_bits", "expected_shape", "actual_shape")


class ConformanceFailure(AssertionError):
    """A (case, backend) pair that diverges; str() is the full report."""

    def __init__(self, message: str, case: Case | None = None):
        super().__init__(message)
        self.case = case


class KnownDivergence(ConformanceFailure):
    """A divergence that an --conformance-expected manifest entry names (xfail's `raises`)."""


class InProcessBackend:
    """One backend under test: its spec, id label and the adapter, built once per process."""

    def __init__(self, spec: str, label: str, adapter: Any):
        self.spec = spec
        self.label = label
        self.adapter = adapter
        self.version = str(adapter.version())
        self._facts: dict[str, Any] | None = None

    @property
    def facts(self) -> dict[str, Any]:
        """The fingerprint facts manifest `when:` conditions are matched against (this process)."""
        if self._facts is None:
            from .fingerprint import facts, fingerprint

            self._facts = facts(fingerprint(self.adapter))
        return self._facts

    def known(self, entries: list, case: Case, outcome: CaseOutcome):
        """The manifest entry that explains `outcome` on `case`, or None."""
        name = str(self.adapter.name)
        for e in entries:  # a `finding:` predicate pin covers whatever case it holds for
            if e.explains_case(name, self.version, case, outcome.kind or outcome.status, self.facts):
                return e
        return None


def _label(spec: str, adapter: Any, builtins: Any) -> str:
    # Built-in names are readable ids already ("torch[native_pad]"); a module or file spec
    # is not, so the adapter's own name stands in for it.
    return spec if spec in builtins else str(adapter.name)


class ConformancePlugin:
    """Registered by the plugin only when --conformance is given."""

    def __init__(self, config: pytest.Config, specs: list[str]):
        self.config = config
        self.specs = list(dict.fromkeys(specs))
        base = Path(config.invocation_params.dir)
        self.out_dir = base / config.getoption("conformance_out")
        self.precision = config.getoption("conformance_precision")
        self.backends: list[InProcessBackend] | None = None

    def load_backends(self) -> list[InProcessBackend]:
        if self.backends is None:
            from .adapters import registry

            backends = []
            for spec in self.specs:
                try:
                    adapter = registry.load(spec)
                except ValueError as exc:
                    raise pytest.UsageError(f"--backend/--adapter {spec!r}: {exc}") from None
                backends.append(InProcessBackend(spec, _label(spec, adapter, registry.BUILTINS), adapter))
            self.backends = backends
        return self.backends

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
            for case in cases:
                item = CaseItem.from_parent(self, name=f"test_conformance[{backend.label}-{case.id}]",
                                            backend=backend, case=case)
                name = str(backend.adapter.name)
                item.entries = [e for e in manifest if e.covers(name, backend.version, case.id, backend.facts)
                                and (e.finding is None or e.predicate_covers(case))]
                pin = next((e for e in item.entries if e.pins(name, backend.version, case.id, backend.facts)), None)
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
    backend: InProcessBackend

    def __init__(self, *, backend: InProcessBackend, **kwargs: Any):
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

    def check(self, case: Case, *, entries=()) -> CaseOutcome:
        """Judge `case`; raise ConformanceFailure (or KnownDivergence) unless it passes.

        A divergence a covering manifest entry explains is a KnownDivergence (the xfail of a
        pinned pair); under a glob entry it is an imperative xfail instead, so a pass there
        is simply a pass.
        """
        outcome = run_case(case, self.backend.adapter, precision=self.plugin.precision)
        if outcome.status == "unsupported":
            pytest.skip(f"{self.backend.label} does not support {case.id}: {outcome.message}")
        if outcome.status == "pass":
            return outcome
        explaining = next((e for e in entries if e.matches_kind(outcome.kind or outcome.status)), None)
        if explaining is not None and not any(m.name == "xfail" for m in self.iter_markers()):
            pytest.xfail(_reason(explaining))
        exc_type = ConformanceFailure if explaining is None else KnownDivergence
        raise exc_type(failure_message(self.backend, outcome, self.write_artifacts(outcome)), case)

    def write_artifacts(self, outcome: CaseOutcome) -> list[str]:
        """Write the repro script and bug report; return lines naming them (or why not)."""
        from . import bug_reports, scripts

        case, adapter = outcome.case, self.backend.adapter
        stem = safe_filename(f"{self.backend.label}-{case.id}")
        lines = []
        try:
            self.plugin.out_dir.mkdir(parents=True, exist_ok=True)
            script = self.plugin.out_dir / f"{stem}.py"
            script.write_text(scripts.make_script(case, adapter, spec=self.backend.spec,
                                                  precision=self.plugin.precision), encoding="utf-8")
            lines.append(f"repro: {script}  (run: python {script})")
        except (scripts.ReproError, OSError) as exc:
            lines.append(f"repro: not written ({exc})")
        try:
            report = self.plugin.out_dir / f"{stem}.md"
            report.write_text(bug_reports.bug_report(case, adapter, outcome.comparison, outcome.diagnosis,
                                               outcome=outcome, spec=self.backend.spec), encoding="utf-8")
            lines.append(f"bug report: {report}")
        except (scripts.ReproError, OSError) as exc:
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
        from hypothesis import HealthCheck, given, settings

        from .cases import strategies

        if self.valid:
            strategy = strategies.valid_cases(ops=(self.op,))
        else:
            strategy = strategies.invalid_cases()

        # Slow backends and large draws are expected; the verdict is what matters. No
        # deadline: a framework's first call (its import, kernel selection) takes seconds.
        known: list[str] = []

        @settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                        HealthCheck.filter_too_much])
        @given(case=strategy)
        def prop(case: Case) -> None:
            outcome = run_case(case, self.backend.adapter, precision=self.plugin.precision)
            if outcome.status in ("pass", "unsupported"):
                return
            entry = self.backend.known(self.manifest, case, outcome)
            if entry is not None:  # a divergence the manifest names: known, not a counterexample
                known.append(f"{case.id}: {outcome.kind or outcome.status} (manifest entry {entry.index})")
                return
            raise ConformanceFailure(failure_message(self.backend, outcome, []), case)

        try:
            prop()
            if known:
                self.user_properties.append(("known_divergences", f"{len(known)}, first {known[0]}"))
        except ConformanceFailure as exc:
            # Artifacts only for the final, shrunk case (not for every shrinking step).
            outcome = run_case(exc.case, self.backend.adapter, precision=self.plugin.precision)
            raise ConformanceFailure(failure_message(self.backend, outcome, self.write_artifacts(outcome)),
                                     exc.case) from None


def failure_message(backend: InProcessBackend, outcome: CaseOutcome, artifacts: list[str]) -> str:
    """The failure text: what, where, how badly, probably why, how to reproduce."""
    case = outcome.case
    adapter = backend.adapter
    what = f"diverges ({outcome.kind})" if outcome.status == "diverge" else outcome.status
    lines = [f"{backend.label} {what} on case {case.id}",
             f"backend: {adapter.name} {backend.version} on {adapter.device()} (spec {backend.spec!r})",
             f"case: {json.dumps(case.to_dict(), sort_keys=True)}",
             f"{outcome.message}"]
    comp = outcome.comparison
    if comp is not None and comp.figures:
        shown = ", ".join(f"{k}={number(comp.figures[k])}" for k in FIGURE_KEYS if k in comp.figures)
        lines.append(f"figures: {shown}")
        if "threshold" in comp.figures and comp.figures.get("max_normalised_error") is not None:
            lines.append(f"bound: max normalised error {number(comp.figures['max_normalised_error'])} vs threshold "
                         f"{number(comp.figures['threshold'])} (hard bound {number(comp.figures['hard_bound'])})")
        for w in comp.worst[:3]:
            lines.append(f"  at {w['index']}: expected {w['expected']}, actual {w['actual']}, "
                         f"normalised error {number(w['normalised_error'])}")
    if outcome.error:
        lines.append(outcome.error.rstrip().splitlines()[-1])
    diag = outcome.diagnosis
    if diag is not None:
        lines.append(f"diagnosis: {diag.get('hypothesis') or 'unexplained'}: {diag.get('explanation')}")
    elif outcome.status == "diverge" and case.is_valid:
        lines.append("diagnosis: none available")
    lines.extend(artifacts)
    return "\n".join(lines)
