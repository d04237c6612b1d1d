"""The registry turns every kind of backend spec into a working adapter, or says why not.

Specs: built-in names (`BUILTINS`), entry points of the group `conformance.adapters`,
`module:Class` and `path/to/file.py:Class` (a class, a factory or an instance). Every
failure is a BackendError naming the spec, what was expected and what was found.
None of these tests needs a framework: built-ins are constructed, never run.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.adapters import registry
from conformance.adapters.registry import BackendError, check_contract, default_specs, discover, load
from conformance.compare import compare
from conformance.inputs import make_inputs
from conformance.oracle import reference
from conformance.spec import Case

EXAMPLE_DIR = Path(__file__).resolve().parents[1] / "examples" / "third_party_adapter"
EXPECTED_BUILTINS = ["numpy", "torch", "torch[native_pad]", "torch:cuda", "tensorflow", "tensorflow[native_pad]",
                     "tensorflow:gpu", "onnxruntime", "onnxruntime[auto_pad]", "onnxruntime:cuda", "jax", "jax:gpu"]

ADAPTER_SOURCE = '''
import numpy as np

class Minimal:
    name = "minimal"
    def version(self): return "1.0"
    def device(self): return "cpu"
    def supports(self, case): return None
    def run(self, case, x, filters, bias): return np.zeros(case.output_shape, x.dtype)

def make_minimal():
    return Minimal()

INSTANCE = Minimal()

class NoRun:
    name = "norun"
    def version(self): return "1.0"
    def device(self): return "cpu"
    def supports(self, case): return None
'''


@pytest.fixture
def adapter_module(tmp_path, monkeypatch):
    """An importable module `tmp_adapters` holding a class, a factory, an instance and a broken class."""
    (tmp_path / "tmp_adapters.py").write_text(ADAPTER_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tmp_adapters", raising=False)
    return tmp_path / "tmp_adapters.py"


@pytest.fixture
def entry_point(tmp_path, monkeypatch):
    """An installed distribution (a dist-info on sys.path) declaring 'tmp-minimal' in our group."""
    (tmp_path / "tmp_adapters.py").write_text(ADAPTER_SOURCE)
    info = tmp_path / "tmp_adapters-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tmp-adapters\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[conformance.adapters]\ntmp-minimal = tmp_adapters:Minimal\ntmp-broken = tmp_adapters_missing:Nothing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tmp_adapters", raising=False)
    return tmp_path


# ---- built-ins ---------------------------------------------------------------------------


def test_builtins_keep_every_earlier_name():
    names = list(registry.BUILTINS)
    assert [n for n in names if n in EXPECTED_BUILTINS] == EXPECTED_BUILTINS


@pytest.mark.parametrize("name", EXPECTED_BUILTINS)
def test_builtin_loads_by_name_with_that_name(name):
    b = registry.BUILTINS[name]
    if any(registry.importlib.util.find_spec(m) is None for m in b.requires):
        pytest.skip(f"{name}: {b.requires} not installed")  # loading needs the framework installed, not imported
    adapter = load(name)
    assert adapter.name == name
    assert adapter.device() == b.device
    check_contract(adapter)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(BackendError) as err:
        load("tourch")
    message = str(err.value)
    assert "unknown backend 'tourch'" in message
    for name in EXPECTED_BUILTINS:
        assert name in message


def test_unknown_variant_of_a_builtin_is_unknown_not_an_import():
    with pytest.raises(BackendError, match=r"unknown backend 'torch:rocm'.*torch\[native_pad\]"):
        load("torch:rocm")


def test_missing_framework_is_reported_as_not_installed(monkeypatch):
    real = registry.importlib.util.find_spec
    monkeypatch.setattr(registry.importlib.util, "find_spec", lambda m, *a: None if m == "jax" else real(m, *a))
    with pytest.raises(BackendError, match=r"backend 'jax' is not installed: No module named 'jax'.*conv-conformance\[jax\]"):
        load("jax")


# ---- module:Class and file.py:Class ----------------------------------------------------------


@pytest.mark.parametrize("attr", ["Minimal", "make_minimal", "INSTANCE"])
def test_module_spec_accepts_a_class_a_factory_or_an_instance(adapter_module, attr):
    adapter = load(f"tmp_adapters:{attr}")
    assert adapter.name == "minimal" and adapter.version() == "1.0"


def test_engine_module_spec_loads_a_builtin_class():
    adapter = load("conformance.adapters.numpy_backend:NumpyAdapter")
    assert adapter.name == "numpy"


def test_file_spec_loads_a_class_from_a_path(tmp_path):
    path = tmp_path / "my_adapter.py"
    path.write_text(ADAPTER_SOURCE)
    adapter = load(f"{path}:Minimal")
    assert adapter.name == "minimal"


def test_file_spec_that_does_not_exist_says_so(tmp_path):
    with pytest.raises(BackendError, match=r"adapter file '.*nothere\.py' not found"):
        load(f"{tmp_path / 'nothere.py'}:Minimal")


def test_file_spec_whose_import_fails_quotes_the_error(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("import not_a_module_anywhere\n")
    with pytest.raises(BackendError, match=r"import failed: ModuleNotFoundError: No module named 'not_a_module_anywhere'"):
        load(f"{path}:Anything")


def test_module_spec_without_the_attribute_names_it(adapter_module):
    with pytest.raises(BackendError, match=r"expected 'Missing' in 'tmp_adapters'"):
        load("tmp_adapters:Missing")


def test_module_spec_that_cannot_be_imported_quotes_the_error():
    with pytest.raises(BackendError, match=r"import failed: ModuleNotFoundError"):
        load("no_such_package_xyz.adapters:Thing")


def test_class_that_needs_arguments_is_refused_clearly(tmp_path):
    path = tmp_path / "needs_args.py"
    path.write_text("class A:\n    def __init__(self, required):\n        pass\n")
    with pytest.raises(BackendError, match=r"expected a class or factory callable with no arguments"):
        load(f"{path}:A")


def test_class_missing_run_fails_the_contract(adapter_module):
    with pytest.raises(BackendError, match=r"adapter 'tmp_adapters:NoRun'.*missing: run"):
        load("tmp_adapters:NoRun")


# ---- check_contract -----------------------------------------------------------------------------


class _Complete:
    name = "complete"

    def version(self):
        return "1"

    def device(self):
        return "cpu"

    def supports(self, case):
        return None

    def run(self, case, x, filters, bias):
        return x


def test_contract_accepts_a_complete_duck_typed_object():
    check_contract(_Complete())


@pytest.mark.parametrize("attr,value,complaint", [
    ("name", 3, "name is 3 (expected a non-empty str)"),
    ("name", "", "name is '' (expected a non-empty str)"),
    ("run", "not callable", "run is a str (expected a method)"),
    ("repro_code", 1, "repro_code is a int (expected a method)"),
])
def test_contract_names_the_ill_typed_member(attr, value, complaint):
    obj = _Complete()
    setattr(obj, attr, value)
    with pytest.raises(BackendError, match="expected members") as err:
        check_contract(obj)
    assert complaint in str(err.value)


def test_contract_lists_every_missing_member():
    with pytest.raises(BackendError) as err:
        check_contract(object())
    assert "missing: name, version, device, supports, run" in str(err.value)


# ---- entry points ---------------------------------------------------------------------------------


def test_entry_point_loads_by_its_name(entry_point):
    adapter = load("tmp-minimal")
    assert adapter.name == "minimal"


def test_entry_point_is_discovered_and_part_of_the_default_run(entry_point):
    infos = {i.name: i for i in discover()}
    assert infos["tmp-minimal"].available and infos["tmp-minimal"].version == "1.0"
    assert "tmp-minimal" in default_specs()


def test_broken_entry_point_is_discovered_as_unavailable_with_the_import_error(entry_point):
    info = {i.name: i for i in discover()}["tmp-broken"]
    assert not info.available and not info.default
    assert "import failed: ModuleNotFoundError" in info.reason
    assert "tmp-broken" not in default_specs()


def test_unknown_name_lists_installed_entry_points_too(entry_point):
    with pytest.raises(BackendError, match="tmp-minimal"):
        load("nothing-like-it")


# ---- discover / default_specs --------------------------------------------------------------------


def test_discover_reports_every_builtin_with_its_device():
    infos = {i.name: i for i in discover()}
    assert set(EXPECTED_BUILTINS) <= set(infos)
    assert infos["numpy"].available and infos["numpy"].version and infos["numpy"].device == "cpu"
    assert infos["torch:cuda"].device == "cuda:0"


def test_discover_reports_a_missing_framework_as_not_installed(monkeypatch):
    real = registry.importlib.util.find_spec
    monkeypatch.setattr(registry.importlib.util, "find_spec", lambda m, *a: None if m == "jax" else real(m, *a))
    infos = {i.name: i for i in discover()}
    for name in ("jax", "jax:gpu"):
        assert not infos[name].available and not infos[name].default
        assert infos[name].reason == "not installed: No module named 'jax'"
    assert "jax" not in default_specs()


def test_discover_reports_a_framework_whose_lookup_fails_as_import_failed(monkeypatch):
    real = registry.importlib.util.find_spec

    def broken(m, *a):
        if m == "onnx":
            raise ImportError("libprotobuf.so: cannot open shared object file")
        return real(m, *a)

    monkeypatch.setattr(registry.importlib.util, "find_spec", broken)
    info = {i.name: i for i in discover()}["onnxruntime"]
    if registry.importlib.util.find_spec("onnxruntime") is None:
        pytest.skip("onnxruntime is not installed")
    assert info.reason == "import failed: libprotobuf.so: cannot open shared object file"


def test_gpu_variant_without_a_device_node_says_no_cuda_device(monkeypatch):
    monkeypatch.setattr(registry, "_gpu_nodes", lambda: False)
    info = {i.name: i for i in discover()}["torch:cuda"]
    if registry.importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed")
    assert not info.available and not info.default
    assert info.reason == "no CUDA device: no /dev/nvidia* device node on this machine"


def test_gpu_variant_asks_the_framework_in_a_child_process_when_a_device_node_exists(monkeypatch):
    if registry.importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed")
    asked = []
    monkeypatch.setattr(registry, "_gpu_nodes", lambda: True)
    monkeypatch.setattr(registry, "_child", lambda code: asked.append(code) or (3, ""))
    info = {i.name: i for i in discover()}["torch:cuda"]
    assert info.reason == "no CUDA device visible to torch"
    assert any("torch.cuda.is_available()" in code for code in asked)


def test_default_specs_are_the_available_builtins_and_entry_points():
    infos = discover()
    specs = default_specs()
    assert "numpy" in specs
    assert specs == [i.spec for i in infos if i.default]
    assert all(i.available for i in infos if i.spec in specs)


def test_discover_deep_reports_the_imported_version(monkeypatch):
    if registry.importlib.util.find_spec("onnxruntime") is None:
        pytest.skip("onnxruntime is not installed")
    import importlib.metadata

    # One framework is enough to show the child-process import (each costs seconds).
    monkeypatch.setattr(registry, "BUILTINS", {"onnxruntime": registry.BUILTINS["onnxruntime"]})
    info = {i.name: i for i in discover(deep=True)}["onnxruntime"]
    assert info.available and info.version == importlib.metadata.version("onnxruntime")


# ---- the example third-party package -------------------------------------------------------------

SEEDS = [
    Case(op="conv2d", batch=2, height=14, width=14, in_channels=32, kernel=(3, 3), out_channels=64, padding="SAME"),
    Case(op="depthwise_conv2d", batch=2, height=14, width=14, in_channels=32, kernel=(3, 3), channel_multiplier=64,
         padding="SAME"),
    Case(op="conv2d", batch=1, height=9, width=8, in_channels=6, kernel=(3, 2), out_channels=4, groups=2,
         strides=(2, 1), dilations=(1, 2), padding=((1, 0), (2, 1)), bias=True, dtype="float16"),
]


@pytest.mark.parametrize("case", SEEDS, ids=lambda c: c.id)
def test_example_adapter_file_loads_and_passes(case):
    adapter = load(f"{EXAMPLE_DIR / 'example_adapter.py'}:DirectNumpyAdapter")
    inputs = make_inputs(case)
    result = compare(case, adapter.run(case, *inputs), reference(case, *inputs), inputs)
    assert result.passed, result.message


def test_example_package_installs_and_registers_its_entry_point(tmp_path, monkeypatch):
    source, target = tmp_path / "src", tmp_path / "site"
    shutil.copytree(EXAMPLE_DIR, source)  # setuptools builds in the source tree: keep the repo clean
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    monkeypatch.syspath_prepend(str(target))
    adapter = load("example-numpy")
    assert adapter.name == "example-numpy"
    assert {i.name: i for i in discover()}["example-numpy"].available
