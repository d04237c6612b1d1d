"""The size model (cases/sizes.py) and its witnesses (cases/witnesses.py): what the classes
are, that each one is feasible, and that the default set covers every one of them."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from conformance.cases import sets
from conformance.cases.sizes import (CLASSES, FEATURES, HALF_DTYPES, KINDS, MODULI, counts, describe_sizes, residues,
                                     uncovered)
from conformance.cases.witnesses import LIMITS, cost, witnesses
from conformance.spec import FORWARD_OPS, Case

from tests._runner_util import run_cli

BY_LABEL = {k.label: k for k in CLASSES}
WITNESSES = witnesses()


def test_the_default_set_covers_every_size_class():
    missing = uncovered(sets.select("default"))
    assert missing == [], f"{len(missing)} classes no default case falls in, e.g. {[k.label for k in missing[:5]]}"


def test_the_witnesses_alone_cover_every_class_with_valid_cases_in_the_default_and_full_sets():
    assert uncovered(WITNESSES) == []
    assert all(c.is_valid for c in WITNESSES)
    ids = [c.id for c in WITNESSES]
    assert len(set(ids)) == len(ids)
    default, full = {c.id for c in sets.select("default")}, {c.id for c in sets.select("full")}
    assert set(ids) <= default and set(ids) <= full


def test_the_witnesses_are_the_same_in_other_processes_whatever_the_hash_seed():
    code = "import json; from conformance.cases.witnesses import witnesses; print(json.dumps([c.id for c in witnesses()]))"
    ids = [json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                     env={**os.environ, "PYTHONHASHSEED": seed}).stdout) for seed in ("1", "2")]
    assert ids[0] == ids[1] == [c.id for c in WITNESSES]


def test_a_witness_is_cheap_unless_its_first_class_needs_the_size():
    for c in WITNESSES:
        over = {k: v for k, v in cost(c).items() if v > LIMITS[k]}
        if over:  # only a class that is about size may make a case large: near 2^p channels, K or outputs
            first = c.reason.split("size witness: ")[1]
            assert "near a power of two" in first, (c.id, over, c.reason)
    assert max(math.prod(c.output_shape) for c in WITNESSES) < (1 << 24) + (1 << 21)


def test_witnesses_are_float32_but_for_the_classes_required_in_16_bit_types():
    assert {c.dtype for c in WITNESSES} == {"float32", *HALF_DTYPES}
    for c in WITNESSES:
        if c.dtype != "float32":
            assert any(k.holds(c) and k.dtype == c.dtype for k in CLASSES), c.id


def test_residues_are_every_tail_of_4_and_8_lanes_and_four_of_each_wider_block():
    assert residues(4) == (0, 1, 2, 3) and residues(8) == tuple(range(8))
    assert residues(16) == (0, 1, 8, 15) and residues(512) == (0, 1, 256, 511)


@pytest.mark.parametrize("op,dimension,moduli", [
    ("conv2d", "input channels per group", MODULI), ("conv2d", "output channels per group", MODULI),
    ("conv2d", "K", MODULI + (128, 256, 512)), ("depthwise_conv2d", "channel multiplier", MODULI),
    ("depthwise_conv2d", "input channels", MODULI), ("depthwise_conv2d", "output width", MODULI),
    ("conv2d", "output height", MODULI), ("conv2d", "batch", MODULI)])
def test_each_dimension_has_its_residue_classes_in_both_bands(op, dimension, moduli):
    classes = [k for k in CLASSES if k.family == "residue" and k.op == op and k.target.dimension == dimension]
    limit = max(moduli)
    for band in (f"{dimension} < {limit}", f"{dimension} >= {limit}"):
        got = {(k.target.modulus, k.target.residue) for k in classes if k.group == band}
        want = {(m, r) for m in moduli for r in residues(m) if not (band.endswith(f"< {limit}") and m == limit
                                                                    and r == 0)}
        assert got == want, band


def test_size_one_classes_cross_each_kind_and_axis_with_every_combination_of_features():
    for op in FORWARD_OPS:
        base = [k for k in CLASSES if k.family == "size-one" and k.op == op and k.dtype == "float32"]
        assert len(base) == 2 * len(KINDS) * 2 ** len(FEATURES)
        for dtype in HALF_DTYPES:
            half = [k for k in CLASSES if k.family == "size-one" and k.op == op and k.dtype == dtype]
            assert len(half) == 2 * len(KINDS) and {k.key for k in half} == {"stride+dilation+padding (symmetric, beside a wider axis)"}


CONV = dict(op="conv2d", batch=1, height=3, width=3, kernel=(1, 1))


@pytest.mark.parametrize("case,inside,outside", [
    (Case(**CONV, in_channels=67, out_channels=2), ["conv2d input channels per group >= 64: 3 mod 4 [float32]",
                                                    "conv2d K < 512: 3 mod 8 [float32]"],
     ["conv2d input channels per group < 64: 3 mod 4 [float32]"]),
    (Case(**CONV, in_channels=4113, out_channels=1), ["conv2d K near a power of two: just above 2^12 [float32]",
                                                      "conv2d input channels per group near a power of two: just "
                                                      "above 2^12 [float32]"],
     ["conv2d K near a power of two: just above 2^12 [float16]"]),
    (Case(**CONV, in_channels=4095, out_channels=1), ["conv2d K near a power of two: just below 2^12 [float32]"],
     ["conv2d K near a power of two: just above 2^12 [float32]"]),
    (Case(**CONV, in_channels=4096, out_channels=1), [],  # a power of two itself is neither just below nor above
     ["conv2d K near a power of two: just above 2^12 [float32]", "conv2d K near a power of two: just below 2^12 "
                                                                  "[float32]"]),
    (Case(**CONV, in_channels=4097, out_channels=1), [],  # above by less than 2^(12-8): too few indices past 2^12
     ["conv2d K near a power of two: just above 2^12 [float32]"]),
    (Case(op="conv2d", batch=1, height=3, width=1, in_channels=1, out_channels=1, kernel=(1, 1), strides=(1, 2),
          dilations=(1, 2), padding=((0, 0), (1, 1)), dtype="bfloat16"),  # segfaults torch 2.13 (oneDNN)
     ["conv2d width: input 1: stride+dilation+padding (symmetric, beside a wider axis) [bfloat16]"],
     ["conv2d width: input 1: stride+dilation+padding [float32]", "conv2d height: kernel 1: none [float32]"]),
    (Case(op="conv2d", batch=1, height=1, width=5, in_channels=1, out_channels=1, kernel=(3, 1), strides=(2, 1),
          dilations=(2, 1), padding=((2, 3), (0, 0)), dtype="bfloat16"),
     [], ["conv2d height: input 1: stride+dilation+padding (symmetric, beside a wider axis) [bfloat16]"]),
    (Case(op="depthwise_conv2d", batch=1, height=4, width=2, in_channels=2, channel_multiplier=1, kernel=(1, 2),
          strides=(2, 1), padding=((1, 1), (0, 0))),
     ["depthwise_conv2d height: kernel 1: stride+padding [float32]", "depthwise_conv2d width: output 1: none "
                                                                     "[float32]"],
     ["depthwise_conv2d height: kernel 1: stride [float32]"]),
], ids=["cin-67", "cin-4113", "cin-4095", "cin-4096", "cin-4097", "bf16-input-1-symmetric", "bf16-input-1-asymmetric",
        "dw-kernel-1-axis"])
def test_a_case_falls_in_exactly_the_classes_its_sizes_say(case, inside, outside):
    assert [label for label in inside if not BY_LABEL[label].holds(case)] == []
    assert [label for label in outside if BY_LABEL[label].holds(case)] == []


def test_coverage_text_counts_each_class_and_flags_the_uncovered_ones():
    smoke = describe_sizes(sets.select("smoke"))
    assert "  conv2d residues (value mod m: count):\n" in smoke
    assert "\n    input channels per group >= 64 mod 4: 0:0! 1:0! 2:0! 3:0!  <- uncovered\n" in smoke
    full = describe_sizes(WITNESSES)
    n = counts(WITNESSES)
    assert f"{len(CLASSES)} of {len(CLASSES)} size classes covered" in full and "<- uncovered" not in full
    k = BY_LABEL["conv2d output elements near a power of two: just above 2^24 [float32]"]
    assert f"just above 2^24:{n[k]}" in full


def test_cases_coverage_prints_the_size_model(capsys):
    code, _ = run_cli("cases", "default", "--coverage")
    out = capsys.readouterr().out
    assert code == 0
    assert f"{len(CLASSES)} of {len(CLASSES)} size classes covered" in out
    assert "  depthwise_conv2d size-one axes, by which of stride, dilation, padding they have:" in out
    assert "\n    bfloat16 height: input 1: stride+dilation+padding (symmetric, beside a wider axis):" in out
