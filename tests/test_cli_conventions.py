"""The conventions every `conformance` subcommand keeps: `--version`; a help text for every
option; a usage error that names the option at fault ("--option: expected ..., received
...", one line, exit 2); "did you mean" for a misspelled name; a precision profile that
counts every divergence and says "none met" with the worst error; no internal references
in what a user reads."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import conformance
from conformance import cli, verdict
from conformance.cli import console
from conformance.results import new_record
from tests._runner_util import adapter, case_file, run_cli

COMMANDS = list(cli.SUBCOMMANDS)
#: "error: FIELD: expected ..., received ..." where FIELD is an option, an argument's metavar,
#: COMMAND or `conformance SUBCOMMAND` (for an unknown option); a backend spec may follow the option.
USAGE_LINE = re.compile(r"error: (?P<field>--[a-z][\w-]*|[A-Z][A-Za-z_.]*|conformance [a-z]+)(?: \S+)?: .*"
                        r"expected .+[,;] received .+")


@pytest.fixture(scope="module")
def one_case(tmp_path_factory):
    return case_file(tmp_path_factory.mktemp("conventions") / "one.yaml", ["ok-a"])


def _usage_line(argv: list[str]) -> str:
    """The one line on stderr of `conformance ARGV`, which must exit 2 without a traceback."""
    code, err = run_cli(*argv)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err and lines[0].startswith("error: "), err
    return lines[0]


def _usage_error(argv: list[str]) -> tuple[str, str]:
    """(the field named, the line) of the usage error `conformance ARGV` gives."""
    line = _usage_line(argv)
    m = USAGE_LINE.fullmatch(line)
    assert m, f"expected 'error: OPTION: expected ..., received ...', received {line!r}"
    return m.group("field"), line


# ---- --version ----------------------------------------------------------------------------

def test_version_prints_the_package_python_and_numpy_versions(capsys):
    assert cli.main(["--version"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"conformance {conformance.__version__} ")
    assert f"NumPy {np.__version__}" in out and f"Python {sys.version.split()[0]}" in out


def test_version_works_as_the_installed_command():
    proc = subprocess.run([sys.executable, "-m", "conformance", "--version"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"conformance {conformance.__version__}")


# ---- help -----------------------------------------------------------------------------------

def _actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """Every option and argument but --help and the subcommand itself."""
    return [a for a in parser._actions if "--help" not in a.option_strings and a.dest != "command"]


@pytest.mark.parametrize("command", ["conformance"] + COMMANDS)
def test_every_option_and_argument_has_help(command):
    parser = cli.build_parser() if command == "conformance" else cli.subcommand_parser(command)
    missing = [a.option_strings[0] if a.option_strings else a.metavar or a.dest
               for a in _actions(parser) if not (a.help or "").strip() or a.help == argparse.SUPPRESS]
    assert not missing, f"conformance {command}: options without help: {missing}"


# ---- errors name the option ---------------------------------------------------------------

@pytest.mark.parametrize("argv, field", [
    (["cases", "--dtype", "nonsense"], "--dtype"),
    (["run", "--dtype", "nonsense"], "--dtype"),
    (["cases", "--seed", "x"], "--seed"),
    (["run", "--budget", "many"], "--budget"),
    (["run", "--timeout", "soon"], "--timeout"),
    (["run", "--precision", "exact"], "--precision"),
    (["run", "--shard", "9"], "--shard"),
    (["run", "--backend"], "--backend"),
    (["run", "--backend", "no-such-backend"], "--backend"),
    (["cases", "no-such-set-or-case"], "SELECTOR"),
    (["run", "--cases", "no-such-set-or-case"], "--cases"),
    (["explore", "--backend", "numpy", "--max-examples", "0"], "--max-examples"),
    (["explore", "--backend", "numpy", "--op", "conv3d"], "--op"),
    (["explore"], "--backend"),
    (["repro", "--backend", "numpy"], "CASE"),
    (["repro", "--finding", "f1", "--backend", "numpy", "--results", "/nonexistent/results.json"], "--results"),
    (["merge"], "RESULTS_JSON"),
    (["report", "/nonexistent/results.json"], "RESULTS.json"),
    (["run", "--no-such-option"], "conformance run"),
    (["frobnicate"], "COMMAND"),
    ([], "COMMAND"),
], ids=lambda v: " ".join(v) or "nothing" if isinstance(v, list) else v)
def test_a_usage_error_names_the_option_at_fault(argv, field, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _usage_error(argv)[0] == field


def _parsed_options() -> list[tuple[str, str]]:
    """(subcommand, option) of every option whose value is parsed (a type other than a
    string or a path, or choices)."""
    return [(command, a.option_strings[0]) for command in COMMANDS for a in _actions(cli.subcommand_parser(command))
            if a.option_strings and a.nargs != 0 and (a.choices or a.type not in (None, str, Path))]


@pytest.mark.parametrize("command, option", _parsed_options(), ids=[" ".join(p) for p in _parsed_options()])
def test_a_parsed_option_refuses_a_bad_value_naming_itself(command, option):
    field, line = _usage_error([command, option, "no-such-value"])
    assert field == option and "received 'no-such-value'" in line, line


# ---- did you mean ---------------------------------------------------------------------------

@pytest.mark.parametrize("argv, meant", [
    (["rnu"], "run"),
    (["run", "--no-reprt"], "--no-report"),
    (["run", "--backend", "nump"], "numpy"),
    (["run", "--backend", "torch[chanels_last]", "--cases", "{cases}", "--out", "{out}"], "torch[channels_last]"),
    (["run", "--backend", "keras[backnd=jax]", "--cases", "{cases}", "--out", "{out}"], "keras[backend=jax]"),
    (["run", "--backend", "keras[backend=jx]", "--cases", "{cases}", "--out", "{out}"], "keras[backend=jax]"),
    (["repro", "{case_id}", "--backend", "torch[mkldnn_off]:cud"], "torch[mkldnn_off]:cuda"),
    (["explore", "--backend", "tensorflw[xla]"], "tensorflow[xla]"),
    (["run", "--cases", "smok"], "smoke"),
    (["cases", "defualt"], "default"),
    (["cases", "--dtype", "flot32"], "float32"),
    (["run", "--dtype", "float16,bfloat61"], "bfloat16"),
    (["explore", "--backend", "numpy", "--dtype", "f16"], "float16"),
    (["repro", "{case_id}", "--backend", "numpy", "--precision", "stric"], "strict"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_a_misspelled_name_gets_the_one_meant(argv, meant, tmp_path, one_case, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = [a.format(cases=one_case, out=tmp_path / "out", case_id=str(one_case)) for a in argv]
    line = _usage_line(argv)
    assert line.endswith(f"(did you mean {meant!r}?)"), line


def test_nothing_close_gets_no_suggestion(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, line = _usage_error(["cases", "--dtype", "nonsense"])
    assert "did you mean" not in line


# ---- the precision profile ------------------------------------------------------------------

def _rec(status="pass", kind=None, met="strict", e=0.5, dtype="float32", case_id="c1", figures=True):
    figs = {"max_normalised_error": e, "precision_met": met} if figures else {}
    return new_record({"dtype": dtype}, case_id, "b", status=status, kind=kind, figures=figs, precision_met=met)


def test_a_value_divergence_makes_the_profile_none_met_with_its_error():
    row = verdict.precision_profile([_rec(), _rec(status="diverge", kind="value", met=None, e=2e8)])["b"]["float32"]
    assert row["meets"] is None and row["max_normalised_error"] == 2e8


def test_every_divergence_is_counted_by_kind():
    recs = [_rec(case_id="p"), _rec(status="diverge", kind="precision", met="tf32", e=30.0, case_id="q"),
            _rec(status="diverge", kind="value", met=None, e=7e13, case_id="v"),
            _rec(status="diverge", kind="shape", met=None, case_id="s", figures=False)]
    row = verdict.precision_profile(recs)["b"]["float32"]
    assert (row["cases"], row["diverged"], row["other"]) == (4, 3, 2)
    assert row["kinds"] == {"precision": 1, "value": 1, "shape": 1}


def test_only_precision_divergences_still_rank_contracts():
    row = verdict.precision_profile([_rec(), _rec(status="diverge", kind="precision", met="tf32", e=30.0)])["b"]
    assert row["float32"]["meets"] == "tf32" and row["float32"]["diverged"] == 1


def test_an_infinite_error_is_the_worst():
    recs = [_rec(status="diverge", kind="nonfinite", met=None, e=None), _rec(e=3.0, case_id="c2")]
    assert verdict.precision_profile(recs)["b"]["float32"]["max_normalised_error"] == "inf"


def test_invalid_cases_are_not_in_the_profile():
    rejected = new_record({"dtype": "float16"}, "i1", "b", status="pass")
    accepted = new_record({"dtype": "float16"}, "i2", "b", status="diverge", kind="invalid_accepted",
                          figures={"actual_shape": [1, 0, 1, 1]})
    assert verdict.precision_profile([rejected, accepted]) == {}


def test_the_console_says_none_met_with_the_worst_error_and_the_divergences():
    recs = [_rec(dtype="float64", met=None, status="diverge", kind="value", e=7.1e13, case_id=f"c{i}")
            for i in range(3)]
    row = verdict.precision_profile(recs)["b"]["float64"]
    assert console.profile_cell("float64", row) == "float64: none met (max e 7.1e+13; 3 of 3 diverge: value 3)"


def test_a_run_with_wrong_values_does_not_print_a_clean_profile(tmp_path):
    cases = case_file(tmp_path / "cases.yaml", ["ok-a", "wrong-b"])
    code, err = run_cli("run", "--adapter", adapter("Misbehaving"), "--cases", str(cases), "--out", str(tmp_path / "o"),
                        "--no-report", "--no-minimise", "--no-confirm")
    assert code == 1
    line = next(ln for ln in err.splitlines() if ln.strip().startswith("misbehaving  float32:"))
    assert re.search(r"float32: none met \(max e \S+; 1 of 2 diverge: value 1\)", line), line


# ---- no internal references -------------------------------------------------------------------

INTERNAL = re.compile(r"\bissue \d+|README", re.IGNORECASE)


def test_backends_prints_no_internal_reference(capsys):
    assert cli.main(["backends"]) == 0
    out = capsys.readouterr().out
    assert not INTERNAL.search(out), INTERNAL.search(out).group(0)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_texts_point_at_docs_not_internals(command):
    helps = [a.help or "" for a in _actions(cli.subcommand_parser(command))]
    assert not [h for h in helps if INTERNAL.search(h)]


def test_pytest_plugin_help_texts_point_at_docs_not_internals():
    from conformance import pytest_plugin

    helps = []

    class Group:
        def addoption(self, *_opts, **kw):
            helps.append(kw.get("help") or "")

    class Parser:
        def getgroup(self, *_a, **_k):
            return Group()

    pytest_plugin.pytest_addoption(Parser())
    assert helps and not [h for h in helps if INTERNAL.search(h)]
