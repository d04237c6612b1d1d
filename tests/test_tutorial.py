"""The adapter tutorial runs as written, and the shipped CI and tox recipes are well-formed.

The tutorial's code is taken from docs/adapters.md (the block after
`<!-- tutorial:adapter -->`), so the text a user copies is the text that is tested.
"""

from __future__ import annotations

import configparser
import re
import shlex
from pathlib import Path

import pytest
import yaml

from conformance.cli import main

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "docs" / "adapters.md"
TOY = ROOT / "examples" / "tutorial" / "toy_backend.py"


def tutorial_block(marker: str) -> str:
    """The fenced block right after `<!-- tutorial:MARKER -->` in the tutorial."""
    tag = f"<!-- tutorial:{marker} -->"
    found = re.search(re.escape(tag) + r"\s*```[a-z]*\n(.*?)```", TUTORIAL.read_text(encoding="utf-8"), re.S)
    assert found, f"{TUTORIAL}: expected a fenced code block right after {tag}"
    return found.group(1)


def test_tutorial_adapter_is_the_shipped_file():
    assert tutorial_block("adapter") == TOY.read_text(encoding="utf-8")


def test_tutorial_run_command_passes_on_the_smoke_set(tmp_path, monkeypatch):
    (command,) = [line for line in tutorial_block("run").splitlines() if line.strip()]
    argv = shlex.split(command)
    assert argv[:2] == ["conformance", "run"]
    adapter = tmp_path / "toy_backend.py"
    adapter.write_text(tutorial_block("adapter"), encoding="utf-8")  # the tutorial's code, not the file
    argv = [str(adapter) + a[a.index(":"):] if a.startswith("examples/tutorial/") else a for a in argv[1:]]
    monkeypatch.chdir(tmp_path)
    assert main(argv + ["--out", "reports", "--quiet"]) == 0
    assert (tmp_path / "reports" / "index.html").is_file() and (tmp_path / "reports" / "toy.html").is_file()


@pytest.mark.parametrize("name", ["conformance.yml", "nightly-explore.yml"])
def test_ci_recipe_is_valid_yaml_with_jobs(name):
    doc = yaml.safe_load((ROOT / "examples" / "ci" / name).read_text(encoding="utf-8"))
    assert isinstance(doc, dict) and doc.get("jobs"), f"{name}: expected a workflow with jobs"
    steps = [s.get("run", "") for job in doc["jobs"].values() for s in job["steps"]]
    assert any("conformance " in s for s in steps), f"{name}: expected a step running conformance"


def test_ci_recipe_merges_every_shard():
    doc = yaml.safe_load((ROOT / "examples" / "ci" / "conformance.yml").read_text(encoding="utf-8"))
    runs = " ".join(s.get("run", "") for s in doc["jobs"]["merge"]["steps"])
    assert "conformance merge out/*/results.json --out merged" in runs
    assert doc["jobs"]["merge"]["needs"] == "run"


def test_tox_envs_install_the_right_extras():
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(ROOT / "tox.ini")
    extras = {name.split(":", 1)[1]: ini[name].get("extras", "").replace(" ", "")
              for name in ini.sections() if name.startswith("testenv:")}
    from conformance.adapters.registry import BUILTINS

    per_framework = {b.extra: f"test,{b.extra}" for b in BUILTINS.values() if b.extra}
    assert {"torch", "tensorflow", "onnxruntime", "jax"} <= set(per_framework)
    assert extras == {"engine": "", **per_framework, "all": "test,all", "report": "all"}
    assert ini["testenv"]["extras"] == "test"
