"""Method-level behaviour shared by the pruning-at-initialisation baselines and FreezeNet."""
from __future__ import annotations

import json

import pytest
import torch

from sparse_exp.tracking.files import load_torch


@pytest.mark.parametrize("method", ["random", "magnitude", "snip", "usnip", "grasp", "synflow", "freezenet"])
def test_same_seed_same_mask_and_exact_count(run_experiment, method):
    overrides = (f"method={method}", "method.compression=0.9", "dry_run=true", "method.synflow_rounds=5")
    a, _ = run_experiment(*overrides, name="a")
    b, _ = run_experiment(*overrides, name="b")
    c, _ = run_experiment(*overrides, "seed=1", name="c")
    assert a["mask_sha256"] == b["mask_sha256"]
    assert a["mask_sha256"] != c["mask_sha256"]  # another seed: other weights, data and scores
    assert a["params"]["trainable_weights"] == int(0.1 * a["params"]["total_weights"])


def test_freezenet_q1_trains_only_biases(run_experiment):
    metrics, run_dir = run_experiment("method=freezenet", "method.compression=1.0", "trainer.epochs=1")
    assert metrics["status"] == "completed"
    p = metrics["params"]
    assert p["trainable_weights"] == 0 and p["trainable"] == p["total"] - p["total_weights"]
    assert metrics["compression"]["q"] == 1.0
    ckpt = load_torch(run_dir / "checkpoint.pt")
    from sparse_exp.models.build import build_model
    from omegaconf import OmegaConf

    init = build_model(OmegaConf.load(run_dir / "config.yaml"), 10, (1, 28, 28), metrics["init_seed"]).state_dict()
    for name in ("conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"):
        assert torch.equal(ckpt["model"][name], init[name]), name  # frozen bit for bit
    assert not torch.equal(ckpt["model"]["fc2.bias"], init["fc2.bias"])  # biases trained


def test_freezenet_reinit_records_the_seed_of_the_new_weights(run_experiment):
    m, run_dir = run_experiment("method=freezenet", "method.reinit=true", "trainer.epochs=1")
    plain, _ = run_experiment("method=freezenet", "trainer.epochs=1", name="plain")
    assert m["init_seed"] != plain["init_seed"] and m["mask_sha256"] == plain["mask_sha256"]
    from sparse_exp.export import load_compressed

    model = load_compressed(run_dir / "compressed.npz")
    best = load_torch(run_dir / "checkpoint.pt")["best_state"]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in best.items())


def test_gradient_flow_is_logged(run_experiment):
    metrics, run_dir = run_experiment("method=freezenet", "trainer.epochs=1")
    rec = metrics["history"][0]
    assert rec["grad_l1_mean"] > 0 and rec["grad_l1_std"] >= 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"))
    acc.Reload()
    assert "grad/l1_mean" in acc.Tags()["scalars"]


def test_partial_class_scoring_changes_the_mask(run_experiment):
    a, _ = run_experiment("method=snip", "method.compression=0.9", "dry_run=true", name="all")
    b, _ = run_experiment("method=snip", "method.compression=0.9", "dry_run=true", "method.score_classes=2", name="two")
    assert a["mask_sha256"] != b["mask_sha256"]


def test_divergence_ends_the_run_as_diverged(run_experiment):
    metrics, run_dir = run_experiment("method=dense", "trainer.lr=1e12", "trainer.epochs=3")
    assert metrics["status"] == "diverged"
    assert len(metrics["history"]) == 0  # stopped in the first epoch, no result claimed for it


@pytest.mark.parametrize("stage", ["data", "method"])
def test_a_crash_at_any_stage_is_recorded_as_failed(run_experiment, monkeypatch, tmp_path, stage):
    """A bug while loading data or computing the mask leaves metrics.json with status failed (never
    'running', never a result), so a sweep's report counts the job as failed."""
    from sparse_exp.data import DATASETS
    from sparse_exp.methods import METHODS

    def boom(*args, **kwargs):
        raise RuntimeError(f"boom in {stage}")

    if stage == "data":
        monkeypatch.setitem(DATASETS._entries, "synthetic", boom)
    else:
        monkeypatch.setattr(METHODS.get("snip"), "prepare", boom)
    with pytest.raises(RuntimeError, match="boom"):
        run_experiment("method=snip")
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["status"] == "failed" and "boom" in m["error"] and "test_acc" not in m
