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


def tox_setting(ini: configparser.ConfigParser, env: str, key: str) -> list[str]:
    """The lines tox 4 gives environment `env` for `key`: its own section's, else [testenv]'s,
    factor-conditional lines (`a-!b: value`) kept where the env's factors satisfy them,
    `{env_name}` substituted. (Checked against `tox config` by hand; tox is not a test dependency.)"""
    own = f"testenv:{env}"
    section = ini[own] if own in ini and key in ini[own] else ini["testenv"]
    factors = set(env.split("-"))
    lines = []
    for line in filter(None, (ln.strip() for ln in section.get(key, "").splitlines())):
        conditional = re.match(r"^([!\w-]+):\s+(.*)$", line)
        if conditional:
            wanted = conditional.group(1).split("-")
            if not all((f[1:] not in factors) if f.startswith("!") else (f in factors) for f in wanted):
                continue
            line = conditional.group(2)
        lines.extend(part.strip().replace("{env_name}", env) for part in
                     (line.split(",") if key == "extras" else [line]) if part.strip())
    return lines


def _tox() -> configparser.ConfigParser:
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(ROOT / "tox.ini")
    return ini


def test_tox_lists_one_env_per_adapter_extra_from_one_section():
    from conformance.adapters.registry import BUILTINS

    ini = _tox()
    every = {b.extra for b in BUILTINS.values() if b.extra}
    envs = [e.strip() for e in ini["tox"].get("env_list", ini["tox"].get("envlist", "")).split(",")]
    assert sorted(envs) == sorted(every | {"engine"}), f"tox.ini env_list: expected engine and the extras " \
                                                       f"{sorted(every)}, received {envs}"
    copies = [s for s in ini.sections() if s.startswith("testenv:") and s != "testenv:report"]
    assert not copies, f"tox.ini: expected no section per environment beyond [testenv:report], received {copies}"


def test_tox_envs_install_the_right_extras_and_judge_their_backend():
    from conformance.adapters.registry import BUILTINS

    ini = _tox()
    every = {b.extra for b in BUILTINS.values() if b.extra}
    assert {"torch", "tensorflow", "onnxruntime", "jax"} <= every
    assert set(tox_setting(ini, "engine", "extras")) == {"test"}
    assert set(tox_setting(ini, "all", "extras")) == {"test", "all"}
    assert set(tox_setting(ini, "report", "extras")) == {"all"}
    for extra in every:
        assert set(tox_setting(ini, extra, "extras")) == {"test", extra}, extra
        assert extra in BUILTINS  # the env's name is the backend it judges
        assert any(f"--conformance --backend {extra} " in c for c in tox_setting(ini, extra, "commands")), extra
    assert not any("--conformance " in c for env in ("engine", "all") for c in tox_setting(ini, env, "commands"))