"""The installed (non-editable) package finds its configs from any directory (Hydra's pkg:// search path)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from conftest import REPO


@pytest.mark.slow  # builds and installs a wheel
def test_wheel_ships_configs_and_runs_from_elsewhere(tmp_path):
    # Build from a clean copy: an in-tree build would leave build/ behind and could ship stale files.
    source = tmp_path / "source"
    shutil.copytree(REPO, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "*.egg-info", "outputs", "multirun", "__pycache__", ".pytest_cache"))
    wheels = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                            "-w", str(wheels), str(source)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    (wheel,) = wheels.glob("sparse_exp-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "sparse_exp/conf/config.yaml" in names and "sparse_exp/conf/method/freezenet.yaml" in names
    target = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                              str(wheel)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = dict(os.environ, PYTHONPATH=str(target), OMP_NUM_THREADS="1")
    where = subprocess.run([sys.executable, "-c", "import sparse_exp; print(sparse_exp.__file__)"], cwd=elsewhere,
                           capture_output=True, text=True, env=env)
    assert where.stdout.strip().startswith(str(target))  # the installed copy, not the source tree
    run_dir = elsewhere / "run"
    run = subprocess.run([sys.executable, "-m", "sparse_exp", "dataset=synthetic", "dataset.shape=[1,28,28]",
                          "dataset.size=200", "dry_run=true", f"hydra.run.dir={run_dir}"],
                         cwd=elsewhere, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "dry_run"
