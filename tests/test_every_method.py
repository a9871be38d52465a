"""Every registered method runs end to end through the command on tiny synthetic data, with the
compression it was asked for, a mask that fits the model and a compressed model that reloads; the
methods that change their mask also in the interspace."""
from __future__ import annotations

import json
import math
from fractions import Fraction

import pytest
import torch
from omegaconf import OmegaConf

from conftest import TINY, run_cli
from method_overrides import EXTRA
from sparse_exp.export import load_compressed
from sparse_exp.methods import METHODS
from sparse_exp.tracking.files import load_torch


def test_every_method_runs_through_the_command(tmp_path):
    """A subprocess run of every registered method, all in one `sparse-exp -m`: one preset per method,
    written here from the shared overrides of tests/method_overrides.py and found through
    hydra.searchpath (the way a user adds their own presets). Each run keeps the compression it was
    asked for and its compressed model reloads to the trained (best-epoch) state."""
    presets = tmp_path / "presets" / "experiment"
    presets.mkdir(parents=True)
    for name in METHODS.names():
        extra = [o.split("=", 1) for o in EXTRA.get(name, [])]
        groups = "".join(f"  - override /{k}: {v}\n" for k, v in extra if "." not in k)
        keys = OmegaConf.from_dotlist([f"{k}={v}" for k, v in extra if "." in k])
        presets.joinpath(f"every_{name}.yaml").write_text(
            f"# @package _global_\ndefaults:\n  - override /method: {name}\n{groups}"
            + (OmegaConf.to_yaml(keys) if keys else ""))
    sweep = tmp_path / "sweep"
    names = ",".join(f"every_{n}" for n in METHODS.names())
    proc = run_cli(["-m", *TINY, "trainer.epochs=1", "trainer.max_steps_per_epoch=4", f"experiment={names}",
                    f"hydra.searchpath=[file://{tmp_path / 'presets'}]", f"hydra.sweep.dir={sweep}"],
                   cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    runs = {}
    for run_dir in (p for p in sweep.iterdir() if p.is_dir()):
        metrics = json.loads((run_dir / "metrics.json").read_text())
        runs[metrics["config"]["method"]["name"]] = (metrics, run_dir)
    assert sorted(runs) == METHODS.names()
    for name, (metrics, run_dir) in runs.items():
        assert metrics["status"] == "completed", (name, metrics)
        q = metrics["config"]["method"]["compression"]
        p = metrics["params"]
        kept = math.floor((1 - Fraction(str(q))) * p["total_weights"])  # exact, not the code's float formula
        if "cops" in name:
            assert 0 < p["trainable_weights"] <= kept  # COPS never keeps a weight with a non-negative score (4.9)
        else:
            assert p["trainable_weights"] == kept, name
        assert metrics["mask_sha256"] and 0.0 <= metrics["test_acc"] <= 1.0
        model = load_compressed(run_dir / "compressed.npz")
        best = load_torch(run_dir / "checkpoint.pt")["best_state"]
        assert all(torch.equal(model.state_dict()[k], v) for k, v in best.items()), name


@pytest.mark.parametrize("name", ["set", "rigl", "gmp", "ft", "lth", "g_cops"])
def test_mask_changing_methods_run_in_the_interspace(run_experiment, name):
    """IP-SET, IP-RigL, IP-GMP, IP-FT, IP-LTH (issue 6 with the interspace of issue 5) and IP-COPS: the
    masks live on the coefficients β of the KxK convolutions and change during the run as in the
    spatial case."""
    overrides = [f"method={name}", "sharing=fine", "init=standard", "trainer.lr=0.01", "trainer.epochs=1",
                 "trainer.max_steps_per_epoch=4", *EXTRA.get(name, [])]
    metrics, run_dir = run_experiment(*overrides)
    assert metrics["status"] == "completed", metrics
    names = [layer["name"] for layer in metrics["layers"]]
    assert "conv1.coeff" in names and "conv2.coeff" in names and "conv1.weight" not in names, names
    q, p = metrics["config"]["method"]["compression"], metrics["params"]
    kept = math.floor((1 - Fraction(str(q))) * p["total_weights"])  # exact, not the code's float formula
    assert p["basis"] > 0 and (0 < p["trainable_weights"] <= kept if "cops" in name else p["trainable_weights"] == kept)
    if name in ("set", "rigl"):
        # 4 steps, an update every 2: one update, at step 2 (none at the last step)
        assert metrics["dst"]["updates"] == 1 and metrics["dst"]["last_step"] == 2 and metrics["dst"]["exchanged"] > 0
    model = load_compressed(run_dir / "compressed.npz")
    best = load_torch(run_dir / "checkpoint.pt")["best_state"]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in best.items())
