"""The covering-array sweep: deterministic, valid, and covering what it claims."""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
import warnings

import numpy as np

import pytest

from conformance.cases import sweep as sw
from conformance.cases.sweep import (LEVELS, PARAMS, STRENGTH3, CoverageWarning, coverage, describe_coverage,
                                     levels_of, sweep)
from conformance.spec import Case

CASES = sweep(0)


def test_sweep_is_the_same_list_on_every_call():
    assert [c.id for c in sweep(0)] == [c.id for c in CASES]


def test_sweep_is_the_same_in_other_processes_whatever_the_hash_seed():
    code = "import json; from conformance.cases.sweep import sweep; print(json.dumps([c.id for c in sweep(0)]))"
    ids = [json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                     env={**os.environ, "PYTHONHASHSEED": seed}).stdout) for seed in ("1", "2")]
    assert ids[0] == ids[1] == [c.id for c in CASES]


def test_another_seed_gives_other_cases():
    assert {c.id for c in sweep(1)} != {c.id for c in CASES}


def test_every_sweep_case_is_valid_unique_and_small():
    assert all(c.is_valid for c in CASES)
    assert len({c.id for c in CASES}) == len(CASES)
    assert max(math.prod(c.output_shape) * c.reduction_size for c in CASES) < 50_000


def test_default_sweep_covers_all_pairs_and_the_listed_triples():
    cov = coverage(CASES)
    print("\nsweep(seed=0):\n" + describe_coverage(CASES))
    assert cov["t2"]["covered"] == cov["t2"]["total"] > 600
    assert cov["t3"]["covered"] == cov["t3"]["total"] > 600
    assert cov["t2"]["params"] == list(PARAMS) and cov["t3"]["params"] == list(STRENGTH3)


def test_covering_array_is_far_smaller_than_exhaustive():
    exhaustive = math.prod(len(v) for v in LEVELS.values())
    assert len(CASES) < 120 < exhaustive


def test_every_case_realises_exactly_the_levels_it_was_built_from():
    index = {p: set(LEVELS[p]) for p in PARAMS}
    for case in CASES:
        assert all(v in index[p] for p, v in levels_of(case).items()), case.id


def test_coverage_counts_each_pair_of_one_case_once():
    one = [CASES[0]]
    cov = coverage(one)
    assert cov["t2"]["covered"] == len(list(itertools.combinations(PARAMS, 2)))
    assert cov["t3"]["covered"] == len(list(itertools.combinations(STRENGTH3, 3)))


def test_coverage_ignores_invalid_cases_and_values_that_are_not_levels():
    invalid = Case(op="conv2d", batch=1, height=2, width=2, in_channels=1, kernel=3, out_channels=1)
    odd = Case(op="conv2d", batch=7, height=9, width=9, in_channels=5, kernel=7, out_channels=1)
    cov = coverage([invalid, odd])
    assert cov["cases"] == 1
    unknown = {"batch", "kernel", "channels"}
    expected = sum(1 for pair in itertools.combinations(PARAMS, 2) if not unknown & set(pair))
    assert cov["t2"]["covered"] == expected


def test_impossible_combinations_are_not_counted():
    # With stride 1 the total SAME pad is eff - 1: with dilation 2 every kernel level has
    # an odd effective size, so no valid case has stride 1, dilation 2 and an odd pad.
    stride, dilation, padding = (PARAMS.index(p) for p in ("stride", "dilation", "padding"))
    combos = sw._universe()[(stride, dilation, padding)]
    every = itertools.product(*(range(len(LEVELS[p])) for p in ("stride", "dilation", "padding")))
    missing = [(LEVELS["stride"][s], LEVELS["dilation"][d], LEVELS["padding"][p])
               for s, d, p in every if (s, d, p) not in combos]
    assert missing == [((1, 1), (2, 2), "SAME-odd")]
    assert not sw._feasible((1, 1), (3, 3), (2, 2), "SAME-odd")  # a 1x1 kernel never pads
    assert not sw._feasible((2, 2), (1, 1), (1, 1), "SAME-even")
    assert sw._feasible((3, 3), (2, 2), (1, 1), "SAME-odd")  # the stride makes room for it


def test_a_budget_below_the_covering_array_warns_and_reports_partial_coverage():
    with pytest.warns(CoverageWarning, match=r"budget 20 is below the \d+ cases.*2-way coverage"):
        few = sweep(0, budget=20)
    assert len(few) == 20
    assert coverage(few)["t2"]["percent"] < 100.0
    assert "missing (t2)" in describe_coverage(few)


def test_a_budget_above_the_covering_array_extends_it_with_valid_cases():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        more = sweep(0, budget=len(CASES) + 50)
    assert len(more) == len(CASES) + 50
    assert [c.id for c in more[: len(CASES)]] == [c.id for c in CASES]
    assert all(c.is_valid for c in more) and len({c.id for c in more}) == len(more)


def test_larger_budgets_extend_smaller_ones():
    small, large = sweep(0, budget=150), sweep(0, budget=300)
    assert [c.id for c in large[:150]] == [c.id for c in small]


@pytest.mark.parametrize("kwargs", [dict(budget=0), dict(budget=2.5), dict(seed="x"), dict(budget=True)],
                         ids=["zero-budget", "float-budget", "string-seed", "bool-budget"])
def test_bad_arguments_are_refused(kwargs):
    with pytest.raises(ValueError, match="expected"):
        sweep(**kwargs)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_seed_reaches_full_coverage(seed):
    cov = coverage(sweep(seed))
    assert cov["t2"]["percent"] == cov["t3"]["percent"] == 100.0


def _oracle_failures(cases) -> list[tuple[str, str]]:
    """(case id, message) of each case whose oracle answer, rounded to its dtype, does not pass."""
    from conformance.compare import compare
    from conformance.dtypes import np_dtype
    from conformance.inputs import make_inputs
    from conformance.oracle import reference

    failures = []
    for case in cases:
        inputs = make_inputs(case)
        ref = reference(case, *inputs)
        with np.errstate(over="ignore"):  # the overflow profile's results beyond the range become Inf
            y = ref.value.astype(np_dtype(case.dtype))
        result = compare(case, y, ref, inputs)
        if not result.passed:
            failures.append((case.id, result.message))
    return failures


def test_every_default_sweep_case_is_judged_correctly_on_the_oracle():
    """The oracle's own answer, rounded to the dtype, passes every sweep case (inputs are computable)."""
    from conformance.cases.sets import DEFAULT_BUDGET
    assert _oracle_failures(sweep(0, budget=DEFAULT_BUDGET)) == []


def test_medium_cases_are_valid_deterministic_bounded_and_reach_sizes_the_sweep_does_not():
    from conformance.cases.sweep import MEDIUM_MAX_MACS, medium
    from conformance.spec import DTYPES
    cases = medium(0, 60)
    assert [c.id for c in cases] == [c.id for c in medium(0, 60)]
    assert [c.id for c in medium(0, 20)] == [c.id for c in cases[:20]]  # a prefix
    assert all(c.is_valid for c in cases)
    assert max(math.prod(c.output_shape) * c.reduction_size for c in cases) <= MEDIUM_MAX_MACS
    assert max(c.batch for c in cases) > 2 and max(c.in_channels for c in cases) > 64
    assert max(max(c.output_shape[1:3]) for c in cases) > 16 and max(c.reduction_size for c in cases) > 256
    assert {c.dtype for c in cases} == set(DTYPES)


def test_every_default_medium_case_is_judged_correctly_on_the_oracle():
    from conformance.cases.sets import DEFAULT_MEDIUM
    from conformance.cases.sweep import medium
    assert _oracle_failures(medium(0, DEFAULT_MEDIUM)) == []


# ---- the training ops' arrays ---------------------------------------------------------

def test_the_forward_sweep_is_its_own_array_whatever_other_ops_exist():
    # The training ops have an array of their own: the forward one (and the default set's
    # forward cases) never move when ops are added.
    assert sweep(0, ops=sw.FORWARD_OPS) == CASES and {c.op for c in CASES} == set(sw.FORWARD_OPS)


def test_the_training_sweep_covers_its_pairs_and_triples_with_valid_cases_of_its_ops():
    full = sweep(0, ops=sw.TRAINING_OPS)
    pairs = sweep(0, ops=sw.TRAINING_OPS, triples=())
    assert {c.op for c in full} == {c.op for c in pairs} == set(sw.TRAINING_OPS)
    assert all(c.is_valid for c in full + pairs)
    cov = coverage(full, sw.TRAINING_OPS)
    assert cov["t2"]["percent"] == cov["t3"]["percent"] == 100.0
    assert coverage(pairs, sw.TRAINING_OPS, ())["t2"]["percent"] == 100.0 and len(pairs) < len(full)
    assert not any(c.bias for c in full if c.op in sw.GRADIENT_OPS)  # a gradient has no bias
    assert any(c.bias for c in full if c.op == "separable_conv2d")


def test_coverage_of_one_array_ignores_the_cases_of_other_ops():
    training = sweep(0, ops=sw.TRAINING_OPS, triples=())
    assert coverage(training)["cases"] == 0 and coverage(CASES, sw.TRAINING_OPS)["cases"] == 0


@pytest.mark.parametrize("kwargs", [dict(ops=["conv3d"]), dict(ops=[]), dict(triples=("op", "stride")),
                                    dict(triples=("op", "stride", "colour"))],
                         ids=["unknown-op", "no-ops", "two-triples", "unknown-parameter"])
def test_bad_ops_and_triples_are_refused(kwargs):
    with pytest.raises(ValueError, match="^(ops|triples): expected"):
        sweep(0, **kwargs)


def test_every_default_training_case_is_judged_correctly_on_the_oracle():
    from conformance.cases.sets import DEFAULT_TRAINING_MEDIUM, DEFAULT_TRAINING_TRIPLES
    from conformance.cases.sweep import medium
    cases = sweep(0, ops=sw.TRAINING_OPS, triples=DEFAULT_TRAINING_TRIPLES) + \
        medium(0, DEFAULT_TRAINING_MEDIUM, sw.TRAINING_OPS)
    assert _oracle_failures(cases) == []


def test_training_medium_cases_are_valid_bounded_and_of_the_training_ops():
    from conformance.cases.sweep import MEDIUM_MAX_MACS, medium
    cases = medium(0, 60, sw.TRAINING_OPS)
    assert [c.id for c in medium(0, 10, sw.TRAINING_OPS)] == [c.id for c in cases[:10]]
    assert all(c.is_valid and c.macs <= 2 * MEDIUM_MAX_MACS for c in cases)
    assert {c.op for c in cases} == set(sw.TRAINING_OPS) and not any(c.bias for c in cases if c.op in sw.GRADIENT_OPS)
    assert [c.id for c in medium(0, 60)] == [c.id for c in medium(0, 60, sw.FORWARD_OPS)]
