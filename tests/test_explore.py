"""`conformance explore`: finds a backend's divergences, shrinks them, keeps them as regressions."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from conformance import explore
from conformance.adapters.registry import load
from conformance.cases.catalogue import load_entries
from conformance.cases.sets import select
from conformance.cli import main
from conformance.cli.explore import DEFAULT_OUT_DIR
from conformance.record import record_here

BROKEN = f"{Path(__file__).with_name('broken_adapters.py')}:FlippedKernel"
FOUND_BY_KEYS = {"backend", "backend_version", "device", "date", "kind", "message"}


def _explore(out_dir: Path, *extra: str, backend: str = BROKEN) -> int:
    return main(["explore", "--backend", backend, "--max-examples", "30", "--max-found", "1", "--seed", "3",
                 "--out-dir", str(out_dir), *extra])


def test_broken_backend_divergence_is_found_shrunk_and_written(tmp_path, capsys):
    assert _explore(tmp_path) == 1
    (path,) = sorted(tmp_path.glob("flipped-*.yaml"))
    (entry,) = load_entries(path)  # the catalogue's own loader accepts the file
    case = entry.case
    assert math.prod(case.input_shape) <= 4 and case.kernel in ((1, 2), (2, 1)), case.id
    assert FOUND_BY_KEYS <= set(entry.found_by) and entry.found_by["kind"] == "value"
    assert f"FOUND {case.id}" in capsys.readouterr().out


def test_same_seed_finds_the_same_case(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    _explore(first)
    _explore(second)
    assert [p.name for p in first.glob("*.yaml")] == [p.name for p in second.glob("*.yaml")] != []


def test_conforming_backend_finds_nothing_and_writes_nothing(tmp_path, capsys):
    code = main(["explore", "--backend", "numpy", "--max-examples", "15", "--seed", "0", "--out-dir", str(tmp_path)])
    assert code == 0
    assert list(tmp_path.iterdir()) == []
    assert "no divergence found" in capsys.readouterr().out


def test_a_case_already_in_the_catalogue_is_not_written_again(tmp_path):
    case = select("smoke")[0]
    adapter = load(BROKEN)
    path, note = explore.write_regression(case, record_here(case, adapter), tmp_path, spec=BROKEN, seed=0)
    assert path is None and "already in" in note
    assert list(tmp_path.iterdir()) == []


def test_unknown_backend_exits_2(tmp_path, capsys):
    assert _explore(tmp_path, backend="no-such-backend") == 2
    assert "no-such-backend" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--max-examples", "--max-found"])
def test_non_positive_limits_exit_2(tmp_path, flag, capsys):
    assert main(["explore", "--backend", "numpy", flag, "0", "--out-dir", str(tmp_path)]) == 2
    assert f"{flag}: expected an integer >= 1, received '0'" in capsys.readouterr().err


def test_by_default_case_files_go_to_the_working_directory(tmp_path, monkeypatch):
    # Not into the installed package (a wheel's site-packages may not even be writable).
    monkeypatch.chdir(tmp_path)
    assert main(["explore", "--backend", BROKEN, "--max-examples", "30", "--max-found", "1", "--seed", "3"]) == 1
    assert [p.parent for p in tmp_path.rglob("flipped-*.yaml")] == [tmp_path / DEFAULT_OUT_DIR]


ADAPTERS = Path(__file__).with_name("adapters_for_tests.py")


def test_a_crash_is_found_as_a_crash_record_and_the_search_goes_on(tmp_path, capsys):
    # Segfaults on bfloat16, adds 1 on float64: the crash is one finding, and the search
    # finds the other after it (its worker restarted).
    code = main(["explore", "--backend", f"{ADAPTERS}:SegfaultsOnBfloat16WrongOnFloat64", "--dtype", "bfloat16", "--dtype", "float64",
                 "--op", "conv2d", "--max-examples", "10", "--max-found", "2", "--seed", "0", "--no-minimise",
                 "--shrink-budget", "1", "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1, out
    kinds = {entry.found_by["kind"]: entry.case for path in tmp_path.glob("*.yaml") for entry in load_entries(path)}
    assert set(kinds) == {"crash", "value"}, out
    assert kinds["crash"].dtype == "bfloat16" and kinds["value"].dtype == "float64"
    assert "crash: worker process died with signal SIGSEGV" in out and "2 divergence(s) found" in out


def test_a_hang_is_found_as_a_timeout_record(tmp_path, capsys):
    code = main(["explore", "--backend", f"{ADAPTERS}:HangsOnFloat16", "--dtype", "float16", "--max-examples", "3",
                 "--max-found", "1", "--no-minimise", "--shrink-budget", "1", "--timeout", "1",
                 "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1, out
    ((entry,),) = [load_entries(p) for p in tmp_path.glob("*.yaml")]
    assert entry.found_by["kind"] == "timeout" and entry.case.dtype == "float16"
    assert "timeout: no result within 1 s" in out
