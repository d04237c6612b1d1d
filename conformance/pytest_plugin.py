"""The pytest plugin: `pytest --conformance --backend torch` judges a backend as pytest tests.

Registered through the `pytest11` entry point, so it is loaded by every pytest run in an
environment where conv-conformance is installed. It therefore only wires options and
hooks; the tests themselves live in `conformance._pytest_cases`, imported only when
`--conformance` is given.

Every backend runs in its own worker process, as in `conformance run`: a backend that
crashes or hangs fails its test (`crash`, `timeout`) and the session goes on.

Invariants
- Without `--conformance` the plugin is inert: it adds its options and, if a hypothesis
  profile is asked for (`--hypothesis-profile` or $CONFORMANCE_HYPOTHESIS_PROFILE),
  registers the `ci`/`dev`/`nightly` profiles. Nothing is collected, no framework and
  no hypothesis is imported otherwise.
- Profiles are registered before hypothesis's own plugin loads `--hypothesis-profile`
  (this hook runs first), so `--hypothesis-profile ci` works everywhere.
"""

from __future__ import annotations

import os

import pytest

DEFAULT_CASES = "default"
DEFAULT_OUT = "test-artifacts/conformance"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("conformance", "conv-conformance: judge 2-D convolution backends")
    group.addoption("--conformance", action="store_true", default=False,
                    help="collect one test per (case, backend) and property tests per op (off by default)")
    group.addoption("--backend", action="append", default=[], dest="conformance_backends", metavar="SPEC",
                    help="backend to judge (repeatable): a built-in name (numpy, torch, ...), an entry-point "
                         "name, module:Class or path/to/file.py:Class")
    group.addoption("--adapter", action="append", default=[], dest="conformance_adapters", metavar="SPEC",
                    help="an adapter given as module:Class or path/to/file.py:Class (repeatable)")
    group.addoption("--conformance-cases", default=DEFAULT_CASES, metavar="SELECTOR",
                    help=f"case set, case file, id or id glob (comma-separated union); default {DEFAULT_CASES!r}, "
                         "the same set `conformance run` uses")
    group.addoption("--conformance-expected", default=None, metavar="FILE",
                    help="manifest of known divergences: matching tests are xfail(strict=True)")
    group.addoption("--conformance-out", default=DEFAULT_OUT, metavar="DIR",
                    help=f"where failing tests write repro scripts and bug reports (default {DEFAULT_OUT})")
    group.addoption("--conformance-precision", default="strict", choices=("strict", "relaxed", "any", "tf32"),
                    metavar="CONTRACT", help="precision contract of the verdict: strict (default), relaxed, any, "
                                             "tf32 (docs/tolerance.md)")
    group.addoption("--conformance-no-properties", action="store_true", default=False,
                    help="leave out the hypothesis property tests")
    # Defaults are `conformance run`'s (resolved once --conformance is given, so that an
    # inert plugin imports nothing of the engine).
    group.addoption("--conformance-timeout", type=float, default=None, metavar="SECONDS",
                    help="per case and backend: past it the backend's worker process is killed and the test fails "
                         "as a timeout (default: conformance run's --timeout default, 60)")
    group.addoption("--conformance-max-memory", default=None, metavar="SIZE",
                    help="cases whose oracle and comparison are estimated to need more (e.g. 8G) are skipped as "
                         "unsupported (default: half the memory available at the start, as conformance run "
                         "--max-memory)")


def _wants_profiles(config: pytest.Config) -> bool:
    from .hypothesis_profiles import ENV_VAR

    asked = config.getoption("--hypothesis-profile", default=None)
    return bool(asked or os.environ.get(ENV_VAR) or config.getoption("conformance"))


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "conformance: a conv-conformance (case, backend) or property test")
    if _wants_profiles(config):
        from . import hypothesis_profiles

        hypothesis_profiles.register()
        try:
            hypothesis_profiles.load_from_env()
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None
    if not config.getoption("conformance"):
        return
    specs = config.getoption("conformance_backends") + config.getoption("conformance_adapters")
    if not specs:
        raise pytest.UsageError("--conformance: expected at least one --backend or --adapter, received none")
    from ._pytest_cases import ConformancePlugin

    config.pluginmanager.register(ConformancePlugin(config, specs), "conformance-session")
