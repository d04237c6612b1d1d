"""A wheel ships everything: installed from a wheel, every case set has this checkout's cases.

A wheel of this checkout is built offline (`pip wheel --no-deps --no-build-isolation`,
with the setuptools already installed) from a copy of the working tree, and installed
into a fresh virtual environment that sees this environment's dependencies through a
.pth naming this environment's site-packages. The editable install of conv-conformance
there is a finder that its own .pth registers; a plain path entry runs no .pth, so the
wheel's copy is the only conv-conformance the new environment can import (checked).
`conformance cases SET` then lists the same case ids there as here, for every set.

Skipped, with the reason, where no wheel can be built (no setuptools >= 64, no venv);
CONFORMANCE_REQUIRE_WHEEL=1 (.ci/run sets it) makes that a failure instead.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from conformance.cases.sets import SETS

ROOT = Path(__file__).resolve().parents[1]
#: What a working tree holds that is no part of the package's sources.
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", ".tox", "build", "dist", "*.egg-info", "__pycache__",
                                     "reports", ".hypothesis", "test-artifacts", "explore-regressions")


def _why_no_wheel() -> str | None:
    if importlib.util.find_spec("setuptools") is None:
        return "setuptools is not installed: a wheel cannot be built without downloading it"
    from packaging.version import Version
    import setuptools

    if Version(setuptools.__version__) < Version("64"):
        return f"setuptools {setuptools.__version__} is older than pyproject's build requirement (>= 64)"
    if importlib.util.find_spec("venv") is None:
        return "the venv module is not available"
    return None


def _run(*argv, cwd: Path, python: str | Path = sys.executable) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run([str(python), *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _ok(proc: subprocess.CompletedProcess, what: str) -> str:
    assert proc.returncode == 0, f"{what}: exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory) -> dict:
    why = _why_no_wheel()
    if why:
        if os.environ.get("CONFORMANCE_REQUIRE_WHEEL") == "1":
            pytest.fail(f"CONFORMANCE_REQUIRE_WHEEL=1 but no wheel can be built: {why}")
        pytest.skip(why)
    tmp = tmp_path_factory.mktemp("wheel")
    src, dist, venv = tmp / "src", tmp / "dist", tmp / "venv"
    shutil.copytree(ROOT, src, ignore=NOT_SOURCES)  # a build writes build/ and *.egg-info beside the sources
    build = _run("-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(dist), str(src),
                 cwd=tmp)
    _ok(build, "pip wheel")
    [wheel] = dist.glob("conv_conformance-*.whl")
    _ok(_run("-m", "venv", "--without-pip", str(venv), cwd=tmp), "python -m venv")
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    site = Path(_ok(_run("-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp, python=python),
                    "the new environment's site-packages").strip())
    here = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (site / "zz_dependencies_of_the_test_environment.pth").write_text("\n".join(here) + "\n")
    _ok(_run("-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", str(wheel), cwd=tmp),
        "pip install the wheel")
    return {"python": python, "site": site, "tmp": tmp, "build_log": build.stdout + build.stderr}


def _case_ids(python, selector: str, cwd: Path) -> list[str]:
    out = _ok(_run("-m", "conformance", "cases", selector, cwd=cwd, python=python), f"conformance cases {selector}")
    return out.split()


def test_the_installed_wheel_is_what_runs_not_this_checkout(wheel_env):
    where = _ok(_run("-c", "import conformance.cases.catalogue as c; print(c.__file__)", cwd=wheel_env["tmp"],
                     python=wheel_env["python"]), "import conformance")
    assert Path(where.strip()).is_relative_to(wheel_env["site"]), where


def test_building_the_wheel_imports_no_data_folder_as_a_package(wheel_env):
    # setuptools warns when package data sits in folders it would have to install as packages.
    assert "is absent from the `packages` configuration" not in wheel_env["build_log"]


@pytest.mark.parametrize("selector", SETS)
def test_a_wheel_install_selects_the_same_cases_as_this_checkout(wheel_env, selector):
    from_wheel = _case_ids(wheel_env["python"], selector, wheel_env["tmp"])
    editable = _case_ids(sys.executable, selector, wheel_env["tmp"])
    assert editable, f"{selector}: expected cases in this checkout"
    assert from_wheel == editable, (f"{selector}: {len(from_wheel)} cases from the wheel, {len(editable)} in this "
                                    f"checkout; missing e.g. {sorted(set(editable) - set(from_wheel))[:3]}")
