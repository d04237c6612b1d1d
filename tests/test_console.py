"""The console as a new user reads it: summary lines cut at a word with the diagnosis, the
backends' reasons for unsupported cases, an ETA only once there is something to estimate
from, repro messages that match the verdict, the real size of the full set, warnings as
one line."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import pytest

from conformance import cli, text
from conformance.cli import console
from conformance.cases.sets import select
from conformance.results import new_record
from conformance.run.progress import Progress

BROKEN = str(Path(__file__).with_name("broken_adapters.py"))
SMOKE = select("smoke")
PLAIN = next(c for c in SMOKE if c.op == "conv2d" and c.kernel == (3, 3) and c.profile == "normal"
             and c.dtype == "float32" and c.groups == 1)


def _rec(backend="tf", status="diverge", kind="shape", message="", hypothesis=None, case_id="c1"):
    rec = new_record({}, case_id, backend, status=status, kind=kind if status == "diverge" else None, message=message)
    if hypothesis:
        rec["diagnosis"] = {"hypothesis": hypothesis, "explanation": "..."}
    return rec


LONG = ("invalid case (empty output: input 1x1 with effective kernel 2x1, strides (1, 1) and padding VALID gives 0x1) "
        "returned an output of shape (1, 0, 1, 1) instead of an error, which no correct backend does")


def _cut_at_a_word(clipped: str) -> bool:
    """`clipped` is LONG's start up to a word boundary, then "…"."""
    head = clipped[:-1]
    return clipped.endswith("…") and LONG.startswith(head) and LONG[len(head)] in " ,;:("


@pytest.mark.parametrize("limit", [20, 50, 160])
def test_clip_ends_at_a_word_boundary(limit):
    out = text.clip(LONG, limit)
    assert len(out) <= limit and _cut_at_a_word(out), out


def test_clip_leaves_a_short_text_alone():
    assert text.clip("returned a list", 160) == "returned a list"


def test_a_summary_line_is_cut_at_a_word_and_names_the_diagnosis():
    recs = [_rec(message=LONG, hypothesis="wrong_shape_subblock"), _rec(case_id="c2", kind="value", message="ok")]
    line = console.unexpected_lines(recs, recs[:1])[0]
    assert line.startswith("  tf  c1  shape (wrong_shape_subblock): "), line
    assert _cut_at_a_word(line.split("): ", 1)[1]), line


def test_a_diagnosis_equal_to_the_kind_is_not_repeated():
    recs = [_rec(kind="subnormal_flush", message="flushed", hypothesis="subnormal_flush")]
    assert "subnormal_flush: flushed" in console.unexpected_lines(recs, recs)[0]
    assert "subnormal_flush (subnormal_flush)" not in console.unexpected_lines(recs, recs)[0]


def test_unsupported_reasons_are_one_line_per_backend_and_reason_with_a_count():
    recs = ([_rec(status="unsupported", message="float64 is not supported", case_id=f"a{i}") for i in range(5)]
            + [_rec(status="unsupported", message="dilations > 1 with strides > 1", case_id=f"b{i}") for i in range(2)]
            + [_rec(backend="jax", status="unsupported", message="float64 is not supported", case_id="c")])
    assert console.unsupported_lines(recs) == [
        "  tf  5 cases: float64 is not supported",
        "  tf  2 cases: dilations > 1 with strides > 1",
        "  jax  1 case: float64 is not supported",
    ]


def test_a_backend_with_many_reasons_lists_the_most_frequent_and_counts_the_rest():
    recs = [_rec(status="unsupported", message=f"reason {i}", case_id=f"{i}-{j}") for i in range(12) for j in range(i + 1)]
    lines = console.unsupported_lines(recs)
    assert len(lines) == console.UNSUPPORTED_ROWS + 1 and lines[0] == "  tf  12 cases: reason 11"
    assert lines[-1].startswith("  tf  10 more cases for 4 other reasons")


@pytest.mark.parametrize("done, shown", [(1, False), (19, False), (37, False), (38, True), (200, True)])
def test_the_eta_starts_once_enough_cases_are_done(done, shown):
    progress = Progress(375, io.StringIO())
    progress.add(_rec(status="pass"))
    progress.done_cases = done
    assert ("ETA" in progress.lines()[0]) == shown, progress.lines()


def test_repro_messages_follow_the_verdict(tmp_path, capsys):
    assert cli.main(["repro", PLAIN.id, "--backend", "numpy", "--out", str(tmp_path / "ok.py")]) == 0
    passing = capsys.readouterr().err
    assert f"{PLAIN.id} passes on numpy here, so python {tmp_path / 'ok.py'} exits 0" in passing
    assert "exits 1 while" not in passing
    assert cli.main(["repro", PLAIN.id, "--backend", f"{BROKEN}:FlippedKernel", "--out", str(tmp_path / "bad.py")]) == 1  # the verdict: it diverges
    diverging = capsys.readouterr().err
    assert f"exits 1 while {PLAIN.id} diverges on flipped (value, as here)" in diverging


def test_an_unknown_selector_names_the_real_size_of_the_full_set():
    err = io.StringIO()
    assert cli.main(["cases", "no-such-case-anywhere"], stream=err) == 2
    assert f"in the {len(select('full'))}-case full set" in err.getvalue(), err.getvalue()


def test_a_warning_is_one_plain_line():
    err = io.StringIO()
    out = sys.stdout
    try:
        sys.stdout = io.StringIO()
        assert cli.main(["cases", "default", "--budget", "10"], stream=err) == 0
    finally:
        sys.stdout = out
    warning = [ln for ln in err.getvalue().splitlines() if "budget 10" in ln]
    assert len(warning) == 1 and warning[0].startswith("warning: sweep budget 10 is below"), err.getvalue()
    assert ".py:" not in err.getvalue() and "Warning:" not in err.getvalue()


def test_backends_with_the_same_precision_profile_share_its_line_and_manifest_notes_are_one_line(tmp_path):
    below = {"float16": {"meets": "relaxed", "max_normalised_error": 3.3, "cases": 4, "diverged": 2,
                         "kinds": {"precision": 2}}}
    run = {"records": [_rec(backend=b, status="pass", kind=None) for b in ("tf", "tf[onednn]", "torch")],
           "backends": {b: {} for b in ("tf", "tf[onednn]", "torch")}, "run": {"precision": "strict"},
           "precision_profile": {"tf": below, "tf[onednn]": below,
                                 "torch": {"float16": {"meets": "strict", "max_normalised_error": 0.4, "cases": 4}}},
           "expected": {"not_applicable": [3], "unmatched": [3, 7]}}
    text = console.summary(console.RunOutcome(run, 0, tmp_path))
    profile = [ln for ln in text.splitlines() if "float16: relaxed" in ln]
    assert len(profile) == 1 and profile[0].lstrip().startswith("tf, tf[onednn]  ")
    assert "torch" not in text.split("precision profile")[1].split("\n\n")[0]  # it meets the contract
    notes = [ln for ln in text.splitlines() if ln.startswith("note: manifest")]
    assert notes == ["note: manifest entries [3] do not apply here (their `when` conditions do not hold on this "
                     "environment); entries [7] match no case of this run"]
