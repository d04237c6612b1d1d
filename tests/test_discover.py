"""The findings engine: one finding per bug, characterised by experiment, never refuted.

Backends with several independent planted bugs (tests/broken_adapters.py PLANTED) are
judged in this process by the suite's one verdict (`record.record_here`). Each bug's
condition is known exactly, so a finding's predicate can be compared with it on every
case of the set, and its text with the condition's wording.
"""

from __future__ import annotations

import pytest

from conformance import discover as engine
from conformance import findings as data
from conformance.predicate import Predicate
from conformance.probe import Budget, Observation
from conformance.spec import Case
from conformance.record import record_here
from tests import broken_adapters as planted

#: Room enough for every bug of these backends (the default budget is sized for a run).
BUDGET = Budget(probes_per_finding=400, seconds_per_finding=120.0, probes_per_run=4000, seconds_per_run=900.0)


def probe_on(adapter):
    """`probe(case)`: the one verdict on `adapter`, in this process."""
    def probe(case: Case) -> Observation:
        rec = record_here(case, adapter, diagnose=False)
        return Observation(rec["status"], rec["kind"])
    return probe


def records_for(adapter, cases: list[Case], backend: str | None = None) -> list[dict]:
    """results.json-like records of `cases` on `adapter` (the fields the engine reads)."""
    out = []
    for c in cases:
        rec = record_here(c, adapter, diagnose=False)
        out.append({"case_id": c.id, "case": c.to_dict(), "backend": backend or adapter.name, "status": rec["status"],
                    "kind": rec["kind"], "diagnosis": None, "backend_version": adapter.version()})
    return out


def find(adapter, records, backend=None):
    return engine.discover(records, probe_on(adapter), backend or adapter.name, budget=BUDGET)


_DW = dict(op="depthwise_conv2d", batch=1, height=9, width=9, in_channels=2, kernel=3, channel_multiplier=1)
_CV = dict(op="conv2d", batch=1, height=7, width=6, in_channels=2, kernel=3, out_channels=2)


def _cases(*specs: tuple[dict, dict]) -> list[Case]:
    return [Case(**{**base, **changes}) for base, changes in specs]


FOUR_CASES = _cases(
    # depthwise with strides > 1 and dilations > 1 (a wrong shape under VALID, wrong values under SAME)
    (_DW, dict(strides=2, dilations=2)), (_DW, dict(strides=2, dilations=2, padding="SAME")),
    (_DW, dict(strides=(2, 1), dilations=(1, 2), height=11)), (_DW, dict(strides=3, dilations=2, channel_multiplier=2)),
    (_DW, dict(strides=2, dilations=3, padding="SAME", in_channels=5)),
    (_DW, dict(strides=2)), (_DW, dict(dilations=2)), (_DW, dict(kernel=1, strides=2, dilations=2)),
    (_CV, dict(strides=2, dilations=2, height=9, width=9)),
    # in_channels per group of 8k + 3 (conv2d only)
    (_CV, dict(in_channels=3)), (_CV, dict(in_channels=11, out_channels=3)), (_CV, dict(in_channels=6, groups=2)),
    (_CV, dict(in_channels=19, kernel=1)), (_CV, dict(in_channels=4)), (_CV, dict(in_channels=8)),
    (_CV, dict(in_channels=5)), (_CV, dict(in_channels=12, groups=3, out_channels=3)), (_DW, dict(in_channels=3)),
    # bfloat16 with a bias
    (_CV, dict(dtype="bfloat16", bias=True)), (_DW, dict(dtype="bfloat16", bias=True)),
    (_CV, dict(dtype="bfloat16")), (_CV, dict(dtype="float16", bias=True)), (_CV, dict(bias=True)),
    # invalid: groups that do not divide in_channels are accepted; other invalid cases are not
    (_CV, dict(in_channels=5, groups=2)), (_CV, dict(in_channels=2, groups=3, out_channels=3)),
    (_CV, dict(in_channels=4, groups=2, out_channels=3)), (_CV, dict(height=2, width=2)),
    (_CV, dict(padding="SAME")), (_DW, dict(padding="SAME", dtype="float64")),
)
FOUR = {  # bug -> the finding's predicate text
    "dilation": "op = depthwise_conv2d and stride >= 2 and dilation >= 2",
    "tail8": "op = conv2d and per_group_channels % 8 = 3",
    "bf16bias": "dtype = bfloat16 and bias",
    "groups": "validity in {groups_exceed_in_channels, groups_not_dividing_in_channels}",
}

THRESHOLD_CASES = _cases(
    # K = kh * kw * C / groups past 2304, except multiples of 256
    (_CV, dict(in_channels=300, height=4, width=4)), (_CV, dict(in_channels=2400, kernel=1, height=3, width=3)),
    (_CV, dict(in_channels=2560, kernel=1, height=3, width=3)), (_CV, dict(in_channels=2304, kernel=1, height=3, width=3)),
    (_CV, dict(in_channels=256, height=4, width=4)), (_CV, dict(in_channels=577, kernel=2, height=3, width=3)),
    (_CV, dict(in_channels=2400, groups=2, kernel=(2, 1), height=3, width=3)),
    # dilations of 6 and more (where the kernel is wider than one tap)
    (_DW, dict(dilations=6, height=20, width=20, padding="SAME")), (_DW, dict(dilations=(7, 1), height=20, width=20)),
    (_DW, dict(dilations=5, height=20, width=20)), (_CV, dict(dilations=6, height=14, width=14)),
    (_CV, dict(dilations=(1, 9), kernel=(1, 2), height=14, width=14)),
    (_CV, dict(dilations=(9, 1), kernel=(1, 2), height=14, width=14)),
    # outputs of 2^14 pixels and more
    (_CV, dict(height=150, width=130, in_channels=1, out_channels=1, padding="SAME")),
    (_CV, dict(height=128, width=128, in_channels=1, out_channels=1, kernel=1)),
    (_CV, dict(height=128, width=130, in_channels=1, out_channels=1)),
    (_CV, dict(height=127, width=127, in_channels=1, out_channels=1, padding="SAME")),
    # invalid: only groups > in_channels are accepted
    (_CV, dict(in_channels=3, groups=4, out_channels=4)), (_CV, dict(in_channels=4, groups=3, out_channels=3)),
    (_CV, dict(in_channels=2, groups=2)), (_CV, dict(strides=2)),
)
THRESHOLD = {
    "splitk": "op = conv2d and K >= 2305 and K % 256 != 0",
    "dilation6": "dilation >= 6",
    "bigout": "output_pixels >= 16384",
    "groups_exceed": "validity = groups_exceed_in_channels",
}


@pytest.fixture(scope="module")
def four():
    adapter = planted.FourBugs()
    recs = records_for(adapter, FOUR_CASES)
    return adapter, recs, find(adapter, recs)


@pytest.fixture(scope="module")
def threshold():
    adapter = planted.ThresholdBugs()
    recs = records_for(adapter, THRESHOLD_CASES)
    return adapter, recs, find(adapter, recs)


def _the_finding(found, text):
    matches = [f for f in found if f["predicate"] and f["predicate"]["text"] == text]
    assert len(matches) == 1, [f["title"] for f in found]
    return matches[0]


@pytest.mark.parametrize("fixture, bug", [("four", b) for b in FOUR] + [("threshold", b) for b in THRESHOLD],
                         ids=list(FOUR) + list(THRESHOLD))
def test_each_bug_is_one_finding_whose_predicate_is_its_condition(request, fixture, bug):
    adapter, recs, found = request.getfixturevalue(fixture)
    text = (FOUR if fixture == "four" else THRESHOLD)[bug]
    f = _the_finding(found, text)
    cases = FOUR_CASES if fixture == "four" else THRESHOLD_CASES
    pred = Predicate.from_list(f["predicate"]["atoms"])
    condition = planted.PLANTED[bug]
    assert {c.id for c in cases if pred.holds(c)} == {c.id for c in cases if condition(c)}
    assert {m["case_id"] for m in f["members"]} == {c.id for c in cases if condition(c)}


@pytest.mark.parametrize("fixture", ["four", "threshold"])
def test_one_finding_per_bug_and_every_flagged_case_in_one(request, fixture):
    adapter, recs, found = request.getfixturevalue(fixture)
    assert len(found) == len(adapter.bugs)
    flagged = {r["case_id"] for r in recs if r["status"] == "diverge"}
    assert flagged == {m["case_id"] for f in found for m in f["members"]}


@pytest.mark.parametrize("fixture", ["four", "threshold"])
def test_every_finding_is_confirmed_on_fresh_cases_inside_and_outside(request, fixture):
    _, _, found = request.getfixturevalue(fixture)
    for f in found:
        rows = f["confirmation"]["rows"]
        assert f["status"] == "confirmed" and f["confirmation"]["status"] == "confirmed", f["title"]
        assert not [r for r in rows if r.get("counts") == "against"]
        assert {r["side"] for r in rows if r.get("counts") == "for"} == {"inside", "outside"}


def test_a_bug_that_gives_a_wrong_shape_and_wrong_values_is_one_finding(four):
    f = _the_finding(four[2], FOUR["dilation"])
    assert f["kinds"] == {"shape": 3, "value": 2}
    assert f["summary"] == "wrong shape on 3 cases, wrong values on 2"
    assert f["title"].startswith("depthwise_conv2d with strides > 1 and dilations > 1 returns wrong results")


@pytest.mark.parametrize("bug, words", [
    ("tail8", "conv2d with in_channels per group % 8 == 3"),
    ("bf16bias", "convolution with dtype bfloat16 and a bias"),
    ("groups", "invalid convolution with groups > in_channels or groups not dividing in_channels"),
])
def test_titles_name_the_condition_in_words(four, bug, words):
    assert _the_finding(four[2], FOUR[bug])["title"].startswith(words)


def test_ids_do_not_depend_on_the_order_of_the_records(four):
    adapter, recs, found = four
    again = find(adapter, list(reversed(recs)))
    assert {f["id"]: [m["case_id"] for m in f["members"]] for f in again} == \
           {f["id"]: [m["case_id"] for m in f["members"]] for f in found}


def test_two_shards_find_the_ids_of_the_whole(four):
    adapter, recs, found = four
    shards = [find(adapter, recs[0::2]), find(adapter, recs[1::2])]
    by_id = {f["id"]: f["predicate"]["text"] for shard in shards for f in shard}
    assert by_id == {f["id"]: f["predicate"]["text"] for f in found}


def test_variants_with_identical_outputs_get_identical_confirmations(four):
    adapter, recs, found = four
    variant = "four-bugs[other-kernel-path]"
    theirs = find(adapter, records_for(adapter, FOUR_CASES, variant), variant)
    rows = lambda fs: {f["predicate"]["text"]: [(r.get("case_id"), r["status"]) for r in f["confirmation"]["rows"]]  # noqa: E731
                       for f in fs}
    assert rows(theirs) == rows(found)
    assert {f["id"] for f in theirs}.isdisjoint({f["id"] for f in found})  # the id names the backend


def test_a_predicate_a_passing_case_contradicts_is_refined_by_more_experiments():
    adapter = planted.SmallKernels()
    cases = FOUR_CASES + [Case(**{**_CV, "kernel": 5, "height": 9, "width": 9})]
    found = find(adapter, records_for(adapter, cases))
    assert [(f["status"], f["predicate"]["text"]) for f in found] == [("confirmed", "kernel <= 3")]
    assert "kernel" in found[0]["necessary"]


def test_members_are_recomputed_from_the_predicate_on_any_records(four):
    adapter, recs, found = four
    f = _the_finding(found, FOUR["tail8"])
    more = records_for(adapter, [Case(**{**_CV, "in_channels": 27, "groups": 1})])
    pred = Predicate.from_list(f["predicate"]["atoms"])
    assert [m["case_id"] for m in data.members(pred, recs + more)] == \
           sorted([m["case_id"] for m in f["members"]] + [more[0]["case_id"]])


def test_a_correct_backend_has_no_finding():
    adapter = planted.Correct()
    assert find(adapter, records_for(adapter, FOUR_CASES)) == []


def test_a_condition_outside_the_vocabulary_is_uncharacterised_not_refuted():
    adapter = planted.Chaotic()
    recs = records_for(adapter, FOUR_CASES)
    found = find(adapter, recs)
    flagged = {r["case_id"] for r in recs if r["status"] == "diverge"}
    assert flagged and [f["status"] for f in found] == ["uncharacterised"]
    assert found[0]["predicate"] is None and {m["case_id"] for m in found[0]["members"]} == flagged
    assert found[0]["title"].startswith(f"{len(flagged)} divergences no experiment could characterise")
    assert found[0]["minimal_case_id"] and found[0]["notes"]


def test_a_spent_budget_leaves_the_rest_uncharacterised_and_says_so():
    adapter = planted.FourBugs()
    recs = records_for(adapter, FOUR_CASES)
    found = engine.discover(recs, probe_on(adapter), adapter.name,
                            budget=Budget(probes_per_finding=10, probes_per_run=25))
    assert [f["status"] for f in found] == ["uncharacterised"]
    assert any("budget" in n for n in found[0]["notes"])


def test_a_variant_confirms_its_siblings_predicates_before_characterising_anew(four):
    adapter, recs, found = four
    preds = [Predicate.from_list(f["predicate"]["atoms"]) for f in found]
    variant = "four-bugs[other-kernel-path]"
    theirs = engine.discover(records_for(adapter, FOUR_CASES, variant), probe_on(adapter), variant, budget=BUDGET,
                             siblings=lambda: preds)
    assert {f["predicate"]["text"] for f in theirs} == set(FOUR.values())
    assert all(f["status"] == "confirmed" for f in theirs)
    assert sum(f["cost"]["probes"] for f in theirs) < sum(f["cost"]["probes"] for f in found) / 2
