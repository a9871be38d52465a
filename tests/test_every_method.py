"""Every registered method runs end to end in one process on tiny synthetic data, with the
compression it was asked for, a mask that fits the model and a compressed model that reloads."""
from __future__ import annotations

import math

import pytest
import torch

from method_overrides import EXTRA
from sparse_exp.export import load_compressed
from sparse_exp.methods import METHODS
from sparse_exp.tracking.files import load_torch


@pytest.mark.parametrize("name", METHODS.names())
def test_method_runs(run_experiment, name):
    overrides = [f"method={name}", "trainer.epochs=1", "trainer.max_steps_per_epoch=4", *EXTRA.get(name, [])]
    metrics, run_dir = run_experiment(*overrides)
    assert metrics["status"] == "completed", metrics
    q = metrics["config"]["method"]["compression"]
    p = metrics["params"]
    kept = math.floor((1 - q) * p["total_weights"] + 1e-9)
    if "cops" in name:
        assert 0 < p["trainable_weights"] <= kept  # COPS never keeps a weight with a non-negative score (4.9)
    else:
        assert p["trainable_weights"] == kept
    assert metrics["mask_sha256"] and 0.0 <= metrics["test_acc"] <= 1.0
    model = load_compressed(run_dir / "compressed.npz")
    best = load_torch(run_dir / "checkpoint.pt")["best_state"]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in best.items())


@pytest.mark.parametrize("name", ["set", "rigl", "gmp", "ft", "lth"])
def test_mask_changing_methods_run_in_the_interspace(run_experiment, name):
    """IP-SET, IP-RigL, IP-GMP, IP-FT, IP-LTH (issue 6 with the interspace of issue 5): the masks live
    on the coefficients β of the KxK convolutions and change during the run as in the spatial case."""
    overrides = [f"method={name}", "sharing=fine", "init=standard", "trainer.lr=0.01", "trainer.epochs=1",
                 "trainer.max_steps_per_epoch=4", *EXTRA.get(name, [])]
    metrics, run_dir = run_experiment(*overrides)
    assert metrics["status"] == "completed", metrics
    names = [layer["name"] for layer in metrics["layers"]]
    assert "conv1.coeff" in names and "conv2.coeff" in names and "conv1.weight" not in names, names
    q, p = metrics["config"]["method"]["compression"], metrics["params"]
    assert p["basis"] > 0 and p["trainable_weights"] == math.floor((1 - q) * p["total_weights"] + 1e-9)
    if name in ("set", "rigl"):
        assert metrics["dst"]["updates"] >= 1 and metrics["dst"]["exchanged"] > 0
    model = load_compressed(run_dir / "compressed.npz")
    best = load_torch(run_dir / "checkpoint.pt")["best_state"]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in best.items())
