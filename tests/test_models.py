"""The `models` case family: real layers with sources, their rules, and the default set's size classes."""

from __future__ import annotations

import math

import pytest

from conformance.cases import sets
from conformance.cases.catalogue import CaseFileError, load_entries, load_model_entries
from conformance.cases.sizes import SIZE_CLASSES, size_classes
from conformance.cases.sweep import MEDIUM_MAX_MACS, medium
from conformance.spec import FORWARD_OPS, OPS

ENTRIES = load_model_entries()

ARCHITECTURES = ("ResNet-50", "MobileNetV2", "MobileNetV3-Large", "EfficientNet-B0", "ConvNeXt-T", "Xception",
                 "Inception-v3", "DeepLabV3", "U-Net", "YOLOv5s", "ViT-B/16", "SD-UNet", "SD-VAE", "DeepBench")


def test_every_model_case_names_its_model_layer_and_reference():
    for e in ENTRIES:
        src = e.source
        assert src and all(isinstance(src[k], str) and src[k].strip() for k in ("model", "layer", "reference")), e.case.name
        assert e.case.is_valid and e.case.reason and e.case.name


def test_the_models_set_covers_the_published_architectures():
    models = {e.source["model"] for e in ENTRIES}
    assert [a for a in ARCHITECTURES if a not in models] == []
    assert len(ENTRIES) >= 250


def test_model_cases_are_distinct_geometries_at_batch_1_with_a_few_larger_batches():
    ids = [e.case.id for e in ENTRIES]
    assert len(set(ids)) == len(ids)
    batches = [e.case.batch for e in ENTRIES if e.case.op in FORWARD_OPS]
    assert sum(b == 1 for b in batches) > 0.9 * len(batches)
    assert sum(b >= 8 for b in batches) >= 3


def test_every_network_has_backward_layers_at_a_training_batch_under_the_budget():
    training = [e for e in ENTRIES if e.case.op not in FORWARD_OPS]
    per_file = {}
    for e in training:
        per_file.setdefault(e.path, []).append(e.case)
    assert len(per_file) == len({e.path for e in ENTRIES})  # every network file
    assert all(2 <= len(cases) <= 4 for cases in per_file.values())
    assert {c.op for c in (e.case for e in training)} == set(OPS) - set(FORWARD_OPS)
    assert {e.source["model"] for e in training if e.case.op == "separable_conv2d"} >= {"Xception", "MobileNetV2"}
    assert all(c.macs < 2e9 for c in (e.case for e in training))
    assert sum(e.case.batch >= 8 for e in training) > 0.75 * len(training)


def test_the_models_set_reaches_the_shapes_real_networks_run():
    cases = [e.case for e in ENTRIES]
    sizes = size_classes(cases)
    assert [label for label, counts in sizes.items() if counts["cases"] == 0] == []
    assert any(c.kernel in ((1, 7), (7, 1)) for c in cases)  # Inception's factorised kernels
    assert any(c.kernel == (16, 16) and c.strides == (16, 16) for c in cases)  # ViT patch embedding
    assert {6, 12, 18} <= {c.dilations[0] for c in cases}  # ASPP


def test_models_selects_them_all_and_dtype_retypes_every_layer():
    plain = sets.select("models")
    assert [c.id for c in plain] == [e.case.id for e in ENTRIES]
    half = sets.select("models", dtypes=["float16", "bfloat16"])
    assert len(half) == 2 * len(plain) and {c.dtype for c in half} == {"float16", "bfloat16"}
    assert len({c.name for c in half}) == len(half)  # retyped names stay unique


def test_default_set_covers_every_size_class_with_a_small_sample_of_real_layers():
    sample = sets.real_layer_sample()
    assert 10 <= len(sample) <= 30
    default = {c.id for c in sets.select("default")}
    assert {c.id for c in sample} <= default
    sizes = size_classes(sample)
    wanted = [label for label, _ in SIZE_CLASSES if label not in
              ("outputs >= 1e7 elements", "batch >= 8")]  # left to the models set: too costly for every run
    assert [label for label in wanted if sizes[label]["cases"] == 0] == []
    assert {"float32", "float16", "bfloat16", "float64"} <= {c.dtype for c in sample}
    macs = sum(math.prod(c.output_shape) * c.reduction_size for c in sample)
    assert macs < 5 * 10**9, "the sample runs on every backend in every default run"


def _model_file(tmp_path, entry: str) -> str:
    path = tmp_path / "m.yaml"
    path.write_text("defaults: {batch: 1}\ncases:\n  - " + entry + "\n")
    return str(path)


GOOD = "name: a, reason: r, op: conv2d, height: 4, width: 4, in_channels: 2, kernel: 3, out_channels: 2"
SOURCE = "source: {model: M, layer: l, reference: paper}"


@pytest.mark.parametrize("entry,fragment", [
    ("{" + GOOD + "}", "source: expected a source (model, layer, reference)"),
    ("{" + GOOD + ", source: {model: M, layer: l}}", "source.reference: expected a mapping with model, layer"),
    ("{" + GOOD + ", source: {model: M, layer: l, reference: p, url: x}}", "source: expected a mapping"),
    ("{" + GOOD + ", source: {model: M, layer: l, reference: p, also: x}}", "source.also: expected a list"),
    ("{" + GOOD + ", " + SOURCE + ", default_dtypes: [float16]}", "default_dtypes only with sets: [default]"),
    ("{" + GOOD + ", " + SOURCE + ", sets: [default], default_dtypes: [half]}", "default_dtypes: expected a list of dtypes"),
    ("{" + GOOD.replace("height: 4", "height: 1") + ", " + SOURCE + ", expect: error}", "a valid case (a model's layer)"),
])
def test_model_file_rules_name_the_file_case_and_rule(tmp_path, entry, fragment):
    path = _model_file(tmp_path, entry)
    with pytest.raises(CaseFileError) as err:
        load_entries(path, model=True)
    assert fragment in str(err.value) and path in str(err.value) and "'a'" in str(err.value), str(err.value)


def test_a_source_is_optional_outside_the_models_directory(tmp_path):
    (entry,) = load_entries(_model_file(tmp_path, "{" + GOOD + ", " + SOURCE + "}"))
    assert entry.source == {"model": "M", "layer": "l", "reference": "paper"}
    assert load_entries(_model_file(tmp_path, "{" + GOOD + "}"), strict=True)[0].source is None


def test_medium_cases_count_conv2d_channels_once_in_their_cost():
    # The bound is on the case's true multiply-adds, and conv2d cases now use it: before,
    # the input channels counted twice kept wide conv2d cases far below the budget.
    cases = medium(0, 240)
    conv = [c for c in cases if c.op == "conv2d"]
    macs = [math.prod(c.output_shape) * c.reduction_size for c in conv]
    assert max(macs) <= MEDIUM_MAX_MACS
    wide = [c for c, m in zip(conv, macs) if c.in_channels // c.groups >= 33 and c.kernel[0] * c.kernel[1] >= 9]
    assert wide and max(c.output_shape[1] * c.output_shape[2] for c in wide) > 64, \
        "wide conv2d cases still get tiny outputs"
