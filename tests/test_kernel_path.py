"""A backend's kernel path is declared and probed by its own adapter class; `when:` keys follow.

- Every CPU built-in's probe (`kernel_path()`, which the worker's fingerprint calls)
  reports, for each framework it names, every fact the classes declare under that name,
  with the declared type; a variant reports what it forces (torch[mkldnn_off]: mkldnn off,
  tensorflow[eigen]: oneDNN off, onnxruntime[no_opt]: ORT_DISABLE_ALL, ...).
- torch[mkldnn_off] has another fingerprint than torch, so a manifest entry
  `when: {torch.mkldnn: true}` does not apply to it.
- The manifest's conditions are derived: the engine's own (cpu.*, os.system, ftz, daz,
  threads) and every fact a built-in declares, each with its type; a `when:` key that is
  none of them is refused with the list of known ones; `facts()` reads any declared fact
  from a fingerprint, and only when its value has the declared type.
The probes run in fresh interpreters, as in a worker (frameworks that read an environment
switch at import get their own process).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conformance import expected, fingerprint
from conformance.adapters import registry
from conformance.adapters._base import Fact

CPU_BUILTINS = [n for n, b in registry.BUILTINS.items() if b.device == "cpu"]

PROBE = r"""
import json, sys, warnings
warnings.simplefilter("ignore")
from conformance.adapters import registry
from conformance.fingerprint import facts, fingerprint, fingerprint_id

out = {}
for name in sys.argv[1:]:
    adapter = registry.load(name)
    adapter.version()  # as the worker does: the framework is imported before the fingerprint
    fp = fingerprint(adapter)
    out[name] = {"frameworks": fp["frameworks"], "facts": facts(fp), "id": fingerprint_id(fp)}
print("RESULT " + json.dumps(out))
"""

#: What each variant (or plain backend) forces on any x86_64 CPU.
FORCED = {
    "torch[mkldnn_off]": {"torch.mkldnn": False},
    "tensorflow": {"tensorflow.xla": False},
    "tensorflow[onednn]": {"tensorflow.onednn": True},
    "tensorflow[eigen]": {"tensorflow.onednn": False},
    "tensorflow[xla]": {"tensorflow.xla": True},
    "onnxruntime[no_opt]": {"onnxruntime.optimization": "ORT_DISABLE_ALL"},
    "onnxruntime[opt_all]": {"onnxruntime.optimization": "ORT_ENABLE_ALL"},
    "onnxruntime": {"onnxruntime.provider": "CPUExecutionProvider"},
    "jax": {"jax.x64": True, "jax.backend": "cpu"},
    "openvino[f32]": {"openvino.inference_precision": "f32"},
    "litert": {"litert.op_resolver": "AUTO"},
    "litert[reference]": {"litert.op_resolver": "BUILTIN_REF", "litert.xnnpack": False},
    "litert[builtin]": {"litert.op_resolver": "BUILTIN_WITHOUT_DEFAULT_DELEGATES", "litert.xnnpack": False},
    "keras": {"keras.backend": "tensorflow", "tensorflow.xla": False},
    "keras[backend=jax]": {"keras.backend": "jax"},
    "keras[backend=torch]": {"keras.backend": "torch"},
    "paddle": {"paddle.device": "cpu"},
    "tinygrad": {"tinygrad.device": "CPU"},
}


def _probe(*names: str) -> dict:
    for name in names:
        missing = registry.unavailable(name)
        if missing:
            pytest.skip(f"{name}: {missing}")
    proc = subprocess.run([sys.executable, "-c", PROBE, *names], capture_output=True, text=True, timeout=600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"{names}: exit {proc.returncode}\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT "):])


def _typed(value, kind: type) -> bool:
    if kind is list:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return isinstance(value, kind) and (kind is bool or not isinstance(value, bool))


# ---- each built-in's probe, on its installed framework ---------------------------------


@pytest.mark.framework
@pytest.mark.parametrize("name", CPU_BUILTINS)
def test_each_builtin_reports_its_declared_facts_and_what_its_variant_forces(name):
    got = _probe(name)[name]
    cls = registry._builtin_class(registry.BUILTINS[name].target)
    reported = got["frameworks"]
    assert not [f for f, part in reported.items() if "error" in part], reported
    own = {key.partition(".")[0] for key in cls.facts}
    assert own <= set(reported), f"{name}: expected its probe to report {sorted(own)}, received {sorted(reported)}"
    for key, fact in registry.FACTS.items():
        framework, _, field = key.partition(".")
        if framework in reported:
            value = reported[framework].get(field)
            assert _typed(value, fact.type), f"{name}: {key} = {value!r}, expected a {fact.type.__name__}"
            assert got["facts"][key] == value  # and it is a fact a manifest `when:` sees
    for key, value in FORCED.get(name, {}).items():
        assert got["facts"].get(key) == value, f"{name}: expected {key} = {value!r}, received {got['facts'].get(key)!r}"


@pytest.mark.framework
def test_torch_with_mkldnn_off_says_so_and_has_another_fingerprint(tmp_path):
    got = _probe("torch", "torch[mkldnn_off]")
    off = got["torch[mkldnn_off]"]
    assert off["facts"]["torch.mkldnn"] is False
    assert got["torch"]["id"] != off["id"]
    [entry] = expected.load_manifest(_manifest(tmp_path, "{torch.mkldnn: true}"))
    assert not entry.holds(off["facts"])  # a oneDNN-only finding does not apply to it


# ---- conditions are derived from the declarations -------------------------------------


def _manifest(tmp_path: Path, when: str) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(f"- {{backend: b, cases: '*', reason: r, when: {when}}}\n")
    return path


_EXAMPLES = {bool: "true", int: "4", str: "'*'", list: "[x]"}


@pytest.mark.parametrize("key", list(fingerprint.CONDITIONS))
def test_every_engine_and_declared_fact_is_a_when_key_of_its_type(tmp_path, key):
    [entry] = expected.load_manifest(_manifest(tmp_path, f"{{{key}: {_EXAMPLES[fingerprint.CONDITIONS[key]]}}}"))
    assert entry.when[0][0] == key


def test_the_conditions_are_the_engines_facts_and_every_builtins_declared_ones():
    declared = {key: fact.type for cls in registry.adapter_classes() for key, fact in cls.facts.items()}
    engine = {"cpu.vendor", "cpu.model", "cpu.arch", "cpu.flags", "os.system", "ftz", "daz", "threads"}
    assert set(fingerprint.CONDITIONS) == engine | set(declared)
    assert {k: fingerprint.CONDITIONS[k] for k in declared} == declared
    # The keys examples/known-divergences.yaml and earlier manifests use keep working.
    for key in ("tensorflow.onednn", "tensorflow.xla", "torch.cpu_capability", "torch.mkldnn",
                "onnxruntime.providers", "jax.backend", "jax.x64"):
        assert key in fingerprint.CONDITIONS, key


def test_a_when_key_that_is_no_condition_is_refused_with_the_known_ones(tmp_path):
    with pytest.raises(expected.ManifestError) as info:
        expected.load_manifest(_manifest(tmp_path, "{openvino.precision: bf16}"))
    message = str(info.value)
    assert "received 'openvino.precision'" in message
    assert all(key in message for key in fingerprint.CONDITIONS), message


def test_two_classes_declaring_one_fact_with_two_types_are_refused(monkeypatch):
    class A:
        facts = {"x.y": Fact(bool, "one")}

    class B:
        facts = {"x.y": Fact(str, "another")}

    monkeypatch.setattr(registry, "adapter_classes", lambda: [A, B])
    with pytest.raises(TypeError, match=r"B.facts\['x.y'\]: expected bool as A declares it, received str"):
        registry._facts()


def test_facts_reads_any_declared_fact_of_its_type_from_a_probe():
    fp = {"frameworks": {"openvino": {"version": "2026.4.1", "inference_precision": "bf16", "device": None,
                                      "capabilities": ["FP32", "BF16"]},
                         "torch": {"mkldnn": "yes"}}}
    got = fingerprint.facts(fp)
    assert got["openvino.inference_precision"] == "bf16" and got["openvino.capabilities"] == ["FP32", "BF16"]
    assert "openvino.device" not in got  # the framework did not say: unknown, never a match
    assert "torch.mkldnn" not in got  # not of its declared type
    assert "openvino.version" not in got  # recorded, not a condition


def test_the_docs_conditions_table_lists_every_condition():
    text = (Path(__file__).resolve().parents[1] / "docs" / "running.md").read_text(encoding="utf-8")
    section = text[text.index("### Conditions (`when:`)"):]
    table = section[section.index("| condition |"):section.index("\n\n", section.index("| condition |"))]
    named = {name for row in table.splitlines()[2:] for name in re.findall(r"`([\w.]+)`", row.split("|")[1])}
    known = set(fingerprint.CONDITIONS)
    assert named == known, f"docs/running.md: missing {sorted(known - named)}, not conditions {sorted(named - known)}"
