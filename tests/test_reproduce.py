"""The reproduction pipeline (scripts/reproduce.py, conf/experiment/repro_*.yaml, scripts/results_page.py):
every preset's jobs compose and validate, a sweep runs, and the page is built from the runs' metrics.json
(the numbers on docs/results.md come from the real run, never from fixtures)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
from reproduce import EXPERIMENTS  # noqa: E402


def test_every_experiment_of_the_page_has_a_preset_and_a_section():
    from results_spec import EXPERIMENTS as SECTIONS

    presets = {p.stem for p in (REPO / "conf" / "experiment").glob("repro_*.yaml")}
    assert set(EXPERIMENTS) == presets == {e.name for e in SECTIONS}


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_job_of_a_reproduction_preset_composes_and_validates(name, make_cfg):
    """The sweeper's own planning (sparse_exp/sweep.py) over the preset's grids: fails on any bad job."""
    from omegaconf import OmegaConf

    from sparse_exp.config.validate import validate, validate_model_fits_statically

    cfg = make_cfg(f"experiment={name}")
    preset = OmegaConf.load(REPO / "conf" / "experiment" / f"{name}.yaml")
    params = dict(preset.hydra.sweeper.get("params") or {})
    grids = list(preset.hydra.sweeper.get("grids") or [{}])
    count = 0
    for grid in grids:
        combo = {**params, **grid}
        first = [f"{k}={str(v).split(',')[0]}" for k, v in combo.items()]
        last = [f"{k}={str(v).split(',')[-1]}" for k, v in combo.items()]
        for overrides in (first, last):
            job = make_cfg(f"experiment={name}", *overrides)
            validate(job)
            validate_model_fits_statically(job)
            assert job.dataset.name == "fashion_mnist" and job.trainer.name.startswith("repro_")
            count += 1
    assert count >= 2 and cfg.trainer.threads == 1


def test_quick_pipeline_runs_a_sweep_and_builds_the_page(tmp_path):
    out = tmp_path / "rq"
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "reproduce.py"), "--quick", "--only", "repro_fig3_6", "--out", str(out),
         "--set", "dataset=synthetic", "dataset.shape=[1,28,28]", "dataset.size=300", "dataset.test_size=100",
         "trainer.max_steps_per_epoch=3"],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    page = (out / "docs" / "results.md").read_text()
    assert "quick pipeline check, not results" in page
    assert "## Chapter 3: FreezeNet-reinit (Fig. 3.6)" in page and "Runs: 2 completed" in page
    assert "| false |" in page and "| true |" in page  # the table, from the two runs
    assert "Reinitialising after the mask does not harm" in page and "FreezeNet-reinit" in page
    assert (out / "docs" / "results" / "repro_fig3_6.csv").exists()


@pytest.mark.slow
def test_quick_others_scales_the_iteration_counts_to_the_quick_steps(tmp_path):
    """repro_others' LTH rewind point and GMP/RigL schedules are iteration counts of the full schedule;
    the quick run scales them to its 20 steps, so every job completes (it failed before QUICK_OTHERS)."""
    out = tmp_path / "rq"
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "reproduce.py"), "--quick", "--only", "repro_others", "--out", str(out),
         "--set", "dataset=synthetic", "dataset.shape=[1,28,28]", "dataset.size=300", "dataset.test_size=100"],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Runs: 4 completed" in (out / "docs" / "results.md").read_text()
