"""Sweeps through Hydra launchers: the submitit local executor and joblib run real jobs on tiny
synthetic data; the SLURM preset composes with the COPS alpha-grid preset (no cluster here)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TINY, run_cli


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def _check_sweep(sweep: Path, names: list[str], by: str) -> None:
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [p.name for p in jobs] == names  # job number + the overrides that vary
    for job in jobs:
        m = _metrics(job)
        assert m["status"] == "completed" and m["world_size"] == 1
    report = subprocess.run([sys.executable, "-m", "sparse_exp.report", str(sweep), "--by", by, "--no-plot"],
                            capture_output=True, text=True)
    assert report.returncode == 0, report.stderr
    assert "2 runs (2 completed)" in report.stdout


@pytest.mark.slow  # the launcher plugin; the fast suite sweeps with the basic launcher and joblib (test_reproduce)
def test_submitit_local_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(["-m", "hydra/launcher=submitit_local", *TINY, "trainer.epochs=1", "seed=0,1",
                    f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _check_sweep(sweep, ["0_seed=0", "1_seed=1"], "seed")
    assert [_metrics(sweep / n)["seed"] for n in ("0_seed=0", "1_seed=1")] == [0, 1]


@pytest.mark.slow
def test_joblib_local_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    args = [a for a in TINY if not a.startswith("trainer.threads")]  # joblib limits each worker's threads itself
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # joblib sets it per worker
    proc = subprocess.run([sys.executable, "-m", "sparse_exp", "-m", "hydra/launcher=joblib_local", "hydra.launcher.n_jobs=2",
                           *args, "trainer.epochs=1", "method.compression=0.9,0.99", f"hydra.sweep.dir={sweep}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _check_sweep(sweep, ["0_method.compression=0.9", "1_method.compression=0.99"], "method.compression")
    assert {_metrics(p)["threads"] for p in sweep.iterdir() if p.is_dir()} == {1}  # 2 cores / 2 jobs


def test_slurm_preset_composes_with_the_cops_alpha_grid():
    from hydra import compose, initialize_config_module

    import sparse_exp.cli as cli

    cli._register_schemas()

    with initialize_config_module(config_module="sparse_exp.conf", version_base="1.3"):
        cfg = compose(config_name="config", return_hydra_config=True, overrides=[
            "hydra/launcher=slurm", "experiment=a10_cops_vgg16_cifar10", "method.compression=0.95",
            "hydra.launcher.partition=gpu", "hydra.launcher.gpus_per_task=1", "hydra.launcher.timeout_min=600"])
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.partition, launcher.gpus_per_task, launcher.timeout_min, launcher.cpus_per_task) == ("gpu", 1, 600, 8)
    assert cfg.method.name == "g_cops" and cfg.method.compression == 0.95
    assert str(cfg.hydra.sweeper.params["seed"]) == "0,1,2,3,4"
    assert len(str(cfg.hydra.sweeper.params["method.alpha"]).split(",")) == 14
