"""Fidelity to the papers at the edges: no validation split on ImageNet, scoring batches of the
presets, q with the bases counted, shared SP/IP starts, LTH per round, silent no-ops (issue 13)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sparse_exp.data.split import split_indices

CONF = Path(__file__).resolve().parent.parent / "conf"
PRESETS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


# ------------------------------------------------------- 1. dataset.val_fraction = 0


def test_split_with_no_validation_keeps_every_training_sample():
    train, val = split_indices(50, 0.0, seed=3)
    assert train.tolist() == list(range(50)) and val.numel() == 0


def test_no_validation_set_reports_the_final_epoch(run_experiment):
    metrics, _ = run_experiment("dataset.val_fraction=0", "trainer.epochs=3", "dataset.size=300")
    history = metrics["history"]
    assert metrics["status"] == "completed"
    assert metrics["test_acc_selection"] == "final_epoch"
    assert metrics["best_epoch"] == 3 and metrics["test_acc"] == history[-1]["test_acc"]
    # the whole training set trains: 300 samples per epoch at batch 50 -> 6 steps
    assert [h["step"] for h in history] == [6, 12, 18]


def preset_text(name: str) -> str:
    return (CONF / "experiment" / f"{name}.yaml").read_text()


def test_imagenet_presets_train_on_the_whole_training_set(make_cfg):
    # composing is ~0.3 s a preset: compose one of each kind, read the others' overrides as text
    assert make_cfg("experiment=a11_rigl_resnet50_imagenet").dataset.val_fraction == 0.0
    assert make_cfg("experiment=a9_resnet34_tiny_imagenet").dataset.val_fraction == 0.0
    assert make_cfg("experiment=a10_cops_resnet18_tiny_imagenet").dataset.val_fraction == 0.1
    assert make_cfg("experiment=a9_vgg16_cifar10").dataset.val_fraction == 0.1
    for preset in PRESETS:
        text = preset_text(preset)
        if "override /dataset: tiny_imagenet" in text:  # thesis A.3 splits MNIST/CIFAR only; COPS tunes alpha on val
            assert ("val_fraction: 0.1" in text) == preset.startswith(("a10_cops_", "table4_2_")), preset
        elif "override /dataset: imagenet" in text:
            assert "val_fraction" not in text, preset
